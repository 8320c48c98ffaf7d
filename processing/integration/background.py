"""Shoebox background: DIALS's default robust Poisson GLM (constant model) and a plain mean.

``robust_poisson_mean`` is the M-estimator of ``dials.algorithms.background.glm``
(model ``constant3d``): a Poisson GLM with log link whose score uses Huber's ψ with
tuning constant c = 1.345 and is made Fisher-consistent by subtracting ψ's
expectation under the current Poisson mean (so outliers — neighbouring spots,
hot pixels, zingers — are down-weighted without biasing the mean). Started from the
median, iterated by Fisher scoring until the step in log μ is below 1e-3.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

BG_GLM = 0
BG_CONSTANT = 1
BACKGROUND_ALGORITHMS = {"glm": BG_GLM, "simple": BG_CONSTANT, "constant": BG_CONSTANT}

__all__ = ["BACKGROUND_ALGORITHMS", "robust_poisson_mean", "estimate_background"]


@njit(cache=True)
def _pois_pdf(mu, j):  # pragma: no cover (numba)
    if j < 0:
        return 0.0
    return math.exp(j * math.log(mu) - mu - math.lgamma(j + 1.0))


@njit(cache=True)
def _pois_cdf(mu, j):  # pragma: no cover (numba)
    """P(Y ≤ j), summed from where the pmf is negligible."""
    if j < 0:
        return 0.0
    start = max(0, int(mu - 12.0 * math.sqrt(mu) - 12.0))
    if j < start:
        return 0.0
    s = 0.0
    p = _pois_pdf(mu, start)
    for k in range(start, j + 1):
        s += p
        p *= mu / (k + 1.0)
    return min(s, 1.0)


@njit(cache=True)
def _huber(r, c):  # pragma: no cover (numba)
    if r > c:
        return c
    if r < -c:
        return -c
    return r


@njit(cache=True)
def robust_poisson_mean(y, n, c, tol, max_iter):  # pragma: no cover (numba)
    """Robust Poisson mean of ``y[:n]``; returns (mean, converged)."""
    if n == 0:
        return 0.0, False
    tmp = np.sort(y[:n])
    med = tmp[n // 2] if n % 2 == 1 else 0.5 * (tmp[n // 2 - 1] + tmp[n // 2])
    total = 0.0
    for i in range(n):
        total += y[i]
    if total <= 0.0:
        return 0.0, True
    # start from the larger of the median and the mean of the lowest 90 %
    m90 = max(1, int(0.9 * n))
    low = 0.0
    for i in range(m90):
        low += tmp[i]
    beta = math.log(max(med, low / m90, 1e-3))
    converged = False
    for it in range(max_iter):
        mu = math.exp(beta)
        svar = math.sqrt(mu)
        j1 = int(math.floor(mu - c * svar))
        j2 = int(math.floor(mu + c * svar))
        p1 = _pois_pdf(mu, j1)
        p2 = _pois_pdf(mu, j2)
        p3 = _pois_cdf(mu, j1)
        p4 = _pois_pdf(mu, j2 + 1)
        p5 = _pois_cdf(mu, j2 + 1)
        p6 = 1.0 - p5 + p4
        p7 = _pois_pdf(mu, j1 - 1)
        p8 = _pois_pdf(mu, j2 - 1)
        p9 = _pois_cdf(mu, j2 - 1)
        p10 = p9 - p3 + p1
        epsi1 = c * (p6 - p3) + (mu / svar) * (p1 - p2)
        epsi2 = c * (p1 + p2) + (mu * mu / (svar * svar * svar)) * (p10 / mu + p7 - p1 - p8 + p2)
        dmu = mu  # d mu / d eta for the log link
        b = epsi2 * dmu * dmu / svar
        U = 0.0
        for i in range(n):
            U += (_huber((y[i] - mu) / svar, c) - epsi1) * dmu / svar
        H = b * n
        if H <= 0.0:
            break
        step = U / H
        if step > 1.0:
            step = 1.0
        elif step < -1.0:
            step = -1.0
        beta += step
        if beta < -30.0:
            beta = -30.0
        if abs(step) / max(abs(beta), 1e-10) < tol or abs(step) < 1e-7:
            converged = True
            break
    return math.exp(beta), converged


@njit(cache=True)
def estimate_background(values, n, algorithm, c, max_iter):  # pragma: no cover (numba)
    """Background mean per pixel from the ``n`` background values; (mean, ok)."""
    if n == 0:
        return 0.0, False
    if algorithm == BG_CONSTANT:
        s = 0.0
        for i in range(n):
            s += values[i]
        return s / n, True
    return robust_poisson_mean(values, n, c, 1e-3, max_iter)
