"""Outlier rejection in scaling (dials.scale's ``standard`` method): each observation is
compared with the weighted mean of the other observations of its reflection,

    z = (I_l − g_l Ĩ_h,−l) / sqrt(1/w_l + g_l² / Σ_{m≠l} w_m g_m²),

w = 1/σ'² (with the error model when there is one) capped at 10 × the median weight of
the reflection, so that one very precise observation cannot pull the mean onto itself;
per reflection the observation with the largest |z| beyond ``zmax`` is rejected,
repeated until no reflection has one (reflections with fewer than 3 observations are
not tested: with two, neither can be told to be the bad one)."""
from __future__ import annotations

import math

import numpy as np
from numba import njit


def limited_weights(group, n_groups, w, active):
    """1/σ² capped at 10 × the median over the active observations of each reflection."""
    idx = np.flatnonzero(active)
    rank = np.empty(len(idx), np.int64)
    rank[np.argsort(w[idx])] = np.arange(len(idx))
    order = idx[np.argsort(group[idx].astype(np.int64) * max(len(idx), 1) + rank)]  # by reflection, then w
    count = np.bincount(group[order], minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    has = count > 0
    median = np.full(n_groups, np.inf)
    lo, hi = start[has] + (count[has] - 1) // 2, start[has] + count[has] // 2
    median[has] = 0.5 * (w[order[lo]] + w[order[hi]])
    return np.minimum(w, 10.0 * median[group])


def normalised_deviations(group, n_groups, g, intensity, w, active):
    """z of every active observation against the others of its reflection (NaN when alone)."""
    w = np.where(active, w, 0.0)
    sw_gi = np.bincount(group, w * g * intensity, n_groups)
    sw_gg = np.bincount(group, w * g * g, n_groups)
    rest_num = sw_gi[group] - w * g * intensity
    rest_den = sw_gg[group] - w * g * g
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (intensity - g * rest_num / rest_den) / np.sqrt(1.0 / w + g * g / rest_den)
    z[~active | ~(rest_den > 0)] = np.nan
    return z


def group_order(group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations sorted by reflection (index order within each) and where each reflection's
    run starts (length n_groups + 1): computed once per grouping, reused by :func:`reject`."""
    bounds = np.zeros(n_groups + 1, np.int64)
    np.cumsum(np.bincount(group, minlength=n_groups)[:n_groups], out=bounds[1:])
    return _counting_sort(np.ascontiguousarray(group, dtype=np.int64), bounds), bounds


@njit(cache=True)
def _counting_sort(group, bounds):  # pragma: no cover (numba)
    """A stable argsort of ``group`` (values 0 … n_groups − 1) in one pass."""
    nxt = bounds[:-1].copy()
    order = np.empty(len(group), np.int64)
    for i in range(len(group)):
        order[nxt[group[i]]] = i
        nxt[group[i]] += 1
    return order


@njit(cache=True)
def _reject_grouped(order, bounds, g, intensity, w, active, zmax, max_rounds):  # pragma: no cover (numba)
    """Per reflection: weights capped at 10 × the median of its active ones, then its worst
    observation beyond ``zmax`` rejected until none is (reflections are independent, so
    this is the round-by-round rejection done one reflection at a time)."""
    outlier = np.zeros(len(g), np.bool_)
    size = 1
    for j in range(len(bounds) - 1):
        size = max(size, bounds[j + 1] - bounds[j])
    rows = np.empty(size, np.int64)  # the reflection's active observations, gathered
    gi, ii, wi = np.empty(size), np.empty(size), np.empty(size)
    for j in range(len(bounds) - 1):
        m = 0
        for k in range(bounds[j], bounds[j + 1]):
            i = order[k]
            if active[i]:
                rows[m], gi[m], ii[m], wi[m] = i, g[i], intensity[i], w[i]
                m += 1
        if m < 3:
            continue
        s = np.sort(wi[:m])
        cap = 10.0 * 0.5 * (s[(m - 1) // 2] + s[m // 2])
        for k in range(m):
            wi[k] = min(wi[k], cap)
        for _ in range(max_rounds):
            if m < 3:
                break
            swgi, swgg = 0.0, 0.0
            for k in range(m):
                swgi += wi[k] * gi[k] * ii[k]
                swgg += wi[k] * gi[k] * gi[k]
            worst, worst_z = -1, -1.0
            for k in range(m):
                rest_den = swgg - wi[k] * gi[k] * gi[k]
                if not rest_den > 0:
                    continue
                rest_num = swgi - wi[k] * gi[k] * ii[k]
                z = abs((ii[k] - gi[k] * rest_num / rest_den) / math.sqrt(1.0 / wi[k] + gi[k] * gi[k] / rest_den))
                if z > worst_z:  # ties: the first
                    worst, worst_z = k, z
            if worst < 0 or not worst_z > zmax:
                break
            outlier[rows[worst]] = True
            for k in range(worst, m - 1):  # keep the others in index order
                rows[k], gi[k], ii[k], wi[k] = rows[k + 1], gi[k + 1], ii[k + 1], wi[k + 1]
            m -= 1
    return outlier


def reject(group, n_groups, g, intensity, variance, active, zmax: float = 6.0, max_rounds: int = 100,
           order=None):
    """Mask of outliers among the ``active`` observations (``variance`` with the error model);
    ``order`` is :func:`group_order` of ``group`` when the caller already has it."""
    order, bounds = group_order(group, n_groups) if order is None else order
    f = lambda x: np.ascontiguousarray(x, dtype=np.float64)  # noqa: E731
    with np.errstate(divide="ignore"):
        w = 1.0 / f(variance)
    return _reject_grouped(order, bounds, f(g), f(intensity), w, np.ascontiguousarray(active, dtype=np.bool_),
                           float(zmax), int(max_rounds))


__all__ = ["group_order", "limited_weights", "normalised_deviations", "reject"]
