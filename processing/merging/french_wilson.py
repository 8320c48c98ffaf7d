"""Amplitudes from merged intensities: French & Wilson (1978), Acta Cryst. A34, 517.

F and σF are the posterior mean and standard deviation of |F| = √J given the measured
I, σ(I) and a Wilson prior on the true intensity J ≥ 0 with mean Σ = ε·⟨I/ε⟩(d):
acentric p(J) = exp(−J/Σ)/Σ, centric p(J) = exp(−J/2Σ)/√(2πΣJ). The moments are
integrated numerically on a grid in F (J = F², so the centric J^−½ is absorbed by dJ = 2F dF).
"""
from __future__ import annotations

import numpy as np

#: reflections with I/σ(I) below this are rejected (F = NaN), as ctruncate and cctbx do
MIN_I_OVER_SIGMA = -4.0
_N_GRID = 129
_CHUNK = 16384
_SIMPSON = np.ones(_N_GRID)  # Simpson's rule weights (the common factor h/3 cancels)
_SIMPSON[1:-1:2], _SIMPSON[2:-1:2] = 4.0, 2.0


def _equal_count_bins(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin number (0…n−1) of each value, bins holding equal numbers of values."""
    order = np.argsort(x, kind="stable")
    b = np.empty(len(x), dtype=np.int64)
    b[order] = (np.arange(len(x)) * n_bins) // max(len(x), 1)
    return b


def wilson_prior(intensity, d, epsilon=None, n_bins: int = 20, min_per_bin: int = 40) -> np.ndarray:
    """Expected intensity Σ = ε·⟨I/ε⟩ of each reflection (same units as I).

    ⟨I/ε⟩ is averaged in up to ``n_bins`` equal-count resolution bins in 1/d² (at least
    ``min_per_bin`` reflections each) and interpolated linearly in 1/d² between bin
    centres; a bin whose mean is not positive gets a small positive floor. NaN intensities
    are ignored; every reflection gets a prior.
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    s2 = 1.0 / np.asarray(d, dtype=np.float64) ** 2
    eps = np.ones_like(intensity) if epsilon is None else np.asarray(epsilon, dtype=np.float64)
    ok = np.isfinite(intensity) & np.isfinite(s2)
    if not ok.any():
        return np.full(len(intensity), np.nan)
    x, y = s2[ok], intensity[ok] / eps[ok]
    nb = int(max(1, min(n_bins, ok.sum() // min_per_bin)))
    b = _equal_count_bins(x, nb)
    cnt = np.bincount(b, minlength=nb)
    xm = np.bincount(b, weights=x, minlength=nb) / cnt
    ym = np.bincount(b, weights=y, minlength=nb) / cnt
    scale = np.abs(y).mean() if np.abs(y).mean() > 0 else 1.0
    ym = np.maximum(ym, 1e-3 * max(ym.max(), 0.0) + 1e-6 * scale)
    return eps * np.interp(s2, xm, ym)


def _posterior_moments(i, s, mu, acentric):
    """E[F], E[F²] for one chunk; mu = I − σ²/Σ (acentric) or I − σ²/2Σ (centric)."""
    j_lo = np.maximum(0.0, mu - 10.0 * s)
    with np.errstate(divide="ignore"):
        j_hi = np.where(mu >= 0, mu + 10.0 * s, np.minimum(10.0 * s, 20.0 * s * s / np.abs(mu)))
    f_lo, f_hi = np.sqrt(j_lo), np.sqrt(j_hi)
    t = np.linspace(0.0, 1.0, _N_GRID)
    f = f_lo[:, None] + (f_hi - f_lo)[:, None] * t[None, :]
    z = (f * f - mu[:, None]) / s[:, None]
    logp = -0.5 * z * z
    with np.errstate(divide="ignore"):
        logp = logp + np.where(acentric[:, None], np.log(f), 0.0)
    p = np.exp(logp - logp.max(axis=1, keepdims=True)) * _SIMPSON[None, :]
    norm = p.sum(axis=1)
    e1 = (p * f).sum(axis=1) / norm
    e2 = (p * f * f).sum(axis=1) / norm
    return e1, e2


def french_wilson(intensity, sigma, d, centric, n_bins: int = 20, epsilon=None, prior=None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """French–Wilson amplitudes (F, σF) from merged intensities.

    intensity, sigma: merged I and σ(I); d: resolution (Å); centric: bool per reflection;
    epsilon: statistical weight ε (default 1); prior: Σ per reflection (default
    :func:`wilson_prior` of these intensities with ``n_bins``). F is NaN where I or σ is
    NaN, σ ≤ 0 or I/σ < −4.
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    centric = np.asarray(centric, dtype=bool)
    if prior is None:
        prior = wilson_prior(intensity, d, epsilon=epsilon, n_bins=n_bins)
    prior = np.asarray(prior, dtype=np.float64)
    f = np.full(len(intensity), np.nan)
    sf = np.full(len(intensity), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (np.isfinite(intensity) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(prior)
              & (prior > 0) & (intensity / sigma >= MIN_I_OVER_SIGMA))
    idx = np.flatnonzero(ok)
    for start in range(0, len(idx), _CHUNK):
        sel = idx[start:start + _CHUNK]
        i, s, big_s, c = intensity[sel], sigma[sel], prior[sel], centric[sel]
        mu = i - s * s / np.where(c, 2.0 * big_s, big_s)
        e1, e2 = _posterior_moments(i, s, mu, ~c)
        f[sel] = e1
        sf[sel] = np.sqrt(np.maximum(e2 - e1 * e1, 0.0))
    return f, sf


__all__ = ["french_wilson", "wilson_prior", "MIN_I_OVER_SIGMA"]
