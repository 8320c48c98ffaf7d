"""3-D reference profiles in the Kabsch frame, learned from strong reflections, and fitting.

The profile grid covers ``c/δ ∈ [−R, R]`` on each Kabsch axis (δ_b = n_σ σ_b for
e1, e2 and δ_m = n_σ σ_m for e3) with ``G = 2g + 1`` cells (``g = grid_size``, DIALS's
default 5; R = (g + ½)/g so cell centres fall on −1, …, 1). A reference profile is the
fraction of a reflection's intensity in each cell (sum 1).

Pixels map to the grid through their corners: a pixel is a small quadrilateral in
(c1, c2), sampled by ``nsub × nsub`` points (bilinear between the corners) to get the
fraction of its area in each cell; a frame is an interval of c3 = ζ(φ − φ_c),
overlapped with the cells — within a frame the counts are distributed over c3 by the
Gaussian rocking curve of the profile model (σ_m), as DIALS's MapFrames does, so a
spot recorded on one wide image still teaches a peaked e3 profile and a spot split
between two images is fitted with the right split. Learning spreads a voxel's
background-subtracted counts over the cells it covers; fitting integrates the profile
over each voxel to get its expected fraction ``p_i``, then finds the
intensity by iteratively reweighted least squares of ``c_i = B + I p_i`` with
variances ``v_i = B + |I| p_i`` (as DIALS's ProfileFitter), which makes I the full
reflection's intensity even when part of the shoebox is missing (detector gaps,
edges of the scan).

Reference profiles are kept per detector region: a 3 × 3 grid on each panel and
blocks of ``scan_step`` degrees in φ (DIALS's GridSampler); a region with fewer than
``min_reflections`` references borrows the whole sweep's profile.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["GridSpec", "ReferenceProfiles", "fit_profile", "is_spike", "profile_at", "region_index"]


class GridSpec:
    """Profile grid geometry: ``g`` half-size, ``G`` cells per axis, extent ``R``, width ``w``."""

    def __init__(self, grid_size: int = 5):
        self.g = int(grid_size)
        self.G = 2 * self.g + 1
        self.R = (self.g + 0.5) / self.g
        self.w = 2.0 * self.R / self.G


@njit(cache=True)
def pixel_cells(cc1, cc2, j, i, nxc, inv_db, nsub, G, R, w, cells, frac):  # pragma: no cover
    """Grid cells (k2·G + k1) covered by pixel (j, i) and the fraction of its area in
    each; returns (count, pixel area in normalised c-space)."""
    a00 = j * nxc + i
    a10 = a00 + 1
    a01 = a00 + nxc
    a11 = a01 + 1
    x00 = cc1[a00] * inv_db
    x10 = cc1[a10] * inv_db
    x01 = cc1[a01] * inv_db
    x11 = cc1[a11] * inv_db
    y00 = cc2[a00] * inv_db
    y10 = cc2[a10] * inv_db
    y01 = cc2[a01] * inv_db
    y11 = cc2[a11] * inv_db
    area = 0.5 * abs((x11 - x00) * (y01 - y10) - (y11 - y00) * (x01 - x10))
    n = 0
    inc = 1.0 / (nsub * nsub)
    for sv in range(nsub):
        v = (sv + 0.5) / nsub
        for su in range(nsub):
            u = (su + 0.5) / nsub
            c1 = (1 - u) * (1 - v) * x00 + u * (1 - v) * x10 + (1 - u) * v * x01 + u * v * x11
            c2 = (1 - u) * (1 - v) * y00 + u * (1 - v) * y10 + (1 - u) * v * y01 + u * v * y11
            k1 = int(math.floor((c1 + R) / w))
            k2 = int(math.floor((c2 + R) / w))
            if k1 < 0 or k1 >= G or k2 < 0 or k2 >= G:
                continue
            cell = k2 * G + k1
            found = False
            for q in range(n):
                if cells[q] == cell:
                    frac[q] += inc
                    found = True
                    break
            if not found:
                cells[n] = cell
                frac[n] = inc
                n += 1
    return n, area


@njit(cache=True)
def _gauss_mass(a, b, s):  # pragma: no cover (numba)
    """Mass of N(0, s²) in [a, b] (times 2)."""
    k = 1.0 / (math.sqrt(2.0) * s)
    return math.erf(b * k) - math.erf(a * k)


@njit(cache=True)
def frame_cells(c3a, c3b, inv_dm, sig, G, R, w, fwd, rev):  # pragma: no cover (numba)
    """How one frame and the G grid cells along e3 share a Gaussian rocking curve.

    The frame covers c3 ∈ [c3a, c3b] (unnormalised); ``sig`` is the rocking curve's
    σ in normalised units (1/n_σ). As DIALS's MapFramesForward/Reverse, the counts
    within an interval are distributed by the Gaussian, not uniformly:
    ``fwd[k3]`` = fraction of the frame's counts that fall in cell k3 (learning),
    ``rev[k3]`` = fraction of cell k3's counts recorded on this frame (fitting).
    Returns the Gaussian mass of the frame (0 if it sees none of the curve).
    """
    lo = min(c3a, c3b) * inv_dm
    hi = max(c3a, c3b) * inv_dm
    mf = _gauss_mass(lo, hi, sig)
    for k in range(G):
        a = -R + k * w
        b = a + w
        fwd[k] = 0.0
        rev[k] = 0.0
        aa = max(lo, a)
        bb = min(hi, b)
        if bb <= aa:
            continue
        mo = _gauss_mass(aa, bb, sig)
        if mf > 0.0:
            fwd[k] = mo / mf
        mc = _gauss_mass(a, b, sig)
        if mc > 0.0:
            rev[k] = mo / mc
    return mf


@njit(cache=True)
def _irls(d, p, n, B, I0, max_iter, eps):  # pragma: no cover (numba)
    """I of d = B + I·p over the first n voxels by iteratively reweighted least squares
    (weights 1/(B + |I|·p), as DIALS's ProfileFitter); NaN if no voxel has p > 0."""
    I = I0
    for it in range(max_iter):
        s1 = 0.0
        s2 = 0.0
        for i in range(n):
            if p[i] <= 0.0:
                continue
            v = 1e-10 + abs(B) + abs(I0) * p[i]
            s1 += (d[i] - B) * p[i] / v
            s2 += p[i] * p[i] / v
        if s2 <= 0.0:
            return np.nan
        I = s1 / s2
        if abs(I - I0) < eps * max(1.0, abs(I)):
            break
        I0 = I
    return I


@njit(cache=True)
def is_spike(d, m, I, reject_sigma):  # pragma: no cover (numba)
    """Whether a voxel of d counts is a spike above its model m (background + I·p):
    more than twice m, more than ``reject_sigma`` σ above it (σ² = 1 + m + (0.2·m)²:
    Poisson plus a profile-model error) and an excess over 1 % of I (the tails of a
    strong spot are wider than its reference profile, by little)."""
    excess = d - m
    if excess <= m or excess <= 0.01 * max(I, 0.0):
        return False
    return excess > reject_sigma * math.sqrt(1.0 + m + 0.04 * m * m)


@njit(cache=True)
def profile_at(cells, frac, n_cells, frame_rev, profile, G):  # pragma: no cover (numba)
    """A voxel's share of a profile (before the pixel-area scaling): Σ over the grid
    cells the pixel covers (fraction ``frac``) of Σ_k3 frame_rev[k3]·profile[k3, cell]."""
    p = 0.0
    for s in range(n_cells):
        c = cells[s]
        acc = 0.0
        for k3 in range(G):
            if frame_rev[k3] > 0.0:
                acc += frame_rev[k3] * profile[k3, c]
        p += frac[s] * acc
    return p


@njit(cache=True)
def _worst_outlier(d, p, n, B, I, reject_sigma):  # pragma: no cover (numba)
    """The voxel furthest above the fitted profile if it is a spike (``is_spike``); else −1."""
    worst = -1
    worst_r = 0.0
    for i in range(n):
        m = abs(B) + max(I, 0.0) * p[i]
        if not is_spike(d[i], m, I, reject_sigma):
            continue
        r = (d[i] - m) / math.sqrt(1.0 + m + 0.04 * m * m)
        if r > worst_r:
            worst_r = r
            worst = i
    return worst


@njit(cache=True)
def fit_profile(d, p, n, B, n_bg, max_iter, eps, reject_sigma=0.0, max_reject=0):  # pragma: no cover (numba)
    """Fit I in d = B + I·p over n voxels; returns (I, variance, correlation, ok,
    n_rejected, excess_rejected).

    The variance is the inverse Fisher information of the weighted fit plus the
    propagated error of the background mean (estimated from n_bg pixels). With
    ``reject_sigma`` > 0, up to ``max_reject`` voxels standing far above the fitted
    profile (a zinger, a hot pixel missing from the mask) are left out one at a time
    and the fit repeated; they are moved to the end of ``d`` and ``p``, and
    ``excess_rejected`` is their summed counts above the final model.
    """
    sump = 0.0
    sumd = 0.0
    for i in range(n):
        sump += p[i]
        sumd += d[i] - B
    if n == 0 or sump <= 0.0:
        return 0.0, 0.0, 0.0, False, 0, 0.0
    I = _irls(d, p, n, B, max(sumd / sump, 0.0), max_iter, eps)
    if not np.isfinite(I):
        return 0.0, 0.0, 0.0, False, 0, 0.0
    n_fit = n
    if reject_sigma > 0.0:
        while n - n_fit < max_reject and n_fit > 2:
            w = _worst_outlier(d, p, n_fit, B, I, reject_sigma)
            if w < 0:
                break
            n_fit -= 1
            d[w], d[n_fit] = d[n_fit], d[w]
            p[w], p[n_fit] = p[n_fit], p[w]
            sumd -= d[n_fit] - B
            sump -= p[n_fit]
            I = _irls(d, p, n_fit, B, max(sumd / max(sump, 1e-12), 0.0), max_iter, eps)
            if not np.isfinite(I):
                return 0.0, 0.0, 0.0, False, n - n_fit, 0.0
    excess = 0.0
    for i in range(n_fit, n):
        excess += d[i] - abs(B) - max(I, 0.0) * p[i]
    # variance at the solution: v_i = B + |I| p_i
    s2 = 0.0
    sw = 0.0
    for i in range(n_fit):
        if p[i] <= 0.0:
            continue
        v = 1e-10 + abs(B) + abs(I) * p[i]
        s2 += p[i] * p[i] / v
        sw += p[i] / v
    var = 1.0 / s2
    if n_bg > 0:
        var += (sw / s2) ** 2 * abs(B) / n_bg
    # correlation between the profile and the background-subtracted counts
    mp = sump / n_fit
    md = sumd / n_fit
    sxy = 0.0
    sxx = 0.0
    syy = 0.0
    for i in range(n_fit):
        a = p[i] - mp
        b = d[i] - B - md
        sxy += a * b
        sxx += a * a
        syy += b * b
    corr = sxy / math.sqrt(sxx * syy) if sxx > 0.0 and syy > 0.0 else 0.0
    return I, var, corr, True, n - n_fit, excess


def region_index(experiment, xyzcal_px, panel, n_xy: int = 3, scan_step_deg: float = 5.0) -> tuple[np.ndarray, int]:
    """Reference-profile region of each reflection and the number of regions."""
    scan = experiment.scan
    width = abs(scan.oscillation[1]) * scan.num_images
    nz = max(1, int(round(width / scan_step_deg)))
    xyz = np.asarray(xyzcal_px, dtype=float)
    panel = np.asarray(panel, dtype=np.int64)
    nx_px = np.array([p.image_size[0] for p in experiment.detector.panels], dtype=float)[panel]
    ny_px = np.array([p.image_size[1] for p in experiment.detector.panels], dtype=float)[panel]
    ix = np.clip((xyz[:, 0] / nx_px * n_xy).astype(np.int64), 0, n_xy - 1)
    iy = np.clip((xyz[:, 1] / ny_px * n_xy).astype(np.int64), 0, n_xy - 1)
    z0, z1 = scan.array_range
    iz = np.clip(((xyz[:, 2] - z0) / max(z1 - z0, 1) * nz).astype(np.int64), 0, nz - 1)
    n_regions = len(experiment.detector) * n_xy * n_xy * nz
    return ((panel * n_xy + iy) * n_xy + ix) * nz + iz, n_regions


class ReferenceProfiles:
    """Accumulated reference profiles of one sweep, per region."""

    def __init__(self, n_regions: int, grid: GridSpec):
        self.grid = grid
        G = grid.G
        self.sum = np.zeros((n_regions, G, G, G), dtype=np.float64)
        self.count = np.zeros(n_regions, dtype=np.int64)

    def add(self, other: "ReferenceProfiles") -> None:
        self.sum += other.sum
        self.count += other.count

    def finalise(self, min_reflections: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Normalised profiles (n_regions, G, G, G) and which regions are usable.

        Negative cells are zeroed and cells below 1 % of the peak dropped (noise in
        the far tails); a region with too few references uses the sweep's profile.
        """
        total = self.sum.sum(axis=0)
        n_total = int(self.count.sum())
        out = np.zeros_like(self.sum)
        ok = np.zeros(len(self.count), dtype=bool)
        glob = _normalise(total)
        if glob is None or n_total < min_reflections:
            return out, ok
        for r in range(len(self.count)):
            prof = _normalise(self.sum[r]) if self.count[r] >= min_reflections else None
            out[r] = glob if prof is None else prof
            ok[r] = True
        return out, ok


def _normalise(p: np.ndarray) -> np.ndarray | None:
    q = np.where(p > 0, p, 0.0)
    peak = q.max()
    if not peak > 0:
        return None
    q = np.where(q >= 0.01 * peak, q, 0.0)
    return q / q.sum()
