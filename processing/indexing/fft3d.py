"""Basis-vector search by a 3-D FFT of the reciprocal-lattice-point density (DIALS fft3d).

The rlps up to d_min (Auto: max(5·max_cell/n_points, the smallest d of the spots))
are put on an n³ grid spanning ±1/d_min, weighted by exp(−b_iso·|r|²/4) (Auto:
b_iso = −4·d_min²·ln 0.05); |FFT|² is a Patterson-like map of the lattice in a real
cell of n·d_min/2 Å. Grid points above ``rmsd_cutoff`` × rms form peaks (connected
regions); peaks larger than ``peak_volume_cutoff`` × the largest (anomalously large
ones, i.e. the origin, excepted) give candidate vectors, grouped, stripped of
integer multiples and ordered by peak volume.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy import ndimage

from ..errors import XtalError
from .vectors import tidy_vectors


def _good_size(n: int) -> int:
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def fft3d_basis_vectors(rlp: np.ndarray, max_cell: float, min_cell: float = 3.0, n_points: int = 256,
                        d_min: float | None = None, b_iso: float | None = None, rmsd_cutoff: float = 15.0,
                        peak_volume_cutoff: float = 0.15, workers: int = 1) -> tuple[list[np.ndarray], float]:
    """(candidate real-space vectors, sorted by peak volume; the d_min used)."""
    rlp = np.asarray(rlp, float)
    n = _good_size(int(n_points))
    d = 1.0 / np.linalg.norm(rlp, axis=1)
    if d_min is None:
        d_min = max(5.0 * max_cell / n, float(d.min()))
    if b_iso is None:
        b_iso = -4.0 * d_min ** 2 * math.log(0.05)
    use = d >= d_min
    pts = rlp[use]
    if len(pts) < 10:
        raise XtalError(f"too few spots ({len(pts)}) for the 3-D FFT search")
    rlgrid = 2.0 / (d_min * n)
    coords = np.rint(pts / rlgrid).astype(np.int64) + n // 2
    coords = np.clip(coords, 0, n - 1)
    grid = np.zeros((n, n, n), dtype=np.float32)
    weights = np.exp(-b_iso * np.einsum("ij,ij->i", pts, pts) / 4.0).astype(np.float32)
    grid[coords[:, 0], coords[:, 1], coords[:, 2]] = weights
    F = scipy.fft.fftn(grid, workers=workers, overwrite_x=True)
    del grid
    power = (F.real ** 2 + F.imag ** 2).astype(np.float32)
    del F
    power = np.fft.fftshift(power)
    mean = float(power.mean(dtype=np.float64))
    rms = math.sqrt(float(np.mean((power - mean) ** 2, dtype=np.float64)))
    mask = power >= rmsd_cutoff * rms
    labels, nlab = ndimage.label(mask)
    if nlab < 4:
        raise XtalError("fft3d peak search found too few peaks (need the origin and three basis vectors)")
    index = np.arange(1, nlab + 1)
    where = np.nonzero(mask)
    lab = labels[where]
    w = power[where].astype(np.float64)
    volumes = np.bincount(lab, minlength=nlab + 1)[1:]
    wsum = np.bincount(lab, weights=w, minlength=nlab + 1)
    com_all = np.column_stack([np.bincount(lab, weights=w * where[k], minlength=nlab + 1) / np.maximum(wsum, 1e-300)
                               for k in range(3)])
    q1, q3 = np.percentile(volumes, [25, 75])
    outlier = volumes > q3 + 5 * (q3 - q1)
    ref = volumes[~outlier].max() if (~outlier).any() else volumes.max()
    keep = index[volumes > int(peak_volume_cutoff * ref)]
    com = com_all[keep]
    vols = volumes[keep - 1].astype(float)
    vecs = (com - n // 2) * (d_min / 2.0)
    return tidy_vectors(vecs, vols, min_cell, max_cell), float(d_min)
