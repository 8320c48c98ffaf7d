"""The ``cluster`` stage (issue 14): xia2.multiplex's clustering of scaled data as one stage —
on a reflection-level ensemble of two populations (6 crystals, and 2 whose cells are 2 %
longer with perturbed atoms), scaled first: the clusters found, their statistics, the
selection, determinism, and the bound on the summary for large ensembles."""
from __future__ import annotations

import json

import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.models import ExperimentList
from processing.multiplex import ClusterParams, run_cluster
from processing.multiplex import stage as cluster_stage
from processing.scaling import ScaleParams, run_scale
from processing.simulate import SimulateParams, run_simulate
from processing.stages import STAGES
from processing.symmetry import CosymParams, run_cosym


def strict(obj) -> str:
    return json.dumps(obj, allow_nan=False, sort_keys=True)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """tiny as 8 crystals, 2 of them non-isomorphous → cosym → scale."""
    out = tmp_path_factory.mktemp("cluster_stage")
    _, truth = run_simulate(SimulateParams(preset="tiny", mode="reflections", output_dir=str(out), n_crystals=8,
                                           n_non_isomorphous=2, seed=3))
    e, r = read_experiments(str(out / "integrated.expt")), read_reflections(str(out / "integrated.refl"))
    e, r, _ = run_cosym(e, r, CosymParams(stability="false"))
    e, r, scale = run_scale(e, r, ScaleParams())
    flagged = {c["identifier"] for c in truth["crystals"] if "non_isomorphous" in c["flags"]}
    bad = [k for k, x in enumerate(e) if x.identifier in flagged]
    return {"experiments": e, "reflections": r, "scale": scale, "bad": bad,
            "good": [k for k in range(len(e)) if k not in bad]}


def cluster(data, **params):
    """The stage's summary; ``dimensions=2`` unless given (one embedding, not one per trial dimension)."""
    params.setdefault("dimensions", 2)
    stage = STAGES["cluster"]
    return stage.execute(data["experiments"], data["reflections"], ClusterParams(**params))[2]


@pytest.fixture(scope="module")
def by_correlation(scaled):
    return cluster(scaled, cluster_method="correlation", dimensions=None)


def smallest_holding(clusters, ids):
    return min((c for c in clusters if set(ids) <= set(c["members"])), key=lambda c: c["size"])


def row_of(summary, members):
    return next(c for c in summary["clusters"] if c["members"] == sorted(members))


def test_the_registry_declares_the_stage():
    stage = STAGES["cluster"]
    assert (stage.params, stage.inputs, stage.outputs, stage.previous, stage.per_sweep) == \
        (ClusterParams, ("scaled.expt", "scaled.refl"), (), "scale", False)


def test_both_intensity_clusterings_separate_the_populations(scaled, by_correlation):
    good, bad = scaled["good"], scaled["bad"]
    assert len(scaled["experiments"]) == 8 and len(bad) == 2
    s = by_correlation
    node = smallest_holding(s["correlation"]["clusters"], good)
    assert node["members"] == good
    root = s["correlation"]["clusters"][-1]
    assert root["height"] > 1.5 * node["height"]                         # the other population joins well above
    cc = np.array(s["correlation"]["correlation"], dtype=float)
    within = cc[np.ix_(good, good)][~np.eye(len(good), dtype=bool)]
    assert within.mean() > cc[np.ix_(good, bad)].mean() and within.min() > 0.8
    cos = cluster(scaled, dimensions=None)                                # cos_angle, the default
    # (the 2-D cos-angle tree may place a bad one among the good: see test_clustering's xfail)
    assert cos["cluster_method"] == "cos_angle" and cos["cos_angle"]["dimensions"] >= 2
    assert sorted(cos["cos_angle"]["functional"], key=int)[0] == "2"     # dimensions chosen from 2 upwards
    assert len(cos["cos_angle"]["coordinates"]) == 8
    # the colour groups: the good six share one
    assert len({s["correlation"]["groups"][k] for k in good}) == 1
    assert {s["correlation"]["groups"][k] for k in bad}.isdisjoint({s["correlation"]["groups"][good[0]]})


def test_the_cluster_table_and_its_statistics(scaled, by_correlation):
    s, good = by_correlation, scaled["good"]
    table = s["clusters"]
    assert s["n_candidates"] == s["n_listed"] == len(table) == 7          # n − 1 merge nodes
    assert [c["size"] for c in table] == sorted((c["size"] for c in table), reverse=True)
    everything = table[0]
    assert everything["members"] == list(range(8)) and everything["selected"]
    # all data sets: the scale run's own overall statistics (its observations, computed apart)
    overall = scaled["scale"]["merging_statistics"]["overall"]
    assert everything["n_obs"] == overall["n_obs"] == scaled["scale"]["n_observations"]
    assert everything["cc_half"] == pytest.approx(overall["cc_half"], abs=1e-9)
    assert everything["completeness"] == pytest.approx(overall["completeness"] / 100, abs=1e-9)
    assert everything["multiplicity"] == pytest.approx(overall["multiplicity"], abs=1e-9)
    assert everything["rpim"] == pytest.approx(overall["rpim"], abs=1e-9)
    # the good six: their observations, a better CC½ and Rpim than all eight, less complete
    row = row_of(s, good)
    per = {d["id"]: d for d in s["datasets"]}
    assert row["n_obs"] == sum(per[k]["n_observations"] for k in good)
    assert row["multiplicity"] == pytest.approx(row["n_obs"] / row["n_unique"])
    assert row["d_min"] == min(per[k]["d_min"] for k in good)
    assert row["identifiers"] == [scaled["experiments"][k].identifier for k in good]
    assert row["cc_half"] > everything["cc_half"] and 0 < row["rpim"] < 1
    assert everything["completeness"] > row["completeness"] > table[-1]["completeness"] > 0.3
    assert 1.4 < s["d_min"] <= row["d_min"] < 1.6 and s["space_group"] in ("I 2 3", "I 21 3")
    strict(s)


def test_selection_by_completeness_multiplicity_and_max_clusters(scaled, by_correlation):
    table = by_correlation["clusters"]
    values = sorted(c["completeness"] for c in table)
    threshold = 0.5 * (values[2] + values[3])                            # four clusters above, three below
    s = cluster(scaled, cluster_method="correlation", min_completeness=threshold)
    assert [c["selected"] for c in s["clusters"]] == [c["completeness"] >= threshold for c in table]
    assert s["n_selected"] == 4 and s["clusters"][0]["selected"]
    assert all("min_completeness" in c["reason"] for c in s["clusters"] if not c["selected"])
    capped = cluster(scaled, cluster_method="correlation", max_clusters=2)
    assert [c["selected"] for c in capped["clusters"]] == [True, True] + [False] * 5
    assert capped["clusters"][4]["reason"] == "max_clusters reached"
    # past max_clusters the statistics are there all the same, equal to the uncapped run's
    assert [c["cc_half"] for c in capped["clusters"]] == [c["cc_half"] for c in table]
    m = table[1]["multiplicity"]
    mult = cluster(scaled, cluster_method="correlation", min_multiplicity=m - 1e-6)
    assert [c["selected"] for c in mult["clusters"]] == [c["multiplicity"] >= m - 1e-6 for c in table]
    assert 2 <= mult["n_selected"] < 7 and all("min_multiplicity" in c["reason"] for c in mult["clusters"]
                                               if not c["selected"])


def test_unit_cell_clustering_of_the_two_populations(scaled):
    s = cluster(scaled, unit_cell_threshold=200)                         # within ≲ 100 Å², between ≳ 300 Å²
    forms = s["unit_cell_clustering"]
    assert [c["members"] for c in forms["clusters"]] == [scaled["good"], scaled["bad"]]
    assert forms["groups"] == [1 if k in scaled["good"] else 2 for k in range(8)]
    big, small = (np.array(c["median_cell"][:3]) for c in forms["clusters"])
    assert np.allclose(small / big, 1.02, atol=0.006)
    one = cluster(scaled)["unit_cell_clustering"]                         # DIALS's 5000: one crystal form
    assert [c["size"] for c in one["clusters"]] == [8] and len(one["dendrogram"]["linkage"]) == 7


def test_the_same_seed_repeats_exactly(scaled, by_correlation):
    assert strict(cluster(scaled, cluster_method="correlation", dimensions=None)) == strict(by_correlation)
    e, r = scaled["experiments"], scaled["reflections"]
    out_e, out_r, raw = run_cluster(e, r, ClusterParams(seed=7, dimensions=2))
    assert out_e is e and out_r is r                                      # nothing changed
    strict(raw)


def test_large_ensembles_leave_the_matrices_out(scaled, monkeypatch):
    monkeypatch.setattr(cluster_stage, "MAX_MATRIX_DATASETS", 5)
    s = cluster(scaled, cluster_method="correlation")
    assert s["matrices"]["included"] is False and "more than 5" in s["matrices"]["note"]
    for key in ("correlation", "n_common", "clusters"):
        assert key not in s["correlation"]
    assert "cos_angle" not in s["cos_angle"] and len(s["cos_angle"]["coordinates"]) == 8
    assert len(s["correlation"]["dendrogram"]["linkage"]) == 7 and len(s["clusters"]) == 7
    strict(s)


def test_input_it_cannot_use_is_one_clear_error(scaled):
    e, r = scaled["experiments"], scaled["reflections"]
    with pytest.raises(XtalError, match="at least two data sets"):
        run_cluster(ExperimentList([e[0]]), r.select(r["id"] == 0), ClusterParams())
    unscaled = r.select(np.ones(len(r), bool))
    del unscaled["inverse_scale_factor"]
    with pytest.raises(XtalError, match="not scaled"):
        run_cluster(e, unscaled, ClusterParams())
