"""Connected strong pixels → spots, as DIALS labels and measures them.

Labelling (``dials/model/data/pixel_list.h``): pixels are joined to their face
neighbours — x±1 and y±1 on the same image and, for rotation sweeps, the same pixel
on the next image (6-connectivity in 3-D; 4-connectivity per image in 2-D for stills
or ``force_2d``). A spot is listed at the position of its first pixel in (z, y, x)
order, per panel, which is DIALS's label order.

The labeller is fed one image at a time and keeps only the pixels of spots that may
still grow (those with a pixel on the latest image), so memory is bounded by the
strong pixels of the open spots.

Per spot (``dials/model/data/shoebox.h``, ``centroid_points.h``, ``summation.h``),
with pixel values v in float32 as DIALS's shoebox holds them:

* centroid: Σ v·c / Σ v over pixel centres c = (x + 0.5, y + 0.5, z + 0.5);
* variance (``xyzobs.px.variance``): the unbiased variance
  Σ v (c − c̄)² · Σv / ((Σv)² − Σv²) divided by Σv, plus 1/12; a single-pixel
  (or otherwise degenerate) spot gets 1/12;
* ``intensity.sum.value`` = Σ v (float32 sum), ``intensity.sum.variance`` = |Σ v|;
* peak: the first pixel of maximal value; a spot whose peak is more than
  ``max_separation`` px from its centroid (3-D distance) is rejected;
* spots with fewer than ``min_spot_size`` or more than ``max_spot_size`` pixels are
  rejected before all that.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _find(parent, a):
    r = a
    while parent[r] != r:
        r = parent[r]
    while parent[a] != r:  # path compression
        nxt = parent[a]
        parent[a] = r
        a = nxt
    return r


@njit(cache=True)
def _union(parent, a, b):
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra < rb:
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@njit(cache=True)
def _link(idx, parent, start_prev, start_cur, n, width, link_prev):
    """Union the pixels of the current image [start_cur, n) with their x+1 and y+1
    neighbours, and (``link_prev``) with the same pixel of the previous image
    [start_prev, start_cur)."""
    for i in range(start_cur, n):
        parent[i] = i
    p = start_cur
    for i in range(start_cur, n):
        k = idx[i]
        if i + 1 < n and idx[i + 1] == k + 1 and (k % width) != width - 1:
            _union(parent, i, i + 1)
        target = k + width
        while p < n and idx[p] < target:
            p += 1
        if p < n and idx[p] == target:
            _union(parent, i, p)
    if link_prev:
        q = start_prev
        for i in range(start_cur, n):
            k = idx[i]
            while q < start_cur and idx[q] < k:
                q += 1
            if q < start_cur and idx[q] == k:
                _union(parent, q, i)


@njit(cache=True)
def _roots(parent, n, start_cur, close_all):
    """Root of every pixel (flattening the forest) and which pixels stay open (their
    spot has a pixel on the current image)."""
    root = np.empty(n, np.int64)
    for i in range(n):
        root[i] = _find(parent, i)
    is_open = np.zeros(n, np.bool_)
    if not close_all:
        live = np.zeros(n, np.bool_)
        for i in range(start_cur, n):
            live[root[i]] = True
        for i in range(n):
            is_open[i] = live[root[i]]
    return root, is_open


@njit(cache=True)
def _spot_stats(z, idx, val, order, starts, width, min_size, max_size,
                n_pix, bbox, xyz, var, isum, peak):
    """Measure each spot: pixels order[starts[s]:starts[s+1]] (in (z, y, x) order).

    Spots outside [min_size, max_size] get n_pix but no other values (they are
    rejected). Follows DIALS's float32 shoebox arithmetic.
    """
    nspot = starts.shape[0] - 1
    for s in range(nspot):
        a = starts[s]
        b = starts[s + 1]
        n = b - a
        n_pix[s] = n
        x0 = 1 << 30
        x1 = -1
        y0 = 1 << 30
        y1 = -1
        z0 = 1 << 30
        z1 = -(1 << 30)
        for t in range(a, b):
            p = order[t]
            y = idx[p] // width
            x = idx[p] - y * width
            zz = z[p]
            x0 = min(x0, x)
            x1 = max(x1, x + 1)
            y0 = min(y0, y)
            y1 = max(y1, y + 1)
            z0 = min(z0, zz)
            z1 = max(z1, zz + 1)
        bbox[s, 0] = x0
        bbox[s, 1] = x1
        bbox[s, 2] = y0
        bbox[s, 3] = y1
        bbox[s, 4] = z0
        bbox[s, 5] = z1
        if n < min_size or n > max_size:
            continue
        # sums in float32 as DIALS (af::sum over the float shoebox values)
        s1 = np.float32(0.0)
        s2 = np.float32(0.0)
        vmax = np.float32(-np.inf)
        pk = -1
        for t in range(a, b):
            v = val[order[t]]
            s1 += v
            s2 += v * v
            if v > vmax:
                vmax = v
                pk = order[t]
        isum[s] = float(s1)
        py = idx[pk] // width
        peak[s, 0] = float(idx[pk] - py * width) + 0.5
        peak[s, 1] = float(py) + 0.5
        peak[s, 2] = float(z[pk]) + 0.5
        sp = float(s1)
        ssq = float(s2)
        if not sp > 0.0:  # DIALS: centroid fails -> bbox middle, zero variance
            xyz[s, 0] = (x0 + x1) / 2.0
            xyz[s, 1] = (y0 + y1) / 2.0
            xyz[s, 2] = (z0 + z1) / 2.0
            var[s, 0] = 0.0
            var[s, 1] = 0.0
            var[s, 2] = 0.0
            continue
        cx = 0.0
        cy = 0.0
        cz = 0.0
        for t in range(a, b):
            p = order[t]
            v = float(val[p])
            y = idx[p] // width
            x = idx[p] - y * width
            cx += v * (x - x0 + 0.5)
            cy += v * (y - y0 + 0.5)
            cz += v * (z[p] - z0 + 0.5)
        mx = cx / sp
        my = cy / sp
        mz = cz / sp
        dx = 0.0
        dy = 0.0
        dz = 0.0
        for t in range(a, b):
            p = order[t]
            v = float(val[p])
            y = idx[p] // width
            x = idx[p] - y * width
            ex = (x - x0 + 0.5) - mx
            ey = (y - y0 + 0.5) - my
            ez = (z[p] - z0 + 0.5) - mz
            dx += v * (ex * ex)
            dy += v * (ey * ey)
            dz += v * (ez * ez)
        xyz[s, 0] = mx + x0
        xyz[s, 1] = my + y0
        xyz[s, 2] = mz + z0
        if z1 == z0 + 1:
            xyz[s, 2] = z0 + 0.5
        den = sp * sp - ssq
        if den > 0.0:
            var[s, 0] = dx * sp / den / sp + 1.0 / 12.0
            var[s, 1] = dy * sp / den / sp + 1.0 / 12.0
            var[s, 2] = dz * sp / den / sp + 1.0 / 12.0
        else:
            var[s, 0] = 1.0 / 12.0
            var[s, 1] = 1.0 / 12.0
            var[s, 2] = 1.0 / 12.0


SPOT_FIELDS = ("panel", "key_z", "key_idx", "n_pix", "bbox", "xyz", "var", "isum", "peak")


def empty_spots() -> dict:
    return {"panel": np.zeros(0, np.int64), "key_z": np.zeros(0, np.int64),
            "key_idx": np.zeros(0, np.int64), "n_pix": np.zeros(0, np.int64),
            "bbox": np.zeros((0, 6), np.int64), "xyz": np.zeros((0, 3)),
            "var": np.zeros((0, 3)), "isum": np.zeros(0), "peak": np.zeros((0, 3))}


def concat_spots(parts: list[dict]) -> dict:
    parts = [p for p in parts if len(p["n_pix"])]
    if not parts:
        return empty_spots()
    return {k: np.concatenate([p[k] for p in parts]) for k in SPOT_FIELDS}


class PanelLabeller:
    """Streams one panel's strong pixels image by image into measured spots.

    ``add(frame, idx, val)`` takes the sorted linear indices (y·width + x) and
    float32 values of one image's strong pixels; ``finish()`` closes every open
    spot. ``take()`` returns (and forgets) the spots closed so far as a dict of
    arrays: panel, key_z/key_idx (first pixel), n_pix, bbox, xyz, var, isum, peak.
    """

    def __init__(self, panel: int, width: int, twod: bool, min_spot_size: int, max_spot_size: int):
        self.panel = int(panel)
        self.width = int(width)
        self.twod = bool(twod)
        self.min_size = int(min_spot_size)
        self.max_size = int(max_spot_size)
        self._z = np.zeros(0, np.int64)
        self._idx = np.zeros(0, np.int64)
        self._val = np.zeros(0, np.float32)
        self._prev_frame = None
        self._prev_start = 0
        self._root_prev = np.zeros(0, np.int64)
        self._closed: list[dict] = []
        self.n_open_max = 0

    @property
    def n_open(self) -> int:
        return len(self._idx)

    def add(self, frame: int, idx: np.ndarray, val: np.ndarray) -> None:
        idx = np.asarray(idx, np.int64)
        val = np.asarray(val, np.float32)
        start = len(self._idx)
        self._z = np.concatenate([self._z, np.full(len(idx), frame, np.int64)])
        self._idx = np.concatenate([self._idx, idx])
        self._val = np.concatenate([self._val, val])
        n = len(self._idx)
        parent = np.empty(n, np.int64)
        # pixels already open keep their (flattened) roots from the last close
        if start:
            parent[:start] = self._root_prev
        link_prev = (not self.twod and self._prev_frame is not None and frame == self._prev_frame + 1)
        _link(self._idx, parent, self._prev_start, start, n, self.width, link_prev)
        self.n_open_max = max(self.n_open_max, n)
        self._close(parent, start, close_all=self.twod)
        self._prev_frame = frame

    def finish(self) -> None:
        n = len(self._idx)
        if n:
            parent = self._root_prev.copy()
            self._close(parent, n, close_all=True)
        self._prev_frame = None

    def _close(self, parent, start_cur, close_all):
        n = len(self._idx)
        root, is_open = _roots(parent, n, start_cur, close_all)
        closed = ~is_open
        if closed.any():
            sel = np.flatnonzero(closed)
            order = sel[np.argsort(root[sel], kind="stable")]
            r = root[order]
            first = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
            starts = np.r_[first, len(order)].astype(np.int64)
            self._closed.append(self._measure(order, starts))
        keep = np.flatnonzero(is_open)
        remap = np.full(n, -1, np.int64)
        remap[keep] = np.arange(len(keep))
        # where the current image's pixels start after compaction
        self._prev_start = int(np.searchsorted(keep, start_cur)) if len(keep) else 0
        self._root_prev = remap[root[keep]]
        self._z = self._z[keep]
        self._idx = self._idx[keep]
        self._val = self._val[keep]

    def _measure(self, order, starts) -> dict:
        ns = len(starts) - 1
        n_pix = np.zeros(ns, np.int64)
        bbox = np.zeros((ns, 6), np.int64)
        xyz = np.zeros((ns, 3))
        var = np.zeros((ns, 3))
        isum = np.zeros(ns)
        peak = np.zeros((ns, 3))
        _spot_stats(self._z, self._idx, self._val, order, starts, self.width, self.min_size,
                    self.max_size, n_pix, bbox, xyz, var, isum, peak)
        heads = order[starts[:-1]]
        return {"panel": np.full(ns, self.panel, np.int64), "key_z": self._z[heads].copy(),
                "key_idx": self._idx[heads].copy(), "n_pix": n_pix, "bbox": bbox, "xyz": xyz,
                "var": var, "isum": isum, "peak": peak}

    def take(self) -> dict:
        out = concat_spots(self._closed)
        self._closed = []
        return out


def order_spots(spots: dict) -> dict:
    """DIALS's order: by panel, then by the first pixel (z, y, x) of each spot."""
    o = np.lexsort((spots["key_idx"], spots["key_z"], spots["panel"]))
    return {k: v[o] for k, v in spots.items()}


def filter_spots(spots: dict, min_spot_size: int, max_spot_size: int,
                 max_separation: float | None) -> tuple[dict, dict]:
    """Size filter, then DIALS's peak-to-centroid distance filter; returns the kept
    spots and the counts removed at each step."""
    n = spots["n_pix"]
    too_small = n < min_spot_size
    too_large = n > max_spot_size
    ok = ~(too_small | too_large)
    counts = {"n_extracted": int(len(n)), "n_too_small": int(too_small.sum()),
              "n_too_large": int(too_large.sum())}
    if max_separation is not None:
        d = np.linalg.norm(spots["peak"] - spots["xyz"], axis=1)
        sep_ok = d <= max_separation
        counts["n_separation_rejected"] = int((ok & ~sep_ok).sum())
        ok &= sep_ok
    else:
        counts["n_separation_rejected"] = 0
    kept = {k: v[ok] for k, v in spots.items()}
    counts["n_spots"] = int(ok.sum())
    return kept, counts
