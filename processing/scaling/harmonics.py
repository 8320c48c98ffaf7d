"""Real spherical harmonics Y_lm (l = 1 … lmax) of unit vectors, for the absorption surface."""
from __future__ import annotations

import numpy as np
from scipy.special import lpmv


def n_terms(lmax: int) -> int:
    """Coefficients of a surface of orders 1 … lmax: Σ (2l + 1) = (lmax + 1)² − 1."""
    return (lmax + 1) ** 2 - 1


def real_harmonics(v: np.ndarray, lmax: int) -> np.ndarray:
    """(n, (lmax+1)²−1) orthonormal real Y_lm of unit vectors ``v`` (n, 3), ordered
    l = 1 … lmax, m = −l … l (m < 0: sine terms, m > 0: cosine terms)."""
    v = np.asarray(v, float)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos_t = np.clip(v[:, 2], -1.0, 1.0)
    phi = np.arctan2(v[:, 1], v[:, 0])
    out = np.empty((len(v), n_terms(lmax)))
    col = 0
    for l in range(1, lmax + 1):
        for m in range(-l, l + 1):
            am = abs(m)
            # normalisation with the Condon–Shortley phase of lpmv removed
            norm = np.sqrt((2 * l + 1) / (4 * np.pi) * _fact_ratio(l, am)) * (-1) ** am
            p = lpmv(am, l, cos_t) * norm
            if m == 0:
                out[:, col] = p
            elif m > 0:
                out[:, col] = np.sqrt(2) * p * np.cos(am * phi)
            else:
                out[:, col] = np.sqrt(2) * p * np.sin(am * phi)
            col += 1
    return out


def _fact_ratio(l: int, m: int) -> float:
    """(l − m)! / (l + m)!"""
    r = 1.0
    for k in range(l - m + 1, l + m + 1):
        r /= k
    return r


__all__ = ["n_terms", "real_harmonics"]
