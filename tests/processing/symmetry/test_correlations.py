"""Pairwise correlations under lattice operations, against a direct computation."""
import numpy as np

from processing.symmetry.correlations import pairwise_correlations, unpack_keys
from processing.symmetry.data import DataSet, friedel_canonical, hkl_keys


def _ops_422() -> np.ndarray:
    """The 8 rotations of 422 (a four-fold about c: its inverse is another operation)."""
    four = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    two = np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]])
    ops = [np.linalg.matrix_power(four, k) @ m for k in range(4) for m in (np.eye(3, dtype=int), two)]
    return np.array(ops, dtype=np.int64)


def _datasets(rng, n_sets=7):
    out = []
    for i in range(n_sets):
        hkl = friedel_canonical(rng.integers(-6, 7, size=(rng.integers(60, 160), 3)))
        hkl = np.unique(hkl, axis=0)
        e2 = rng.exponential(1.0, len(hkl))
        out.append(DataSet(i, f"set{i}", hkl, e2, np.ones(len(hkl)), np.ones(len(hkl)), np.ones(len(hkl)),
                           np.eye(3), extra={}))
    return out


def _direct(datasets, W):
    n = len(datasets)
    cc, nn = np.full((n, n), np.nan), np.zeros((n, n))
    for i, a in enumerate(datasets):
        ka = dict(zip(hkl_keys(a.hkl).tolist(), a.e2))
        for j, b in enumerate(datasets):
            kb = hkl_keys(friedel_canonical(b.hkl @ W.T)).tolist()
            pairs = [(ka[k], y) for k, y in zip(kb, b.e2) if k in ka]
            nn[i, j] = len(pairs)
            if len(pairs) >= 3:
                x, y = np.array(pairs).T
                cc[i, j] = np.corrcoef(x, y)[0, 1]
    return cc, nn


def test_correlations_match_a_direct_computation_under_every_operation():
    rng = np.random.default_rng(5)
    datasets = _datasets(rng)
    ops = _ops_422()
    cc, nn = pairwise_correlations(datasets, ops)
    assert cc.shape == (8, 7, 7) and cc.dtype == np.float32
    for g, W in enumerate(ops):
        want_cc, want_n = _direct(datasets, W)
        assert np.array_equal(nn[g], want_n)
        assert np.array_equal(np.isnan(cc[g]), np.isnan(want_cc))
        ok = ~np.isnan(want_cc)
        assert np.max(np.abs(cc[g][ok] - want_cc[ok])) < 1e-5
    assert nn.max() > 20  # the sets really overlap


def test_keys_unpack_to_their_indices():
    hkl = np.array([[0, 0, 1], [-5, 3, 2], [1023, -1023, 0]])
    assert np.array_equal(unpack_keys(hkl_keys(hkl)), hkl)


def test_each_data_set_keeps_its_strongest_partners_in_the_embedding():
    from processing.symmetry.embedding import overlapping_pairs

    rng = np.random.default_rng(2)
    n = 9
    shared = rng.integers(5, 100, size=(n, n)).astype(float)
    shared = np.triu(shared, 1) + np.triu(shared, 1).T
    shared[0, 8] = shared[8, 0] = 0.0  # these two share nothing
    np.fill_diagonal(shared, 50.0)  # each set with itself under the other operation
    weights = np.stack([shared, 0.5 * shared])  # two operations
    everything = overlapping_pairs(weights, max_partners=8)
    assert len(everything) == n * (n - 1) // 2 - 1 + n  # every sharing pair and each set with itself
    pairs = {tuple(p) for p in overlapping_pairs(weights, max_partners=4).tolist()}
    for i in range(n):
        assert (i, i) in pairs
        best = np.argsort(-np.where(np.arange(n) == i, -1, shared[i]))[:2]  # its two strongest
        assert all((min(i, j), max(i, j)) in pairs for j in best)
        assert sum(1 for p in pairs if i in p and p[0] != p[1]) >= 4  # and two random ones at least
    kept = {(i, j) for i, j in pairs if i != j}
    assert all(i < j and shared[i, j] > 0 for i, j in kept)
    assert len(kept) < n * (n - 1) // 2 - 1  # some pairs left out
    assert pairs == {tuple(p) for p in overlapping_pairs(weights, max_partners=4).tolist()}  # seeded
