"""Outlier rejection in scaling (dials.scale's ``standard`` method): each observation is
compared with the weighted mean of the other observations of its reflection,

    z = (I_l − g_l Ĩ_h,−l) / sqrt(1/w_l + g_l² / Σ_{m≠l} w_m g_m²),

w = 1/σ'² (with the error model when there is one) capped at 10 × the median weight of
the reflection, so that one very precise observation cannot pull the mean onto itself;
per reflection the observation with the largest |z| beyond ``zmax`` is rejected,
repeated until no reflection has one (reflections with fewer than 3 observations are
not tested: with two, neither can be told to be the bad one)."""
from __future__ import annotations

import numpy as np


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


def reject(group, n_groups, g, intensity, variance, active, zmax: float = 6.0, max_rounds: int = 100):
    """Mask of outliers among the ``active`` observations (``variance`` with the error model)."""
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
        # one per reflection (ties: the first)
        idx = np.flatnonzero(bad)
        _, first = np.unique(group[idx], return_index=True)
        idx = idx[first]
        outlier[idx] = True
        active[idx] = False
    return outlier


__all__ = ["limited_weights", "normalised_deviations", "reject"]
