"""Strong-pixel thresholds: DIALS's ``dispersion`` and ``dispersion_extended``.

Both work on one panel image (slow, fast) and its mask of usable pixels, and return
the strong pixels as sorted linear indices ``y * width + x`` and their values (as
float32, the precision DIALS keeps in a shoebox).

``dispersion_extended`` (DIALS's default) follows
``dials/algorithms/image/threshold/local.h::DispersionExtendedThreshold``:

1. Over a (2k+1)² box (k = ``kernel_size``, clipped at the image edge) the number
   m, sum x and sum of squares y of the usable pixels (pixels ≥ 2²⁴ counts are left
   out of the sums, not out of the mask). A usable pixel with m ≥ ``min_local`` and
   x ≥ 0 is *dispersed* when the index of dispersion is too high for Poisson noise:
   ``m·y − x² − x(m−1) > x·σ_b·√(2(m−1))`` (with a gain g:
   ``m·y − x² > g·x·(m − 1 + σ_b·√(2(m−1)))``).
2. The dispersed region is eroded: a pixel stays in the *core* when its Chebyshev
   distance to the nearest non-dispersed (or masked) pixel of the image is at least
   min(kernel_size) — the image border does not count as non-dispersed.
3. The background mean is taken over a (2(k+2)+1)² box of usable, non-core pixels
   (mean = 0 with fewer than 2 of them). A core pixel is strong when its value is
   above ``global_threshold`` and ≥ mean + σ_s·√(g·mean).

``dispersion`` (``DispersionThreshold``) is step 1 plus the strong test
``m·v − x > σ_s·√(g·x·m)`` and ``v > global_threshold`` on the same box.

Sums are kept in float64 (exact for integer counts, as DIALS's summed-area tables
in double are), so results equal DIALS's pixel for pixel on integer images.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

BIG = float(1 << 24)  # DIALS leaves pixels ≥ 2^24 counts out of the local sums

# bits of the per-pixel state array
_VALID = 1
_DISP = 2
_CORE = 4


@njit(cache=True)
def _enter_row(src, mask, lo, hi, r, state, col_m, col_x, col_y):
    """Mark row r's usable pixels _VALID and add them (below 2^24) to the column sums."""
    for i in range(src.shape[1]):
        v = float(src[r, i])
        if mask[r, i] and lo < v and v < hi:
            state[r, i] = _VALID
            if v < BIG:
                col_m[i] += 1
                col_x[i] += v
                col_y[i] += v * v
        else:
            state[r, i] = 0


@njit(cache=True)
def _dispersion_pass(src, mask, lo, hi, ky, kx, nsig_b, nsig_s, threshold, min_count,
                     gain, use_gain, plain, state):
    """Pass 1: usable-pixel mask and the dispersion test over the (2k+1)² box.

    ``state`` (uint8, same shape) receives _VALID and _DISP bits. With ``plain``
    (DIALS's ``dispersion`` algorithm) _DISP is the final strong decision.
    Returns the number of pixels with _DISP set.
    """
    ny, nx = src.shape
    col_m = np.zeros(nx, np.int64)
    col_x = np.zeros(nx, np.float64)
    col_y = np.zeros(nx, np.float64)
    n_disp = 0
    # rows [0, ky) enter the column sums before row 0 is tested
    for r in range(min(ky, ny)):
        _enter_row(src, mask, lo, hi, r, state, col_m, col_x, col_y)
    for j in range(ny):
        r = j + ky  # row entering
        if r < ny:
            _enter_row(src, mask, lo, hi, r, state, col_m, col_x, col_y)
        r = j - ky - 1  # row leaving
        if r >= 0:
            for i in range(nx):
                if state[r, i] & _VALID:
                    v = float(src[r, i])
                    if v < BIG:
                        col_m[i] -= 1
                        col_x[i] -= v
                        col_y[i] -= v * v
        # horizontal sliding window over the column sums
        m = 0
        x = 0.0
        y = 0.0
        for i in range(min(kx, nx)):
            m += col_m[i]
            x += col_x[i]
            y += col_y[i]
        for i in range(nx):
            c = i + kx
            if c < nx:
                m += col_m[c]
                x += col_x[c]
                y += col_y[c]
            c = i - kx - 1
            if c >= 0:
                m -= col_m[c]
                x -= col_x[c]
                y -= col_y[c]
            s = state[j, i]
            if (s & _VALID) and m >= min_count and x >= 0.0:
                fm = float(m)
                if use_gain:
                    a = fm * y - x * x
                    cc = gain * x * (fm - 1.0 + nsig_b * math.sqrt(2.0 * (fm - 1.0)))
                else:
                    a = fm * y - x * x - x * (fm - 1.0)
                    cc = x * nsig_b * math.sqrt(2.0 * (fm - 1.0))
                hit = a > cc
                if plain and hit:
                    v = float(src[j, i])
                    b = fm * v - x
                    if use_gain:
                        d = nsig_s * math.sqrt(gain * x * fm)
                    else:
                        d = nsig_s * math.sqrt(x * fm)
                    hit = v > threshold and b > d
                if hit:
                    state[j, i] = s | _DISP
                    n_disp += 1
    return n_disp


@njit(cache=True)
def _erode_pass(state, erosion):
    """Pass 2: core = dispersed pixels whose Chebyshev distance to the nearest
    non-dispersed pixel inside the image is ≥ ``erosion``. Returns the core count."""
    ny, nx = state.shape
    r = erosion - 1
    n_core = 0
    for j in range(ny):
        j0 = max(0, j - r)
        j1 = min(ny - 1, j + r)
        for i in range(nx):
            if not (state[j, i] & _DISP):
                continue
            i0 = max(0, i - r)
            i1 = min(nx - 1, i + r)
            keep = True
            for jj in range(j0, j1 + 1):
                for ii in range(i0, i1 + 1):
                    if not (state[jj, ii] & _DISP):
                        keep = False
                        break
                if not keep:
                    break
            if keep:
                state[j, i] |= _CORE
                n_core += 1
    return n_core


@njit(cache=True)
def _final_pass(src, state, ky, kx, nsig_s, threshold, gain, use_gain, n_core, out_idx, out_val):
    """Pass 3: local-mean test of the core pixels against the background (usable,
    non-core) pixels of the widened box. Returns the number of strong pixels."""
    ny, nx = state.shape
    n = 0
    for j in range(ny):
        j0 = max(0, j - ky)
        j1 = min(ny - 1, j + ky)
        for i in range(nx):
            if not (state[j, i] & _CORE):
                continue
            v = float(src[j, i])
            if not v > threshold:
                continue
            i0 = max(0, i - kx)
            i1 = min(nx - 1, i + kx)
            m = 0
            x = 0.0
            for jj in range(j0, j1 + 1):
                for ii in range(i0, i1 + 1):
                    s = state[jj, ii]
                    if (s & _VALID) and not (s & _CORE):
                        w = float(src[jj, ii])
                        if w < BIG:
                            m += 1
                            x += w
            if x < 0.0:
                continue
            mean = x / m if m >= 2 else 0.0
            if use_gain:
                limit = mean + nsig_s * math.sqrt(gain * mean)
            else:
                limit = mean + nsig_s * math.sqrt(mean)
            if v >= limit:
                out_idx[n] = j * nx + i
                out_val[n] = np.float32(v)
                n += 1
    return n


@njit(cache=True)
def _gather(src, state, bit, count, out_idx, out_val):
    ny, nx = state.shape
    n = 0
    for j in range(ny):
        for i in range(nx):
            if state[j, i] & bit:
                out_idx[n] = j * nx + i
                out_val[n] = np.float32(src[j, i])
                n += 1
    return n


class DispersionThreshold:
    """DIALS's dispersion thresholds for images of one size.

    ``extended=True`` is ``dispersion_extended`` (the default of DIALS), otherwise
    ``dispersion``. Parameters are DIALS's: ``kernel_size`` (half-widths, slow then
    fast as DIALS's C++ reads ``kernel_size = 3 3``), ``sigma_background``, ``sigma_strong``,
    ``global_threshold``, ``min_local`` (≤ 0: the whole box) and ``gain`` (None: no
    gain map, DIALS's default; a number: a flat gain map).
    """

    def __init__(self, kernel_size=(3, 3), sigma_background=6.0, sigma_strong=3.0,
                 global_threshold=0.0, min_local=2, gain=None, extended=True):
        # DIALS: kernel_size is (slow, fast) like image.all(): kysize = [0], kxsize = [1]
        ky, kx = int(kernel_size[0]), int(kernel_size[1])
        if kx <= 0 or ky <= 0:
            raise ValueError(f"kernel_size must be positive, got {ky},{kx}")
        if sigma_background < 0 or sigma_strong < 0:
            raise ValueError("sigma_background and sigma_strong must be ≥ 0")
        if global_threshold < 0:
            raise ValueError("global_threshold must be ≥ 0")
        if gain is not None and not gain > 0:
            raise ValueError("gain must be > 0")
        num_kernel = (2 * kx + 1) * (2 * ky + 1)
        if min_local <= 0:
            min_local = num_kernel
        elif not 1 < min_local <= num_kernel:
            raise ValueError(f"min_local must be between 2 and {num_kernel} (the kernel's pixels) or ≤ 0")
        self.kx, self.ky = kx, ky
        self.sigma_background = float(sigma_background)
        self.sigma_strong = float(sigma_strong)
        self.global_threshold = float(global_threshold)
        self.min_local = int(min_local)
        self.gain = None if gain is None else float(gain)
        self.extended = bool(extended)
        self._state = None

    def _buffer(self, shape):
        if self._state is None or self._state.shape != shape:
            self._state = np.empty(shape, np.uint8)
        return self._state

    def strong_pixels(self, image: np.ndarray, mask: np.ndarray,
                      trusted_range=(-np.inf, np.inf)) -> tuple[np.ndarray, np.ndarray]:
        """Strong pixels of one panel image.

        ``mask`` is True for usable pixels; pixels outside the open ``trusted_range``
        (lo < v < hi, as dxtbx) are masked too. Returns (sorted int64 linear indices,
        float32 values).
        """
        image = np.ascontiguousarray(image)
        if image.dtype.kind not in "iuf":
            image = image.astype(np.float64)
        mask = np.ascontiguousarray(mask, dtype=np.bool_)
        if image.shape != mask.shape:
            raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape")
        state = self._buffer(image.shape)
        lo, hi = float(trusted_range[0]), float(trusted_range[1])
        use_gain = self.gain is not None
        gain = self.gain if use_gain else 1.0
        n_disp = _dispersion_pass(image, mask, lo, hi, self.ky, self.kx, self.sigma_background,
                                  self.sigma_strong, self.global_threshold, self.min_local,
                                  gain, use_gain, not self.extended, state)
        if not self.extended:
            idx = np.empty(n_disp, np.int64)
            val = np.empty(n_disp, np.float32)
            _gather(image, state, _DISP, n_disp, idx, val)
            return idx, val
        n_core = _erode_pass(state, min(self.kx, self.ky))
        idx = np.empty(n_core, np.int64)
        val = np.empty(n_core, np.float32)
        n = _final_pass(image, state, self.ky + 2, self.kx + 2, self.sigma_strong,
                        self.global_threshold, gain, use_gain, n_core, idx, val)
        return idx[:n], val[:n]

    def threshold(self, image, mask, trusted_range=(-np.inf, np.inf)) -> np.ndarray:
        """Boolean strong-pixel image (as DIALS's threshold functions return)."""
        idx, _ = self.strong_pixels(image, mask, trusted_range)
        out = np.zeros(np.shape(image), np.bool_)
        out.reshape(-1)[idx] = True
        return out
