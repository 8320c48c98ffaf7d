"""Refinement of the data sets' models against the merged intensities.

Target (Hamilton, Rollett & Sparks 1965, as dials.scale): Σ w (I − g Ĩ_h)² + restraints,
Ĩ_h = Σ w g I / Σ w g² the current best estimate of reflection h, w = 1/σ². With Ĩ at its
least-squares value the gradient with Ĩ held fixed is the exact gradient, so each
cycle recomputes Ĩ and takes one Levenberg–Marquardt step per data set on the full
normal matrix of that data set's parameters (the matrix is block diagonal by data set
when Ĩ is held: time and memory grow linearly with the data sets). The overall scale
and B, which the target cannot fix, are held at mean scale 1 and mean B 0 over the
observations (unless a reference or earlier scaled data sets fix them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def merged_estimate(group: np.ndarray, n_groups: int, g: np.ndarray, intensity: np.ndarray, w: np.ndarray):
    """(Ĩ_h, Σ w g²) per group from the observations given (intensity unscaled, w = 1/σ²)."""
    num = np.bincount(group, w * g * intensity, n_groups)
    den = np.bincount(group, w * g * g, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan), den


@dataclass
class Fit:
    """One data set's part of the minimisation."""

    model: object
    basis: object
    #: positions (within the data set's observations) of the rows used in the fit
    use: np.ndarray
    mu: float = 1e-3


def _objective(model, fit: Fit, intensity, w, target, restraint, p=None):
    if p is not None:
        model.parameters = p
    g = model.value(fit.basis)[fit.use]
    r = intensity - g * target
    return float(np.sum(w * r * r) + np.sum(restraint * model.parameters ** 2))


def step(fit: Fit, intensity: np.ndarray, w: np.ndarray, target: np.ndarray, restraint: np.ndarray) -> float:
    """One Levenberg–Marquardt step of one data set with Ĩ held (``target`` per fitted row);
    returns the target's value after the step."""
    model = fit.model
    p0 = model.parameters
    g, J = model.jacobian(fit.basis)
    g, J = g[fit.use], J[fit.use]
    r = intensity - g * target
    A = J * target[:, None]  # −∂r/∂p
    N = (A * w[:, None]).T @ A + np.diag(restraint)
    rhs = A.T @ (w * r) - restraint * p0
    f0 = float(np.sum(w * r * r) + np.sum(restraint * p0 ** 2))
    diag = np.maximum(np.diag(N), 1e-12)
    for _ in range(8):
        try:
            dp = np.linalg.solve(N + fit.mu * np.diag(diag), rhs)
        except np.linalg.LinAlgError:
            fit.mu *= 10
            continue
        f1 = _objective(model, fit, intensity, w, target, restraint, p0 + dp)
        if np.isfinite(f1) and f1 <= f0:
            fit.mu = max(fit.mu / 3, 1e-7)
            return f1
        fit.mu *= 10
    model.parameters = p0
    return f0


def covariance(fit: Fit, intensity, w, target, restraint) -> np.ndarray:
    """Covariance of one data set's parameters: the inverse of the normal matrix."""
    _, J = fit.model.jacobian(fit.basis)
    A = J[fit.use] * target[:, None]
    N = (A * w[:, None]).T @ A + np.diag(restraint)
    try:
        return np.linalg.inv(N)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(N)


__all__ = ["Fit", "covariance", "merged_estimate", "step"]
