"""Integration on detector imperfections of the simulator's realism options: zingers
(cosmic-ray hits) in a reflection's foreground must not become its intensity.

One `tiny` sweep with many zingers, integrated from the true models and the true
positions of strong reflections (as test_integrator.py), with the spike rejection of
profile fitting on (the default) and off (DIALS's behaviour).
"""
import dataclasses

import numpy as np
import pytest

from processing.integration import IntegrateParams, run_integrate
from processing.integration.filtering import in_ice_ring
from processing.integration.profile_fitting import fit_profile
from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.params import from_strings
from processing.reflections import Flags
from processing.simulate import SimulateParams, run_simulate

from .test_integrator import _flag, _indexed_from_truth, _match


@pytest.fixture(scope="module")
def zinger_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_zingers")
    files, _ = run_simulate(SimulateParams(preset="tiny", output_dir=str(out), seed=4, n_crystals=1,
                                           zinger_rate=60.0))
    experiments = read_experiments(files["truth_experiments"])
    truth = read_reflections(files["truth_reflections"][0])
    z = np.load(files["truth_zingers"][0])
    indexed = _indexed_from_truth([truth], experiments)
    params = IntegrateParams(nproc=1)
    runs = {}
    for name, p in (("on", params), ("off", dataclasses.replace(params, spike_sigma=0.0))):
        runs[name] = run_integrate(read_experiments(files["truth_experiments"]), indexed, p)
    return truth, z, runs


def _normalised_deviations(table, truth):
    """(I_prf − I_full)/σ of the fully recorded reflections with I/σ < 20 (a partial at
    the scan's edge adds the extrapolation's error) and those reflections."""
    sub, m = _match(table, truth, 0)
    ok = _flag(sub, Flags.integrated_prf) & (m >= 0)
    ok[ok] &= truth["partiality"][m[ok]] > 0.95
    sub = sub.select(ok)
    full = truth["intensity.true.value"][m[ok]] / truth["partiality"][m[ok]]
    I, V = sub["intensity.prf.value"], sub["intensity.prf.variance"]
    sel = full / np.sqrt(V) < 20
    return ((I - full) / np.sqrt(V))[sel], sub.select(sel)


def _hit_by_zinger(sub, z) -> np.ndarray:
    """Reflections whose bounding box holds a zinger (images 1-based in the truth)."""
    b = sub["bbox"]
    hit = np.zeros(len(sub), dtype=bool)
    for x, y, im in zip(z["x"], z["y"], z["image"]):
        hit |= ((b[:, 0] <= x) & (x < b[:, 1]) & (b[:, 2] <= y) & (y < b[:, 3]) & (b[:, 4] <= im - 1)
                & (im - 1 < b[:, 5]))
    return hit


def test_zingers_in_the_foreground_are_left_out_of_profile_fitting(zinger_sweep):
    truth, z, runs = zinger_sweep
    nd_off, _ = _normalised_deviations(runs["off"][1], truth)
    nd_on, sub_on = _normalised_deviations(runs["on"][1], truth)
    hit = _hit_by_zinger(sub_on, z)
    assert hit.sum() >= 5  # the test needs zingers on weak reflections
    # without rejection a zinger makes its reflection tens of σ too strong (SD 12 here)
    assert np.std(nd_off) > 2.0
    assert 0.9 <= np.std(nd_on) <= 1.2
    assert np.max(np.abs(nd_on[hit])) < 5.0
    # only a few pixels per zinger are left out; where no zinger fell only the (cleaner)
    # reference profiles differ, by little
    n_spikes = runs["on"][2]["sweeps"][0]["n_spike_pixels"]
    assert hit.sum() <= n_spikes <= 2 * len(z["x"])
    on, off = runs["on"][1], runs["off"][1]
    clean = ~_hit_by_zinger(on, z) & _flag(on, Flags.integrated_prf)
    assert clean.sum() > 1000
    change = np.abs(on["intensity.prf.value"] - off["intensity.prf.value"])[clean] / np.sqrt(
        on["intensity.prf.variance"][clean])
    assert np.median(change) < 0.05


def test_zingers_do_not_widen_the_mosaicity(zinger_sweep):
    """σ_m's fit to the references' frame sums is outlier-proof: one zinger on a far frame
    of a window made it 0.168° instead of the true √(0.05² + 0.02²) = 0.054°."""
    *_, runs = zinger_sweep
    for name in ("on", "off"):
        assert 0.048 < runs[name][0][0].profile["sigma_m"] < 0.060


def test_summation_loses_the_zinger_too(zinger_sweep):
    truth, z, runs = zinger_sweep
    sub, m = _match(runs["on"][1], truth, 0)
    ok = _flag(sub, Flags.integrated_sum) & (m >= 0)
    sub = sub.select(ok)
    t = truth["intensity.true.value"][m[ok]]
    nd = (sub["intensity.sum.value"] - t) / np.sqrt(sub["intensity.sum.variance"])
    weak = t / np.sqrt(sub["intensity.sum.variance"]) < 20
    hit = _hit_by_zinger(sub, z) & weak
    assert hit.sum() >= 5
    assert np.max(np.abs(nd[hit])) < 5.0


def test_fit_profile_leaves_out_one_spike_and_keeps_a_clean_spot():
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.arange(7) - 3.0, np.arange(7) - 3.0)
    p = np.exp(-(x ** 2 + y ** 2) / 2.0).ravel()
    p /= p.sum()
    B = 0.5
    clean = rng.poisson(B + 200.0 * p).astype(float)
    spiked = clean.copy()
    spiked[10] += 3000.0  # a zinger on the spot's flank
    I_clean, V_clean, _, ok, n_rej, _ = fit_profile(clean.copy(), p.copy(), len(p), B, 100, 10, 1e-3, 10.0, 3)
    assert ok and n_rej == 0
    I_off, *_ = fit_profile(spiked.copy(), p.copy(), len(p), B, 100, 10, 1e-3, 0.0, 0)
    I_on, V_on, _, ok, n_rej, excess = fit_profile(spiked.copy(), p.copy(), len(p), B, 100, 10, 1e-3, 10.0, 3)
    assert I_off > 400  # the spike doubles the unprotected fit
    assert ok and n_rej == 1 and abs(excess - 3000.0) < 3 * np.sqrt(V_on) + 50
    assert abs(I_on - I_clean) < 0.5 * np.sqrt(V_clean)
    # a bright spot's profile mismatch is no spike: 30 % too much in one pixel near the peak
    bright = B + 1e5 * p
    bright[24 + 1] *= 1.3
    *_, n_rej, _ = fit_profile(bright, p.copy(), len(p), B, 100, 10, 1e-3, 10.0, 3)
    assert n_rej == 0


def test_ice_ring_filter_flags_dials_ranges():
    # the strongest hexagonal-ice rings (3.90, 3.67, 3.44, 2.67, 2.25 Å) and what lies between
    d = np.array([3.90, 3.67, 3.44, 2.67, 2.25, 3.00, 2.50, 5.0, 1.5])
    assert in_ice_ring(d).tolist() == [True] * 5 + [False] * 4
    assert from_strings(IntegrateParams, ["integration.filter.ice_rings=true"]).ice_rings
