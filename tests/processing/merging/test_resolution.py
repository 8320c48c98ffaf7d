"""Resolution estimate (issue 13, point 2) and fast re-merge (point 3): a known CC½ curve is
recovered, the uncertainty propagation agrees with refits of perturbed curves, criteria
that never cross give None, and on scaled insulin-24 reflection-level data the estimate,
the stage, the command line, xtal scale's suggestion and the re-merge behave."""
from __future__ import annotations

import json
import math

import gemmi
import numpy as np
import pytest

from processing.merging.remerge import ScaledObservations, remerge, remerge_observations
from processing.merging.resolution import (TanhCurve, counting_sorted_limits, estimate_resolution, fit_tanh,
                                           propagate)
from processing.merging.resolution_params import EstimateResolutionParams
from processing.merging.stage import scaled_observations, space_group_and_cell

P1 = gemmi.SpaceGroup("P 1")
CELL = (40.0, 45.0, 50.0, 90.0, 95.0, 90.0)
S0, R = 1 / 1.8 ** 2, 0.03                       # the synthetic CC½ curve ½(1 − tanh((s − s0)/r))
D_CUT = 1 / math.sqrt(S0 + R * math.atanh(1 - 2 * 0.3))  # where it crosses 0.3: 1.764 Å


def true_cc(s):
    return 0.5 * (1 - np.tanh((s - S0) / R))


def synthetic_observations(cc_of_s, d_min=1.5, n_obs=4, seed=0):
    """P1 observations whose σ-τ CC½ at s = 1/d² is cc_of_s(s): true intensities J ~ Exp(1),
    each observed n_obs times with noise σ² = n_obs·var(J)·(1/CC − 1)/2 (σ-τ CC½ =
    var J / (var J + 2σ²/n))."""
    rng = np.random.default_rng(seed)
    hkl = np.asarray(gemmi.make_miller_array(gemmi.UnitCell(*CELL), P1, d_min, 0, True), dtype=np.int32)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    d = np.asarray(gemmi.UnitCell(*CELL).calculate_d_array(hkl))
    cc = np.clip(cc_of_s(1 / d ** 2), 1e-3, 0.9999)
    sigma2 = n_obs * (1 / cc - 1) / 2
    j = rng.exponential(1.0, len(hkl))
    obs_hkl = np.repeat(hkl, n_obs, axis=0)
    value = np.repeat(j, n_obs) + rng.normal(0, 1, len(obs_hkl)) * np.sqrt(np.repeat(sigma2, n_obs))
    return obs_hkl, value, np.repeat(sigma2, n_obs)


# ---------------------------------------------------------------- synthetic curves

def test_a_known_tanh_cc_half_curve_is_recovered_within_0_02_angstrom():
    hkl, value, var = synthetic_observations(true_cc)
    res = estimate_resolution(hkl, value, var, P1, CELL)
    cc = res["criteria"]["cc_half"]
    assert cc["status"] == "crossed"
    assert abs(cc["d_min"] - D_CUT) < 0.02, (cc["d_min"], D_CUT)
    assert res["d_min"] == cc["d_min"] and res["recommended"]["criterion"] == "cc_half"
    assert 0 < cc["d_min_error"] < 0.02
    assert abs(cc["parameters"]["s0"] - S0) < 0.01
    # DIALS's shells: at most 100 of at least 10 distinct d-spacings
    assert res["n_shells"] == 100
    json.dumps(res, allow_nan=False)
    # the random-half CC½ (DIALS's default method) finds the same cut
    half = estimate_resolution(hkl, value, var, P1, CELL, EstimateResolutionParams(cc_half_method="half_dataset"))
    assert abs(half["criteria"]["cc_half"]["d_min"] - D_CUT) < 0.02


def test_linearised_uncertainty_matches_refits_of_perturbed_curves():
    s = np.linspace(0.01, 0.45, 100)
    n = np.full(len(s), 200.0)
    curve = TanhCurve(S0, R)
    f = curve(s)
    sigma = (1 - f ** 2) / np.sqrt(n - 3)
    rng = np.random.default_rng(3)
    y = np.tanh(np.arctanh(f) + rng.normal(0, 1, len(s)) / np.sqrt(n - 3))
    fitted, _ = fit_tanh(s, y, None)
    s_cut = fitted.crossing(0.3, s.min(), s.max())
    _, sigma_s, _ = propagate(fitted, s, (1 - y ** 2) / np.sqrt(n - 3), s_cut)
    cuts = []
    for _ in range(200):
        yk = np.tanh(np.arctanh(f) + rng.normal(0, 1, len(s)) / np.sqrt(n - 3))
        ck, _ = fit_tanh(s, yk, None)
        cuts.append(ck.crossing(0.3, s.min(), s.max()))
    mc = float(np.std(cuts))
    assert abs(s_cut - (S0 + R * math.atanh(0.4))) < 4 * mc
    assert 0.7 < sigma_s / mc < 1.4, (sigma_s, mc)
    assert np.all(np.isfinite(sigma))


def test_criteria_that_never_cross_give_none_not_nan():
    hkl, value, var = synthetic_observations(lambda s: np.full_like(s, 0.99))
    params = EstimateResolutionParams(isigma=1e-3, misigma=1e-3, i_mean_over_sigma_mean=1e-3, rmerge=100.0,
                                      completeness=0.0)
    res = estimate_resolution(hkl, value, var, P1, CELL, params)
    for name, c in res["criteria"].items():
        assert c["d_min"] is None, name
        assert c["status"] == "never_reached", (name, c["status"])
    assert res["d_min"] is None and res["recommended"]["criterion"] is None
    assert abs(res["data_d_min"] - 1.5) < 0.01
    text = json.dumps(res, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    # a CC½ that stays below the limit everywhere: no cut either, and no fit that pretends one
    low = estimate_resolution(hkl, value, var, P1, CELL, EstimateResolutionParams(cc_half=0.999))
    assert low["criteria"]["cc_half"]["d_min"] is None
    assert low["criteria"]["cc_half"]["status"] == "no_crossing"
    json.dumps(low, allow_nan=False)


def test_no_usable_observations_is_an_empty_strict_json_result():
    res = estimate_resolution(np.zeros((3, 3), dtype=int) + 1, [np.nan] * 3, [1.0] * 3, P1, CELL)
    assert res["d_min"] is None and res["shells"] == []
    assert res["criteria"]["cc_half"]["status"] == "no_data"
    json.dumps(res, allow_nan=False)


def test_counting_sorted_shells_as_cctbx():
    s = np.repeat(np.arange(1, 1001) / 1000.0, 3)  # 1000 distinct d-spacings, each 3 times
    limits = counting_sorted_limits(s, 100, 10)
    assert len(limits) == 101
    counts = np.histogram(np.unique(s), bins=limits)[0]
    assert counts.min() == counts.max() == 10
    assert len(counting_sorted_limits(s, 100, 50)) == 21  # round(1000 / 50) shells


# ---------------------------------------------------------------- insulin-24, scaled

@pytest.fixture(scope="module")
def insulin_scaled(tmp_path_factory):
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections
    from processing.scaling import ScaleParams, run_scale
    from processing.simulate import SimulateParams, run_simulate
    from processing.symmetry import CosymParams, run_cosym

    out = tmp_path_factory.mktemp("insulin24_resolution")
    run_simulate(SimulateParams(preset="insulin-24", mode="reflections", output_dir=str(out)))
    e, r = read_experiments(str(out / "integrated.expt")), read_reflections(str(out / "integrated.refl"))
    e, r, _ = run_cosym(e, r, CosymParams(stability="false"))
    return run_scale(e, r, ScaleParams())


def test_insulin_24_cc_half_limit_and_its_uncertainty(insulin_scaled):
    experiments, table, scale_summary = insulin_scaled
    hkl, value, var, d = scaled_observations(experiments, table)
    sg, cell = space_group_and_cell(experiments)
    res = estimate_resolution(hkl, value, var, sg, cell)
    cc = res["criteria"]["cc_half"]
    assert cc["status"] == "crossed"
    assert d.min() <= cc["d_min"] <= d.max()
    assert 1.1 < cc["d_min"] < 2.5
    assert cc["d_min_error"] is not None and 0 < cc["d_min_error"] < 0.2
    assert cc["d_min_interval"][0] < cc["d_min"] < cc["d_min_interval"][1]
    json.dumps(res, allow_nan=False)
    # xtal scale carries the same estimate (without the per-shell rows) and prints it
    est = scale_summary["resolution_estimate"]
    assert est["criteria"]["cc_half"]["d_min"] == pytest.approx(cc["d_min"], abs=1e-6)
    assert "shells" not in est
    from processing.cli.scale import resolution_suggestion
    line = resolution_suggestion(est)
    assert line.startswith("Resolution limit suggested from CC½ fit (limit CC½=0.3): ")
    assert f"{cc['d_min']:.2f} ± " in line and line.endswith(" Å")


def test_estimate_resolution_stage_and_command_line(insulin_scaled, tmp_path, capsys, monkeypatch):
    from processing.cli.main import main
    from processing.io.expt import write_experiments
    from processing.io.refl import write_reflections
    from processing.stages import STAGES

    experiments, table, _ = insulin_scaled
    stage = STAGES["estimate_resolution"]
    assert stage.outputs == () and stage.previous == "scale"
    _, _, summary = stage.execute(experiments, table, EstimateResolutionParams(misigma=1.0, rmerge=0.5))
    json.dumps(summary, allow_nan=False)
    assert summary["n_datasets"] == len(experiments) and summary["space_group"]
    limits = [c["d_min"] for c in summary["criteria"].values() if c["d_min"] is not None]
    assert summary["d_min"] == max(limits)

    write_experiments(str(tmp_path / "scaled.expt"), experiments)
    write_reflections(str(tmp_path / "scaled.refl"), table)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["estimate_resolution", "scaled.expt", "scaled.refl", "output.html=x.html"]) == 0
    out = capsys.readouterr().out
    assert "Removing " in out and "Wilson outliers with E^2 >= 16.0" in out
    line = next(x for x in out.splitlines() if x.startswith("Resolution cc_half:"))
    assert float(line.split(":")[1]) == pytest.approx(summary["criteria"]["cc_half"]["d_min"], abs=0.006)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # writes nothing
    assert main(["estimate_resolution", "scaled.expt", "scaled.refl", "cc_half=2"]) == 1


def test_remerge_at_a_new_d_min_and_without_data_sets(insulin_scaled):
    from processing.merging.merge import d_spacing

    experiments, table, _ = insulin_scaled
    hkl, _, _, d_table = scaled_observations(experiments, table)
    d = d_spacing(hkl, space_group_and_cell(experiments)[1])  # in the median cell the merge uses
    merged, summary = remerge(experiments, table, d_min=2.0)
    stats = summary["merging_statistics"]
    assert stats["shells"][-1]["d_min"] == 2.0 and stats["d_min"] == 2.0
    assert summary["n_observations"] == int((d >= 2.0).sum())
    assert stats["overall"]["n_obs"] == int((d >= 2.0).sum())
    assert abs(int((d_table >= 2.0).sum()) / summary["n_observations"] - 1) < 0.01  # each crystal's own cell
    assert merged.d.min() >= 2.0 and len(merged) == stats["overall"]["n_unique"]
    json.dumps(summary, allow_nan=False)

    obs = ScaledObservations.from_reflections(experiments, table)
    again = ScaledObservations.from_arrays(obs.to_arrays())
    _, without = remerge_observations(again, d_min=2.0, exclude_datasets=[0, experiments[1].identifier])
    assert without["n_datasets"] == len(experiments) - 2
    assert [x["id"] for x in without["excluded_datasets"]] == [0, 1]
    assert without["n_observations"] == int(((obs.d >= 2.0) & ~np.isin(obs.dataset, [0, 1])).sum())
    assert without["n_observations"] < summary["n_observations"]
    assert len(obs) == len(hkl)
