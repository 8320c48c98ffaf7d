"""Centroid outlier rejection on X, Y, φ residuals, as DIALS's refinement does.

``algorithm="auto"`` is DIALS's default: MCD for rotation scans. The data are split
into jobs (per experiment; per panel when asked; φ blocks of about ``block_width``
degrees, DIALS's Auto = 18°); a job with fewer than ``minimum_number_of_reflections``
has all its reflections flagged, as DIALS does.

MCD: Mahalanobis distances from the FAST-MCD robust location and scatter
(Rousseeuw & van Driessen 1999; DIALS's FastMCD: α = 0.5, 500 trial subsets, two
concentration steps each, the best ten iterated to convergence; for large jobs the
trials run in up to five groups of ≥ 300), scaled by the normal-consistency and
finite-sample factors; outliers have d² above the χ²₃ quantile 0.975.
Tukey: outside [Q1 − k·IQR, Q3 + k·IQR] (k = 1.5) in any of the three columns.

``min_scatter`` (not in DIALS; 0 = DIALS) is a floor on the scatter, in the units of
the residuals: MCD uses S + diag(min_scatter²), Tukey an IQR of at least that of a
normal with σ = min_scatter. Centroid errors are a scale mixture (a strong spot's
centroid is ten times more precise than a weak one's); on very precise centroids the
robust scatter of the core is so small that the good weak spots in the tail would be
rejected wholesale (a quarter of a simulated sweep), while real outliers (zingers,
overlaps, misindexed spots) are off by pixels.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import chi2

ALGORITHMS = ("auto", "mcd", "tukey", "null")


def tukey(data: np.ndarray, iqr_multiplier: float = 1.5, min_scatter=0.0) -> np.ndarray:
    q1, q3 = np.percentile(data, [25, 75], axis=0)
    iqr = np.sqrt((q3 - q1) ** 2 + (1.349 * np.asarray(min_scatter, float)) ** 2)
    lo, hi = q1 - iqr_multiplier * iqr, q3 + iqr_multiplier * iqr
    return np.any((data < lo) | (data > hi), axis=1)


def _mean_cov(X, idx):
    """Means (T×p) and covariances (T×p×p) of row subsets idx (T×h)."""
    S = X[idx]
    mu = S.mean(axis=1)
    d = S - mu[:, None, :]
    cov = np.einsum("thi,thj->tij", d, d) / (idx.shape[1] - 1)
    return mu, cov


def _maha(X, mu, cov):
    """Squared Mahalanobis distances of all rows for T estimates → T×n."""
    inv = np.linalg.pinv(cov)
    d = X[None, :, :] - mu[:, None, :]
    return np.einsum("tni,tij,tnj->tn", d, inv, d)


def _csteps(X, mu, cov, h, k):
    for _ in range(k):
        d2 = _maha(X, mu, cov)
        idx = np.argpartition(d2, h - 1, axis=1)[:, :h]
        mu, cov = _mean_cov(X, idx)
    return mu, cov


def _logdet(cov):
    sign, ld = np.linalg.slogdet(cov)
    return np.where(sign > 0, ld, np.inf)


def _finite_sample(p: int, n: int, alpha: float) -> float:
    """Pison et al. (2002) finite-sample factor, as DIALS's mcd_finite_sample."""
    if p > 2:
        c500 = [(-1.42764571687802, 1.26263336932151, 2), (-1.06141115981725, 1.28907991440387, 3)]
        c875 = [(-0.455179464070565, 1.11192541278794, 2), (-0.294241208320834, 1.09649329149811, 3)]

        def fit(coef):
            y = [math.log(-c[0] / p ** c[1]) for c in coef]
            A = np.array([[1.0, -math.log(c[2] * p * p)] for c in coef])
            return np.linalg.solve(A, y)

        a5, a8 = fit(c500), fit(c875)
        f500 = 1 - math.exp(a5[0]) / n ** a5[1]
        f875 = 1 - math.exp(a8[0]) / n ** a8[1]
    elif p == 2:
        f500 = 1 - math.exp(0.673292623522027) / n ** 0.691365864961895
        f875 = 1 - math.exp(0.446537815635445) / n ** 1.06690782995919
    else:
        f500 = 1 - math.exp(0.262024211897096) / n ** 0.604756680630497
        f875 = 1 - math.exp(-0.351584646688712) / n ** 1.01646567502486
    if alpha <= 0.875:
        f = f500 + (f875 - f500) / 0.375 * (alpha - 0.5)
    else:
        f = f875 + (1 - f875) / 0.125 * (alpha - 0.875)
    return 1.0 / f


def fast_mcd(X: np.ndarray, alpha: float = 0.5, n_trials: int = 500, k1: int = 2, k3: int = 100,
             min_group_size: int = 300, max_n_groups: int = 5, seed: int = 0):
    """Corrected MCD location and scatter of X (n×p)."""
    X = np.asarray(X, float)
    n, p = X.shape
    n2 = (n + p + 1) // 2
    h = int(math.floor(2 * n2 - n + 2 * (n - n2) * alpha))
    h = min(max(h, p + 1), n - 1)
    rng = np.random.default_rng(seed)
    # trials: random (p+1)-subsets, enlarged to h by two C-steps (on a subsample if large)
    if n >= 2 * min_group_size:
        ngroups = min(max_n_groups, n // min_group_size)
        sub = rng.choice(n, size=min(n, ngroups * min_group_size), replace=False)
        Xs = X[sub]
    else:
        Xs = X
    ns = len(Xs)
    hs = min(max(int(round(h * ns / n)), p + 1), ns - 1)
    idx = np.argsort(rng.random((n_trials, ns)), axis=1)[:, : p + 1]
    mu, cov = _mean_cov(Xs, idx)
    mu, cov = _csteps(Xs, mu, cov, hs, k1)
    best = np.argsort(_logdet(cov))[:10]
    mu, cov = _csteps(X, mu[best], cov[best], h, 2)
    ld = _logdet(cov)
    for _ in range(k3):  # iterate the best to convergence
        j = int(np.argmin(ld))
        m1, c1 = _csteps(X, mu[j:j + 1], cov[j:j + 1], h, 1)
        ld1 = _logdet(c1)[0]
        mu[j], cov[j] = m1[0], c1[0]
        if not ld1 < ld[j] - 1e-12:
            ld[j] = ld1
            break
        ld[j] = ld1
    j = int(np.argmin(ld))
    T, S = mu[j], cov[j]
    consistency = (h / n) / chi2.cdf(chi2.ppf(h / n, p), p + 2)
    return T, S * consistency * _finite_sample(p, n, alpha)


def mcd_outliers(data: np.ndarray, threshold_probability: float = 0.975, seed: int = 0,
                 min_scatter=0.0) -> np.ndarray:
    T, S = fast_mcd(data, seed=seed)
    S = S + np.diag(np.broadcast_to(np.asarray(min_scatter, float), (data.shape[1],)) ** 2)
    d2 = _maha(data, T[None], S[None])[0]
    return d2 > chi2.ppf(threshold_probability, data.shape[1])


def detect_outliers(residuals: np.ndarray, experiment: np.ndarray, phi: np.ndarray, panel: np.ndarray,
                    algorithm: str = "auto", block_width: float | None = 18.0,
                    minimum_number_of_reflections: int = 20, separate_panels: bool = False,
                    iqr_multiplier: float = 1.5, threshold_probability: float = 0.975,
                    seed: int = 42, min_scatter=0.0) -> tuple[np.ndarray, list[dict]]:
    """Outlier mask for residuals (N×3, e.g. X mm, Y mm, φ rad; ``min_scatter`` in the
    same units) and one row per job."""
    n = len(residuals)
    out = np.zeros(n, dtype=bool)
    jobs = []
    if algorithm == "null" or n == 0:
        return out, jobs
    algo = "mcd" if algorithm == "auto" else algorithm
    keys = [experiment] + ([panel] if separate_panels else [])
    groups = {}
    for i, key in enumerate(zip(*[np.asarray(k).tolist() for k in keys])):
        groups.setdefault(key, []).append(i)
    for key, rows in sorted(groups.items()):
        rows = np.asarray(rows)
        blocks = [rows]
        if block_width:
            ph = phi[rows]
            lo, span = ph.min(), ph.max() - ph.min()
            nb = max(1, int(round(math.degrees(span) / block_width))) if span > 0 else 1
            if nb > 1:
                edges = lo + span * np.arange(1, nb) / nb
                which = np.searchsorted(edges, ph, side="right")
                blocks = [rows[which == b] for b in range(nb)]
        for b in blocks:
            if len(b) == 0:
                continue
            if len(b) < minimum_number_of_reflections:
                flag = np.ones(len(b), bool)
            elif algo == "tukey":
                flag = tukey(residuals[b], iqr_multiplier, min_scatter)
            else:
                flag = mcd_outliers(residuals[b], threshold_probability, seed=seed, min_scatter=min_scatter)
            out[b] = flag
            jobs.append({"experiment": int(key[0]), "panel": int(key[1]) if separate_panels else None,
                         "phi_start_deg": float(np.degrees(phi[b].min())),
                         "phi_end_deg": float(np.degrees(phi[b].max())),
                         "nref": int(len(b)), "nout": int(flag.sum())})
    return out, jobs
