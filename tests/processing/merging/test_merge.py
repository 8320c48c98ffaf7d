"""Merging: ASU mapping against gemmi, weighted means, I(+)/I(−), centrics, DANO."""
import gemmi
import numpy as np
import pytest

from processing.merging import asu_index, map_to_asu, merge_intensities
from processing.merging.data import MergedIntensities
from tests.processing.merging.synth import observations

CUBIC = (78.0, 78.0, 78.0, 90.0, 90.0, 90.0)


def test_map_to_asu_matches_gemmi_in_every_setting():
    """Vectorised mapping = gemmi's ReciprocalAsu.to_asu (index and ISYM) in all 564 settings."""
    rng = np.random.default_rng(7)
    hkl = rng.integers(-6, 7, size=(150, 3)).astype(np.int32)
    mismatches = 0
    n_groups = 0
    for sg in gemmi.spacegroup_table():
        ops = sg.operations()
        asu = gemmi.ReciprocalAsu(sg)
        ref = [asu.to_asu([int(x) for x in row], ops) for row in hkl]
        got_hkl, got_isym = map_to_asu(hkl, sg)
        mismatches += int(np.sum(np.any(got_hkl != np.array([r[0] for r in ref]), axis=1)))
        mismatches += int(np.sum(got_isym != np.array([r[1] for r in ref])))
        n_groups += 1
    assert n_groups == 564
    assert mismatches == 0


def test_merged_imean_is_the_inverse_variance_mean():
    uniq, true_i, hkl, obs, _, src = observations("P 21 3", CUBIC, 2.0, multiplicity=4, seed=3)
    rng = np.random.default_rng(4)
    var = rng.uniform(10.0, 400.0, len(obs))  # a different σ for every observation
    merged = merge_intensities(hkl, obs, var, gemmi.SpaceGroup("P 21 3"), CUBIC, 0.9795)
    assert isinstance(merged, MergedIntensities)
    assert len(merged) == len(uniq) == 10953
    # expected, computed from the known source reflection of each observation
    w = 1.0 / var
    exp_mean = np.bincount(src, weights=w * obs) / np.bincount(src, weights=w)
    exp_sig = 1.0 / np.sqrt(np.bincount(src, weights=w))
    order = np.lexsort(uniq.T[::-1])  # merged rows are sorted by (h, k, l)
    np.testing.assert_array_equal(merged.hkl, uniq[order])
    np.testing.assert_allclose(merged.imean, exp_mean[order], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(merged.sigimean, exp_sig[order], rtol=1e-12)
    assert np.all(merged.n_obs == 4)
    assert np.all(merged.n_plus + merged.n_minus == 4)
    d = gemmi.UnitCell(*CUBIC).calculate_d_array(merged.hkl)
    np.testing.assert_allclose(merged.d, d, rtol=1e-12)
    # strong reflections: French–Wilson F ≈ √IMEAN
    strong = merged.imean / merged.sigimean > 30
    assert strong.sum() > 500
    np.testing.assert_allclose(merged.f[strong], np.sqrt(merged.imean[strong]), rtol=2e-3)


def test_anomalous_pair_and_centric_reflection():
    """P 21 21 21: (1,2,3) acentric; (0,2,3) centric (0kl zone)."""
    sg = gemmi.SpaceGroup("P 21 21 21")
    cell = (40.0, 50.0, 60.0, 90.0, 90.0, 90.0)
    hkl = np.array([
        [1, 2, 3], [-1, -2, 3],      # I(+): h and an equivalent (2-fold along c)
        [-1, -2, -3], [1, 2, -3],    # I(−): Friedel mates of the two above
        [0, 2, 3], [0, -2, -3],      # centric: both to I(+)
    ])
    intensity = np.array([100.0, 102.0, 78.0, 82.0, 50.0, 54.0])
    var = np.ones(6)
    _, plus, key = asu_index(hkl, sg, anomalous=True)
    assert plus.tolist() == [True, True, False, False, True, True]
    assert len(np.unique(key)) == 3
    m = merge_intensities(hkl, intensity, var, sg, cell, 1.0, anomalous=True)
    assert m.anomalous and len(m) == 2
    assert m.hkl.tolist() == [[0, 2, 3], [1, 2, 3]]
    c, a = 0, 1
    assert m.imean[a] == pytest.approx(90.5)
    assert m.sigimean[a] == pytest.approx(0.5)
    assert m.i_plus[a] == pytest.approx(101.0) and m.n_plus[a] == 2
    assert m.i_minus[a] == pytest.approx(80.0) and m.n_minus[a] == 2
    assert m.sig_i_plus[a] == pytest.approx(1 / np.sqrt(2))
    assert m.i_plus[c] == pytest.approx(52.0) and m.n_plus[c] == 2
    assert np.isnan(m.i_minus[c]) and m.n_minus[c] == 0 and np.isnan(m.sig_i_minus[c])
    assert np.isnan(m.f_minus[c]) and np.isnan(m.dano[c]) and np.isnan(m.sigdano[c])
    assert m.f_plus[a] == pytest.approx(np.sqrt(101.0), rel=2e-3)
    assert m.f_minus[a] == pytest.approx(np.sqrt(80.0), rel=2e-3)
    assert m.dano[a] == pytest.approx(m.f_plus[a] - m.f_minus[a])
    assert m.dano[a] == pytest.approx(np.sqrt(101) - np.sqrt(80), rel=0.02)
    assert m.sigdano[a] == pytest.approx(np.hypot(m.sigf_plus[a], m.sigf_minus[a]))
    # gemmi's convention: the Friedel mate of an index has an even ISYM
    assert map_to_asu(np.array([[-1, -2, -3]]), sg)[1][0] % 2 == 0


def test_bad_observations_are_left_out():
    sg = gemmi.SpaceGroup("P 1")
    hkl = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]])
    m = merge_intensities(hkl, np.array([10.0, np.nan, 30.0, 12.0]), np.array([1.0, 1.0, 0.0, 1.0]),
                          sg, (10, 10, 10, 90, 90, 90), 1.0)
    assert m.n_obs.tolist() == [2]
    assert m.imean[0] == pytest.approx(11.0)
