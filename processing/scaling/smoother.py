"""Smooth functions of rotation angle: a few parameters at evenly spaced angles, values
in between a normalised Gaussian-weighted mean of the nearest parameters (as DIALS's
GaussianSmoother for the physical model's scale and decay terms)."""
from __future__ import annotations

import numpy as np

#: Gaussian width in units of the parameter spacing, and the reach in spacings
WIDTH = 0.65
REACH = 1.5


def n_parameters(angle_range: float, interval: float) -> int:
    """How many parameters span ``angle_range`` (deg) at ``interval`` (deg) spacing, as
    dials.scale counts them: 2 within one interval, 3 within two, otherwise one per
    interval (at least 3) and one more beyond each end."""
    width = abs(angle_range)
    interval += 1e-5
    if width <= interval:
        return 2
    if width < 2 * interval:
        return 3
    return max(int(width / interval) + 1, 3) + 2


def positions(lo: float, hi: float, n: int) -> np.ndarray:
    """Angles (deg) of ``n`` parameters over the rotation range [lo, hi]."""
    if n <= 3:
        return np.linspace(lo, hi, n)
    spacing = (hi - lo) / (n - 2)
    return lo - 0.5 * spacing + spacing * np.arange(n)


def weights(phi: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(n_obs, n_param) normalised weights: value(φ) = weights @ parameters."""
    if len(at) == 1:
        return np.ones((len(phi), 1))
    spacing = float(np.min(np.diff(at))) or 1.0
    x = (np.asarray(phi, float)[:, None] - at[None, :]) / spacing
    w = np.exp(-0.5 * (x / WIDTH) ** 2)
    w[np.abs(x) > REACH] = 0.0
    # beyond the ends only the end parameter is left in reach: keep the nearest always
    nearest = np.argmin(np.abs(x), axis=1)
    w[np.arange(len(phi)), nearest] = np.maximum(w[np.arange(len(phi)), nearest], 1e-12)
    return w / w.sum(axis=1, keepdims=True)


__all__ = ["n_parameters", "positions", "weights"]
