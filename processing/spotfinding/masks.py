"""Static spot-finding masks, as ``dials.util.masking.generate_mask`` builds them.

* ``border``: pixels within ``border`` of the panel edge;
* resolution: d at each pixel centre (x + 0.5, y + 0.5) through the panel's
  pixel→millimetre mapping (parallax-corrected when the panel says so, unless
  ``disable_parallax_correction``); pixels with d ≤ ``d_min`` or d ≥ ``d_max`` are
  masked (DIALS masks the closed ranges [0, d_min] and [d_max, max(d_max+1, 1e9)]);
* ice rings: hexagonal ice (a = 4.498, c = 7.338 Å, P 63/mmc, systematic absences
  left out) down to the panel's corner resolution; each ring masks
  1/d² ± ``width``/2 (DIALS's default width 0.002 Å⁻²).

Masks are bool arrays (slow, fast), True = usable.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import XtalError

ICE_CELL = (4.498, 4.498, 7.338, 90.0, 90.0, 120.0)
ICE_SPACE_GROUP = "P 63/m m c"  # No. 194


def pixel_resolution(panel, s0, rows: slice | None = None, parallax: bool = True) -> np.ndarray:
    """d-spacing (Å) at every pixel centre of ``panel`` (or of the given rows)."""
    nx, ny = panel.image_size
    r = range(ny)[rows] if rows is not None else range(ny)
    ys = np.arange(r.start, r.stop, dtype=float) + 0.5
    xs = np.arange(nx, dtype=float) + 0.5
    xy = np.column_stack([np.tile(xs, len(ys)), np.repeat(ys, nx)])
    if parallax:
        mm = panel.pixel_to_millimeter(xy)
    else:
        mm = xy * np.asarray(panel.pixel_size)
    lab = panel.get_lab_coord(mm)
    s0 = np.asarray(s0, dtype=float)
    k = np.linalg.norm(s0)
    s1 = lab / np.linalg.norm(lab, axis=1)[:, None] * k
    with np.errstate(divide="ignore"):
        d = 1.0 / np.linalg.norm(s1 - s0, axis=1)
    return d.reshape(len(ys), nx)


def ice_ring_d_ranges(d_min: float, width: float = 0.002) -> list[tuple[float, float]]:
    """(d_min, d_max) of every hexagonal-ice ring with d ≥ ``d_min``."""
    import gemmi

    cell = gemmi.UnitCell(*ICE_CELL)
    ops = gemmi.SpaceGroup(ICE_SPACE_GROUP).operations()
    hmax = int(math.ceil(max(ICE_CELL[:3]) / d_min)) + 1
    ds = set()
    for h in range(-hmax, hmax + 1):
        for k in range(-hmax, hmax + 1):
            for l in range(0, hmax + 1):
                if h == k == l == 0:
                    continue
                d = cell.calculate_d([h, k, l])
                if d < d_min or ops.is_systematically_absent([h, k, l]):
                    continue
                ds.add(round(d, 9))
    half = 0.5 * width
    out = []
    for d in sorted(ds, reverse=True):
        q = 1.0 / d ** 2
        lo, hi = q - half, q + half
        out.append((math.sqrt(1.0 / hi), math.sqrt(1.0 / lo) if lo > 0 else math.inf))
    return out


def static_panel_mask(panel, beam, base: np.ndarray | None = None, *, border: int = 0,
                      d_min: float | None = None, d_max: float | None = None,
                      ice_rings: bool = False, ice_rings_width: float = 0.002,
                      ice_rings_d_min: float | None = None,
                      disable_parallax_correction: bool = False,
                      block_rows: int = 256) -> np.ndarray:
    """The spot-finding mask of one panel: ``base`` (e.g. the image file's mask),
    the panel's untrusted rectangles, the border, resolution limits and ice rings."""
    nx, ny = panel.image_size
    mask = np.ones((ny, nx), np.bool_) if base is None else np.array(base, dtype=np.bool_, copy=True)
    if mask.shape != (ny, nx):
        raise XtalError(f"mask shape {mask.shape} does not match the panel ({ny}, {nx})")
    for x0, y0, x1, y1 in panel.mask:
        mask[int(y0):int(y1), int(x0):int(x1)] = False
    if border > 0:
        mask[:border, :] = False
        mask[-border:, :] = False
        mask[:, :border] = False
        mask[:, -border:] = False
    ranges = []
    if d_min is not None:
        ranges.append((0.0, float(d_min)))
    if d_max is not None:
        ranges.append((float(d_max), max(float(d_max) + 1.0, 1e9)))
    if ice_rings:
        s0 = beam.s0
        dm = ice_rings_d_min if ice_rings_d_min is not None else panel.get_max_resolution_at_corners(s0)
        ranges += ice_ring_d_ranges(dm, ice_rings_width)
    if ranges:
        parallax = not disable_parallax_correction
        lo = np.array([r[0] for r in ranges])
        hi = np.array([r[1] for r in ranges])
        for y0 in range(0, ny, block_rows):
            rows = slice(y0, min(ny, y0 + block_rows))
            d = pixel_resolution(panel, beam.s0, rows, parallax)
            bad = np.zeros(d.shape, np.bool_)
            if len(ranges) <= 4:
                for a, b in ranges:
                    bad |= (a <= d) & (d <= b)
            else:  # many rings: search the sorted ranges
                order = np.argsort(lo)
                los, his = lo[order], np.maximum.accumulate(hi[order])
                pos = np.searchsorted(los, d, side="right") - 1
                inside = pos >= 0
                bad[inside] = d[inside] <= his[pos[inside]]
            mask[rows] &= ~bad
    return mask
