"""Maximum cell length from the spacing of spots (DIALS's nearest-neighbour analysis).

For blocks of 45° of rotation and each entering flag, the reciprocal-space distance
from each rlp to its nearest neighbour gives a direct-space distance 1/|Δr|; the top
1% are dropped, a histogram is made (logarithmic bins, ~5 per bin), and max_cell is
1.3 × the upper edge of the last bin higher than a quarter of the tallest bin.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ..errors import XtalError


def find_max_cell(rlp: np.ndarray, phi_rad: np.ndarray, entering: np.ndarray, imageset: np.ndarray | None = None,
                  multiplier: float = 1.3, step_size_deg: float = 45.0, nn_per_bin: int = 5,
                  max_height_fraction: float = 0.25) -> float:
    rlp = np.asarray(rlp, float)
    if imageset is None:
        imageset = np.zeros(len(rlp), int)
    phi = np.degrees(np.asarray(phi_rad, float))
    direct = []
    for iset in np.unique(imageset):
        s = imageset == iset
        p0, p1 = phi[s].min(), phi[s].max()
        nsteps = max(int(math.ceil((p1 - p0) / step_size_deg)), 1)
        for n in range(nsteps):
            lo, hi = p0 + n * step_size_deg, p0 + (n + 1) * step_size_deg
            sel_step = s & (phi >= lo) & ((phi < hi) | (n == nsteps - 1))
            for ent in (True, False):
                sel = sel_step & (entering == ent)
                if sel.sum() < 2:
                    continue
                pts = rlp[sel]
                d, _ = cKDTree(pts).query(pts, k=2)
                dist = d[:, 1]
                dist = dist[dist > 0]
                direct.append(1.0 / dist)
    direct = np.sort(np.concatenate(direct)) if direct else np.zeros(0)
    if len(direct) <= 10:
        raise XtalError(f"too few spots ({len(direct)}) for nearest-neighbour analysis")
    direct = direct[direct > 1]
    direct = direct[: int(math.floor(0.99 * len(direct)))]
    if len(direct) < 10:
        raise XtalError("too few spots for nearest-neighbour analysis")
    n_slots = max(int(len(direct) / nn_per_bin), 1)
    logd = np.log10(direct)
    counts, edges = np.histogram(logd, bins=n_slots)
    start, end = 10 ** edges[:-1], 10 ** edges[1:]
    freq = counts / (end - start)
    isel = np.nonzero(freq > max_height_fraction * freq.max())[0]
    return float(multiplier * end[isel.max()])
