"""The find-spots stage: threshold every image, label the strong pixels, measure spots.

``find_spots(experiment, reader, params)`` does one sweep (or set of stills);
``run_find_spots(experiments, params)`` does a list and returns one table with
``id`` = experiment index. Images are read one at a time; only the strong pixels
of spots that are still growing are kept between images. With ``nproc > 1`` blocks
of images go to worker processes (``spawn``), each opening the images itself, and
the results are labelled in image order in the calling process.

DIALS rules followed (dials/algorithms/spot_finding, dials 3.12): the mask of an
image is the reader's mask & the panels' untrusted rectangles & the trusted range
(lo < v < hi) & resolution/ice-ring/border masks; ``min_spot_size`` Auto is 3 for
pixel-array (SENSOR_PAD) detectors, 6 otherwise; spots are labelled in 3-D for a
rotation sweep and in 2-D for stills; more than ``max_strong_pixel_fraction`` of an
image's pixels strong is an error; hot pixels are pixels strong on every image of a
scan range (reported, not removed, as DIALS).
"""
from __future__ import annotations

import math
import multiprocessing
import sys
import time
import uuid
from dataclasses import dataclass

import numpy as np

from ..errors import XtalError
from ..models import Experiment
from ..params import param
from ..reflections import Flags, ReflectionTable
from .masks import static_panel_mask
from .regions import PanelLabeller, concat_spots, filter_spots, order_spots
from .threshold import DispersionThreshold

ALGORITHMS = ("dispersion_extended", "dispersion")


@dataclass(frozen=True)
class FindSpotsParams:
    """Parameters of ``xtal find_spots`` (dials.find_spots); names as DIALS's leaves."""

    threshold_algorithm: str = param("dispersion_extended", "threshold.algorithm: dispersion_extended (DIALS default) or dispersion")
    gain: float | None = param(None, "threshold.dispersion.gain: flat detector gain (None: no gain map, as DIALS)")
    kernel_size: tuple[int, ...] = param((3, 3), "threshold.dispersion.kernel_size: half-size of the local box (2k+1 pixels); one value or two (slow, fast)")
    sigma_background: float = param(6.0, "threshold.dispersion.sigma_background: index-of-dispersion cut-off in standard deviations")
    sigma_strong: float = param(3.0, "threshold.dispersion.sigma_strong: a strong pixel is this many standard deviations above the local mean")
    min_local: int = param(2, "threshold.dispersion.min_local: minimum usable pixels in the box (≤ 0: the whole box)")
    global_threshold: float = param(0.0, "threshold.dispersion.global_threshold: strong pixels must exceed this value")
    min_spot_size: int | None = param(None, "filter.min_spot_size: fewest pixels in a spot (None = Auto: 3 for pixel-array detectors, 6 otherwise)")
    max_spot_size: int = param(1000, "filter.max_spot_size: most pixels in a spot")
    max_separation: float | None = param(2.0, "filter.max_separation: largest peak-to-centroid distance (px); None switches the filter off")
    max_strong_pixel_fraction: float = param(0.25, "filter.max_strong_pixel_fraction: more strong pixels than this fraction of an image is an error")
    d_min: float | None = param(None, "filter.d_min: mask pixels at higher resolution than this (Å)")
    d_max: float | None = param(None, "filter.d_max: mask pixels at lower resolution than this (Å)")
    ice_rings: bool = param(False, "filter.ice_rings.filter: mask hexagonal-ice rings")
    ice_rings_width: float = param(0.002, "filter.ice_rings.width: width of an ice ring in 1/d² (Å⁻²)")
    border: int = param(0, "filter.border: mask this many pixels at the panel edges")
    disable_parallax_correction: bool = param(False, "filter.disable_parallax_correction: simple px→mm for the resolution masks")
    region_of_interest: tuple[int, ...] | None = param(None, "region_of_interest: x0,x1,y0,y1 (px, end exclusive) to search")
    scan_range: tuple[int, ...] = param((), "scan_range: first,last image numbers (inclusive) to search; several pairs allowed")
    force_2d: bool = param(False, "force_2d: label spots per image even in a rotation sweep")
    maximum_trusted_value: float | None = param(None, "maximum_trusted_value: override the panels' upper trusted value for spot finding")
    nproc: int = param(1, "mp.nproc: worker processes (blocks of images per process)")

    def __post_init__(self):
        if self.threshold_algorithm not in ALGORITHMS:
            raise XtalError(f"threshold_algorithm={self.threshold_algorithm}: choose one of {', '.join(ALGORITHMS)}")
        ks = tuple(self.kernel_size)
        if len(ks) not in (1, 2):
            raise XtalError(f"kernel_size={','.join(map(str, ks))}: give one or two integers")
        if min(ks) < 1:
            raise XtalError(f"kernel_size={','.join(map(str, ks))}: must be at least 1")
        if self.gain is not None and not self.gain > 0:
            raise XtalError(f"gain={self.gain}: must be > 0")
        if not self.sigma_background >= 0:
            raise XtalError(f"sigma_background={self.sigma_background}: must be ≥ 0")
        if not self.sigma_strong >= 0:
            raise XtalError(f"sigma_strong={self.sigma_strong}: must be ≥ 0")
        if not self.global_threshold >= 0:
            raise XtalError(f"global_threshold={self.global_threshold}: must be ≥ 0")
        n_kernel = (2 * ks[0] + 1) * (2 * ks[-1] + 1)
        if self.min_local > 0 and not 1 < self.min_local <= n_kernel:
            raise XtalError(f"min_local={self.min_local}: must be ≤ 0 or between 2 and {n_kernel} (the box's pixels)")
        if self.min_spot_size is not None and self.min_spot_size < 1:
            raise XtalError(f"min_spot_size={self.min_spot_size}: must be at least 1")
        if self.max_spot_size < 1:
            raise XtalError(f"max_spot_size={self.max_spot_size}: must be at least 1")
        if self.min_spot_size is not None and self.max_spot_size <= self.min_spot_size:
            raise XtalError(f"max_spot_size={self.max_spot_size} must be larger than min_spot_size={self.min_spot_size}")
        if self.max_separation is not None and not self.max_separation >= 0:
            raise XtalError(f"max_separation={self.max_separation}: must be ≥ 0")
        if not 0 <= self.max_strong_pixel_fraction <= 1:
            raise XtalError(f"max_strong_pixel_fraction={self.max_strong_pixel_fraction}: must be between 0 and 1")
        for name in ("d_min", "d_max"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise XtalError(f"{name}={v}: must be > 0")
        if self.d_min is not None and self.d_max is not None and self.d_min >= self.d_max:
            raise XtalError(f"d_min={self.d_min} must be smaller than d_max={self.d_max}")
        if not self.ice_rings_width >= 0:
            raise XtalError(f"ice_rings_width={self.ice_rings_width}: must be ≥ 0")
        if self.border < 0:
            raise XtalError(f"border={self.border}: must be ≥ 0")
        if self.region_of_interest is not None:
            r = self.region_of_interest
            if len(r) != 4 or not (0 <= r[0] < r[1] and 0 <= r[2] < r[3]):
                raise XtalError("region_of_interest: give x0,x1,y0,y1 with 0 ≤ x0 < x1 and 0 ≤ y0 < y1")
        if len(self.scan_range) % 2:
            raise XtalError("scan_range: give pairs first,last of image numbers")
        for a, b in zip(self.scan_range[::2], self.scan_range[1::2]):
            if b < a:
                raise XtalError(f"scan_range={a},{b}: must be in ascending order")
        if self.nproc < 1:
            raise XtalError(f"nproc={self.nproc}: must be at least 1")

    def threshold(self) -> DispersionThreshold:
        ks = tuple(self.kernel_size)
        return DispersionThreshold(kernel_size=(ks[0], ks[-1]), sigma_background=self.sigma_background,
                                   sigma_strong=self.sigma_strong, global_threshold=self.global_threshold,
                                   min_local=self.min_local, gain=self.gain,
                                   extended=self.threshold_algorithm == "dispersion_extended")


def auto_min_spot_size(experiment: Experiment) -> int:
    """DIALS's Auto: 3 pixels for pixel-array detectors (SENSOR_PAD), else 6."""
    panel = experiment.detector[0]
    return 3 if panel.type == "SENSOR_PAD" else 6


def _is_2d(experiment: Experiment, params: FindSpotsParams) -> bool:
    src = experiment.imageset
    sweep = src is None or src.kind == "ImageSequence"
    return params.force_2d or not sweep or experiment.scan is None or experiment.scan.is_still


def _frame_offset(experiment: Experiment) -> int:
    """z of the first image: the scan's array-range start (0-based image number)."""
    if experiment.scan is not None and (experiment.imageset is None or experiment.imageset.kind == "ImageSequence"):
        return experiment.scan.array_range[0]
    return 0


def _image_ranges(experiment: Experiment, n_images: int, params: FindSpotsParams) -> list[tuple[int, int]]:
    """0-based [i0, i1) reader index ranges from ``scan_range`` (image numbers)."""
    if not params.scan_range:
        return [(0, n_images)]
    first = _frame_offset(experiment) + 1
    last = first + n_images - 1
    out = []
    for a, b in zip(params.scan_range[::2], params.scan_range[1::2]):
        if a < first or b > last:
            raise XtalError(f"scan_range={a},{b}: must lie within the image range {first}..{last}")
        out.append((a - first, b - first + 1))
    return out


def static_masks(experiment: Experiment, reader, params: FindSpotsParams) -> tuple[np.ndarray, ...]:
    """Per-panel mask common to all images (True = usable)."""
    base = reader.get_mask() if reader is not None else None
    masks = []
    for k, panel in enumerate(experiment.detector):
        b = None if base is None else base[k]
        needs_beam = params.d_min is not None or params.d_max is not None or params.ice_rings
        if needs_beam and experiment.beam is None:
            raise XtalError("a resolution or ice-ring mask needs the beam model, and this experiment has none")
        masks.append(static_panel_mask(
            panel, experiment.beam, b, border=params.border, d_min=params.d_min, d_max=params.d_max,
            ice_rings=params.ice_rings, ice_rings_width=params.ice_rings_width,
            disable_parallax_correction=params.disable_parallax_correction))
    return tuple(masks)


def _trusted_ranges(experiment: Experiment, params: FindSpotsParams):
    out = []
    for p in experiment.detector:
        lo, hi = p.trusted_range
        if params.maximum_trusted_value is not None:
            hi = float(params.maximum_trusted_value)
        out.append((lo, hi))
    return out


class _ImageWork:
    """Thresholds images: the part of the work a worker process does."""

    def __init__(self, experiment, masks, params: FindSpotsParams):
        self.experiment = experiment
        self.masks = masks
        self.params = params
        self.trusted = _trusted_ranges(experiment, params)
        self.thresholds = [params.threshold() for _ in experiment.detector]
        self.offset = _frame_offset(experiment)
        self.n_pixels = sum(p.image_size[0] * p.image_size[1] for p in experiment.detector)

    def read(self, reader, i: int):
        try:
            data = reader.get_raw_data(i)
        except Exception as exc:  # noqa: BLE001 - any read failure is the user's file
            path = "?"
            try:
                path = reader.path_of(i)
            except Exception:  # noqa: BLE001
                pass
            msg = str(exc) if isinstance(exc, XtalError) else f"{type(exc).__name__}: {exc}"
            raise XtalError(f"cannot read image {self.offset + i + 1} (index {i}) from {path}: {msg}") from None
        if len(data) != len(self.masks):
            raise XtalError(f"image {self.offset + i + 1} has {len(data)} panels, the detector {len(self.masks)}")
        return data

    def strong(self, data, i: int):
        """[(idx, val) per panel] of image index i."""
        out = []
        n_strong = 0
        roi = self.params.region_of_interest
        for k, (im, mk) in enumerate(zip(data, self.masks)):
            if im.shape != mk.shape:
                raise XtalError(f"image {self.offset + i + 1}, panel {k}: shape {im.shape} differs from the detector's {mk.shape}")
            th = self.thresholds[k]
            if roi is None:
                idx, val = th.strong_pixels(im, mk, self.trusted[k])
            else:
                x0, x1, y0, y1 = roi
                ny, nx = im.shape
                if x1 > nx or y1 > ny:
                    raise XtalError(f"region_of_interest {roi} is outside the {nx}×{ny} panel")
                idx, val = th.strong_pixels(im[y0:y1, x0:x1], mk[y0:y1, x0:x1], self.trusted[k])
                yy, xx = np.divmod(idx, x1 - x0)
                idx = (yy + y0) * nx + (xx + x0)
            out.append((idx, val))
            n_strong += len(idx)
        if self.params.max_strong_pixel_fraction < 1:
            max_strong = int(math.ceil(self.params.max_strong_pixel_fraction * self.n_pixels))
            if n_strong > max_strong:
                raise XtalError(
                    f"image {self.offset + i + 1}: {n_strong} strong pixels found, more than the maximum "
                    f"allowed ({max_strong} = max_strong_pixel_fraction {self.params.max_strong_pixel_fraction} "
                    f"of the image); try changing the spot-finding parameters")
        return out, n_strong


# --- worker processes ------------------------------------------------------------
_WORKER: dict = {}


def _worker_block(task):
    """Threshold images [i0, i1) of one experiment in a worker process.

    The worker opens the images itself and builds (once per ``token``) the static
    masks and threshold buffers; only the strong pixels travel back.
    """
    from ..io.images import open_imageset

    token, experiment, params, (i0, i1) = task
    if _WORKER.get("token") != token:
        _WORKER.clear()
        reader = open_imageset(experiment.imageset, experiment.scan)
        masks = static_masks(experiment, reader, params)
        _WORKER.update(token=token, reader=reader, work=_ImageWork(experiment, masks, params))
    work: _ImageWork = _WORKER["work"]
    reader = _WORKER["reader"]
    out = []
    for i in range(i0, i1):
        t0 = time.perf_counter()
        data = work.read(reader, i)
        t1 = time.perf_counter()
        pix, n = work.strong(data, i)
        del data
        out.append((i, pix, n, t1 - t0, time.perf_counter() - t1))
    return out


def spawn_pool(nproc: int):
    """A ``spawn`` pool whose workers import only this module.

    The caller's ``__main__`` is hidden while the workers start, so a script (or a
    Celery worker) without an ``if __name__ == "__main__"`` guard is not re-run in
    every worker; the workers need nothing from it.
    """
    ctx = multiprocessing.get_context("spawn")
    main = sys.modules.get("__main__")
    saved = {}
    if main is not None:
        for attr in ("__file__", "__spec__"):
            if hasattr(main, attr):
                saved[attr] = getattr(main, attr)
        if "__file__" in saved:
            del main.__file__
        if "__spec__" in saved:
            main.__spec__ = None
    try:
        return ctx.Pool(nproc)
    finally:
        for attr, value in saved.items():
            setattr(main, attr, value)


def _blocks(i0: int, i1: int, nproc: int) -> list[tuple[int, int]]:
    n = i1 - i0
    size = max(1, min(int(math.ceil(n / nproc)), 8))
    return [(a, min(i1, a + size)) for a in range(i0, i1, size)]


def _iter_images(experiment, reader, masks, params, i0, i1, pool, token):
    """(i, [(idx, val)…], n_strong, t_read, t_threshold) in image order."""
    if pool is None:
        work = _ImageWork(experiment, masks, params)
        for i in range(i0, i1):
            t0 = time.perf_counter()
            data = work.read(reader, i)
            t1 = time.perf_counter()
            pix, n = work.strong(data, i)
            del data
            yield i, pix, n, t1 - t0, time.perf_counter() - t1
    else:
        tasks = [(token, experiment, params, b) for b in _blocks(i0, i1, params.nproc)]
        for result in pool.imap(_worker_block, tasks):
            yield from result


def find_spots(experiment: Experiment, reader, params: FindSpotsParams, progress=None,
               experiment_id: int = 0, pool=None) -> tuple[ReflectionTable, dict]:
    """Find the strong spots of one experiment's images.

    ``reader`` gives ``get_raw_data(i)`` / ``get_mask()`` for 0-based images of the
    experiment (``processing.io.images.open_imageset``); with ``nproc > 1`` the
    worker processes open their own readers from ``experiment.imageset``.
    ``pool`` (optional) is a pool from :func:`spawn_pool` to reuse across calls.
    ``progress(fraction)`` is called after every image. Returns the strong-spot
    table (DIALS strong.refl columns, ``id`` = ``experiment_id``) and a summary.
    """
    t_start = time.perf_counter()
    if experiment.detector is None or len(experiment.detector) == 0:
        raise XtalError("the experiment has no detector model")
    n_images = len(reader) if hasattr(reader, "__len__") else (experiment.scan.num_images if experiment.scan else 1)
    ranges = _image_ranges(experiment, n_images, params)
    min_size = params.min_spot_size if params.min_spot_size is not None else auto_min_spot_size(experiment)
    if params.max_spot_size <= min_size:
        raise XtalError(f"max_spot_size={params.max_spot_size} must be larger than min_spot_size={min_size}")
    twod = _is_2d(experiment, params)
    masks = static_masks(experiment, reader, params)
    offset = _frame_offset(experiment)
    total = sum(b - a for a, b in ranges)
    done = 0
    per_image = []
    spots_parts = []
    hot = []
    t_read = t_thresh = t_label = 0.0
    n_open_max = 0
    nproc = min(params.nproc, max(1, total))
    own_pool = False
    if nproc <= 1:
        pool = None
    elif pool is None:
        if experiment.imageset is None:
            raise XtalError("nproc > 1 needs the experiment's image source")
        pool = spawn_pool(nproc)
        own_pool = True
    token = uuid.uuid4().hex
    try:
        for i0, i1 in ranges:
            labellers = [PanelLabeller(k, p.image_size[0], twod, min_size, params.max_spot_size)
                         for k, p in enumerate(experiment.detector)]
            hot_cand = None
            for i, pix, n_strong, tr, tt in _iter_images(experiment, reader, masks, params, i0, i1, pool, token):
                t0 = time.perf_counter()
                frame = offset + i
                for lab, (idx, val) in zip(labellers, pix):
                    lab.add(frame, idx, val)
                if not twod:
                    cand = [idx for idx, _ in pix]
                    hot_cand = cand if hot_cand is None else [np.intersect1d(a, b, assume_unique=True)
                                                             for a, b in zip(hot_cand, cand)]
                t_label += time.perf_counter() - t0
                t_read += tr
                t_thresh += tt
                per_image.append({"image": frame + 1, "n_strong_pixels": int(n_strong)})
                n_open_max = max(n_open_max, sum(lab.n_open for lab in labellers))
                done += 1
                if progress is not None:
                    progress(done / total)
            t0 = time.perf_counter()
            for lab in labellers:
                lab.finish()
                spots_parts.append(order_spots(lab.take()))
            t_label += time.perf_counter() - t0
            if hot_cand is not None and i1 - i0 > 1:
                for k, h in enumerate(hot_cand):
                    w = experiment.detector[k].image_size[0]
                    hot += [(k, int(v % w), int(v // w)) for v in h]
    finally:
        if own_pool:
            pool.close()
            pool.join()
    spots = concat_spots(spots_parts)
    kept, counts = filter_spots(spots, min_size, params.max_spot_size, params.max_separation)
    table = spots_to_table(kept, experiment_id, experiment.identifier)
    # spots per image by centroid z (DIALS's histogram uses the centroid z)
    z_img = np.floor(kept["xyz"][:, 2]).astype(np.int64) if len(kept["xyz"]) else np.zeros(0, np.int64)
    images = np.array([r["image"] for r in per_image], np.int64)
    n_per = np.zeros(len(images), np.int64)
    if len(images):
        pos = np.searchsorted(images - 1, z_img)
        ok = (pos < len(images)) & (images[np.minimum(pos, len(images) - 1)] - 1 == z_img)
        np.add.at(n_per, pos[ok], 1)
    for r, c in zip(per_image, n_per):
        r["n_spots"] = int(c)
    elapsed = time.perf_counter() - t_start
    summary = {
        "n_images": int(total),
        "n_spots": counts["n_spots"],
        "n_strong_pixels": int(sum(r["n_strong_pixels"] for r in per_image)),
        "n_extracted": counts["n_extracted"],
        "n_too_small": counts["n_too_small"],
        "n_too_large": counts["n_too_large"],
        "n_separation_rejected": counts["n_separation_rejected"],
        "min_spot_size": int(min_size),
        "max_spot_size": int(params.max_spot_size),
        "labelling": "2d" if twod else "3d",
        "n_hot_pixels": len(hot),
        "hot_pixels": [list(h) for h in hot[:1000]],
        "per_image": per_image,
        "histogram": {"image": [r["image"] for r in per_image], "n_spots": [r["n_spots"] for r in per_image]},
        "max_open_pixels": int(n_open_max),
        "nproc": int(nproc),
        "time": {"total": elapsed, "read": t_read, "threshold": t_thresh, "label": t_label},
        "images_per_second": (total / elapsed) if elapsed > 0 else None,
    }
    return table, summary


def spots_to_table(spots: dict, experiment_id: int, identifier: str | None) -> ReflectionTable:
    """DIALS strong.refl columns from measured spots."""
    n = len(spots["n_pix"])
    table = ReflectionTable({
        "bbox": spots["bbox"].astype(np.int32).reshape(n, 6),
        "flags": np.full(n, int(Flags.strong), np.uint64),
        "id": np.full(n, experiment_id, np.int32),
        "intensity.sum.value": spots["isum"].astype(np.float64),
        "intensity.sum.variance": np.abs(spots["isum"]).astype(np.float64),
        "n_signal": spots["n_pix"].astype(np.int32),
        "panel": spots["panel"].astype(np.uint64),
        "xyzobs.px.value": spots["xyz"].reshape(n, 3),
        "xyzobs.px.variance": spots["var"].reshape(n, 3),
    }, nrows=n)
    if identifier:
        table.experiment_identifiers = {int(experiment_id): identifier}
    return table


def run_find_spots(experiments, params: FindSpotsParams, progress=None,
                   readers=None) -> tuple[ReflectionTable, dict]:
    """Find spots in every experiment; one table with ``id`` = experiment index.

    ``readers`` (optional) gives one reader per experiment; by default each is
    opened with ``processing.io.images.open_imageset``.
    """
    if len(experiments) == 0:
        raise XtalError("no experiments to find spots in")
    from ..io.images import open_imageset

    tables, summaries = [], []
    n = len(experiments)
    t0 = time.perf_counter()
    pool = spawn_pool(params.nproc) if params.nproc > 1 else None
    try:
        for k, e in enumerate(experiments):
            if e.imageset is None and readers is None:
                raise XtalError(f"experiment {k} has no images")
            reader = readers[k] if readers is not None else open_imageset(e.imageset, e.scan)
            sub = None if progress is None else (lambda f, k=k: progress((k + f) / n))
            t, s = find_spots(e, reader, params, progress=sub, experiment_id=k, pool=pool)
            tables.append(t)
            summaries.append(s)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    table = tables[0]
    for t in tables[1:]:  # ids are already the experiment indices
        table.extend(t)
    ids = {k: e.identifier for k, e in enumerate(experiments) if e.identifier}
    table.experiment_identifiers = ids
    elapsed = time.perf_counter() - t0
    n_images = sum(s["n_images"] for s in summaries)
    summary = {
        "n_experiments": n,
        "n_images": n_images,
        "n_spots": int(len(table)),
        "n_strong_pixels": int(sum(s["n_strong_pixels"] for s in summaries)),
        "experiments": summaries,
        "time": elapsed,
        "images_per_second": (n_images / elapsed) if elapsed > 0 else None,
    }
    return table, summary
