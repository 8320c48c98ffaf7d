"""Rendering rotation images: spots from predicted reflections, background, noise.

Per reflection (all vectorised): full counts
``C = k · I(h) · L · P · qe · shadow``, with the Lorentz factor L = 1/|ζ|, the
polarisation P of the beam, the sensor's quantum efficiency and the beamstop shadow.
The rocking curve is a Gaussian in φ of width ``σ_φ = √(σ_m² + σ_b²)/|ζ|``; the
fraction recorded on image i is the erf difference over its oscillation (the Gaussian
convolved with the image's box). On the detector a spot is a 2-D Gaussian of
``σ = √((σ_b·ray length)² + σ_size²)`` (beam divergence and crystal/beam footprint),
integrated over each pixel (erf differences), centred on the predicted position
(parallax included). The background is a smooth radial falloff with a water ring,
times polarisation and the pixel's solid angle, dimmed in the beamstop's shadow.
Photon noise is Poisson, drawn with a counter-based generator (one stream per pixel,
so the images are reproducible and the kernel runs in parallel); counts saturate at
the saturation value; module gaps are 0 and masked in the pixel mask. On an imperfect
detector (``render_image_detector``) each pixel's expected counts are multiplied by
its gain before the noise, and hot and dead pixels read fixed values (see defects.py).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from scipy.special import ndtr

from ..models import Beam, Panel

SIZE_MM = 0.07  # σ of the crystal/beam footprint on the detector (mm)
PSF_PX = 0.25  # sensor point spread (px)
NSIG_Z = 5.0  # images are rendered to ±NSIG_Z σ_z

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)


@njit(cache=True, inline="always")
def _mix(z):  # pragma: no cover (numba) — splitmix64 finaliser
    z = (z ^ (z >> _S30)) * _M2
    z = (z ^ (z >> _S27)) * _M3
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _uniform(state):  # pragma: no cover (numba)
    return ((_mix(state) >> _S11) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _poisson(lam, state):  # pragma: no cover (numba)
    if lam <= 0.0:
        return 0
    if lam < 30.0:
        u = _uniform(state)
        pk = math.exp(-lam)
        cdf = pk
        k = 0
        while u > cdf and k < 200:
            k += 1
            pk *= lam / k
            cdf += pk
        return k
    u1 = _uniform(state)
    u2 = _uniform(state + _M1)
    g = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
    k = int(math.floor(lam + math.sqrt(lam) * g + 0.5))
    return k if k > 0 else 0


@njit(cache=True)
def add_spots(lam, xs, ys, sig, counts):  # pragma: no cover (numba)
    """Add 2-D Gaussian spots (pixel-integrated) to ``lam`` (slow, fast) in place."""
    ny, nx = lam.shape
    r2 = 1.0 / math.sqrt(2.0)
    for i in range(xs.shape[0]):
        c = counts[i]
        if c <= 0.0:
            continue
        s = sig[i]
        half = int(4.0 * s + 1.5)
        x0 = int(math.floor(xs[i])) - half
        y0 = int(math.floor(ys[i])) - half
        n = 2 * half + 1
        wx = np.empty(n)
        wy = np.empty(n)
        k = r2 / s
        for j in range(n):
            wx[j] = 0.5 * (math.erf((x0 + j + 1 - xs[i]) * k) - math.erf((x0 + j - xs[i]) * k))
            wy[j] = 0.5 * (math.erf((y0 + j + 1 - ys[i]) * k) - math.erf((y0 + j - ys[i]) * k))
        for jy in range(n):
            y = y0 + jy
            if y < 0 or y >= ny:
                continue
            cy = c * wy[jy]
            for jx in range(n):
                x = x0 + jx
                if x < 0 or x >= nx:
                    continue
                lam[y, x] += cy * wx[jx]


@njit(parallel=True, cache=True)
def render_image(bg, bg_scale, xs, ys, sig, counts, gap, seed, saturation):  # pragma: no cover
    """One image: background·bg_scale + spots, Poisson noise, saturation, gaps = 0."""
    ny, nx = bg.shape
    lam = np.empty((ny, nx), dtype=np.float32)
    for y in prange(ny):
        for x in range(nx):
            lam[y, x] = bg[y, x] * bg_scale
    add_spots(lam, xs, ys, sig, counts)
    out = np.empty((ny, nx), dtype=np.int32)
    base = np.uint64(seed) * _M1
    for y in prange(ny):
        for x in range(nx):
            if gap[y, x]:
                out[y, x] = 0
                continue
            state = base + np.uint64(y * nx + x) * _M2
            k = _poisson(np.float64(lam[y, x]), state)
            out[y, x] = k if k < saturation else saturation
    return out


@njit(parallel=True, cache=True)
def render_image_detector(bg, bg_scale, xs, ys, sig, counts, gap, gain, fixed, seed, saturation):  # pragma: no cover
    """``render_image`` on an imperfect detector: the expected counts times the pixel's
    ``gain`` before the noise; a pixel with ``fixed`` ≥ 0 (hot, dead) reads that value."""
    ny, nx = bg.shape
    lam = np.empty((ny, nx), dtype=np.float32)
    for y in prange(ny):
        for x in range(nx):
            lam[y, x] = bg[y, x] * bg_scale
    add_spots(lam, xs, ys, sig, counts)
    out = np.empty((ny, nx), dtype=np.int32)
    base = np.uint64(seed) * _M1
    for y in prange(ny):
        for x in range(nx):
            if gap[y, x]:
                out[y, x] = 0
                continue
            if fixed[y, x] >= 0:
                out[y, x] = fixed[y, x]
                continue
            state = base + np.uint64(y * nx + x) * _M2
            k = _poisson(np.float64(lam[y, x] * gain[y, x]), state)
            out[y, x] = min(k, saturation)
    return out


# --- per-pixel maps ----------------------------------------------------------------

def pixel_lab(panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """Lab positions (mm) of pixel centres, shapes (slow, fast) ×3 and unit s1."""
    nx, ny = panel.image_size
    px, py = panel.pixel_size
    xf = (np.arange(nx, dtype=np.float64) + 0.5) * px
    ys = (np.arange(ny, dtype=np.float64) + 0.5) * py
    lab = (panel.origin[None, None, :] + xf[None, :, None] * panel.fast_axis[None, None, :]
           + ys[:, None, None] * panel.slow_axis[None, None, :])
    unit = lab / np.linalg.norm(lab, axis=2, keepdims=True)
    return lab, unit


def polarisation(beam: Beam, s1_unit: np.ndarray) -> np.ndarray:
    """Polarisation factor for unit scattered directions (…×3).

    A fraction p of the beam has its electric vector along n × beam (n the normal
    to the polarisation plane), the rest along n: P = p(1 − (E·ŝ)²) + (1 − p)(1 − (n·ŝ)²);
    p = 0.5 gives the unpolarised (1 + cos² 2θ)/2.
    """
    n = beam.polarization_normal / np.linalg.norm(beam.polarization_normal)
    b = -beam.s0 / np.linalg.norm(beam.s0)  # towards the source; only the E axis matters
    E = np.cross(n, b)
    E /= np.linalg.norm(E)
    p = beam.polarization_fraction
    return p * (1 - (s1_unit @ E) ** 2) + (1 - p) * (1 - (s1_unit @ n) ** 2)


def quantum_efficiency(panel: Panel, s1_unit: np.ndarray) -> np.ndarray:
    if panel.mu <= 0 or panel.thickness <= 0:
        return np.ones(s1_unit.shape[:-1])
    cos_t = np.abs(s1_unit @ panel.normal)
    return 1.0 - np.exp(-panel.mu * panel.thickness / cos_t)


def beamstop_shadow(panel: Panel, beam: Beam, radius_mm: float = 1.5, arm_mm: float = 0.8,
                    transmission: float = 0.03) -> np.ndarray:
    """Transmission (slow, fast) of the beamstop and its arm (running to the top edge)."""
    nx, ny = panel.image_size
    bx, by = panel.get_beam_centre_px(beam.s0)
    ps = panel.pixel_size[0]
    x = np.arange(nx) + 0.5
    y = np.arange(ny) + 0.5
    dx = (x[None, :] - bx - 3.0) * ps
    dy = (y[:, None] - by + 2.0) * ps
    inside_disc = np.hypot(dx, dy) - radius_mm
    inside_arm = np.where(dy < 0, np.abs(dx) - arm_mm / 2, np.inf)
    dist = np.minimum(inside_disc, inside_arm)  # < 0 inside the shadow
    edge = 1.0 / (1.0 + np.exp(-np.clip(dist / 0.1, -50, 50)))  # soft edge over ~0.1 mm
    return (transmission + (1 - transmission) * edge).astype(np.float32)


def background_map(panel: Panel, beam: Beam, level: float) -> np.ndarray:
    """Expected background counts (slow, fast), float32, mean ≈ ``level`` at low angle."""
    lab, unit = pixel_lab(panel)
    s0u = beam.s0 / np.linalg.norm(beam.s0)
    cos2t = np.clip(unit @ s0u, -1, 1)
    stol = np.sqrt((1 - cos2t) / 2) / beam.wavelength  # sinθ/λ
    shape = (0.55 + 0.45 * np.exp(-stol / 0.06)
             + 0.9 * np.exp(-0.5 * ((stol - 0.135) / 0.013) ** 2)  # water ring, 3.7 Å
             + 0.25 * np.exp(-0.5 * ((stol - 0.222) / 0.02) ** 2))  # second ring, 2.25 Å
    cos_n = np.abs(unit @ panel.normal)
    solid = cos_n ** 3  # pixel solid angle relative to one on the panel normal
    pol = polarisation(beam, unit)
    out = level * shape * solid * pol * quantum_efficiency(panel, unit)
    return out.astype(np.float32)


# --- reflection-level model ----------------------------------------------------------

def spot_model(pred: dict, panel: Panel, beam: Beam, intensity: np.ndarray, k_scale: float,
               mosaicity_deg: float, divergence_deg: float, width_deg: float,
               shadow: np.ndarray | None = None) -> dict:
    """Per-reflection full counts, spot σ (px), rocking σ (frames), LP and QE."""
    s1 = pred["s1"]
    s1u = s1 / np.linalg.norm(s1, axis=1, keepdims=True)
    zeta = np.abs(pred["zeta"])
    # Lorentz factor 1/L with L = |m2·(s1×s0)|/(|s1||s0|) = |ζ| sin2θ, as DIALS's lp
    sin2theta = np.linalg.norm(np.cross(s1u, beam.s0 / np.linalg.norm(beam.s0)), axis=1)
    lorentz = 1.0 / np.maximum(zeta * sin2theta, 1e-3)
    pol = polarisation(beam, s1u)
    qe = quantum_efficiency(panel, s1u)
    sh = np.ones(len(s1))
    xy = pred["xyzcal.px"][:, :2]
    if shadow is not None and len(s1):
        ix = np.clip(xy[:, 0].astype(int), 0, shadow.shape[1] - 1)
        iy = np.clip(xy[:, 1].astype(int), 0, shadow.shape[0] - 1)
        sh = shadow[iy, ix].astype(float)
    full = k_scale * intensity * lorentz * pol * qe * sh
    sig_phi = math.radians(math.hypot(mosaicity_deg, divergence_deg)) / np.maximum(zeta, 1e-3)
    sig_z = np.minimum(np.degrees(sig_phi), 2.0) / width_deg
    lab = panel.get_lab_coord(pred["xyzcal.mm"][:, :2]) if len(s1) else np.zeros((0, 3))
    ray = np.linalg.norm(lab, axis=1)
    sig_mm = np.hypot(math.radians(divergence_deg) * ray, SIZE_MM)
    sig_px = np.hypot(sig_mm / panel.pixel_size[0], PSF_PX)
    # DIALS lp: the factor that corrects a raw intensity, |ζ|/P (lorentz_correction × 1/P)
    return {"counts_full": full, "sigma_px": sig_px, "sigma_z": sig_z, "lp": 1.0 / (lorentz * pol),
            "qe": qe, "lorentz": lorentz, "polarisation": pol}


def partials(z_centre: np.ndarray, sigma_z: np.ndarray, n_images: int) -> tuple[np.ndarray, ...]:
    """Sparse partial fractions: (reflection row, image index 0-based, fraction)."""
    lo = np.maximum(np.floor(z_centre - NSIG_Z * sigma_z), 0).astype(np.int64)
    hi = np.minimum(np.floor(z_centre + NSIG_Z * sigma_z), n_images - 1).astype(np.int64)
    n = np.maximum(hi - lo + 1, 0)
    rows = np.repeat(np.arange(len(z_centre)), n)
    start = np.repeat(np.cumsum(n) - n, n)
    image = np.repeat(lo, n) + (np.arange(n.sum()) - start)
    z = z_centre[rows]
    s = sigma_z[rows]
    frac = ndtr((image + 1 - z) / s) - ndtr((image - z) / s)
    return rows, image, frac
