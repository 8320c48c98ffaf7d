"""Diffuse scatter added to the background: hexagonal-ice powder rings, a broad solvent
ring at 3.7 Å and air scatter falling with 2θ.

Each is a radial profile in counts per pixel per image (at the preset exposure) times
the pixel's solid angle, polarisation and sensor efficiency, like the base background.
Ice rings sit at the d-spacings of ``spotfinding.masks.ice_ring_d_ranges``; their
relative strengths are those of an ice-Ih powder (oxygen atoms at Wyckoff 4f).
"""
from __future__ import annotations

import math

import numpy as np

from ..models import Beam, Panel
from ..spotfinding.masks import ICE_CELL, ice_ring_d_ranges

ICE_O_Z = 0.0625  # z of the oxygen at 4f (1/3, 2/3, z) in P 63/m m c
ICE_B = 3.0  # Å², Debye–Waller factor of the ice oxygens
ICE_SIGMA_Q = 0.0004  # σ of an ice ring in 1/d² (Å⁻²): inside the 0.002 width DIALS masks
SOLVENT_STOL, SOLVENT_SIGMA = 0.135, 0.02  # sinθ/λ of the solvent ring (3.7 Å) and its σ
AIR_EFOLD_DEG = 4.0  # air scatter falls by e every 4° of 2θ


def ice_rings(d_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Ring centres in 1/d² (Å⁻²) and relative peak strengths (max 1) of ice Ih, d ≥ d_min."""
    import gemmi

    centres = np.array([0.5 * (1 / lo ** 2 + 1 / hi ** 2) for lo, hi in ice_ring_d_ranges(d_min)])
    if not len(centres):
        return centres, centres
    cell = gemmi.UnitCell(*ICE_CELL)
    hmax = math.ceil(max(ICE_CELL[:3]) / d_min) + 1
    r = np.arange(-hmax, hmax + 1)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    q = np.array([1.0 / cell.calculate_d(list(map(int, h))) ** 2 for h in hkl])
    keep = q <= 1.0 / d_min ** 2 * 1.0001
    hkl, q = hkl[keep], q[keep]
    sites = np.array([[1 / 3, 2 / 3, ICE_O_Z], [2 / 3, 1 / 3, ICE_O_Z + 0.5],
                      [2 / 3, 1 / 3, -ICE_O_Z], [1 / 3, 2 / 3, 0.5 - ICE_O_Z]])
    F = np.exp(2j * np.pi * hkl @ sites.T).sum(axis=1)
    stol2 = q / 4
    it92 = gemmi.Element("O").it92
    f_o = np.array([it92.calculate_sf(float(s)) for s in stol2])
    f2 = (np.abs(F) * f_o) ** 2 * np.exp(-2 * ICE_B * stol2)
    which = np.argmin(np.abs(q[:, None] - centres[None, :]), axis=1)
    strength = np.bincount(which, weights=f2, minlength=len(centres))
    sin_t = np.sqrt(centres) / 2  # × λ; the λ factors cancel in the normalisation
    strength = strength / (sin_t * sin_t * np.sqrt(1 - np.minimum(sin_t, 0.99) ** 2))  # powder Lorentz
    return centres, strength / strength.max()


def scatter_map(panel: Panel, beam: Beam, ice: float, solvent: float, air: float,
                block: int = 256) -> np.ndarray:
    """Counts per pixel per image (slow, fast), float32, of the ice rings (peak ``ice``),
    solvent ring (peak ``solvent``) and air scatter (``air`` at 2θ → 0)."""
    nx, ny = panel.image_size
    out = np.zeros((ny, nx), dtype=np.float32)
    s0u = beam.s0 / np.linalg.norm(beam.s0)
    lam = beam.wavelength
    d_corner = panel.get_max_resolution_at_corners(beam.s0)
    centres, strength = ice_rings(max(d_corner, 0.9)) if ice > 0 else (np.zeros(0), np.zeros(0))
    xf = (np.arange(nx) + 0.5) * panel.pixel_size[0]
    n = panel.normal
    p_fraction = beam.polarization_fraction
    pn = beam.polarization_normal / np.linalg.norm(beam.polarization_normal)
    E = np.cross(pn, -s0u)
    E /= np.linalg.norm(E)
    for y0 in range(0, ny, block):
        ys = (np.arange(y0, min(ny, y0 + block)) + 0.5) * panel.pixel_size[1]
        lab = (panel.origin[None, None, :] + xf[None, :, None] * panel.fast_axis
               + ys[:, None, None] * panel.slow_axis)
        unit = lab / np.linalg.norm(lab, axis=2, keepdims=True)
        cos2t = np.clip(unit @ s0u, -1, 1)
        stol = np.sqrt((1 - cos2t) / 2) / lam
        q = 4 * stol ** 2
        prof = np.zeros_like(q)
        for qc, w in zip(centres, strength):
            prof += ice * w * np.exp(-0.5 * ((q - qc) / ICE_SIGMA_Q) ** 2)
        if solvent > 0:
            prof += solvent * np.exp(-0.5 * ((stol - SOLVENT_STOL) / SOLVENT_SIGMA) ** 2)
        if air > 0:
            prof += air * np.exp(-np.degrees(np.arccos(cos2t)) / AIR_EFOLD_DEG)
        solid = np.abs(unit @ n) ** 3
        pol = p_fraction * (1 - (unit @ E) ** 2) + (1 - p_fraction) * (1 - (unit @ pn) ** 2)
        qe = 1.0 if panel.mu <= 0 or panel.thickness <= 0 else \
            1.0 - np.exp(-panel.mu * panel.thickness / np.abs(unit @ n))
        out[y0:y0 + len(ys)] = prof * solid * pol * qe
    return out
