"""The gaussian_rs profile model: σ_D (σ_b, beam divergence) and σ_M (σ_m, mosaicity).

As in DIALS, a reflection's profile is a Gaussian in the Kabsch frame: σ_b on the
two detector axes e1, e2 and σ_m along e3 (so the rocking width in φ is σ_m/|ζ|);
shoeboxes extend n_σ = 3 standard deviations.

Estimation from strong, indexed reflections (their pixels are read into small
windows around the predicted positions):

* σ_b: the background-subtracted, count-weighted mean of c1² + c2² over pixels
  within 3σ_b of the centre, corrected for the truncation of a 2-D Gaussian at that
  radius, iterated from the window size; the median over reflections (robust to
  overlaps and outliers).
* σ_m: the rocking curve recorded per frame is ``I·[Φ(ζ(φ_{k+1} − φ_c)/σ_m) −
  Φ(ζ(φ_k − φ_c)/σ_m)]``; σ_m minimises the χ² of the observed per-frame
  intensities of all references (a 1-D search over a log grid, refined), which also
  works when spots fall within one or two frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.special import ndtr

from .background import robust_poisson_mean
from .shoebox import POOL_OWNED, POOL_VALID, corner_coords

__all__ = ["ProfileModel", "window_moments", "estimate_sigma_b", "estimate_sigma_m"]


@dataclass(frozen=True)
class ProfileModel:
    """σ_b, σ_m in radians and n_σ; ``to_dict`` writes DIALS's .expt form (degrees)."""

    sigma_b: float
    sigma_m: float
    n_sigma: float = 3.0

    @property
    def delta_b(self) -> float:
        return self.n_sigma * self.sigma_b

    @property
    def delta_m(self) -> float:
        return self.n_sigma * self.sigma_m

    def to_dict(self) -> dict:
        return {"__id__": "gaussian_rs", "n_sigma": float(self.n_sigma),
                "sigma_b": math.degrees(self.sigma_b), "sigma_m": math.degrees(self.sigma_m)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "ProfileModel | None":
        if not d or d.get("__id__") != "gaussian_rs":
            return None
        sb, sm = d.get("sigma_b"), d.get("sigma_m")
        if isinstance(sb, list) or isinstance(sm, list):  # scan-varying: use the mean
            sb, sm = float(np.mean(sb)), float(np.mean(sm))
        return cls(math.radians(float(sb)), math.radians(float(sm)), float(d.get("n_sigma", 3.0)))


@njit(cache=True)
def window_moments(pool, pool_mask, off, wbox, e1, e2, s1e, origin, fast, slow, px, py, radius,
                   out_sw, out_swr2, out_bg, out_frames, out_npix, out_bad):  # pragma: no cover
    """Per window: Σw, Σw·r², background mean, per-frame Σw inside ``radius`` (rad).

    w = counts − background over valid owned pixels whose centre lies within
    ``radius`` of the reflection in (c1, c2); the background is the robust mean of
    the valid owned pixels outside 1.2 × radius.
    """
    n = wbox.shape[0]
    maxc = 0
    maxv = 0
    for r in range(n):
        nxr = wbox[r, 1] - wbox[r, 0]
        nyr = wbox[r, 3] - wbox[r, 2]
        maxc = max(maxc, (nxr + 1) * (nyr + 1))
        maxv = max(maxv, nxr * nyr * (wbox[r, 5] - wbox[r, 4]))
    cc1 = np.empty(maxc)
    cc2 = np.empty(maxc)
    buf = np.empty(maxv)
    r2lim = radius * radius
    for r in range(n):
        x0, x1, y0, y1, z0, z1 = wbox[r, 0], wbox[r, 1], wbox[r, 2], wbox[r, 3], wbox[r, 4], wbox[r, 5]
        nx = x1 - x0
        ny = y1 - y0
        nz = z1 - z0
        corner_coords(x0, x1, y0, y1, origin, fast, slow, px, py, e1[r], e2[r], s1e[r], cc1, cc2)
        nxc = nx + 1
        nb = 0
        for k in range(nz):
            for j in range(ny):
                for i in range(nx):
                    a = j * nxc + i
                    c1 = 0.25 * (cc1[a] + cc1[a + 1] + cc1[a + nxc] + cc1[a + nxc + 1])
                    c2 = 0.25 * (cc2[a] + cc2[a + 1] + cc2[a + nxc] + cc2[a + nxc + 1])
                    q = off[r] + (k * ny + j) * nx + i
                    m = pool_mask[q]
                    if (m & POOL_OWNED) and (m & POOL_VALID) and c1 * c1 + c2 * c2 > 1.44 * r2lim:
                        buf[nb] = pool[q]
                        nb += 1
        bg = 0.0
        if nb >= 10:
            bg, conv = robust_poisson_mean(buf, nb, 1.345, 1e-3, 100)
        else:
            out_bad[r] = True
        out_bg[r] = bg
        sw = 0.0
        swr2 = 0.0
        npx = 0
        for k in range(nz):
            fs = 0.0
            for j in range(ny):
                for i in range(nx):
                    a = j * nxc + i
                    c1 = 0.25 * (cc1[a] + cc1[a + 1] + cc1[a + nxc] + cc1[a + nxc + 1])
                    c2 = 0.25 * (cc2[a] + cc2[a + 1] + cc2[a + nxc] + cc2[a + nxc + 1])
                    rr = c1 * c1 + c2 * c2
                    if rr > r2lim:
                        continue
                    q = off[r] + (k * ny + j) * nx + i
                    m = pool_mask[q]
                    if not (m & POOL_OWNED):
                        continue
                    if not (m & POOL_VALID):
                        out_bad[r] = True
                        continue
                    wv = pool[q] - bg
                    sw += wv
                    swr2 += wv * rr
                    fs += wv
                    npx += 1
            if k < out_frames.shape[1]:
                out_frames[r, k] = fs
        out_sw[r] = sw
        out_swr2[r] = swr2
        out_npix[r] = npx


def _trunc_factor(k: float) -> float:
    """E[r²]/(2σ²) of a 2-D Gaussian truncated at radius kσ."""
    e = math.exp(-0.5 * k * k)
    return 1.0 - (0.5 * k * k) * e / (1.0 - e)


def estimate_sigma_b(measure, sigma0: float, n_iter: int = 5) -> tuple[float, np.ndarray]:
    """Iterate σ_b from ``measure(radius) -> (sw, swr2, bg, npix, bad)``; returns
    σ_b (rad) and the mask of the windows used."""
    sigma = sigma0
    used = None
    for _ in range(n_iter):
        radius = 3.0 * sigma
        sw, swr2, bg, npix, bad = measure(radius)
        noise = np.sqrt(np.abs(sw) + np.abs(bg) * npix + 1.0)
        used = (~bad) & (sw > 10.0 * noise) & (swr2 > 0)
        if used.sum() < 3:
            used = (~bad) & (sw > 3.0 * noise) & (swr2 > 0)
        if used.sum() == 0:
            break
        var = np.median(swr2[used] / sw[used]) / 2.0
        new = math.sqrt(max(var, 1e-14) / _trunc_factor(3.0))
        if abs(new - sigma) < 1e-3 * sigma:
            sigma = new
            break
        sigma = new
    return sigma, used if used is not None else np.zeros(0, dtype=bool)


CHI2_CAP = 25.0  # a frame's χ² term in the σ_m fit counts at most (5σ)²


def estimate_sigma_m(frame_sums: np.ndarray, frame_edges_phi: np.ndarray, phi_c: np.ndarray,
                     zeta: np.ndarray, bg_var: np.ndarray, nframes: np.ndarray) -> float:
    """σ_m (rad) minimising the χ² of per-frame intensities against the rocking model.

    ``frame_sums`` (n, K) background-subtracted counts per window frame,
    ``frame_edges_phi`` (n, K+1) frame edges (rad), ``bg_var`` (n, K) variance of
    the background under each frame's sum, ``nframes`` valid frames per window. Each
    frame's χ² term is capped at ``CHI2_CAP`` (a truncated, outlier-proof loss).
    """
    n, K = frame_sums.shape
    valid = np.arange(K)[None, :] < nframes[:, None]
    az = np.abs(zeta)[:, None]
    width = np.abs(np.diff(frame_edges_phi, axis=1)).mean()

    def chi2(sm):
        s = sm / az
        cdf = ndtr((frame_edges_phi - phi_c[:, None]) / s)
        frac = np.abs(np.diff(cdf, axis=1)) * valid
        denom = frac.sum(axis=1)
        ok = denom > 0.05
        I = np.where(ok, (frame_sums * valid).sum(axis=1) / np.maximum(denom, 1e-12), 0.0)
        model = I[:, None] * frac
        var = np.abs(model) + bg_var + 1.0
        # capped at 5σ: a zinger on one frame of a window would otherwise widen σ_m threefold
        r = np.minimum((frame_sums - model) ** 2 / var, CHI2_CAP) * valid
        return float(r[ok].sum())

    grid = np.exp(np.linspace(math.log(width * 0.01), math.log(width * 20 + 1e-6), 60))
    vals = np.array([chi2(s) for s in grid])
    k = int(np.argmin(vals))
    lo = grid[max(k - 1, 0)]
    hi = grid[min(k + 1, len(grid) - 1)]
    fine = np.exp(np.linspace(math.log(lo), math.log(hi), 21))
    vals = np.array([chi2(s) for s in fine])
    return float(fine[int(np.argmin(vals))])
