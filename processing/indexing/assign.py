"""Miller index assignment (DIALS's ``index_assignment.simple``, AssignIndicesGlobal).

For every reflection and every crystal, hkl = A⁻¹·rlp; a reflection is indexed by
the crystal whose fractional hkl is nearest to integers when all three components
are within ``hkl_tolerance`` (default 0.3) of them. (0,0,0) is never indexed.
When two reflections of one sweep get the same index from one crystal with the
same entering flag, only the one nearest to integer hkl keeps it, as DIALS does.
``best_lattice`` makes that choice for any per-crystal score (lattice_search.py scores
refined crystals by their predicted positions).
"""
from __future__ import annotations

import numpy as np


def assign_indices(rlp: np.ndarray, A_list: list[np.ndarray], hkl_tolerance: float = 0.3,
                   entering: np.ndarray | None = None, imageset: np.ndarray | None = None,
                   allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(miller_index N×3 int32, crystal id N (−1 unindexed), squared deviation N).

    ``allowed`` (N×n_crystals bool, optional) restricts which crystal may index which
    reflection (e.g. a crystal only indexes its own sweeps' reflections).
    """
    rlp = np.asarray(rlp, dtype=float).reshape(-1, 3)
    hkls, scores = [], []
    for k, A in enumerate(A_list):
        frac = rlp @ np.linalg.inv(A).T
        hkl = np.rint(frac)
        dev = np.abs(frac - hkl)
        l2 = np.sum(dev ** 2, axis=1)
        ok = np.all(dev < hkl_tolerance, axis=1) & np.any(hkl != 0, axis=1)
        if allowed is not None:
            ok &= allowed[:, k]
        hkls.append(hkl)
        scores.append(np.where(ok, l2, np.inf))
    return best_lattice(hkls, scores, entering, imageset, n=len(rlp))


def best_lattice(hkls: list[np.ndarray], scores: list[np.ndarray], entering: np.ndarray | None = None,
                 imageset: np.ndarray | None = None, n: int | None = None):
    """Each reflection to the one crystal with the lowest finite score; then, of the
    reflections one crystal gives the same index (same entering flag and sweep), only
    the lowest-scoring keeps it. ``hkls[k]`` N×3 and ``scores[k]`` N (inf: crystal k
    cannot index it). Returns (miller_index N×3 int32, crystal id N (−1), score N)."""
    n = len(scores[0]) if scores else (n or 0)
    best_id = np.full(n, -1, dtype=np.int32)
    best_hkl = np.zeros((n, 3), dtype=np.int32)
    best_l2 = np.full(n, np.inf)
    for k, (hkl, l2) in enumerate(zip(hkls, scores)):
        ok = np.isfinite(l2) & (l2 < best_l2)
        best_id[ok] = k
        best_hkl[ok] = hkl[ok].astype(np.int32)
        best_l2[ok] = l2[ok]
    # duplicates: same crystal, index, entering flag (and imageset) -> keep the best
    idx = np.nonzero(best_id >= 0)[0]
    if len(idx) > 1:
        ent = np.zeros(n, np.int64) if entering is None else np.asarray(entering, np.int64)
        iset = np.zeros(n, np.int64) if imageset is None else np.asarray(imageset, np.int64)
        keys = np.column_stack([best_id[idx], best_hkl[idx], ent[idx], iset[idx]])
        order = np.lexsort((best_l2[idx],) + tuple(keys[:, j] for j in range(keys.shape[1] - 1, -1, -1)))
        ks = keys[order]
        first = np.ones(len(order), bool)
        first[1:] = np.any(ks[1:] != ks[:-1], axis=1)
        drop = idx[order[~first]]
        best_id[drop] = -1
        best_hkl[drop] = 0
    best_hkl[best_id < 0] = 0
    best_l2[best_id < 0] = np.inf
    return best_hkl, best_id, best_l2
