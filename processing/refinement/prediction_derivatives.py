"""Rotation-scan prediction of X, Y (mm) and φ (rad) with analytic derivatives.

For an indexed reflection h of a crystal A = U·B on a goniometer (S setting, F fixed
rotation, unit axis e in the datum frame), r(φ) = S·R(e, φ)·F·A·h and s1 = s0 + r
must satisfy |s1| = |s0|. The observed positions are the ray–panel intersections:
with the panel matrix D = (d1 | d2 | d0), v = D⁻¹·s1 and X = v₀/v₂, Y = v₁/v₂.

Derivatives for a parameter p (as DIALS's XYPhiPredictionParameterisation): with
m2 = S·e the lab rotation axis,

    ∂r/∂p|φ = S·R(φ)·F·∂A/∂p·h                       (crystal)
    ∂φ/∂p   = −(r·∂s0/∂p + s1·∂r/∂p|φ) / ((m2 × r)·s1)
    ∂s1/∂p  = ∂s0/∂p + ∂r/∂p|φ + (m2 × r)·∂φ/∂p
    ∂v/∂p   = D⁻¹·(∂s1/∂p − ∂D/∂p·v)
    ∂X/∂p   = (∂v₀ − X·∂v₂)/v₂,  ∂Y/∂p = (∂v₁ − Y·∂v₂)/v₂.
"""
from __future__ import annotations

import math

import numpy as np

from ..models import Goniometer

TWO_PI = 2.0 * math.pi


def _wrap(x):
    return (x + math.pi) % TWO_PI - math.pi


def _rodrigues(v, e, phi):
    c = np.cos(phi)[:, None]
    s = np.sin(phi)[:, None]
    par = (v @ e)[:, None] * e
    return par + c * (v - par) + s * np.cross(e, v)


def rotation_matrices(e, phi):
    """R(e, φ) for many φ (N×3×3)."""
    x, y, z = e
    K = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    c, s = np.cos(phi)[:, None, None], np.sin(phi)[:, None, None]
    return np.eye(3) + s * K + (1.0 - c) * (K @ K)


def predict(h, phi_obs, panel, s0, D, A, goniometer: Goniometer, entering=None) -> dict:
    """Predict X, Y (mm), φ (rad) for indices h (N×3).

    ``A`` is 3×3 or N×3×3 (scan-varying); ``D`` npanel×3×3 panel matrices; ``panel``
    the panel of each observation (prediction is on that panel's plane). Of the two
    Ewald crossings the one with the reflection's ``entering`` flag is used (the
    nearer to the observed φ when no flags are given), unwrapped to within π of the
    observed φ. Returns a dict: ``xyz`` (N×3), ``s1``, ``r``, ``v``, ``valid``,
    ``M`` (S·R(φ)·F, N×3×3), ``Dinv`` (N×3×3) and ``m2``.
    """
    h = np.asarray(h, dtype=float)
    n = len(h)
    S, F = goniometer.setting_rotation, goniometer.fixed_rotation
    e = goniometer.rotation_axis / np.linalg.norm(goniometer.rotation_axis)
    m2 = S @ e
    s0 = np.asarray(s0, float)
    s0p = S.T @ s0
    if A.ndim == 2:
        r0 = h @ (F @ A).T
    else:
        r0 = np.einsum("ij,njk,nk->ni", F, A, h)
    rpar = (r0 @ e)[:, None] * e
    a = (r0 - rpar) @ s0p
    b = np.cross(e, r0) @ s0p
    c = -(0.5 * np.einsum("ij,ij->i", r0, r0) + rpar @ s0p)
    rho = np.hypot(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = c / rho
    valid = (rho > 0) & (np.abs(ratio) <= 1.0)
    base = np.arctan2(b, a)
    delta = np.arccos(np.clip(ratio, -1.0, 1.0))
    phi1, phi2 = base + delta, base - delta
    phi_obs = np.asarray(phi_obs, float)
    if entering is not None:
        s1a = (s0p + _rodrigues(r0, e, phi1)) @ S.T
        ent1 = s1a @ np.cross(s0, m2) < 0.0
        use1 = ent1 == np.asarray(entering, bool)
    else:
        use1 = np.abs(_wrap(phi1 - phi_obs)) <= np.abs(_wrap(phi2 - phi_obs))
    phi = np.where(use1, phi1, phi2)
    phi = phi_obs + _wrap(phi - phi_obs)
    M = S @ rotation_matrices(e, phi) @ F
    r = np.einsum("nij,nj->ni", M, h @ A.T) if A.ndim == 2 else np.einsum("nij,njk,nk->ni", M, A, h)
    s1 = s0 + r
    Dinv_p = np.linalg.inv(D)
    Dinv = Dinv_p[np.asarray(panel, dtype=np.int64)]
    v = np.einsum("nij,nj->ni", Dinv, s1)
    valid &= v[:, 2] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        X = v[:, 0] / v[:, 2]
        Y = v[:, 1] / v[:, 2]
    xyz = np.column_stack([X, Y, phi])
    return {"xyz": xyz, "s1": s1, "r": r, "v": v, "valid": valid & np.all(np.isfinite(xyz), axis=1),
            "M": M, "Dinv": Dinv, "m2": m2, "n": n}


def _xy_phi(pred, ds1, dphi, dv_extra=None):
    """(N×k×3) derivatives of X, Y, φ from ∂s1 (N×k×3) and ∂φ (N×k)."""
    dv = np.einsum("nij,nkj->nki", pred["Dinv"], ds1)
    if dv_extra is not None:
        dv = dv + dv_extra
    v = pred["v"]
    X, Y = pred["xyz"][:, 0], pred["xyz"][:, 1]
    w = 1.0 / v[:, 2]
    out = np.empty(dv.shape[:2] + (3,))
    out[:, :, 0] = (dv[:, :, 0] - X[:, None] * dv[:, :, 2]) * w[:, None]
    out[:, :, 1] = (dv[:, :, 1] - Y[:, None] * dv[:, :, 2]) * w[:, None]
    out[:, :, 2] = dphi
    return out


def _denominator(pred):
    exr = np.cross(pred["m2"], pred["r"])
    return exr, np.einsum("ni,ni->n", exr, pred["s1"])


def beam_gradients(pred, ds0) -> np.ndarray:
    """∂(X, Y, φ)/∂p for beam parameters with ∂s0/∂p (k×3) → N×k×3."""
    exr, den = _denominator(pred)
    dphi = -(pred["r"] @ ds0.T) / den[:, None]
    ds1 = ds0[None, :, :] + exr[:, None, :] * dphi[:, :, None]
    return _xy_phi(pred, ds1, dphi)


def crystal_gradients(pred, h, dA) -> np.ndarray:
    """Derivatives for crystal parameters with ∂A/∂p (k×3×3, or N×k×3×3) → N×k×3."""
    h = np.asarray(h, float)
    if dA.ndim == 3:
        dAh = np.einsum("kij,nj->nki", dA, h)
    else:
        dAh = np.einsum("nkij,nj->nki", dA, h)
    dr = np.einsum("nij,nkj->nki", pred["M"], dAh)
    exr, den = _denominator(pred)
    dphi = -np.einsum("ni,nki->nk", pred["s1"], dr) / den[:, None]
    ds1 = dr + exr[:, None, :] * dphi[:, :, None]
    return _xy_phi(pred, ds1, dphi)


def detector_gradients(pred, panel, dD) -> np.ndarray:
    """Derivatives for detector parameters with ∂D/∂p (k×npanel×3×3) → N×k×3.

    ``dD`` is indexed by the position of each reflection's panel in the
    parameterisation (``panel`` here: that position, or −1 for panels it does not move).
    """
    panel = np.asarray(panel, dtype=np.int64)
    k = dD.shape[0]
    n = len(panel)
    dDv = np.zeros((n, k, 3))
    on = panel >= 0
    if np.any(on):
        dDn = dD[:, panel[on]]  # k×n'×3×3
        dDv[on] = np.einsum("knij,nj->nki", dDn, pred["v"][on])
    dv_extra = -np.einsum("nij,nkj->nki", pred["Dinv"], dDv)
    zero = np.zeros((n, k, 3))
    return _xy_phi(pred, zero, np.zeros((n, k)), dv_extra)
