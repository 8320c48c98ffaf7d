"""Detector and beam imperfections: per-pixel gain, hot and dead pixels, dead modules,
zingers (cosmic-ray hits) and image-to-image flux changes.

Every draw comes from its own random stream seeded by (seed, tag[, sweep]), so the
crystals, spots and photon noise of a data set are the same with or without them.
Pixel positions are (x, y) = (fast, slow) pixel indices, images 0-based inside and
1-based in the truth files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instrument import module_slices

# NeXus NXdetector pixel_mask bits (as dxtbx reads them): 1 gap, 2 dead, 4 under-responding,
# 8 over-responding (hot), 16 noisy
MASK_GAP, MASK_DEAD, MASK_HOT = 1, 2, 8
ZINGER_COUNTS = (300.0, 20000.0)  # a zinger deposits a uniform random count in this range
_TAG_DETECTOR, _TAG_ZINGER, _TAG_FLUX = 0xDE7EC7, 0x2146E2, 0xF1C5


@dataclass
class DetectorDefects:
    """What is wrong with the detector, fixed for a data set."""

    gain: np.ndarray  # float32 (slow, fast), mean 1: relative response of each pixel
    fixed: np.ndarray  # int32 (slow, fast): the count a pixel always reads, −1 for a working pixel
    bits: np.ndarray  # uint32 (slow, fast): NeXus pixel_mask bits of the defects
    hot_xy: np.ndarray  # (n, 2) int: x, y of the hot pixels
    dead_xy: np.ndarray  # (n, 2) int: x, y of the dead pixels
    dead_modules: list[int]  # indices into instrument.module_slices

    def summary(self) -> dict:
        return {"n_hot_pixels": len(self.hot_xy), "n_dead_pixels": len(self.dead_xy),
                "dead_modules": [int(m) for m in self.dead_modules],
                "gain_sigma_measured": float(np.std(self.gain, dtype=np.float64))}


def gain_map(shape: tuple[int, int], sigma: float, seed: int) -> np.ndarray:
    """Per-pixel gain 1 + σ·N(0, 1) (clipped at 0), float32 (slow, fast); fixed by ``seed``."""
    rng = np.random.default_rng([seed, _TAG_DETECTOR, 1])
    g = rng.standard_normal(shape, dtype=np.float32)
    g *= np.float32(sigma)
    g += np.float32(1.0)
    return np.maximum(g, np.float32(0.0))


def detector_defects(kind: str, gap: np.ndarray, p) -> DetectorDefects | None:
    """The gain map, hot/dead pixels and dead modules of ``p`` (resolved), or None if none."""
    n_hot_req = round(p.hot_pixel_fraction * gap.size)
    n_dead_req = round(p.dead_pixel_fraction * gap.size)
    if p.gain_sigma <= 0 and n_hot_req + n_dead_req == 0 and p.n_dead_modules == 0:
        return None
    nx = gap.shape[1]
    gain = gain_map(gap.shape, p.gain_sigma, p.seed) if p.gain_sigma > 0 else np.ones(gap.shape, np.float32)
    rng = np.random.default_rng([p.seed, _TAG_DETECTOR, 2])
    flat = rng.choice(gap.size, n_hot_req + n_dead_req, replace=False)
    modules = sorted(int(m) for m in rng.choice(len(module_slices(kind)), p.n_dead_modules, replace=False))
    fixed = np.full(gap.shape, -1, dtype=np.int32)
    bits = np.zeros(gap.shape, dtype=np.uint32)
    for m in modules:
        sl = module_slices(kind)[m]
        fixed[sl] = 0
        bits[sl] |= MASK_DEAD
    live = ~gap.flat[flat] & (fixed.flat[flat] < 0)  # not in a gap or a dead module
    hot, dead = flat[:n_hot_req][live[:n_hot_req]], flat[n_hot_req:][live[n_hot_req:]]
    fixed.flat[dead] = 0
    bits.flat[dead] |= MASK_DEAD
    fixed.flat[hot] = min(int(p.hot_pixel_counts), int(p.saturation_value))
    bits.flat[hot] |= MASK_HOT
    hot, dead = np.sort(hot), np.sort(dead)
    return DetectorDefects(gain, fixed, bits, np.column_stack([hot % nx, hot // nx]),
                           np.column_stack([dead % nx, dead // nx]), modules)


def flux_factors(n_images: int, sigma: float, seed: int, sweep: int) -> np.ndarray | None:
    """Relative incident flux of every image, 1 + σ·N(0, 1) (at least 0.05), or None if σ = 0."""
    if sigma <= 0:
        return None
    rng = np.random.default_rng([seed, _TAG_FLUX, sweep])
    return np.maximum(1.0 + sigma * rng.standard_normal(n_images), 0.05)


def zingers(n_images: int, rate: float, alive: np.ndarray, seed: int, sweep: int) -> dict | None:
    """Cosmic-ray hits: Poisson(rate) per image at random live pixels (``alive`` True).

    Returns {"image" (0-based), "x", "y", "counts"} sorted by image, or None if rate = 0.
    """
    if rate <= 0:
        return None
    rng = np.random.default_rng([seed, _TAG_ZINGER, sweep])
    ny, nx = alive.shape
    n = rng.poisson(rate, n_images)
    image = np.repeat(np.arange(n_images), n)
    x = rng.integers(0, nx, len(image))
    y = rng.integers(0, ny, len(image))
    counts = rng.uniform(*ZINGER_COUNTS, len(image)).round()
    keep = alive[y, x]
    return {"image": image[keep], "x": x[keep], "y": y[keep], "counts": counts[keep].astype(np.int64)}


def add_zingers(image: np.ndarray, z: dict, i: int, saturation: int) -> None:
    """Add the zingers of image ``i`` (0-based) to ``image`` (int32, in place), saturating."""
    lo, hi = np.searchsorted(z["image"], [i, i + 1])
    if hi == lo:
        return
    nx = image.shape[1]
    flat = z["y"][lo:hi] * nx + z["x"][lo:hi]
    uniq, inv = np.unique(flat, return_inverse=True)
    add = np.bincount(inv, weights=z["counts"][lo:hi]).astype(np.int64)
    yy, xx = uniq // nx, uniq % nx
    image[yy, xx] = np.minimum(image[yy, xx].astype(np.int64) + add, saturation).astype(np.int32)
