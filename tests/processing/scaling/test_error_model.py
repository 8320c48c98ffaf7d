"""The basic error model and outlier rejection on synthetic observations with known σ:
recovery of (a, b) as DIALS's fit gives them, the data it leaves out, and the standard
rejection with capped weights."""
from __future__ import annotations

import numpy as np
import pytest

from processing.scaling import error_model
from processing.scaling.outliers import limited_weights, reject


def synthetic(a, b, n_refl=5000, mult=8, seed=0):
    """Observations of ``n_refl`` reflections ``mult`` times each, with inverse scales g and
    errors of exactly σ'² = a² (σ² + (b·g I)²), σ² = g I + 20 (counting plus background)."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n_refl), mult)
    i_true = np.exp(rng.uniform(np.log(20), np.log(2e5), n_refl))[group]
    g = rng.uniform(0.5, 2.0, len(group))
    variance = g * i_true + 20.0
    intensity = g * i_true + rng.normal(size=len(group)) * a * np.sqrt(variance + (b * g * i_true) ** 2)
    return group, intensity, variance, g


@pytest.mark.parametrize("seed", [0, 1])
def test_known_error_model_is_recovered(seed):
    """δ normalised by sqrt(n/(n − 1)) has unit variance: the true a and b come back (DIALS's
    sqrt((n − 1)/n) would give a × (n − 1)/n, 7/8 of it here)."""
    group, intensity, variance, g = synthetic(1.3, 0.03, seed=seed)
    em = error_model.refine_error_model(group, group.max() + 1, intensity, variance, g)
    assert em["refined"]
    assert em["a"] == pytest.approx(1.3, rel=0.05)
    assert em["b"] == pytest.approx(0.03, rel=0.1)
    assert all(0.85 < x["variance_after"] < 1.15 for x in em["bins"])
    assert em["normal_probability"]["sd"] == pytest.approx(1.0, abs=0.05)


def test_weak_single_and_wild_reflections_are_left_out():
    group, intensity, variance, g = synthetic(1.0, 0.02, n_refl=2000)
    expected = g * np.bincount(group, intensity / variance * g)[group] / np.bincount(group, g * g / variance)[group]
    wild = group == 7  # one reflection whose observations disagree far beyond their σ
    intensity = np.where(wild, intensity * np.linspace(0.2, 3.0, 8)[np.arange(len(group)) % 8], intensity)
    keep, _ = error_model.usable(group, group.max() + 1, intensity, variance, g)
    assert not keep[wild].any()
    assert not keep[expected < 20].any()  # expected intensity below min_Ih (25)
    single = np.r_[group, group.max() + 1]
    keep, _ = error_model.usable(single, single.max() + 1, np.r_[intensity, 1e4], np.r_[variance, 1e4], np.r_[g, 1.0])
    assert not keep[-1]
    few = group < 20
    em = error_model.refine_error_model(group[few], 20, intensity[few], variance[few], g[few])
    assert not em["refined"] and (em["a"], em["b"]) == error_model.START


def test_weights_are_capped_at_ten_times_the_median_of_the_reflection():
    group = np.array([0, 0, 0, 0, 1, 1])
    w = np.array([1.0, 2.0, 3.0, 1000.0, 5.0, 5.0])
    capped = limited_weights(group, 2, w, np.ones(6, bool))
    assert capped.tolist() == [1.0, 2.0, 3.0, 25.0, 5.0, 5.0]


def test_standard_rejection_takes_the_worst_of_a_reflection_and_spares_pairs():
    rng = np.random.default_rng(3)
    group = np.repeat(np.arange(300), 5)
    intensity = 1000.0 + rng.normal(size=len(group)) * 10.0
    variance = np.full(len(group), 100.0)
    intensity[::25] += 150.0  # 15 σ: one in every fifth reflection
    pair = np.r_[group, 300, 300]
    out = reject(pair, 301, np.ones(len(pair)), np.r_[intensity, 1000.0, 2000.0], np.r_[variance, 100.0, 100.0],
                 np.ones(len(pair), bool))
    assert np.flatnonzero(out).tolist() == list(range(0, len(group), 25))


def _reject_round_by_round(group, n_groups, g, intensity, variance, active, zmax=6.0, max_rounds=100):
    """The rejection as dials.scale states it: each round, every reflection's worst observation
    beyond zmax, over the whole table at once (the reference for the per-reflection kernel)."""
    from processing.scaling.outliers import normalised_deviations

    active = active.copy()
    w = limited_weights(group, n_groups, 1.0 / variance, active)
    outlier = np.zeros(len(group), bool)
    for _ in range(max_rounds):
        counts = np.bincount(group, active.astype(np.int64), n_groups)
        tested = active & (counts[group] >= 3)
        z = np.abs(normalised_deviations(group, n_groups, g, intensity, w, active))
        z = np.where(tested & np.isfinite(z), z, 0.0)
        worst = np.zeros(n_groups)
        np.maximum.at(worst, group, z)
        bad = (z > zmax) & (z == worst[group])
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        _, first = np.unique(group[idx], return_index=True)
        outlier[idx[first]] = True
        active[idx[first]] = False
    return outlier


def test_per_reflection_rejection_equals_the_round_by_round_one():
    rng = np.random.default_rng(11)
    n_groups = 2000
    group = rng.integers(0, n_groups, 40000)
    truth = rng.gamma(1.0, 500.0, n_groups)
    g = rng.uniform(0.5, 2.0, len(group))
    variance = g * truth[group] + 50.0
    intensity = g * truth[group] + rng.normal(size=len(group)) * np.sqrt(variance)
    bad = rng.random(len(group)) < 0.03  # several outliers in many reflections
    intensity[bad] += rng.uniform(8, 40, bad.sum()) * np.sqrt(variance[bad])
    active = rng.random(len(group)) > 0.05
    expected = _reject_round_by_round(group, n_groups, g, intensity, variance, active)
    got = reject(group, n_groups, g, intensity, variance, active)
    assert expected.sum() > 1000
    assert np.array_equal(got, expected)
    assert np.array_equal(reject(group, n_groups, g, intensity, variance, active, max_rounds=1),
                          _reject_round_by_round(group, n_groups, g, intensity, variance, active, max_rounds=1))
