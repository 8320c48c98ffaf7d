"""Diffraction images as PNG views for the browser's image viewer (numpy only, no Django).

A view is a rectangle of one panel's pixels rendered at most ``max_width × max_height``
output pixels: the rectangle is binned by an integer factor with the *maximum* of each
block (a spot of one pixel stays visible however far the view is zoomed out), the
counts between the black and white levels are mapped to 254 grey (or colour) levels,
and the result is written as an 8-bit palette PNG (zlib, written here: no imaging
library). Two palette entries are reserved: :data:`OVERLOAD` (a block holding a pixel at
or above the trusted range's top) and :data:`MASKED` (a block whose pixels are all
masked: the file's pixel mask, module gaps, values below the trusted range).

Images are read through ``processing.io.images.open_imageset`` and kept, decoded, in a
small least-recently-used cache (:class:`ImageCache`) so that zooming, panning and
changing the contrast of one image reads it once.
"""
from __future__ import annotations

import struct
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

N_LEVELS = 254  # data levels 0..253
OVERLOAD = 254
MASKED = 255
MAX_OUTPUT = 4096

_STOPS = {
    # (position 0..1, r, g, b): level 0 (the black level) first
    "greys": [(0.0, 255, 255, 255), (1.0, 0, 0, 0)],
    "inverse": [(0.0, 0, 0, 0), (1.0, 255, 255, 255)],
    "heat": [(0.0, 0, 0, 0), (0.35, 190, 0, 0), (0.7, 255, 200, 0), (1.0, 255, 255, 255)],
    "viridis": [(0.0, 68, 1, 84), (0.125, 71, 44, 122), (0.25, 59, 81, 139), (0.375, 44, 113, 142),
                (0.5, 33, 144, 141), (0.625, 39, 173, 129), (0.75, 92, 200, 99), (0.875, 170, 220, 50),
                (1.0, 253, 231, 37)],
}
#: colours of overloaded and masked blocks for each colour map
_SPECIAL = {"greys": ((230, 0, 0), (120, 160, 215)), "inverse": ((255, 40, 40), (40, 70, 140)),
            "heat": ((0, 200, 255), (40, 70, 140)), "viridis": ((255, 0, 0), (150, 150, 150))}
COLOUR_MAPS = tuple(_STOPS)


def palette(name: str) -> np.ndarray:
    """256×3 uint8: the colour map over levels 0..253, then the overload and masked colours."""
    if name not in _STOPS:
        raise ValueError(f"unknown colour map {name!r} (one of {', '.join(COLOUR_MAPS)})")
    stops = np.array(_STOPS[name], dtype=float)
    t = np.linspace(0.0, 1.0, N_LEVELS)
    rgb = np.stack([np.interp(t, stops[:, 0], stops[:, c]) for c in (1, 2, 3)], axis=1)
    out = np.zeros((256, 3), np.uint8)
    out[:N_LEVELS] = np.rint(rgb).astype(np.uint8)
    out[OVERLOAD], out[MASKED] = _SPECIAL[name]
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_indexed(levels: np.ndarray, colours: np.ndarray, compression: int = 1) -> bytes:
    """An 8-bit palette PNG of ``levels`` (2-D uint8) with ``colours`` (256×3 uint8)."""
    levels = np.ascontiguousarray(levels, dtype=np.uint8)
    h, w = levels.shape
    rows = np.empty((h, w + 1), np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    rows[:, 1:] = levels
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + _chunk(b"PLTE", np.ascontiguousarray(colours, dtype=np.uint8).tobytes())
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), compression))
            + _chunk(b"IEND", b""))


def decode_png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header (for checks)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


# --- decoded images -------------------------------------------------------------------


@dataclass
class PanelImage:
    """One panel of one image: the counts, which pixels are usable, and where the
    overloads are. ``valid`` is the static mask (file pixel mask, module gaps) and the
    open trusted range (lo < v < hi, as dxtbx); ``overloads`` the (y, x) of pixels ≥ hi."""

    raw: np.ndarray
    valid: np.ndarray
    overloads: tuple[np.ndarray, np.ndarray]
    trusted_range: tuple[float, float]
    auto: tuple[float, float] | None = None  # auto_levels, once computed

    @property
    def shape(self) -> tuple[int, int]:
        return self.raw.shape

    @property
    def nbytes(self) -> int:
        return self.raw.nbytes + self.valid.nbytes

    def value(self, x: int, y: int) -> dict:
        """The pixel (x fast, y slow; integers) — its count and status."""
        v = self.raw[y, x]
        status = "ok"
        if not self.valid[y, x]:
            lo, hi = self.trusted_range
            status = "overloaded" if v >= hi else ("below trusted range" if v <= lo else "masked")
        return {"value": float(v) if self.raw.dtype.kind == "f" else int(v), "status": status}


def panel_image(raw: np.ndarray, static_mask: np.ndarray | None, trusted_range) -> PanelImage:
    lo, hi = (float(trusted_range[0]), float(trusted_range[1])) if trusted_range else (-np.inf, np.inf)
    valid = (raw > lo) & (raw < hi)
    if static_mask is not None:
        valid &= static_mask
    over = np.nonzero(raw >= hi)
    return PanelImage(raw, valid, over, (lo, hi))


class ImageCache:
    """Decoded panel images by key, least recently used dropped beyond ``max_bytes``;
    static masks by file. Thread-safe (the dev server and gunicorn's threads share it)."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self._images: OrderedDict = OrderedDict()
        self._masks: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, load):
        """The cached value for ``key``, else ``load()`` (a PanelImage) cached."""
        with self._lock:
            item = self._images.get(key)
            if item is not None:
                self._images.move_to_end(key)
                return item
        item = load()
        with self._lock:
            self._images[key] = item
            self._images.move_to_end(key)
            total = sum(v.nbytes for v in self._images.values())
            while total > self.max_bytes and len(self._images) > 1:
                _, old = self._images.popitem(last=False)
                total -= old.nbytes
        return item

    def mask(self, key, load):
        with self._lock:
            m = self._masks.get(key)
            if m is not None:
                return m
        m = load()
        with self._lock:
            self._masks[key] = m
            while len(self._masks) > 8:
                self._masks.popitem(last=False)
        return m

    def clear(self) -> None:
        with self._lock:
            self._images.clear()
            self._masks.clear()


# --- views ----------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """What a request asks for: region (x0, y0, x1, y1; px, ends exclusive) of the
    panel, the largest output size, levels (None: automatic) and the look."""

    x0: float = 0.0
    y0: float = 0.0
    x1: float | None = None
    y1: float | None = None
    max_width: int = 1024
    max_height: int = 1024
    lo: float | None = None
    hi: float | None = None
    colour_map: str = "greys"
    show_mask: bool = True


def auto_levels(image: PanelImage, step: int = 7) -> tuple[float, float]:
    """Black and white levels for an image: 0 (or the lowest usable count if negative)
    and 8 × (the 90th percentile + 1) of every ``step``-th usable pixel — the background
    a light grey speckle, spots (≥ 8× the background) black, as DIALS's viewer shows them."""
    if image.auto is not None:
        return image.auto
    image.auto = _auto_levels(image, step)
    return image.auto


def _auto_levels(image: PanelImage, step: int) -> tuple[float, float]:
    sample = image.raw.ravel()[::step][image.valid.ravel()[::step]]
    if sample.size == 0:
        return 0.0, 1.0
    lo = float(min(0.0, np.min(sample)))
    hi = 8.0 * (float(np.quantile(sample, 0.9)) + 1.0)
    return lo, max(hi, lo + 1.0)


def _sentinel(dtype) -> float | int:
    return -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min


def render_view(image: PanelImage, view: View) -> tuple[bytes, dict]:
    """The view as PNG bytes and what was drawn: ``region`` (the rectangle actually
    rendered, aligned to the binning), ``binning``, ``levels`` (lo, hi), ``size``
    (output width, height) and ``ms`` (time to render)."""
    t0 = time.perf_counter()
    ny, nx = image.shape
    x0, y0 = max(0, int(np.floor(view.x0))), max(0, int(np.floor(view.y0)))
    x1 = nx if view.x1 is None else min(nx, int(np.ceil(view.x1)))
    y1 = ny if view.y1 is None else min(ny, int(np.ceil(view.y1)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the region {view.x0:g},{view.y0:g} – {view.x1},{view.y1} holds no pixel of the "
                         f"{nx}×{ny} panel")
    mw = min(max(int(view.max_width), 1), MAX_OUTPUT)
    mh = min(max(int(view.max_height), 1), MAX_OUTPUT)
    f = max(1, int(np.ceil(max((x1 - x0) / mw, (y1 - y0) / mh))))
    # align the rectangle to the binning so that a pan shows the same blocks
    x0, y0 = x0 - x0 % f, y0 - y0 % f
    x1, y1 = min(nx, x1 + (-(x1 - x0)) % f), min(ny, y1 + (-(y1 - y0)) % f)
    raw = image.raw[y0:y1, x0:x1]
    valid = image.valid[y0:y1, x0:x1]
    sentinel = _sentinel(raw.dtype)
    shown = np.where(valid, raw, sentinel)
    if f > 1:
        shown = np.maximum.reduceat(shown, np.arange(0, shown.shape[1], f), axis=1)
        shown = np.maximum.reduceat(shown, np.arange(0, shown.shape[0], f), axis=0)
    lo, hi = (view.lo, view.hi)
    if lo is None or hi is None:
        alo, ahi = auto_levels(image)
        lo = alo if lo is None else lo
        hi = ahi if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    levels = np.clip((shown.astype(np.float32) - np.float32(lo)) * np.float32((N_LEVELS - 1) / (hi - lo)),
                     0, N_LEVELS - 1).astype(np.uint8)
    masked = shown == sentinel
    levels[masked] = MASKED if view.show_mask else 0
    oy, ox = image.overloads
    if len(oy):
        inside = (oy >= y0) & (oy < y1) & (ox >= x0) & (ox < x1)
        levels[(oy[inside] - y0) // f, (ox[inside] - x0) // f] = OVERLOAD if view.show_mask else N_LEVELS - 1
    png = png_indexed(levels, palette(view.colour_map))
    return png, {"region": [x0, y0, x1, y1], "binning": f, "levels": [float(lo), float(hi)],
                 "size": [int(levels.shape[1]), int(levels.shape[0])], "ms": 1000.0 * (time.perf_counter() - t0)}
