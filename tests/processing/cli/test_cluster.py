"""`xtal cluster` (issue 14): the installed command on scaled data of 6 crystals, 2 of them
non-isomorphous — the unit-cell and candidate-cluster tables it prints, the numbers
against its JSON report and the scale run's own statistics, nothing else written, and
one-line errors."""
from __future__ import annotations

import json
import os

import pytest

from processing.cli.cluster import ranges

from .conftest import assert_one_line_error, check, run_xtal, table_rows


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """tiny as 6 crystals (2 non-isomorphous) → cosym → scale, written as scaled.expt/.refl."""
    from processing.io.expt import read_experiments, write_experiments
    from processing.io.refl import read_reflections, write_reflections
    from processing.scaling import ScaleParams, run_scale
    from processing.simulate import SimulateParams, run_simulate
    from processing.symmetry import CosymParams, run_cosym

    folder = tmp_path_factory.mktemp("cluster_cli")
    sim = folder / "sim"
    _, truth = run_simulate(SimulateParams(preset="tiny", mode="reflections", output_dir=str(sim), n_crystals=6,
                                           n_non_isomorphous=2, seed=2))
    e, r = read_experiments(str(sim / "integrated.expt")), read_reflections(str(sim / "integrated.refl"))
    e, r, _ = run_cosym(e, r, CosymParams(stability="false"))
    e, r, summary = run_scale(e, r, ScaleParams())
    write_experiments(str(folder / "scaled.expt"), e)
    write_reflections(str(folder / "scaled.refl"), r)
    flagged = {c["identifier"] for c in truth["crystals"] if "non_isomorphous" in c["flags"]}
    good = [k for k, x in enumerate(e) if x.identifier not in flagged]
    return folder, summary, good


def test_cluster_prints_the_cluster_table(scaled, tmp_path):
    folder, scale, good = scaled
    proc = check(run_xtal("cluster", str(folder / "scaled.expt"), str(folder / "scaled.refl"),
                          "clustering.method=correlation", "max_clusters=2", "dimensions=2", "output.json=cluster.json",
                          cwd=tmp_path))
    out = proc.stdout
    assert os.listdir(tmp_path) == ["cluster.json"]                      # the report, nothing else
    report = json.loads((tmp_path / "cluster.json").read_text())
    assert report["n_datasets"] == 6 and report["cluster_method"] == "correlation"
    forms = table_rows(out, "Median cell")
    assert [r[:2] for r in forms] == [["1", "6"]] and forms[0][3] == "0-5"
    rows = table_rows(out, "Completeness")
    assert len(rows) == len(report["clusters"]) == 5                      # n − 1 merge nodes, largest first
    for row, c in zip(rows, report["clusters"]):
        assert row[:2] == [str(c["node"]), str(c["size"])]
        assert row[4] == f"{100 * c['completeness']:.1f}" and row[6] == f"{c['cc_half']:.3f}"
        assert row[7] == f"{c['rpim']:.3f}" and row[8] == f"{c['d_min']:.2f}"
    assert [r[9] for r in rows] == ["yes", "yes"] + ["no: max_clusters reached"] * 3
    # all six data sets: the numbers of xtal scale's overall statistics
    overall = scale["merging_statistics"]["overall"]
    assert rows[0][2] == "0-5" and rows[0][4] == f"{overall['completeness']:.1f}"
    assert rows[0][5] == f"{overall['multiplicity']:.2f}" and rows[0][6] == f"{overall['cc_half']:.3f}"
    # the four isomorphous crystals: the smallest cluster holding them all is just them, with a better CC½
    k = max(i for i, c in enumerate(report["clusters"]) if set(good) <= set(c["members"]))
    assert report["clusters"][k]["members"] == good and rows[k][2] == ranges(good) and rows[k][1] == "4"
    assert float(rows[k][6]) > float(rows[0][6])
    assert "2 cluster(s) to merge" in out


def test_cluster_errors_are_one_line(scaled, tmp_path):
    folder, _, _ = scaled
    sim = folder / "sim"
    assert_one_line_error(run_xtal("cluster", str(sim / "integrated.expt"), str(sim / "integrated.refl"), cwd=tmp_path),
                          "the reflections are not scaled")
    assert_one_line_error(run_xtal("cluster", str(folder / "scaled.expt"), str(folder / "scaled.refl"),
                                   "cluster_method=ward", cwd=tmp_path), "cluster_method=ward")
    assert_one_line_error(run_xtal("cluster", str(folder / "scaled.expt"), str(folder / "scaled.refl"),
                                   "output.json=nowhere/cluster.json", cwd=tmp_path), "does not exist")
    assert os.listdir(tmp_path) == []
