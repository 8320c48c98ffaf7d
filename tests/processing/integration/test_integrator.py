"""Integration on the simulated `tiny` set against its truth: CC, σ calibration,
profile fitting vs summation on weak reflections, background, DIALS columns, errors.

Inputs are the true models (truth.expt) and the true positions of strong reflections
as "indexed" reflections, so these tests measure integration alone. The simulator
draws rocking widths with DIALS's ζ (as the gaussian_rs model), so the profile-fitted
checks hold to the same standard as summation. Profile fitting estimates the full
intensity (the profile extrapolates over missing frames and pixels), so it is compared
with the true full counts (recorded / partiality); summation with the recorded counts.
"""
import dataclasses

import numpy as np
import pytest

from processing.errors import XtalError
from processing.integration import IntegrateParams, run_integrate
from processing.integration.background import robust_poisson_mean
from processing.integration.integrator import _hkl_key
from processing.io.expt import read_experiments
from processing.io.refl import read_reflections, decode_reflections, encode_reflections
from processing.reflections import Flags, ReflectionTable


def _indexed_from_truth(truth_tables, experiments, seed=0):
    rng = np.random.default_rng(seed)
    tabs = []
    for k, t in enumerate(truth_tables):
        sel = (t["intensity.true.value"] > 2000) & (t["partiality"] > 0.9)
        n = int(sel.sum())
        s = ReflectionTable()
        s["miller_index"] = t["miller_index"][sel]
        s["id"] = np.full(n, k, dtype=np.int32)
        s["xyzobs.px.value"] = t["xyzcal.px"][sel] + rng.normal(0, 0.3, (n, 3))
        s["flags"] = np.full(n, int(Flags.indexed | Flags.strong), dtype=np.uint64)
        tabs.append(s)
    out = ReflectionTable.concatenate(tabs)
    out.experiment_identifiers = {k: e.identifier for k, e in enumerate(experiments)}
    return out


@pytest.fixture(scope="module")
def tiny_integrated(tiny_seed1):
    out, files, summary = tiny_seed1
    experiments = read_experiments(files["truth_experiments"])
    truth = [read_reflections(p) for p in files["truth_reflections"]]
    indexed = _indexed_from_truth(truth, experiments)
    expts, table, summ = run_integrate(experiments, indexed, IntegrateParams(nproc=2))
    return out, files, truth, experiments, indexed, expts, table, summ


def _match(table, truth, k):
    sub = table.select(table["id"] == k)
    kt = _hkl_key(truth["miller_index"])
    order = np.argsort(kt, kind="stable")
    ks = _hkl_key(sub["miller_index"])
    m = np.full(len(sub), -1)
    lo = np.searchsorted(kt[order], ks, "left")
    hi = np.searchsorted(kt[order], ks, "right")
    for s in range(int((hi - lo).max())):
        idx = np.minimum(lo + s, len(order) - 1)
        c = order[idx]
        ok = (lo + s < hi) & (np.abs(truth["xyzcal.px"][c, 2] - sub["xyzcal.px"][:, 2]) < 0.5)
        m[ok] = c[ok]
    return sub, m


def _flag(t, f):
    return (t["flags"] & np.uint64(int(f))) != 0


def test_summation_correlates_with_true_counts(tiny_integrated):
    *_, truth, experiments, indexed, expts, table, summ = tiny_integrated
    for k in range(3):
        sub, m = _match(table, truth[k], k)
        assert (m >= 0).mean() > 0.99  # every prediction is a true reflection
        ok = _flag(sub, Flags.integrated_sum) & (m >= 0)
        assert ok.sum() > 0.9 * len(sub)
        I, V = sub["intensity.sum.value"][ok], sub["intensity.sum.variance"][ok]
        strong = I / np.sqrt(V) > 3
        cc = np.corrcoef(I[strong], truth[k]["intensity.true.value"][m[ok]][strong])[0, 1]
        assert cc >= 0.98


def _prf_vs_truth(table, truth, k):
    sub, m = _match(table, truth[k], k)
    ok = _flag(sub, Flags.integrated_prf) & _flag(sub, Flags.integrated_sum) & (m >= 0)
    full_true = truth[k]["intensity.true.value"][m[ok]] / truth[k]["partiality"][m[ok]]
    return sub.select(ok), full_true


def test_profile_fitting_correlates_and_helps_weak(tiny_integrated):
    *_, truth, experiments, indexed, expts, table, summ = tiny_integrated
    for k in range(3):
        sub, full_true = _prf_vs_truth(table, truth, k)
        assert len(sub) > 0.9 * len(table.select(table["id"] == k))
        I, V = sub["intensity.prf.value"], sub["intensity.prf.variance"]
        strong = I / np.sqrt(V) > 3
        assert np.corrcoef(I[strong], full_true[strong])[0, 1] >= 0.995
        # no overall scale error on strong reflections (a profile/frame mismatch shows here)
        big = full_true > 1e3
        assert abs(np.median(I[big] / full_true[big]) - 1.0) < 0.01
        ios_sum = sub["intensity.sum.value"] / np.sqrt(sub["intensity.sum.variance"])
        ios_prf = I / np.sqrt(V)
        weak = ios_sum < 5
        assert weak.sum() > 50
        assert np.mean(ios_prf[weak]) > 1.3 * np.mean(ios_sum[weak])


def test_profile_fitting_sigmas_are_calibrated(tiny_integrated):
    """(I_prf − I_true)/σ_prf has unit spread where counting statistics dominate
    (I/σ < 20; brighter spots are limited by their tails beyond the 3σ foreground),
    including partial reflections at the ends of the scan."""
    *_, truth, experiments, indexed, expts, table, summ = tiny_integrated
    for k in range(3):
        sub, full_true = _prf_vs_truth(table, truth, k)
        I, V = sub["intensity.prf.value"], sub["intensity.prf.variance"]
        sel = full_true / np.sqrt(V) < 20
        assert sel.sum() > 500
        nd = (I - full_true)[sel] / np.sqrt(V[sel])
        assert 0.9 <= np.std(nd) <= 1.2
        assert abs(np.mean(nd)) < 0.4
        # weak reflections: within a few per cent (profiles learned from strong spots)
        weak = sel & (full_true < 300)
        assert abs(np.sum(I[weak]) / np.sum(full_true[weak]) - 1.0) < 0.06


def test_summation_sigmas_are_calibrated(tiny_integrated):
    """(I − I_true)/σ has unit spread where counting statistics dominate (I/σ < 20)."""
    *_, truth, experiments, indexed, expts, table, summ = tiny_integrated
    for k in range(3):
        sub, m = _match(table, truth[k], k)
        ok = _flag(sub, Flags.integrated_sum) & (m >= 0)
        I, V = sub["intensity.sum.value"][ok], sub["intensity.sum.variance"][ok]
        It = truth[k]["intensity.true.value"][m[ok]]
        scale = np.median(I[It > 1e4] / It[It > 1e4])  # the few % outside the 3σ foreground
        sel = It / np.sqrt(V) < 20
        nd = (I - scale * It)[sel] / np.sqrt(V[sel])
        assert sel.sum() > 300
        assert 0.9 <= np.std(nd) <= 1.2
        assert abs(np.mean(nd)) < 0.2
        assert 0.98 < scale <= 1.0


def test_background_matches_truth(tiny_integrated):
    """Within 3 % of the rendered background where the spot's own Gaussian tails
    beyond 3σ are negligible (I < 2·10³, most spots lie on one 0.5° image; a 10⁶-count spot still puts ~10² counts per
    pixel just outside its foreground, which DIALS's robust background also absorbs)."""
    out, files, truth, experiments, indexed, expts, table, summ = tiny_integrated
    from processing.simulate import render
    e = experiments[0]
    panel = e.detector[0]
    bg = render.background_map(panel, e.beam, 1.0) * render.beamstop_shadow(panel, e.beam)
    sub = table.select(table["id"] == 0)
    ok = _flag(sub, Flags.integrated_sum) & (sub["intensity.sum.value"] < 2e3)
    assert ok.sum() > 1000
    xy = sub["xyzcal.px"][ok][:, :2].astype(int)
    expected = bg[xy[:, 1], xy[:, 0]]
    ratio = np.sum(sub["background.mean"][ok]) / np.sum(expected)
    assert abs(ratio - 1.0) < 0.03


def test_columns_profile_model_and_round_trip(tiny_integrated):
    *_, truth, experiments, indexed, expts, table, summ = tiny_integrated
    for name in ("intensity.sum.value", "intensity.sum.variance", "intensity.prf.value", "intensity.prf.variance",
                 "background.mean", "background.sum.value", "background.sum.variance", "partiality", "d", "lp",
                 "qe", "xyzcal.px", "xyzcal.mm", "xyzobs.px.value", "xyzobs.px.variance", "bbox", "panel", "s1",
                 "entering", "miller_index", "id", "num_pixels.valid", "num_pixels.background",
                 "num_pixels.foreground", "profile.correlation", "flags", "partial_id", "zeta"):
        assert name in table, name
    back = decode_reflections(encode_reflections(table))
    assert np.array_equal(back["intensity.sum.value"], table["intensity.sum.value"])
    # the simulation's rocking width is √(0.05² + 0.02²) = 0.054° at DIALS's ζ; σ_b ≈ 1 px / 72 mm
    for e in expts:
        p = e.profile
        assert p["__id__"] == "gaussian_rs" and p["n_sigma"] == 3
        assert 0.045 < p["sigma_b"] < 0.08
        assert 0.048 < p["sigma_m"] < 0.060
    # centroids of strong reflections land on the true positions
    sub, m = _match(table, truth[0], 0)
    ok = _flag(sub, Flags.integrated_sum) & (m >= 0) & (sub["intensity.sum.value"] > 1e4)
    dxy = sub["xyzobs.px.value"][ok, :2] - truth[0]["xyzcal.px"][m[ok], :2]
    assert np.sqrt(np.mean(np.sum(dxy ** 2, axis=1))) < 0.15
    # lp is DIALS's |ζ'|/P: the simulator's value
    assert np.allclose(sub["lp"][m >= 0], truth[0]["lp"][m[m >= 0]], rtol=1e-6)
    assert summ["sweeps"][0]["resolution_table"] and len(summ["sweeps"]) == 3


def test_robust_background_resists_outliers():
    rng = np.random.default_rng(3)
    y = rng.poisson(2.0, 500).astype(float)
    y[:25] = 80.0  # a neighbouring spot
    mean, ok = robust_poisson_mean(y, len(y), 1.345, 1e-3, 100)
    assert ok and abs(mean - 2.0) < 0.2 and y.mean() > 5


def test_crystal_predicting_nothing_is_a_clear_error(tiny_integrated):
    *_, experiments, indexed, expts, table, summ = tiny_integrated
    e = dataclasses.replace(experiments[1])
    from processing.models import Crystal
    e.crystal = Crystal.from_cell_and_U((3.0, 3.0, 3.0, 90, 90, 90), np.eye(3), e.crystal.space_group_hall_symbol)
    from processing.models import ExperimentList
    sub = indexed.select(indexed["id"] == 1)
    sub["id"] = np.zeros(len(sub), dtype=np.int32)
    with pytest.raises(XtalError, match=r"sweep 0 \(crystal_001\).*predicts no reflections"):
        run_integrate(ExperimentList([e]), sub, IntegrateParams(d_min=2.0))


def test_empty_reflection_list_is_a_clear_error(tiny_integrated):
    *_, experiments, indexed, expts, table, summ = tiny_integrated
    from processing.models import ExperimentList
    with pytest.raises(XtalError, match="sweep 0 .*empty"):
        run_integrate(ExperimentList(experiments[:1]), ReflectionTable(), IntegrateParams())
