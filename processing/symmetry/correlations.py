"""Pairwise correlations of every data set with every other under every lattice operation.

``CC_ij(g)`` is Pearson's correlation of data set i's E² with data set j's E² after j is
reindexed by the lattice operation g (h → W_g h), over the reflections they share.
For each operation the sums over shared reflections are products of sparse
(data sets × unique indices) matrices, so the work is proportional to the number of
(pair, shared reflection) terms — data sets that share nothing cost nothing — and the
memory to the reflections plus an (operations × data sets × data sets) float32 array.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .data import DataSet, friedel_canonical, hkl_keys


def _sparse(rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray], n: int, m: int):
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    v = np.concatenate(vals) if vals else np.zeros(0)
    return sp.csr_matrix((v, (r, c)), shape=(n, m))


def pairwise_correlations(datasets: list[DataSet], ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cc, n)``: float32 arrays (n_ops, n_sets, n_sets) of CC_ij(g) and the number of
    shared reflections; NaN where fewer than 3 are shared or a variance is zero."""
    n_sets, n_ops = len(datasets), len(ops)
    keys_by_op = []
    for W in ops:
        keys_by_op.append([hkl_keys(friedel_canonical(ds.hkl @ W.T)) for ds in datasets])
    all_keys = np.unique(np.concatenate([k for ks in keys_by_op for k in ks] or [np.zeros(0, np.int64)]))
    m = len(all_keys)
    set_ids = [np.full(len(ds.e2), i, dtype=np.int64) for i, ds in enumerate(datasets)]
    ident = [np.searchsorted(all_keys, k) for k in keys_by_op[0]]
    ones = [np.ones(len(ds.e2)) for ds in datasets]
    x = [ds.e2 for ds in datasets]
    A1 = _sparse(set_ids, ident, ones, n_sets, m)
    Ax = _sparse(set_ids, ident, x, n_sets, m)
    Axx = _sparse(set_ids, ident, [v * v for v in x], n_sets, m)
    cc = np.full((n_ops, n_sets, n_sets), np.nan, dtype=np.float32)
    nn = np.zeros((n_ops, n_sets, n_sets), dtype=np.float32)
    for g in range(n_ops):
        cols = [np.searchsorted(all_keys, k) for k in keys_by_op[g]]
        B1 = _sparse(set_ids, cols, ones, n_sets, m).T.tocsr()
        Bx = _sparse(set_ids, cols, x, n_sets, m).T.tocsr()
        Bxx = _sparse(set_ids, cols, [v * v for v in x], n_sets, m).T.tocsr()
        n = (A1 @ B1).toarray()
        sx, sy = (Ax @ B1).toarray(), (A1 @ Bx).toarray()
        sxx, syy, sxy = (Axx @ B1).toarray(), (A1 @ Bxx).toarray(), (Ax @ Bx).toarray()
        with np.errstate(divide="ignore", invalid="ignore"):
            num = n * sxy - sx * sy
            den = np.sqrt((n * sxx - sx * sx) * (n * syy - sy * sy))
            r = num / den
        r[(n < 3) | ~np.isfinite(r)] = np.nan
        cc[g] = r
        nn[g] = n
    return cc, nn
