"""Partial reflections: profile-fitted intensities are already full-reflection estimates
(the fitted profile covers the whole spot), so scaling and cosym divide only summation
intensities by the partiality, as dials.scale does."""
import numpy as np

from processing.reflections import Flags, ReflectionTable
from processing.scaling.data import corrected
from processing.symmetry.data import select_intensities


def _table():
    t = ReflectionTable()
    n = 3
    t["miller_index"] = np.array([[1, 2, 3]] * n, dtype=np.int32)
    t["id"] = np.zeros(n, dtype=np.int32)
    t["partiality"] = np.array([1.0, 0.5, 0.8])
    t["lp"] = np.array([0.5, 0.5, 0.5])
    t["qe"] = np.ones(n)
    # one reflection of full intensity 200 recorded whole, half and 80 %
    t["intensity.sum.value"] = 200.0 * t["partiality"]
    t["intensity.sum.variance"] = 200.0 * t["partiality"]
    t["intensity.prf.value"] = np.full(n, 200.0)
    t["intensity.prf.variance"] = np.full(n, 150.0)
    t["flags"] = np.full(n, int(Flags.integrated_sum | Flags.integrated_prf), dtype=np.uint64)
    t["d"] = np.full(n, 3.0)
    return t


def test_scaling_divides_only_summation_by_the_partiality():
    t = _table()
    keep = np.ones(len(t), bool)
    i_sum, v_sum = corrected(t, "sum", keep)
    i_prf, v_prf = corrected(t, "prf", keep)
    np.testing.assert_allclose(i_sum, 100.0)          # 200 · lp, every one full
    np.testing.assert_allclose(i_prf, 100.0)
    np.testing.assert_allclose(v_prf, 150.0 * 0.25)
    np.testing.assert_allclose(v_sum, 200.0 * t["partiality"] * 0.25 / t["partiality"] ** 2)


def test_cosym_divides_only_summation_by_the_partiality():
    t = _table()
    keep, i, v, d = select_intensities(t)          # profile fitted: used as they are
    assert keep.all()
    np.testing.assert_allclose(i, 100.0)
    t["flags"] = np.full(len(t), int(Flags.integrated_sum), dtype=np.uint64)
    keep, i, v, d = select_intensities(t)          # summation only: partials scaled up
    np.testing.assert_allclose(i, 100.0)
