"""Outlier rejection in scaling (dials.scale's ``standard`` method): each observation is
compared with the weighted mean of the other observations of its reflection,

    z = (I_l − g_l Ĩ_h,−l) / sqrt(σ_l² + g_l² σ²(Ĩ_h,−l)),

and per reflection the observation with the largest |z| beyond ``zmax`` is rejected;
repeated until no reflection has one (reflections with fewer than 3 observations are
not tested: with two, neither can be told to be the bad one)."""
from __future__ import annotations

import numpy as np


def normalised_deviations(group, n_groups, g, intensity, variance, active):
    """z of every active observation against the others of its reflection (NaN when alone)."""
    w = np.where(active, 1.0 / variance, 0.0)
    sw_gi = np.bincount(group, w * g * intensity, n_groups)
    sw_gg = np.bincount(group, w * g * g, n_groups)
    rest_num = sw_gi[group] - w * g * intensity
    rest_den = sw_gg[group] - w * g * g
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rest = rest_num / rest_den
        z = (intensity - g * mean_rest) / np.sqrt(variance + g * g / rest_den)
    z[~active | ~(rest_den > 0)] = np.nan
    return z


def reject(group, n_groups, g, intensity, variance, active, zmax: float = 6.0, max_rounds: int = 50):
    """Mask of outliers among the ``active`` observations."""
    active = active.copy()
    outlier = np.zeros(len(group), bool)
    for _ in range(max_rounds):
        counts = np.bincount(group, active.astype(np.int64), n_groups)
        tested = active & (counts[group] >= 3)
        z = np.abs(normalised_deviations(group, n_groups, g, intensity, variance, active))
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


__all__ = ["normalised_deviations", "reject"]
