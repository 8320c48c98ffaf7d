"""The basic error model of dials.scale: σ'² = a² (σ² + (b·I)²), I the scaled mean of the
observation's reflection, refined so that the normalised deviations

    δ_hl = sqrt((n_h − 1)/n_h) · (I_hl − Ĩ_h) / σ'_hl        (scaled units)

have variance 1 at every intensity: (a, b) minimise Σ_bins n_bin (1 − var_bin δ)² over
bins of equal counts in Ĩ_h, var_bin the robust variance (1.4826 · median absolute
deviation)², so that outliers do not widen σ'. Reflections with fewer than 2 observations do not count;
fewer than 250 deviations (DIALS's minimum) leave σ as it is."""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

MIN_REFLECTIONS = 250
N_BINS = 20


def deviations(group, n_groups, intensity, variance, a=1.0, b=0.0, mean=None):
    """δ of every observation (scaled intensity and variance), and the reflections' means."""
    w = 1.0 / variance
    n = np.bincount(group, minlength=n_groups)
    if mean is None:
        mean = np.bincount(group, w * intensity, n_groups) / np.maximum(np.bincount(group, w, n_groups), 1e-300)
    m = mean[group]
    var_prime = a * a * (variance + (b * m) ** 2)
    nh = n[group]
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.sqrt((nh - 1) / nh) * (intensity - m) / np.sqrt(var_prime)
    delta[nh < 2] = np.nan
    return delta, mean


def refine_error_model(group, n_groups, intensity, variance) -> dict:
    """``{"a", "b", "n", "refined", "bins"}`` for scaled intensities and variances."""
    w = 1.0 / variance
    mean = np.bincount(group, w * intensity, n_groups) / np.maximum(np.bincount(group, w, n_groups), 1e-300)
    n = np.bincount(group, minlength=n_groups)
    use = n[group] >= 2
    if use.sum() < MIN_REFLECTIONS:
        return {"a": 1.0, "b": 0.0, "n": int(use.sum()), "refined": False,
                "reason": f"too few reflections ({int(use.sum())} < {MIN_REFLECTIONS}) to refine the error model"}
    g, i, v = group[use], intensity[use], variance[use]
    m = mean[g]
    order = np.argsort(m, kind="stable")
    bins = np.empty(len(m), np.int64)
    bins[order] = np.arange(len(m)) * N_BINS // len(m)
    nb = np.bincount(bins, minlength=N_BINS)
    shrink = np.sqrt((n[g] - 1) / n[g])

    by_bin = np.argsort(bins, kind="stable")
    edges = np.searchsorted(bins[by_bin], np.arange(N_BINS + 1))

    def variances(x):
        """Robust variance of δ per bin, (1.4826 · MAD)², so that outliers not yet
        rejected do not inflate σ' (and the rejection then misses them)."""
        a, b = x
        d = (shrink * (i - m) / np.sqrt(a * a * (v + (b * m) ** 2)))[by_bin]
        out = np.ones(N_BINS)
        for k in range(N_BINS):
            chunk = d[edges[k]:edges[k + 1]]
            if len(chunk) > 1:
                out[k] = (1.4826 * np.median(np.abs(chunk - np.median(chunk)))) ** 2
        return out

    def residuals(x):
        return np.sqrt(nb) * (1.0 - variances(x))

    fit = least_squares(residuals, x0=[1.0, 0.02], bounds=([0.05, 0.0], [20.0, 1.0]))
    a, b = (float(x) for x in fit.x)
    bins_out = [{"mean_intensity": float(np.mean(m[bins == k])) if nb[k] else None,
                 "variance_before": float(x0), "variance_after": float(x1), "n": int(nb[k])}
                for k, (x0, x1) in enumerate(zip(variances([1.0, 0.0]), variances([a, b])))]
    return {"a": a, "b": b, "n": int(use.sum()), "refined": True, "bins": bins_out}


def apply(variance: np.ndarray, scaled_mean: np.ndarray, a: float, b: float) -> np.ndarray:
    """σ'² = a² (σ² + (b·Ĩ)²) (scaled units)."""
    return a * a * (variance + (b * scaled_mean) ** 2)


__all__ = ["apply", "deviations", "refine_error_model"]
