"""The cosym embedding (Gildea & Winter 2018): one point per (data set, operation) copy.

Copy (i, k) is data set i reindexed by operation k. Its correlation with copy (j, l) is
``CC_ij(g)`` with ``W_g = W_k⁻¹ W_l``, so the (n·m)² target matrix is never stored:
the functional

    Φ(x) = Σ_{i≤j} Σ_{k,l} w_ij(g) (CC_ij(g) − x_ik · x_jl)²,   (i, k) ≠ (j, l)

and its gradient are summed in one numba loop over the data-set pairs that share
reflections (each data set's :data:`MAX_PARTNERS` strongest, beyond that many). Time per
evaluation ∝ pairs × m² × dimensions;
memory ∝ n·m·dimensions plus the (m × n × n) correlations. Minimised by L-BFGS from a
seeded random start.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange
from scipy.optimize import minimize


def composition_table(ops: np.ndarray) -> np.ndarray:
    """``table[k, l]`` = index of W_k⁻¹ W_l in ``ops`` (the operations form a group)."""
    keys = {W.tobytes(): g for g, W in enumerate(ops.astype(np.int64))}
    inv = np.rint(np.linalg.inv(ops.astype(float))).astype(np.int64)
    m = len(ops)
    table = np.empty((m, m), dtype=np.int64)
    for k in range(m):
        for l in range(m):
            prod = (inv[k] @ ops[l]).astype(np.int64)
            g = keys.get(prod.tobytes())
            if g is None:
                raise ValueError("the lattice operations do not form a group")
            table[k, l] = g
    return table


#: the pairs are summed in this many fixed chunks (in parallel; the same sums whatever the
#: number of threads, so results repeat exactly)
N_CHUNKS = 8


@njit(cache=True, parallel=True)
def _functional(x, pairs, cc, w, table):  # pragma: no cover (numba)
    """Φ and ∂Φ/∂x; x has shape (n_sets, n_ops, dim)."""
    n_ops = table.shape[0]
    dim = x.shape[2]
    n_pairs = pairs.shape[0]
    fs = np.zeros(N_CHUNKS)
    grads = np.zeros((N_CHUNKS,) + x.shape)
    for chunk in prange(N_CHUNKS):
        grad = grads[chunk]
        f = 0.0
        for p in range(chunk * n_pairs // N_CHUNKS, (chunk + 1) * n_pairs // N_CHUNKS):
            i = pairs[p, 0]
            j = pairs[p, 1]
            for k in range(n_ops):
                for l in range(n_ops):
                    if i == j and k == l:
                        continue
                    g = table[k, l]
                    wt = w[g, i, j]
                    if wt <= 0.0:
                        continue
                    d = 0.0
                    for a in range(dim):
                        d += x[i, k, a] * x[j, l, a]
                    r = cc[g, i, j] - d
                    f += wt * r * r
                    c = -2.0 * wt * r
                    for a in range(dim):
                        grad[i, k, a] += c * x[j, l, a]
                        grad[j, l, a] += c * x[i, k, a]
        fs[chunk] = f
    total = np.zeros_like(x)
    f = 0.0
    for chunk in range(N_CHUNKS):
        total += grads[chunk]
        f += fs[chunk]
    return f, total


#: partners each data set keeps in the functional beyond this many data sets: half its
#: strongest (most shared reflections), half drawn at random (seeded) among the others it
#: shares reflections with. Strongest partners alone make a local graph (5° wedges: the
#: neighbours in orientation) on which regions can settle in different settings, as
#: domains; the random links tie the regions together. Time per evaluation ∝ n·MAX_PARTNERS
#: instead of n² (1,000 data sets: about 100,000 pairs instead of 500,000).
MAX_PARTNERS = 100


def overlapping_pairs(weights: np.ndarray, max_partners: int = MAX_PARTNERS, seed: int = 0) -> np.ndarray:
    """(i, j) with i ≤ j for the data-set pairs that share reflections under some operation;
    beyond ``max_partners`` + 1 data sets each keeps its ``max_partners // 2`` strongest
    partners and as many random ones (a pair stays when either keeps it)."""
    strength = np.max(weights, axis=0)
    n = strength.shape[0]
    keep = strength > 0
    if n - 1 > max_partners:
        other = np.where(np.eye(n, dtype=bool), -np.inf, strength)
        n_top = max(max_partners // 2, 1)
        top = np.argpartition(-other, n_top - 1, axis=1)[:, :n_top]
        chosen = np.zeros((n, n), dtype=bool)
        chosen[np.repeat(np.arange(n), n_top), top.ravel()] = True
        rng = np.random.default_rng(seed)
        for i in range(n):
            pool = np.flatnonzero((other[i] > 0) & ~chosen[i])
            if len(pool):
                chosen[i, rng.choice(pool, min(max_partners - n_top, len(pool)), replace=False)] = True
        keep &= chosen | chosen.T | np.eye(n, dtype=bool)
    i, j = np.nonzero(np.triu(keep))
    return np.stack([i, j], axis=1).astype(np.int64)


def embed(cc: np.ndarray, weights: np.ndarray, table: np.ndarray, dim: int, seed: int,
          max_iterations: int = 500, ftol: float = 1e-12) -> tuple[np.ndarray, float]:
    """Coordinates (n_sets, n_ops, dim) minimising Φ, and Φ at the minimum (L-BFGS stops
    when Φ changes by less than ``ftol`` relative)."""
    n_ops, n_sets, _ = cc.shape
    cc64 = np.nan_to_num(cc.astype(np.float64))
    w64 = np.where(np.isfinite(cc), weights, 0.0).astype(np.float64)
    pairs = overlapping_pairs(w64, seed=seed)
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-0.5, 0.5, size=(n_sets, n_ops, dim))

    def fun(flat):
        f, g = _functional(flat.reshape(n_sets, n_ops, dim), pairs, cc64, w64, table)
        return f, g.ravel()

    res = minimize(fun, x0.ravel(), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iterations, "gtol": 1e-8, "ftol": ftol})
    return res.x.reshape(n_sets, n_ops, dim), float(res.fun)


#: a further dimension is worth it while it lowers Φ by more than this fraction
DIMENSION_GAIN = 0.1


def choose_dimensions(values: dict[int, float]) -> int:
    """The fewest dimensions d after which one more lowers Φ by less than
    DIMENSION_GAIN of Φ(d) — where Φ stops falling steeply (the most tried otherwise).

    Data sets in k distinct settings need about k − 1 dimensions; past that the embedding
    only fits noise and Φ falls by a few per cent per dimension."""
    dims = sorted(values)
    for d, nxt in zip(dims, dims[1:]):
        if values[d] <= 0 or (values[d] - values[nxt]) / values[d] < DIMENSION_GAIN:
            return d
    return dims[-1]


def elbow_dimensions(values: dict[int, float]) -> int:
    """The elbow of Φ against dimensions, as DIALS's cosym finds it (after Zhang et al. 2006):
    from the point whose chord to the last point falls most steeply, the point furthest
    below that chord. Φ falling at a steady rate past the elbow (noise being fitted) does
    not push the choice to the most dimensions tried, as a relative-gain rule can."""
    dims = sorted(values)
    if len(dims) < 3:
        return dims[0]
    x = np.array(dims, dtype=float)
    y = np.array([values[d] for d in dims], dtype=float)
    slopes = (y[-1] - y[:-1]) / (x[-1] - x[:-1])
    start = int(np.argmin(slopes))
    chord = y[start] + slopes[start] * (x[start:] - x[start])
    return dims[start + int(np.argmax(chord - y[start:]))]
