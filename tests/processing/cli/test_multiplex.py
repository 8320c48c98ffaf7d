"""`xtal multiplex` (issue 14, point 2) on a reflection-level ensemble of 10 crystals, 2 of
them non-isomorphous: one crystal form, the form merged, and among the intensity clusters
exactly the 8 isomorphous data sets, merged on their own with a better CC½ than all 10."""
from __future__ import annotations

import json

import gemmi
import pytest

from .conftest import assert_one_line_error, check, run_xtal


@pytest.fixture(scope="module")
def multiplexed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multiplex")
    check(run_xtal("simulate", "preset=insulin-24", "mode=reflections", "n_crystals=10", "n_non_isomorphous=2",
                   "n_weak=0", "n_damaged=0", "output_dir=.", cwd=folder))
    (folder / "out").mkdir()
    proc = check(run_xtal("multiplex", "integrated.expt", "integrated.refl", "min_cluster_size=3", "output_dir=out",
                          cwd=folder))
    return folder, proc, json.loads((folder / "out" / "xtal.multiplex.json").read_text())


def test_the_isomorphous_data_sets_form_a_cluster_merged_on_their_own(multiplexed):
    folder, proc, report = multiplexed
    truth = json.loads((folder / "truth.json").read_text())["truth"]["crystals"]
    bad = {c["identifier"] for c in truth if "non_isomorphous" in (c.get("flags") or [])}
    assert len(bad) == 2 and len(report["unit_cell_clustering"]["clusters"]) == 1
    form = report["forms"][0]
    assert form["best"]["patterson_group"] == "I m -3"
    assert (folder / "out" / "form_0" / "merged.mtz").exists()
    selected = form["clusters"]["selected"]
    good = [c for c in selected if {form["members"][i] for i in c["members"]} == set(form["members"]) - bad]
    assert len(good) == 1
    everything = next(c for c in selected if len(c["members"]) == 10)
    assert good[0]["merged"]["overall"]["cc_half"] > everything["merged"]["overall"]["cc_half"] + 0.005
    mtz = gemmi.read_mtz_file(str(folder / good[0]["merged"]["folder"] / "merged.mtz"))
    assert mtz.spacegroup.xhm() in ("I 2 3", "I 21 3")
    assert good[0]["name"] in proc.stdout


def test_too_small_a_crystal_form_is_one_line(multiplexed):
    folder, _, _ = multiplexed
    proc = run_xtal("multiplex", "integrated.expt", "integrated.refl", "min_cluster_size=20", cwd=folder)
    assert_one_line_error(proc, "no crystal form has 20 or more data sets")
    proc = run_xtal("multiplex", "integrated.expt", "integrated.refl", "nproc=0", cwd=folder)
    assert_one_line_error(proc, "nproc: give a whole number ≥ 1")


def test_parallel_clusters_are_limited_by_memory():
    from processing.cli.multiplex import cluster_workers

    gb = 1 << 30
    assert cluster_workers(2, 10, 1 * gb, 20 * gb) == 2
    assert cluster_workers(2, 10, 3 * gb, 10 * gb) == 1  # two scalings of a 3 GB table do not fit in 10 GB
    assert cluster_workers(4, 3, 1 * gb, None) == 3
    assert cluster_workers(2, 1, 1, 1) == 1
