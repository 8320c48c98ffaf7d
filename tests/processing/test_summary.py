"""Stage summaries are strict JSON (issue 9): statistics of empty shells are None, never
NaN or ±inf. Every stage of the registry is run on degenerate input (one image, no
spots, a sweep with too few spots beside a good one, an empty or negative shell) and its
RAW summary — before ``json_ready`` — must pass ``json.dumps(..., allow_nan=False)``."""
from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

from processing.models import ExperimentList
from processing.reflections import Flags, ReflectionTable
from processing.stages import STAGES
from processing.summary import finite_mean, json_ready


def strict(doc) -> str:
    return json.dumps(doc, allow_nan=False)


def test_json_ready_refuses_nan_at_the_source():
    doc = {"a": float("nan"), "b": [np.float32(np.inf), np.int64(3), (1.5, -np.inf)], 4: np.arange(2),
           "c": np.bool_(True)}
    out = json_ready(doc)
    assert out == {"a": None, "b": [None, 3, [1.5, None]], "4": [0, 1], "c": True}
    strict(out)
    assert finite_mean([]) is None and finite_mean([np.nan, np.inf]) is None and finite_mean([1, 3, np.nan]) == 2.0
    with pytest.raises(TypeError):
        json_ready({"x": object()})


# --- integrate's per-shell table ----------------------------------------------------------


def _integrated(d, i_sum, v_sum, flags=Flags.integrated_sum | Flags.integrated_prf):
    n = len(d)
    t = ReflectionTable()
    t["d"] = np.asarray(d, float)
    t["flags"] = np.full(n, int(flags), dtype=np.uint64)
    t["partiality"] = np.ones(n)
    t["intensity.sum.value"] = np.asarray(i_sum, float)
    t["intensity.sum.variance"] = np.asarray(v_sum, float)
    t["intensity.prf.value"] = np.asarray(i_sum, float)
    t["intensity.prf.variance"] = np.asarray(v_sum, float)
    t["background.mean"] = np.ones(n)
    t["profile.correlation"] = np.full(n, 0.9)
    return t


def _integrate_summary(table):
    from processing.integration.integrator import _sweep_summary

    plan = SimpleNamespace(index=0, name="sweep 0", experiment=SimpleNamespace(identifier="x"))
    model = SimpleNamespace(to_dict=lambda: {"sigma_b": 0.05, "sigma_m": 0.1})
    return _sweep_summary(plan, model, {}, table, 1, 1, 1)


@pytest.mark.parametrize("case", ["empty shells", "one reflection", "all negative", "zero variance", "no rows"])
def test_integrate_shell_statistics_are_null_not_nan(case):
    rng = np.random.default_rng(0)
    if case == "empty shells":  # two clusters in d: the shells between them hold nothing
        d = np.r_[np.full(50, 10.0), np.full(50, 1.5)]
        t = _integrated(d, rng.uniform(10, 100, 100), np.full(100, 25.0))
    elif case == "one reflection":
        t = _integrated([2.0], [50.0], [25.0])
    elif case == "all negative":
        t = _integrated(rng.uniform(1.5, 10, 40), -rng.uniform(1, 5, 40), -np.ones(40))
    elif case == "zero variance":
        t = _integrated(rng.uniform(1.5, 10, 40), rng.uniform(1, 5, 40), np.zeros(40))
    else:
        t = _integrated([], [], [])
    s = _integrate_summary(t)
    strict(s)
    rows = s["resolution_table"]
    if case == "no rows":
        assert rows == []
        return
    for r in rows:
        if r["n_integrated_sum"] == 0:  # an empty shell
            assert r["mean_ios_sum"] is None and r["mean_background"] is None and r["mean_correlation"] is None
    if case == "empty shells":
        assert sum(r["n_integrated_sum"] == 0 for r in rows) >= 5
        full = [r for r in rows if r["n_integrated_sum"]]
        assert all(r["mean_ios_sum"] is not None and math.isfinite(r["mean_ios_sum"]) for r in full)
    if case in ("all negative", "zero variance"):  # no σ > 0: ⟨I/σ⟩ is undefined, not NaN
        assert all(r["mean_ios_sum"] is None and r["mean_ios_prf"] is None for r in rows)
    if case == "one reflection":
        assert sum(r["n_integrated_sum"] for r in rows) == 1
        assert [r["mean_ios_sum"] for r in rows if r["n_integrated_sum"]] == [10.0]


# --- every stage on degenerate input, through the registry's raw run ------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny preset's first two sweeps, imported; the first 4 images of each."""
    from processing.importer import ImportParams, run_import
    from processing.simulate import SimulateParams, run_simulate

    out = tmp_path_factory.mktemp("tiny_summary")
    files, _ = run_simulate(SimulateParams(preset="tiny", output_dir=str(out), seed=2, n_crystals=2, n_images=4))
    masters = sorted(str(p) for p in out.iterdir() if p.name.endswith("_master.h5"))
    experiments, _ = run_import(ImportParams(paths=tuple(masters)))
    return experiments


def _raw(stage, experiments, reflections, **params):
    s = STAGES[stage]
    return s.run(experiments, reflections, s.params(**params), None)


def test_every_stage_summary_is_strict_json_on_degenerate_input(tiny):
    from processing.importer import ImportParams

    cases = {}
    # import: one image of one sweep
    paths = tuple(e.imageset.template or e.imageset.paths[0] for e in tiny[:1])
    _, _, cases["import"] = STAGES["import"].run(None, None, ImportParams(paths=paths, image_range=(1, 1)), None)
    # find_spots: a threshold nothing passes → no spots at all
    one = ExperimentList([tiny[0]])
    _, none, cases["find_spots"] = _raw("find_spots", one, None, sigma_strong=1e6, scan_range=(1, 1))
    assert len(none) == 0
    # index: sweep 0 with its spots beside sweep 1 with only 5 → one indexed, one failed
    _, spots, _ = _raw("find_spots", tiny, None)
    keep = np.ones(len(spots), bool)
    keep[np.nonzero(spots["id"] == 1)[0][5:]] = False
    few = spots.select(keep)
    indexed_e, indexed_r, cases["index"] = _raw("index", tiny, few, joint=False, n_points=128)
    assert [s["status"] for s in cases["index"]["sweeps"]] == ["indexed", "failed"]
    # refine: the indexed sweep with 80 reflections only (45 are needed for 9 parameters)
    rows = np.nonzero(indexed_r["id"] == 0)[0]
    refined_e, _, cases["refine"] = _raw("refine", indexed_e, indexed_r.select(rows[:80]),
                                                 scan_varying="false")
    # integrate: a resolution cut that leaves a handful of reflections in the outer shells
    sweep0 = indexed_r.select(rows)
    _, _, cases["integrate"] = _raw("integrate", refined_e, sweep0, d_min=4.0)
    assert cases["integrate"]["n_integrated_sum"] > 0
    # cosym and symmetry: a small ensemble where one data set has only NaN intensities and
    # one only three reflections; symmetry on 30 reflections of one data set
    from processing.simulate import SimulateParams, run_simulate
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections

    out = tiny[0].imageset.template or tiny[0].imageset.paths[0]
    folder = os.path.join(os.path.dirname(out), "reflections")
    run_simulate(SimulateParams(preset="tiny", mode="reflections", output_dir=folder, n_crystals=5, seed=3))
    ens_e = read_experiments(os.path.join(folder, "integrated.expt"))
    ens_r = read_reflections(os.path.join(folder, "integrated.refl"))
    ids = ens_r["id"]
    v = ens_r["intensity.prf.value"].copy()
    v[ids == 3] = np.nan
    ens_r["intensity.prf.value"] = v
    w = ens_r["intensity.sum.value"].copy()
    w[ids == 3] = np.nan
    ens_r["intensity.sum.value"] = w
    keep = np.ones(len(ens_r), bool)
    keep[np.nonzero(ids == 4)[0][3:]] = False
    sym_e, sym_r, cases["cosym"] = _raw("cosym", ens_e, ens_r.select(keep))
    assert {x["id"] for x in cases["cosym"]["excluded"]} == {3, 4}
    # scale: one of the three placed data sets has NaN intensities only → left out by name
    bad = sym_r["id"] == 2
    for name in ("intensity.prf.value", "intensity.sum.value"):
        v = sym_r[name].copy()
        v[bad] = np.nan
        sym_r[name] = v
    sc_e, sc_r, cases["scale"] = _raw("scale", sym_e, sym_r)
    assert [x["id"] for x in cases["scale"]["excluded"]] == [2]
    # merge: a d_min beyond the data leaves the outer shells empty; export: the scaled rows
    _, _, cases["merge"] = _raw("merge", sc_e, sc_r, d_min=1.0)
    assert cases["merge"]["merging_statistics"]["shells"][-1]["n_obs"] == 0
    _, _, cases["export"] = _raw("export", sc_e, sc_r)
    # estimate_resolution and ΔCC½ on two data sets (ΔCC½ by image group: one data set per group
    # would be too few)
    _, _, cases["estimate_resolution"] = _raw("estimate_resolution", sc_e, sc_r)
    _, _, cases["compute_delta_cchalf"] = _raw("compute_delta_cchalf", sc_e, sc_r, mode="image_group")
    # cluster: the two data sets; then the second with NaN scaled intensities only (no CC, no usable row)
    assert len(sc_e) == 2
    _, _, two = _raw("cluster", sc_e, sc_r, dimensions=2)
    assert [c["members"] for c in two["clusters"]] == [[0, 1]] and strict(two)
    nan_r = sc_r.select(np.ones(len(sc_r), bool))
    v = nan_r["intensity.scale.value"].copy()
    v[nan_r["id"] == 1] = np.nan
    nan_r["intensity.scale.value"] = v
    _, _, cases["cluster"] = _raw("cluster", sc_e, nan_r, dimensions=2)
    assert cases["cluster"]["no_observations"] == [1]
    assert cases["cluster"]["correlation"]["correlation"][0][1] is None
    one = ens_r.select(np.nonzero(ids == 0)[0][:30])
    _, _, cases["symmetry"] = _raw("symmetry", ExperimentList([ens_e[0]]), one)
    assert set(cases) == set(STAGES), "every stage of the registry needs a degenerate case here"
    for stage, summary in cases.items():
        assert strict(summary), stage
