"""Corrections stored with integrated intensities, as DIALS computes them.

``lp``: DIALS's Lorentz–polarisation correction (multiply an intensity by it),
``L/P`` with ``L = |s1·(m2 × s0)|/(|s1||s0|)`` (= |ζ|, the inverse Lorentz factor)
and ``P = (1 − 2f)(1 − (n·ŝ1)²) + f(1 + (ŝ0·ŝ1)²)`` for polarisation fraction f and
plane normal n. ``qe``: the sensor's quantum efficiency ``1 − exp(−μ t/|cos θ_n|)``
(dials divides by it). ``partiality``: the fraction of the Gaussian rocking curve
(σ = σ_m/|ζ| in φ) recorded inside the shoebox's frames.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

__all__ = ["lp_correction", "qe_correction", "partiality"]


def lp_correction(beam, goniometer, s1) -> np.ndarray:
    s1 = np.atleast_2d(np.asarray(s1, dtype=float))
    s0 = np.asarray(beam.s0, dtype=float)
    m2 = goniometer.rotation_axis_lab / np.linalg.norm(goniometer.rotation_axis_lab)
    n1 = np.linalg.norm(s1, axis=1)
    n0 = np.linalg.norm(s0)
    L = np.abs(s1 @ np.cross(m2, s0)) / (n0 * n1)
    pn = np.asarray(beam.polarization_normal, dtype=float)
    pf = beam.polarization_fraction
    P1 = (s1 @ pn) / n1
    P3 = (s1 @ s0) / (n1 * n0)
    P = (1.0 - 2.0 * pf) * (1.0 - P1 * P1) + pf * (1.0 + P3 * P3)
    return L / P


def qe_correction(detector, s1, panel) -> np.ndarray:
    s1 = np.atleast_2d(np.asarray(s1, dtype=float))
    out = np.ones(len(s1))
    panel = np.asarray(panel, dtype=np.int64)
    for k, p in enumerate(detector.panels):
        sel = panel == k
        if not np.any(sel) or p.mu <= 0 or p.thickness <= 0:
            continue
        n = np.asarray(p.normal, dtype=float)
        cos_t = np.abs(s1[sel] @ n) / (np.linalg.norm(s1[sel], axis=1) * np.linalg.norm(n))
        out[sel] = 1.0 - np.exp(-p.mu * p.thickness / cos_t)
    return out


def partiality(scan, phi_rad, zeta, sigma_m: float, z0, z1) -> np.ndarray:
    """Fraction of the rocking curve between frames z0 and z1 (array indices)."""
    phi_a = np.radians(scan.angle_from_frame(np.asarray(z0, dtype=float)))
    phi_b = np.radians(scan.angle_from_frame(np.asarray(z1, dtype=float)))
    s = max(sigma_m, 1e-12) / np.maximum(np.abs(zeta), 1e-12)
    a = ndtr((phi_a - phi_rad) / s)
    b = ndtr((phi_b - phi_rad) / s)
    return np.abs(b - a)
