"""The min/max cc of the Bravais table: correlation of the strong spots' I/σ between
indices related by each candidate setting's operators (dials.refine_bravais_settings)."""
from __future__ import annotations

import numpy as np
import pytest

from processing.cli.index import bravais_table
from processing.geometry.prediction import predict_rotation
from processing.indexing import IndexParams, run_index
from processing.indexing.bravais import bravais_settings, setting_operators, symop_correlations
from processing.models import ExperimentList
from processing.models.crystal import b_matrix
from processing.models.goniometer import axis_angle_matrix
from processing.reflections import Flags, ReflectionTable

from .test_indexer import eiger_experiment

TETRAGONAL_METRIC = (57.0, 57.0, 80.0, 90.0, 90.0, 90.0)


def _canonical(h: np.ndarray, ops: list[np.ndarray]) -> np.ndarray:
    """A key equal for all indices related by ``ops`` (index matrices) and Friedel's law."""
    keys = []
    for K in ops:
        for s in (1, -1):
            g = s * (h @ np.asarray(K).T) + 64
            keys.append((g[:, 0] * 128 + g[:, 1]) * 128 + g[:, 2])
    return np.min(keys, axis=0)


def _intensities(h: np.ndarray, ops, seed: int) -> np.ndarray:
    """Wilson-like random intensities with the symmetry ``ops`` (no resolution fall-off,
    so unrelated indices do not correlate)."""
    keys, inverse = np.unique(_canonical(h, ops), return_inverse=True)
    return np.random.default_rng(seed).exponential(1000.0, len(keys))[inverse.ravel()]


TWOFOLD_C = np.diag([-1, -1, 1])  # the truth: point group 2 along c of a metrically tetragonal cell


def test_symop_correlations_true_and_false_operators():
    r = np.arange(-6, 7)
    h = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    h = h[np.any(h != 0, axis=1)]
    v = _intensities(h, [np.eye(3, dtype=int), TWOFOLD_C], seed=2)
    v = v * (1 + 0.05 * np.random.default_rng(3).normal(size=len(v)))
    fourfold = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    twofold_a = np.diag([1, -1, -1])
    cc, n = symop_correlations(h, v, np.array([np.eye(3, dtype=int), TWOFOLD_C, fourfold, twofold_a]))
    assert cc[0] == pytest.approx(1.0) and n[0] == len(h) // 2  # Friedel mates merged
    assert cc[1] > 0.98 and n[1] > 1000
    assert abs(cc[2]) < 0.3 and abs(cc[3]) < 0.3  # (a few zones coincide with true pairs)
    # Friedel: −h is the same observation, so the inversion-like −1 operator pairs everything
    cc_inv, _ = symop_correlations(h, v, np.array([-np.eye(3, dtype=int)]))
    assert cc_inv[0] == pytest.approx(1.0)


def test_operators_are_integral_in_the_input_basis():
    U = axis_angle_matrix([1, 2, 3], 0.7)
    R = np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]) @ np.linalg.inv(U @ b_matrix((78.1,) * 3 + (90.0,) * 3))
    settings = bravais_settings(R)
    orders = {s.bravais: len(setting_operators(s)) for s in settings}
    assert orders == {"cI": 12, "hR": 3, "tI": 4, "oF": 4, "oI": 4, "mC": 2, "aP": 1}
    for s in settings:
        ops = setting_operators(s)
        assert np.array_equal(ops[0], np.eye(3, dtype=int))
        G_star = np.linalg.inv(R @ R.T)  # reciprocal metric of the input basis: every operator keeps it
        for K in ops:
            assert np.allclose(K.T @ G_star @ K, G_star, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def monoclinic_data_on_a_tetragonal_lattice():
    """Spots of a 20° sweep of a crystal whose lattice is metrically tetragonal but whose
    intensities have only a twofold along c (5 % noise)."""
    U = axis_angle_matrix([0.2, 0.7, 0.4], 0.9)
    A = U @ b_matrix(TETRAGONAL_METRIC)
    e = eiger_experiment(n_images=200, osc=0.1)
    p = predict_rotation(A, e.beam, e.detector, e.goniometer, e.scan, d_min=3.0)
    rng = np.random.default_rng(4)
    xyz = p["xyzcal.px"].copy()
    n = len(xyz)
    xyz[:, :2] += rng.normal(0, 0.2, (n, 2))
    xyz[:, 2] += rng.normal(0, 0.1, n)
    i_true = _intensities(p["miller_index"].astype(int), [np.eye(3, dtype=int), TWOFOLD_C], seed=5)
    intensity = i_true * (1 + 0.05 * rng.normal(size=n))
    keep = intensity > 50.0  # strong spots only
    t = ReflectionTable({"xyzobs.px.value": xyz[keep], "xyzobs.px.variance": np.tile([0.04, 0.04, 0.01], (keep.sum(), 1)),
                         "panel": np.zeros(keep.sum(), np.uint64), "id": np.zeros(keep.sum(), np.int32),
                         "flags": np.full(keep.sum(), int(Flags.strong), np.uint64),
                         "intensity.sum.value": intensity[keep],
                         "intensity.sum.variance": intensity[keep] + (0.05 * intensity[keep]) ** 2})
    t.experiment_identifiers = {0: e.identifier}
    return e, t


def test_bravais_table_cc_picks_out_the_true_symmetry(monoclinic_data_on_a_tetragonal_lattice):
    e, t = monoclinic_data_on_a_tetragonal_lattice
    _, _, summary = run_index(ExperimentList([e]), t, IndexParams())
    rows = summary["sweeps"][0]["lattices"][0]["bravais_settings"]
    by = {}
    for r in rows:
        by.setdefault(r["bravais"], []).append(r)
    assert set(by) >= {"tP", "oP", "mP", "aP"}
    (tp,) = by["tP"]
    # P 4 holds the true twofold along c (high max) and the false fourfold (low min)
    assert tp["min_cc"] < 0.3 and tp["max_cc"] > 0.9
    for r in by["oP"]:  # P 2 2 2: the twofolds along a and b are false
        assert r["min_cc"] < 0.3
    mono = sorted(r["min_cc"] for r in by["mP"])
    assert mono[-1] > 0.9 and all(c < 0.3 for c in mono[:-1])  # one monoclinic axis is the true one
    assert by["aP"][0]["min_cc"] is None and by["aP"][0]["max_cc"] is None
    text = bravais_table(rows)
    true_mp = max(by["mP"], key=lambda r: r["min_cc"])
    assert f"{true_mp['min_cc']:.3f}/{true_mp['max_cc']:.3f}" in text
    assert "-/-" in text.splitlines()[-3]  # the aP row, last of the table


def test_tiny_simulation_cubic_lattice_correlates():
    """The tiny simulation (I 2₁3, 5° per sweep; two of its crystals): the spots' recorded
    intensities correlate under every operator of I 2 3 in the cI setting."""
    try:
        from processing.simulate import simulate
        from processing.simulate.params import SimulateParams
    except ImportError:
        pytest.skip("simulator not available")
    sim = simulate(SimulateParams(preset="tiny", mode="images", n_crystals=2))
    rng = np.random.default_rng(1)
    parts = []
    for k, s in enumerate(sim.sweeps):
        tb = s.table
        strong = (tb["partiality"] > 0.5) & (tb["intensity.true.value"] > np.percentile(tb["intensity.true.value"], 40))
        xyz = tb["xyzcal.px"][strong].copy()
        xyz[:, :2] += rng.normal(0, 0.3, (len(xyz), 2))
        xyz[:, 2] += rng.normal(0, 0.1, len(xyz))
        counts = rng.poisson(tb["intensity.true.value"][strong]).astype(float)
        parts.append((xyz, counts, np.full(len(xyz), k, np.int32)))
    xyz, counts, ids = (np.concatenate([p[i] for p in parts]) for i in range(3))
    n = len(xyz)
    experiments = ExperimentList([type(e)(beam=e.beam, detector=e.detector, goniometer=e.goniometer, scan=e.scan,
                                          imageset=e.imageset, identifier=e.identifier) for e in sim.experiments])
    t = ReflectionTable({"xyzobs.px.value": xyz, "xyzobs.px.variance": np.tile([0.09, 0.09, 0.02], (n, 1)),
                         "panel": np.zeros(n, np.uint64), "id": ids, "flags": np.full(n, int(Flags.strong), np.uint64),
                         "intensity.sum.value": counts, "intensity.sum.variance": np.maximum(counts, 1.0)})
    t.experiment_identifiers = {k: e.identifier for k, e in enumerate(experiments)}
    _, _, summary = run_index(experiments, t, IndexParams(joint=False))
    for row in summary["sweeps"]:
        table = row["lattices"][0]["bravais_settings"]
        ci = table[0]
        assert ci["bravais"] == "cI"
        assert ci["min_cc"] > 0.7 and ci["max_cc"] > 0.95
        # tetragonal (I 4) adds a false fourfold: lower than cI's lowest in this sweep
        assert min(r["min_cc"] for r in table if r["bravais"] == "tI") < ci["min_cc"]
