"""Summation integration (DIALS's ``Summation``): I = Σ_fg (c − B), with Poisson variance

    V = |I| + |B_sum| (1 + n_fg / n_bg),

where B_sum = n_fg·B is the background under the foreground and the factor
(1 + n_fg/n_bg) adds the error of the background mean estimated from n_bg pixels.
The centroid of the integrated shoebox is the (c − B)-weighted mean voxel centre;
its variance is the spread divided by the summed weight (the error of the mean).
"""
from __future__ import annotations

from numba import njit

__all__ = ["summation", "centroid_finish"]


@njit(cache=True)
def summation(sum_counts, n_fg, B, n_bg):  # pragma: no cover (numba)
    """(I, variance, background sum, background variance) for one shoebox."""
    bsum = B * n_fg
    I = sum_counts - bsum
    m_n = n_fg / n_bg if n_bg > 0 else 0.0
    bvar = abs(bsum) * (1.0 + m_n)
    return I, abs(I) + bvar, bsum, bvar


@njit(cache=True)
def centroid_finish(sw, swx, swy, swz, swxx, swyy, swzz, default):  # pragma: no cover (numba)
    """Centroid (x, y, z) and variances from weighted sums; ``default`` if Σw ≤ 0."""
    if sw <= 0.0:
        return default[0], default[1], default[2], 0.0, 0.0, 0.0, False
    cx = swx / sw
    cy = swy / sw
    cz = swz / sw
    vx = max(swxx / sw - cx * cx, 1.0 / 12.0) / sw
    vy = max(swyy / sw - cy * cy, 1.0 / 12.0) / sw
    vz = max(swzz / sw - cz * cz, 1.0 / 12.0) / sw
    return cx, cy, cz, vx, vy, vz, True
