"""Shoeboxes: per-reflection Kabsch frames, bounding boxes from the profile model,
pixel extraction from images into a compact pool, ownership of overlapped pixels.

Kabsch frame (DIALS's gaussian_rs ``CoordinateSystem``): for a reflection with
diffracted beam s1 at rotation angle φ_c,

    e1 = s1 × s0 / |s1 × s0|,  e2 = s1 × e1 / |s1 × e1|,  e3 = (s1 + s0)/|s1 + s0|,

and a beam vector s' at angle φ' has coordinates ``c1 = e1·(s' − s1)/|s1|``,
``c2 = e2·(s' − s1)/|s1|`` (radians) and ``c3 = ζ (φ' − φ_c)`` with ``ζ = m2·e1``.
The bounding box holds ``|c1|, |c2| ≤ δ_b = n_σ σ_b`` and ``|c3| ≤ δ_m = n_σ σ_m``.

Pixels of each shoebox are copied frame by frame into one flat ``pool`` (float32
counts) and ``pool_mask`` (uint8 bits ``POOL_VALID | POOL_OWNED | POOL_OVERLOAD``);
a pixel inside several shoeboxes is owned by the reflection whose predicted centre
is nearest (DIALS's ``MaskOverlapping``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..models import Experiment

POOL_VALID = np.uint8(1)   # on the image, not masked, inside the trusted range
POOL_OWNED = np.uint8(2)   # nearest predicted centre is this reflection's
POOL_OVERLOAD = np.uint8(4)  # value at or above the trusted maximum

__all__ = ["KabschFrames", "kabsch_frames", "compute_bbox", "pool_layout", "extract_frame",
           "POOL_VALID", "POOL_OWNED", "POOL_OVERLOAD"]


class KabschFrames:
    """Per-reflection geometry (arrays of length N) used by every kernel.

    ``e1``, ``e2`` unit axes; ``s1e`` the unit beam vector that the panel's
    plain (parallax-free) pixel→lab mapping gives for the predicted pixel position,
    so that offsets measured from it in pixel space are exact; ``zeta``; ``phi``
    (rad); ``s1`` (1/Å).
    """

    def __init__(self, e1, e2, s1e, zeta, phi, s1):
        self.e1, self.e2, self.s1e, self.zeta, self.phi, self.s1 = e1, e2, s1e, zeta, phi, s1

    def select(self, sel) -> "KabschFrames":
        return KabschFrames(self.e1[sel], self.e2[sel], self.s1e[sel], self.zeta[sel], self.phi[sel],
                            self.s1[sel])


def panel_plain_lab(panel, xy_px) -> np.ndarray:
    """Lab position (N×3 mm) of pixel coordinates by the plain linear mapping."""
    xy = np.atleast_2d(np.asarray(xy_px, dtype=float))
    px, py = panel.pixel_size
    return (np.asarray(panel.origin, float)[None, :] + xy[:, :1] * px * np.asarray(panel.fast_axis, float)[None, :]
            + xy[:, 1:2] * py * np.asarray(panel.slow_axis, float)[None, :])


def kabsch_frames(experiment: Experiment, s1, xyzcal_px, phi, panel) -> KabschFrames:
    """Kabsch axes and effective centres for predicted reflections."""
    s1 = np.atleast_2d(np.asarray(s1, dtype=float))
    s0 = np.asarray(experiment.beam.s0, dtype=float)
    m2 = experiment.goniometer.rotation_axis_lab
    m2 = m2 / np.linalg.norm(m2)
    e1 = np.cross(s1, s0)
    e1 /= np.linalg.norm(e1, axis=1)[:, None]
    e2 = np.cross(s1, e1)
    e2 /= np.linalg.norm(e2, axis=1)[:, None]
    zeta = e1 @ m2
    s1e = np.zeros_like(s1)
    panel = np.asarray(panel, dtype=np.int64)
    for k, p in enumerate(experiment.detector.panels):
        sel = panel == k
        if np.any(sel):
            lab = panel_plain_lab(p, np.asarray(xyzcal_px)[sel, :2])
            s1e[sel] = lab / np.linalg.norm(lab, axis=1)[:, None]
    return KabschFrames(e1, e2, s1e, zeta, np.asarray(phi, dtype=float), s1)


def compute_bbox(experiment: Experiment, frames: KabschFrames, xyzcal_px, panel, delta_b: float,
                 delta_m: float) -> np.ndarray:
    """Bounding boxes (N×6 int32: x0, x1, y0, y1, z0, z1) as DIALS's BBoxCalculator3D.

    The four beam vectors at (c1, c2) = (±δ_b, ±δ_b) are intersected with the
    reflection's panel; the frames span φ_c ± δ_m/|ζ|; z is clipped to the scan.
    """
    n = len(frames.zeta)
    out = np.zeros((n, 6), dtype=np.int32)
    if n == 0:
        return out
    s1 = frames.s1
    r = np.linalg.norm(s1, axis=1)
    su = s1 / r[:, None]
    xs, ys = [], []
    panel = np.asarray(panel, dtype=np.int64)
    for a, b in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
        p = (a * delta_b) * frames.e1 + (b * delta_b) * frames.e2  # unit-sphere offsets
        d = -np.einsum("ij,ij->i", su, p) + np.sqrt(np.maximum(1.0 - np.einsum("ij,ij->i", p, p), 0.0))
        v = p + d[:, None] * su
        xy = np.full((n, 2), np.nan)
        for k, pan in enumerate(experiment.detector.panels):
            sel = panel == k
            if np.any(sel):
                mm, ok = pan.get_ray_intersection(v[sel])
                xy[sel] = pan.millimeter_to_pixel(mm)
        xs.append(xy[:, 0])
        ys.append(xy[:, 1])
    xs = np.column_stack(xs)
    ys = np.column_stack(ys)
    xyz = np.asarray(xyzcal_px, dtype=float)
    with np.errstate(all="ignore"):
        xlo, xhi = np.nanmin(xs, axis=1), np.nanmax(xs, axis=1)
        ylo, yhi = np.nanmin(ys, axis=1), np.nanmax(ys, axis=1)
    bad = ~(np.isfinite(xlo) & np.isfinite(ylo))
    xlo[bad], xhi[bad] = xyz[bad, 0] - 3, xyz[bad, 0] + 3
    ylo[bad], yhi[bad] = xyz[bad, 1] - 3, xyz[bad, 1] + 3
    scan = experiment.scan
    az = np.abs(frames.zeta)
    dz = np.degrees(delta_m / np.maximum(az, 1e-6)) / scan.oscillation[1]
    z = xyz[:, 2]
    out[:, 0] = np.floor(np.minimum(xlo, xyz[:, 0]))
    out[:, 1] = np.ceil(np.maximum(xhi, xyz[:, 0]))
    out[:, 2] = np.floor(np.minimum(ylo, xyz[:, 1]))
    out[:, 3] = np.ceil(np.maximum(yhi, xyz[:, 1]))
    z0, z1 = scan.array_range
    lo = np.floor(z - dz)
    hi = np.ceil(z + dz)
    hi = np.where(hi <= np.floor(z), np.floor(z) + 1, hi)
    out[:, 4] = np.clip(lo, z0, z1 - 1)
    out[:, 5] = np.clip(hi, z0 + 1, z1)
    out[:, 1] = np.maximum(out[:, 1], out[:, 0] + 1)
    out[:, 3] = np.maximum(out[:, 3], out[:, 2] + 1)
    return out


def pool_layout(bbox: np.ndarray) -> tuple[np.ndarray, int]:
    """Offsets (N+1, int64) of each shoebox in a flat pool, and the pool size."""
    b = np.asarray(bbox, dtype=np.int64)
    vol = (b[:, 1] - b[:, 0]) * (b[:, 3] - b[:, 2]) * (b[:, 5] - b[:, 4])
    off = np.zeros(len(b) + 1, dtype=np.int64)
    np.cumsum(vol, out=off[1:])
    return off, int(off[-1])


@njit(cache=True)
def extract_frame(image, static_ok, lo, hi, frame, active, bbox, centre, off, pool, pool_mask,
                  dist, owner):  # pragma: no cover (numba)
    """Copy one frame's pixels into the shoeboxes of the ``active`` reflections.

    ``image`` (ny, nx) counts of one panel, ``static_ok`` its static mask,
    trusted range (lo, hi) exclusive; ``centre`` (N×3) the predicted pixel
    centres deciding ownership; ``dist``/``owner`` are (ny, nx) scratch arrays
    holding +inf / −1 on entry and on exit.
    """
    ny, nx = image.shape
    zc = frame + 0.5
    for a in range(active.shape[0]):
        r = active[a]
        x0 = max(bbox[r, 0], 0)
        x1 = min(bbox[r, 1], nx)
        y0 = max(bbox[r, 2], 0)
        y1 = min(bbox[r, 3], ny)
        cx = centre[r, 0]
        cy = centre[r, 1]
        cz = centre[r, 2]
        dz2 = (zc - cz) * (zc - cz)
        for y in range(y0, y1):
            dy2 = (y + 0.5 - cy) * (y + 0.5 - cy)
            for x in range(x0, x1):
                d = (x + 0.5 - cx) * (x + 0.5 - cx) + dy2 + dz2
                if d < dist[y, x]:
                    dist[y, x] = d
                    owner[y, x] = r
    for a in range(active.shape[0]):
        r = active[a]
        bx0 = bbox[r, 0]
        by0 = bbox[r, 2]
        bnx = bbox[r, 1] - bx0
        bny = bbox[r, 3] - by0
        base = off[r] + (frame - bbox[r, 4]) * bny * bnx
        for j in range(bny):
            y = by0 + j
            for i in range(bnx):
                x = bx0 + i
                k = base + j * bnx + i
                if y < 0 or y >= ny or x < 0 or x >= nx:
                    pool[k] = 0.0
                    pool_mask[k] = POOL_OWNED
                    continue
                v = image[y, x]
                m = np.uint8(0)
                if owner[y, x] == r:
                    m |= POOL_OWNED
                if static_ok[y, x]:
                    if v >= hi:
                        m |= POOL_OVERLOAD
                    elif v > lo:
                        m |= POOL_VALID
                pool[k] = v
                pool_mask[k] = m
    for a in range(active.shape[0]):
        r = active[a]
        for y in range(max(bbox[r, 2], 0), min(bbox[r, 3], ny)):
            for x in range(max(bbox[r, 0], 0), min(bbox[r, 1], nx)):
                dist[y, x] = np.inf
                owner[y, x] = -1


@njit(cache=True)
def corner_coords(x0, x1, y0, y1, origin, fast, slow, px, py, e1, e2, s1e, cc1, cc2):  # pragma: no cover
    """Kabsch (c1, c2) of the pixel corners of a box into cc1/cc2 ((ny+1)·(nx+1))."""
    nx = x1 - x0
    k0 = e1[0] * s1e[0] + e1[1] * s1e[1] + e1[2] * s1e[2]
    k1 = e2[0] * s1e[0] + e2[1] * s1e[1] + e2[2] * s1e[2]
    for j in range(y1 - y0 + 1):
        Y = (y0 + j) * py
        for i in range(nx + 1):
            X = (x0 + i) * px
            l0 = origin[0] + fast[0] * X + slow[0] * Y
            l1 = origin[1] + fast[1] * X + slow[1] * Y
            l2 = origin[2] + fast[2] * X + slow[2] * Y
            inv = 1.0 / math.sqrt(l0 * l0 + l1 * l1 + l2 * l2)
            l0 *= inv
            l1 *= inv
            l2 *= inv
            cc1[j * (nx + 1) + i] = e1[0] * l0 + e1[1] * l1 + e1[2] * l2 - k0
            cc2[j * (nx + 1) + i] = e2[0] * l0 + e2[1] * l1 + e2[2] * l2 - k1
