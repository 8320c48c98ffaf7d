"""Conversions between detector pixels, the laboratory frame and reciprocal space.

Lab frame as DIALS (beam along −z, usual rotation axis +x, y up); lengths in mm on
the detector, wave vectors in 1/Å, angles in radians. Pixel coordinates (x, y) =
(fast, slow) with pixel centres at +0.5.
"""
from __future__ import annotations

import numpy as np

from ..models import Beam, Detector, Goniometer, Panel


def pixel_to_lab(panel: Panel, xy_px) -> np.ndarray:
    """Recorded pixel positions (N×2) → lab positions of the ray intersections (N×3 mm)."""
    return panel.get_lab_coord(panel.pixel_to_millimeter(xy_px))


def lab_to_s1(lab, wavelength: float) -> np.ndarray:
    """Lab positions (N×3) → diffracted wave vectors s1 of length 1/λ (N×3, 1/Å)."""
    lab = np.atleast_2d(np.asarray(lab, dtype=float))
    return lab / (np.linalg.norm(lab, axis=1)[:, None] * wavelength)


def pixel_to_s1(panel: Panel, beam: Beam, xy_px) -> np.ndarray:
    return lab_to_s1(pixel_to_lab(panel, xy_px), beam.wavelength)


def s1_to_pixel(detector: Detector, s1) -> tuple[np.ndarray, np.ndarray]:
    """Panel index (−1 when the ray misses every panel) and pixel position (N×2)."""
    panel_id, mm = detector.get_ray_intersection(s1)
    px = np.full_like(mm, np.nan)
    for i, p in enumerate(detector.panels):
        sel = panel_id == i
        if sel.any():
            px[sel] = p.millimeter_to_pixel(mm[sel])
    return panel_id, px


def d_spacing(s1, s0) -> np.ndarray:
    """Resolution d = 1/|s1 − s0| (Å)."""
    return 1.0 / np.linalg.norm(np.atleast_2d(s1) - np.asarray(s0), axis=1)


def two_theta(s1, s0) -> np.ndarray:
    s1 = np.atleast_2d(s1)
    s0 = np.asarray(s0)
    c = (s1 @ s0) / (np.linalg.norm(s1, axis=1) * np.linalg.norm(s0))
    return np.arccos(np.clip(c, -1.0, 1.0))


def reciprocal_lattice_points(s1, s0, goniometer: Goniometer | None, phi) -> np.ndarray:
    """Reciprocal-lattice vectors rotated back to the datum φ = 0 (N×3, 1/Å).

    r = (S·R(φ)·F)⁻¹ (s1 − s0), so that r = A·h for an indexed reflection.
    """
    q = np.atleast_2d(s1) - np.asarray(s0)
    if goniometer is None:
        return q
    R = goniometer.rotation_matrix(np.asarray(phi, dtype=float).ravel())
    return np.einsum("nji,nj->ni", R, q)  # R is orthogonal: R⁻¹ q = Rᵀ q
