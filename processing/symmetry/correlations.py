"""Pairwise correlations of every data set with every other under every lattice operation.

``CC_ij(g)`` is Pearson's correlation of data set i's E² with data set j's E² after j is
reindexed by the lattice operation g (h → W_g h), over the reflections they share.
Each data set holds each (Friedel-merged) index once, so the shared reflections of i and
j under g are the index k of i and the index W_g⁻¹ k of j. With, per index, the list of
data sets that hold it, one numba loop visits each (pair, shared reflection) term once:
data sets that share nothing cost nothing, the time is ∝ Σ_k (holders of k) × (holders
of W_g⁻¹ k) per operation, and the memory is the reflections plus an (operations × data
sets × data sets) float32 array (and per thread a data sets² × 6 float64 accumulator).
Since CC_ij(g) = CC_ji(g⁻¹), an operation's inverse is the transpose of its result.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .data import DataSet, friedel_canonical, hkl_keys


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """Indices (n, 3) of :func:`hkl_keys`."""
    keys = np.asarray(keys, dtype=np.int64)
    mask = (1 << 11) - 1
    return np.stack([(keys >> 22) & mask, (keys >> 11) & mask, keys & mask], axis=1) - 1024


@njit(cache=True, parallel=True)
def _correlations(ptr, holder, value, partner, n_sets):  # pragma: no cover (numba)
    """cc, n (len(partner), n_sets, n_sets) float32: the sums over index k of the sets holding
    it (rows) against the sets holding index ``partner[g, k]`` (columns; −1: none)."""
    n_ops = partner.shape[0]
    cc = np.full((n_ops, n_sets, n_sets), np.nan, dtype=np.float32)
    nn = np.zeros((n_ops, n_sets, n_sets), dtype=np.float32)
    for g in prange(n_ops):
        acc = np.zeros((n_sets, n_sets, 6))  # n, Σx, Σy, Σx², Σy², Σxy
        for k in range(len(ptr) - 1):
            q = partner[g, k]
            if q < 0:
                continue
            for a in range(ptr[k], ptr[k + 1]):
                i = holder[a]
                x = value[a]
                for b in range(ptr[q], ptr[q + 1]):
                    j = holder[b]
                    y = value[b]
                    acc[i, j, 0] += 1.0
                    acc[i, j, 1] += x
                    acc[i, j, 2] += y
                    acc[i, j, 3] += x * x
                    acc[i, j, 4] += y * y
                    acc[i, j, 5] += x * y
        for i in range(n_sets):
            for j in range(n_sets):
                n = acc[i, j, 0]
                nn[g, i, j] = n
                if n < 3:
                    continue
                sx, sy = acc[i, j, 1], acc[i, j, 2]
                den = (n * acc[i, j, 3] - sx * sx) * (n * acc[i, j, 4] - sy * sy)
                if den > 0:
                    cc[g, i, j] = (n * acc[i, j, 5] - sx * sy) / np.sqrt(den)
    return cc, nn


def _inverse_index(ops: np.ndarray) -> np.ndarray:
    """For each operation, the position of its inverse in ``ops``."""
    keys = {W.astype(np.int64).tobytes(): g for g, W in enumerate(ops)}
    inv = np.rint(np.linalg.inv(ops.astype(float))).astype(np.int64)
    return np.array([keys.get(W.tobytes(), -1) for W in inv], dtype=np.int64)


def pairwise_correlations(datasets: list[DataSet], ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cc, n)``: float32 arrays (n_ops, n_sets, n_sets) of CC_ij(g) and the number of
    shared reflections; NaN where fewer than 3 are shared or a variance is zero."""
    n_sets, n_ops = len(datasets), len(ops)
    if n_ops == 0 or n_sets == 0:
        return np.full((n_ops, n_sets, n_sets), np.nan, np.float32), np.zeros((n_ops, n_sets, n_sets), np.float32)
    keys = np.concatenate([hkl_keys(friedel_canonical(ds.hkl)) for ds in datasets])
    holder = np.concatenate([np.full(len(ds.e2), i, dtype=np.int64) for i, ds in enumerate(datasets)])
    value = np.concatenate([np.asarray(ds.e2, dtype=np.float64) for ds in datasets])
    order = np.argsort(keys, kind="stable")
    uniq, counts = np.unique(keys[order], return_counts=True)
    ptr = np.zeros(len(uniq) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    inverse = _inverse_index(ops)
    # g and g⁻¹ give transposed results: compute one of each pair
    todo = [g for g in range(n_ops) if inverse[g] < 0 or g <= inverse[g]]
    hkl = unpack_keys(uniq)
    partner = np.full((len(todo), len(uniq)), -1, dtype=np.int64)
    inv_ops = np.rint(np.linalg.inv(ops.astype(float))).astype(np.int64)
    for r, g in enumerate(todo):
        target = hkl_keys(friedel_canonical(hkl @ inv_ops[g].T))
        pos = np.clip(np.searchsorted(uniq, target), 0, len(uniq) - 1)
        partner[r] = np.where(uniq[pos] == target, pos, -1)
    part_cc, part_n = _correlations(ptr, holder[order], value[order], partner, n_sets)
    cc = np.empty((n_ops, n_sets, n_sets), np.float32)
    nn = np.empty((n_ops, n_sets, n_sets), np.float32)
    for r, g in enumerate(todo):
        cc[g], nn[g] = part_cc[r], part_n[r]
        h = inverse[g]
        if h >= 0 and h != g:
            cc[h], nn[h] = part_cc[r].T, part_n[r].T
    return cc, nn
