"""Merging statistics: completeness, R factors, CC½ (σ-τ and random halves), anomalous rows."""
import json

import gemmi
import numpy as np
import pytest

from processing.merging import cc_half_sigma_tau, merging_statistics
from processing.merging.statistics import ROW_KEYS
from tests.processing.merging.synth import equivalents, observations, unique_reflections

CUBIC = (78.0, 78.0, 78.0, 90.0, 90.0, 90.0)


def _stats(space_group, hkl, i, v, cell=CUBIC, **kw):
    s = merging_statistics(hkl, i, v, gemmi.SpaceGroup(space_group), cell, **kw)
    json.dumps(s, allow_nan=False)  # strict JSON always
    return s


@pytest.mark.parametrize("space_group, n_unique", [("P 21 3", 10953), ("I 2 3", 5479)])
def test_complete_data_are_100_percent_and_half_is_50(space_group, n_unique):
    uniq, _, hkl, i, v, src = observations(space_group, CUBIC, 2.0, multiplicity=4)
    s = _stats(space_group, hkl, i, v)
    assert s["overall"]["n_unique"] == n_unique
    assert s["overall"]["n_obs"] == 4 * n_unique
    assert s["overall"]["multiplicity"] == pytest.approx(4.0)
    assert s["overall"]["completeness"] == pytest.approx(100.0)
    assert all(r["completeness"] == pytest.approx(100.0) for r in s["shells"])
    assert len(s["shells"]) == s["n_bins"] == 20
    # drop half of the unique reflections at random
    keep = np.random.default_rng(0).permutation(len(uniq))[: len(uniq) // 2]
    sel = np.isin(src, keep)
    s = _stats(space_group, hkl[sel], i[sel], v[sel], d_min=2.0, d_max=s["d_max"])
    assert s["overall"]["completeness"] == pytest.approx(100.0 * (len(uniq) // 2) / len(uniq))
    assert s["overall"]["completeness"] == pytest.approx(50.0, abs=0.01)
    assert all(35 < r["completeness"] < 65 for r in s["shells"])  # ~280 possible per shell


def test_shells_are_equal_volume_and_d_min_is_respected():
    uniq, _, hkl, i, v, _ = observations("P 21 3", CUBIC, 2.0, multiplicity=2)
    s = _stats("P 21 3", hkl, i, v, d_min=2.5, n_bins=10)
    assert s["d_min"] == 2.5 and s["shells"][-1]["d_min"] == 2.5 and s["overall"]["d_min"] == 2.5
    assert s["shells"][0]["d_max"] == s["d_max"] == pytest.approx(78.0 / np.sqrt(2))
    inv_d3 = np.array([r["d_max"] ** -3 for r in s["shells"]] + [2.5 ** -3])
    np.testing.assert_allclose(np.diff(inv_d3), np.diff(inv_d3)[0], rtol=1e-9)
    d = gemmi.UnitCell(*CUBIC).calculate_d_array(uniq)
    assert s["overall"]["n_unique"] == int(np.sum(d >= 2.5))
    assert s["overall"]["n_obs"] == 2 * int(np.sum(d >= 2.5))
    assert sum(r["n_unique"] for r in s["shells"]) == s["overall"]["n_unique"]


def test_r_factors_and_means_on_a_hand_example():
    sg = "P 1"
    cell = (50.0, 50.0, 50.0, 90.0, 90.0, 90.0)
    hkl = np.array([[1, 2, 3], [-1, -2, -3], [1, 2, 3],   # A: 10, 12, 14 → mean 12
                    [2, 0, 0], [-2, 0, 0],                # B: 20, 20
                    [0, 0, 5]])                           # C: 5 (single, left out of R)
    i = np.array([10.0, 12.0, 14.0, 20.0, 20.0, 5.0])
    v = np.array([1.0, 1.0, 1.0, 4.0, 4.0, 1.0])
    s = _stats(sg, hkl, i, v, cell=cell, n_bins=1)
    o = s["overall"]
    assert (o["n_obs"], o["n_unique"]) == (6, 3)
    assert o["multiplicity"] == pytest.approx(2.0)
    den = 36.0 + 40.0
    assert o["rmerge"] == pytest.approx(4.0 / den)
    assert o["rmeas"] == pytest.approx(np.sqrt(3 / 2) * 4.0 / den)
    assert o["rpim"] == pytest.approx(np.sqrt(1 / 2) * 4.0 / den)
    assert o["mean_intensity"] == pytest.approx((12.0 + 20.0 + 5.0) / 3)
    assert o["i_over_sigma"] == pytest.approx((12 * np.sqrt(3) + 20 / np.sqrt(2) + 5.0) / 3)
    assert s["shells"][0]["rmerge"] == pytest.approx(o["rmerge"])
    # only single observations: R factors have no value
    s1 = _stats(sg, hkl[5:], i[5:], v[5:], cell=cell, n_bins=1)
    assert s1["overall"]["rmerge"] is None and s1["overall"]["cc_half"] is None


def test_cc_half_sigma_tau_matches_random_halves_and_theory():
    sigma = 200.0
    uniq, true_i, hkl, i, v, src = observations("P 21 3", CUBIC, 1.6, multiplicity=4, sigma=sigma,
                                                seed=0)
    s = _stats("P 21 3", hkl, i, v, seed=0)
    # theory: CC½ = var(true) / (var(true) + σ²/(n/2)) with n = 4
    theory = true_i.var(ddof=1) / (true_i.var(ddof=1) + sigma ** 2 / 2)
    assert s["overall"]["cc_half"] == pytest.approx(theory, abs=0.01)
    assert s["overall"]["cc_half_random"] == pytest.approx(s["overall"]["cc_half"], abs=0.01)
    d = gemmi.UnitCell(*CUBIC).calculate_d_array(uniq)
    lows = np.array([r["d_min"] for r in s["shells"]])
    shell = np.clip(np.searchsorted(-lows, -d), 0, len(lows) - 1)
    for k, row in enumerate(s["shells"]):
        t = true_i[shell == k]
        th = t.var(ddof=1) / (t.var(ddof=1) + sigma ** 2 / 2)
        assert row["cc_half"] == pytest.approx(th, abs=0.1)
        assert row["cc_half_random"] == pytest.approx(row["cc_half"], abs=0.06)
    cc = [r["cc_half"] for r in s["shells"]]
    assert cc[0] > 0.9 and cc[-1] < 0.2  # signal falls off with resolution
    # the reusable core gives the overall value
    key = np.array([hash(tuple(x)) for x in uniq])[src]
    assert cc_half_sigma_tau(key, i, v) == pytest.approx(s["overall"]["cc_half"], rel=1e-12)


def _anomalous_observations(delta, sigma_rel, seed=0):
    """P 21 3: every acentric reflection measured twice as I(+) and twice as I(−)."""
    sg = "P 21 3"
    rng = np.random.default_rng(seed)
    uniq = unique_reflections(sg, CUBIC, 2.5)
    centric = np.asarray(gemmi.SpaceGroup(sg).operations().centric_flag_array(uniq), dtype=bool)
    j = rng.exponential(1000.0, len(uniq))
    src = np.repeat(np.arange(len(uniq)), 4)
    sign = np.tile([1, 1, -1, -1], len(uniq))
    hkl = equivalents(uniq[src], sg, rng, friedel=False) * sign[:, None]
    true = j[src] * np.where(centric[src], 1.0, 1.0 + delta * sign)
    sig = sigma_rel * j[src] + 1.0
    return uniq, centric, hkl, true + rng.normal(size=len(src)) * sig, sig ** 2


def test_anomalous_statistics():
    uniq, centric, hkl, i, v = _anomalous_observations(delta=0.05, sigma_rel=0.005)
    s = _stats("P 21 3", hkl, i, v, anomalous=True, n_bins=5)
    o = s["overall"]
    assert s["anomalous"] is True
    assert o["anom_completeness"] == pytest.approx(100.0)
    n_acentric, n_centric = int((~centric).sum()), int(centric.sum())
    assert n_centric > 0
    assert o["anom_multiplicity"] == pytest.approx(4 * len(uniq) / (2 * n_acentric + n_centric))
    assert o["r_anom"] == pytest.approx(2 * 0.05, abs=0.003)  # Σ|I+ − I−| / Σ ½(I+ + I−) = 2δ
    assert o["cc_ano"] > 0.9
    # no anomalous signal: CC_ano ≈ 0
    _, _, hkl0, i0, v0 = _anomalous_observations(delta=0.0, sigma_rel=0.05)
    s0 = _stats("P 21 3", hkl0, i0, v0, anomalous=True, n_bins=5)
    assert abs(s0["overall"]["cc_ano"]) < 0.1
    # not anomalous: no anomalous completeness / multiplicity
    s1 = _stats("P 21 3", hkl, i, v, anomalous=False, n_bins=5)
    assert s1["overall"]["anom_completeness"] is None and s1["overall"]["anom_multiplicity"] is None
    assert s1["overall"]["cc_ano"] == pytest.approx(o["cc_ano"])


def test_empty_shells_have_no_values_and_json_is_strict():
    uniq, _, hkl, i, v, src = observations("P 21 3", CUBIC, 2.0, multiplicity=3)
    d = gemmi.UnitCell(*CUBIC).calculate_d_array(uniq)[src]
    sel = (d > 3.5) | (d < 2.6)  # a gap in resolution
    s = _stats("P 21 3", hkl[sel], i[sel], v[sel])
    empty = [r for r in s["shells"] if r["n_obs"] == 0]
    assert len(empty) >= 2
    for r in empty:
        assert set(r) == set(ROW_KEYS)
        assert r["n_unique"] == 0 and r["completeness"] == 0.0
        for key in ("multiplicity", "mean_intensity", "i_over_sigma", "rmerge", "rmeas", "rpim",
                    "cc_half", "cc_half_random", "cc_ano", "r_anom"):
            assert r[key] is None
    text = json.dumps(s, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    # no observations at all
    s = _stats("P 21 3", np.zeros((0, 3), int), np.zeros(0), np.zeros(0))
    assert s["overall"]["n_obs"] == 0 and s["shells"] == [] and s["wilson_b"] is None


def test_wilson_b_and_per_dataset_rows():
    uniq, _, hkl, i, v, src = observations("P 21 3", CUBIC, 1.6, multiplicity=2, b_factor=25.0,
                                            sigma=1.0)
    dataset = np.tile([0, 1], len(uniq))  # each reflection once in each data set
    s = _stats("P 21 3", hkl, i, v, dataset=dataset)
    assert s["wilson_b"] == pytest.approx(25.0, abs=1.5)
    assert [r["dataset"] for r in s["datasets"]] == [0, 1]
    for r in s["datasets"]:
        assert r["n_obs"] == r["n_unique"] == len(uniq)
        assert r["completeness"] == pytest.approx(100.0)
