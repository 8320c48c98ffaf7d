"""Levenberg–Marquardt least squares on a sparse Jacobian (DIALS's LevMarIterations).

Minimises f(x) = ½·Σ rᵢ(x)² where ``fun(x)`` returns the weighted residuals r and
the Jacobian J (scipy.sparse or dense). The normal matrix N = JᵀJ is formed sparse;
it is small (parameters, not observations) and is solved dense by Cholesky up to a
few thousand parameters, with scipy.sparse.linalg beyond. Damping follows DIALS:
μ₀ = τ·max(diag N) with τ = 10⁻³, Nielsen's update of μ on accepted steps and
μ ← μ·ν, ν ← 2ν on rejected ones. Termination: RMSDs converged (relative change
< 10⁻⁴ between two iterations, as DIALS, and every shift below 5 % of its e.s.d.), a negligible step, or ``max_iterations``. The
parameter covariance is N⁻¹ times the reduced χ² at the solution, as DIALS.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

DENSE_LIMIT = 3000


@dataclass
class LMResult:
    x: np.ndarray
    n_iterations: int
    reason: str
    objective: float
    covariance: np.ndarray | None
    reduced_chi_squared: float
    history: list = field(default_factory=list)


def _normal(J, r):
    if sp.issparse(J):
        N = (J.T @ J).tocsr()
        g = J.T @ r
    else:
        N = J.T @ J
        g = J.T @ r
    return N, np.asarray(g).ravel()


def _solve(N, mu, rhs):
    n = N.shape[0]
    if n <= DENSE_LIMIT:
        M = N.toarray() if sp.issparse(N) else np.array(N)
        M[np.diag_indices(n)] += mu
        try:
            c = scipy.linalg.cho_factor(M, check_finite=False)
            return scipy.linalg.cho_solve(c, rhs, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            return np.linalg.lstsq(M, rhs, rcond=None)[0]
    M = (N + mu * sp.identity(n, format="csr")).tocsc()
    return spla.spsolve(M, rhs)


def _small_shift(N, h, chi2, limit=0.05):
    """Every parameter's last shift is below ``limit`` of its e.s.d.: RMSDs can stall in
    a flat valley of correlated parameters (e.g. detector tilt vs crystal orientation)
    while the parameters still move, so RMSD convergence alone is not trusted."""
    if N.shape[0] > DENSE_LIMIT:
        return True
    cov = covariance_from_normal(N, chi2)
    esd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    return bool(np.all(np.abs(h) <= limit * esd))


def covariance_from_normal(N, chi2: float) -> np.ndarray | None:
    M = N.toarray() if sp.issparse(N) else np.asarray(N)
    try:
        c = scipy.linalg.cho_factor(M, check_finite=False)
        inv = scipy.linalg.cho_solve(c, np.eye(len(M)), check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        inv = np.linalg.pinv(M)
    return inv * chi2


def levenberg_marquardt(fun, x0, rmsds=None, max_iterations: int = 100, tau: float = 1e-3,
                        callback=None) -> LMResult:
    """Minimise ½‖r(x)‖². ``fun(x, jacobian: bool) -> (r, J)``; ``rmsds(x) -> array``
    (optional) drives DIALS's RMSD-convergence test."""
    x = np.asarray(x0, dtype=float).copy()
    n = len(x)
    r, J = fun(x, True)
    m = len(r)
    history = []
    if n == 0 or m <= n:
        chi2 = float(r @ r) / max(m - n, 1)
        return LMResult(x, 0, "no degrees of freedom" if n else "no free parameters",
                        0.5 * float(r @ r), None, chi2, history)
    N, g = _normal(J, r)
    diag = N.diagonal()
    if np.any(diag == 0):
        bad = np.nonzero(diag == 0)[0]
        raise np.linalg.LinAlgError(f"indeterminate parameters (zero gradient): columns {bad.tolist()}")
    f = 0.5 * float(r @ r)
    mu = tau * float(diag.max())
    nu = 2.0
    it = 0
    reason = "maximum iterations"
    prev_rmsd = rmsds(x) if rmsds else None
    history.append({"iteration": 0, "objective": f, "rmsd": None if prev_rmsd is None else list(map(float, prev_rmsd))})
    while True:
        if it >= max_iterations:
            reason = "maximum iterations"
            break
        h = _solve(N, mu, -g)
        if not np.all(np.isfinite(h)):
            reason = "singular normal matrix"
            break
        if np.linalg.norm(h) <= 1e-12 * (np.linalg.norm(x) + 1e-12):
            reason = "step too small"
            break
        expected = 0.5 * float(h @ (mu * h - g))
        if expected <= 0:
            reason = "objective flat"
            break
        x_new = x + h
        r_new, J_new = fun(x_new, True)
        f_new = 0.5 * float(r_new @ r_new) if np.all(np.isfinite(r_new)) else np.inf
        rho = (f - f_new) / expected
        if rho > 0 and np.isfinite(f_new):
            x, r, J, f = x_new, r_new, J_new, f_new
            N, g = _normal(J, r)
            mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
            it += 1
            cur = rmsds(x) if rmsds else None
            history.append({"iteration": it, "objective": f, "mu": mu,
                            "rmsd": None if cur is None else list(map(float, cur))})
            if callback:
                callback(it, f)
            if cur is not None and prev_rmsd is not None:
                rel = [abs((b - a) / b) < 1e-4 if b > 0 else True for a, b in zip(cur, prev_rmsd)]
                if all(rel) and _small_shift(N, h, 2.0 * f / (m - n)):
                    reason = "RMSD no longer decreasing"
                    break
            prev_rmsd = cur
        else:
            if nu >= 8192:
                reason = "maximum trial iterations"
                break
            mu *= nu
            nu *= 2.0
    chi2 = 2.0 * f / (m - n)
    cov = covariance_from_normal(N, chi2)
    return LMResult(x, it, reason, f, cov, chi2, history)
