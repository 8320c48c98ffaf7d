"""Basis-vector search by 1-D FFTs of rlp projections on many directions
(Steller, Bolotovsky & Rossmann 1997; DIALS/MOSFLM ``fft1d``).

Directions are spread evenly over a hemisphere (grid ≈ 0.029 rad). The rlps are
projected on each direction, histogrammed finely enough to resolve periods up to
max_cell, and Fourier transformed; the strongest frequency with a real-space
period in [min_cell, max_cell] gives that direction's candidate vector. The best
directions, grouped and stripped of integer multiples, are the candidates.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import XtalError
from .vectors import tidy_vectors


def hemisphere_directions(spacing_rad: float) -> np.ndarray:
    """Unit vectors roughly evenly spaced (``spacing_rad``) over the z ≥ 0 hemisphere."""
    out = []
    n_theta = max(int(round((math.pi / 2) / spacing_rad)), 1)
    for i in range(n_theta + 1):
        theta = i * (math.pi / 2) / n_theta
        n_phi = max(int(round(2 * math.pi * math.sin(theta) / spacing_rad)), 1)
        if i == n_theta:  # equator: half the circle (±u are the same direction)
            n_phi = max(n_phi // 2, 1)
            phis = np.arange(n_phi) * math.pi / n_phi
        else:
            phis = np.arange(n_phi) * 2 * math.pi / n_phi
        st = math.sin(theta)
        out.append(np.column_stack([st * np.cos(phis), st * np.sin(phis), np.full(len(phis), math.cos(theta))]))
    return np.vstack(out)


def optimise_vector(t: np.ndarray, rlp: np.ndarray, n_iter: int = 5) -> np.ndarray:
    """Newton steps maximising Σ cos(2π r·t) (a lattice vector gives integers r·t)."""
    t = np.asarray(t, float).copy()
    for _ in range(n_iter):
        ph = 2 * math.pi * (rlp @ t)
        s, c = np.sin(ph), np.cos(ph)
        g = -(2 * math.pi) * (rlp * s[:, None]).sum(0)
        H = -(2 * math.pi) ** 2 * (rlp * c[:, None]).T @ rlp
        try:
            step = np.linalg.solve(H, -g)
        except np.linalg.LinAlgError:
            break
        if np.linalg.norm(step) > 0.05 * np.linalg.norm(t):
            break
        t = t + step
    return t


def fft1d_basis_vectors(rlp: np.ndarray, max_cell: float, min_cell: float = 3.0, spacing_rad: float = 0.029,
                        n_best: int = 60) -> list[np.ndarray]:
    rlp = np.asarray(rlp, float)
    if len(rlp) < 10:
        raise XtalError(f"too few spots ({len(rlp)}) for the 1-D FFT search")
    dirs = hemisphere_directions(spacing_rad)
    rmax = float(np.linalg.norm(rlp, axis=1).max())
    width = 1.0 / (4.0 * max_cell)
    G = int(math.ceil(2 * rmax / width)) + 1
    pad = 4 * G
    out_val = np.zeros(len(dirs))
    out_len = np.zeros(len(dirs))
    periods = np.arange(pad // 2 + 1) / (pad * width)  # frequency k -> real-space period (Å)
    band = (periods >= min_cell) & (periods <= max_cell)
    chunk = max(1, int(2e7 // max(len(rlp), 1) // 4))
    for s in range(0, len(dirs), chunk):
        D = dirs[s: s + chunk]
        proj = rlp @ D.T  # N × m
        bins = np.clip(((proj + rmax) / width).astype(np.int64), 0, G - 1)
        flat = bins + (np.arange(len(D)) * pad)[None, :]
        hist = np.bincount(flat.ravel(), minlength=len(D) * pad).reshape(len(D), pad).astype(np.float32)
        spec = np.abs(np.fft.rfft(hist, axis=1))[:, band]
        k = np.argmax(spec, axis=1)
        out_val[s: s + chunk] = spec[np.arange(len(D)), k]
        out_len[s: s + chunk] = periods[band][k]
    order = np.argsort(-out_val)[: max(n_best * 4, 50)]
    vecs = dirs[order] * out_len[order, None]
    vecs = np.array([optimise_vector(v, rlp) for v in vecs])
    return tidy_vectors(vecs, out_val[order], min_cell, max_cell)[:n_best]
