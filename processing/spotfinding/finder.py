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

import numpy as np

from ..errors import XtalError
from ..models import Experiment
from ..reflections import Flags, ReflectionTable
from .masks import static_panel_mask
from .params import ALGORITHMS, FindSpotsParams  # noqa: F401 - ALGORITHMS re-exported for old imports
from .regions import PanelLabeller, concat_spots, filter_spots, order_spots


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


class _Labelled:
    """What labelling the images of one experiment gives: spots, counts and timings."""

    def __init__(self):
        self.spots_parts = []
        self.per_image = []
        self.hot = []  # (panel, x, y) of hot pixels
        self.t_read = self.t_thresh = self.t_label = 0.0
        self.n_open_max = 0


def _hot_pixels(experiment: Experiment, hot_cand) -> list[tuple[int, int, int]]:
    """(panel, x, y) of the pixel indices strong on every image of a scan range."""
    hot = []
    for k, h in enumerate(hot_cand):
        w = experiment.detector[k].image_size[0]
        hot += [(k, int(v % w), int(v // w)) for v in h]
    return hot


def _label_images(experiment, reader, masks, params: FindSpotsParams, ranges, twod: bool, min_size: int,
                  pool, progress) -> _Labelled:
    """Threshold and label the images of every scan range, in image order."""
    out = _Labelled()
    offset = _frame_offset(experiment)
    total = sum(b - a for a, b in ranges)
    done = 0
    token = uuid.uuid4().hex
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
            out.t_label += time.perf_counter() - t0
            out.t_read += tr
            out.t_thresh += tt
            out.per_image.append({"image": frame + 1, "n_strong_pixels": int(n_strong)})
            out.n_open_max = max(out.n_open_max, sum(lab.n_open for lab in labellers))
            done += 1
            if progress is not None:
                progress(done / total)
        t0 = time.perf_counter()
        for lab in labellers:
            lab.finish()
            out.spots_parts.append(order_spots(lab.take()))
        out.t_label += time.perf_counter() - t0
        if hot_cand is not None and i1 - i0 > 1:
            out.hot += _hot_pixels(experiment, hot_cand)
    return out


def _count_spots_per_image(per_image: list[dict], xyz: np.ndarray) -> None:
    """Set ``n_spots`` of each per-image row from the spot centroids' z (as DIALS's histogram)."""
    z_img = np.floor(xyz[:, 2]).astype(np.int64) if len(xyz) else np.zeros(0, np.int64)
    images = np.array([r["image"] for r in per_image], np.int64)
    n_per = np.zeros(len(images), np.int64)
    if len(images):
        pos = np.searchsorted(images - 1, z_img)
        ok = (pos < len(images)) & (images[np.minimum(pos, len(images) - 1)] - 1 == z_img)
        np.add.at(n_per, pos[ok], 1)
    for r, c in zip(per_image, n_per):
        r["n_spots"] = int(c)


def find_spots(experiment: Experiment, reader, params: FindSpotsParams, progress=None,
               experiment_id: int = 0, pool=None) -> tuple[ReflectionTable, dict]:
    """Find the strong spots of one experiment's images (one sweep, or a set of stills).

    Parameters
    ----------
    experiment : Experiment
        The models; the detector's panels, trusted ranges and masks, and the scan's
        image numbers are used (the beam too for resolution or ice-ring masks).
    reader
        Gives ``get_raw_data(i)`` (one array per panel, slow × fast) and
        ``get_mask()`` for the 0-based images of the experiment, as
        ``processing.io.images.open_imageset`` does; ``len(reader)`` images. With
        ``nproc > 1`` the worker processes open their own readers from
        ``experiment.imageset``.
    params : FindSpotsParams
        The spot-finding parameters.
    progress : callable, optional
        ``progress(fraction)`` is called after every image (fraction 0–1).
    experiment_id : int
        Written to the ``id`` column.
    pool : optional
        A pool from :func:`spawn_pool` to reuse across calls (only with ``nproc > 1``).

    Returns
    -------
    table : ReflectionTable
        The strong spots with DIALS's strong.refl columns: ``xyzobs.px.value`` in
        pixels (x fast, y slow, z frame; pixel centres at +0.5, z 0-based from the
        scan's first array index), its variance (px²), ``bbox`` (x0, x1, y0, y1,
        z0, z1, ends exclusive), ``intensity.sum.value`` (counts), ``n_signal``,
        ``panel``, ``flags`` (strong) and ``id``.
    summary : dict
        JSON-able counts (spots, strong pixels, spots removed by each filter), the
        per-image strong-pixel and spot counts, hot pixels and timings (s).

    Examples
    --------
    >>> from processing.io.images import open_imageset
    >>> e = experiments[0]
    >>> table, summary = find_spots(e, open_imageset(e.imageset, e.scan), FindSpotsParams(d_min=2.0))
    >>> summary["n_spots"], table["xyzobs.px.value"][:3]
    """
    t_start = time.perf_counter()
    if experiment.detector is None or len(experiment.detector) == 0:
        raise XtalError("the experiment has no detector model")
    n_images = len(reader) if hasattr(reader, "__len__") else (experiment.scan.num_images if experiment.scan else 1)
    ranges = _image_ranges(experiment, n_images, params)
    min_size = params.min_spot_size if params.min_spot_size is not None else auto_min_spot_size(experiment)
    if params.max_spot_size <= min_size:
        raise XtalError(f"max_spot_size={params.max_spot_size} must be larger than min_spot_size={min_size}",
                        field="max_spot_size")
    twod = _is_2d(experiment, params)
    masks = static_masks(experiment, reader, params)
    total = sum(b - a for a, b in ranges)
    nproc = min(params.nproc, max(1, total))
    own_pool = False
    if nproc <= 1:
        pool = None
    elif pool is None:
        if experiment.imageset is None:
            raise XtalError("nproc > 1 needs the experiment's image source")
        pool = spawn_pool(nproc)
        own_pool = True
    try:
        lab = _label_images(experiment, reader, masks, params, ranges, twod, min_size, pool, progress)
    finally:
        if own_pool:
            pool.close()
            pool.join()
    spots = concat_spots(lab.spots_parts)
    kept, counts = filter_spots(spots, min_size, params.max_spot_size, params.max_separation)
    table = spots_to_table(kept, experiment_id, experiment.identifier)
    per_image = lab.per_image
    _count_spots_per_image(per_image, kept["xyz"])
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
        "n_hot_pixels": len(lab.hot),
        "hot_pixels": [list(h) for h in lab.hot[:1000]],
        "per_image": per_image,
        "histogram": {"image": [r["image"] for r in per_image], "n_spots": [r["n_spots"] for r in per_image]},
        "max_open_pixels": int(lab.n_open_max),
        "nproc": int(nproc),
        "time": {"total": elapsed, "read": lab.t_read, "threshold": lab.t_thresh, "label": lab.t_label},
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
    """Find the strong spots of every experiment (the stage ``xtal find_spots``).

    Parameters
    ----------
    experiments : ExperimentList
        Imported experiments (``imported.expt``); each needs its image source.
    params : FindSpotsParams
        The spot-finding parameters; with ``nproc > 1`` one pool of worker
        processes serves all experiments.
    progress : callable, optional
        ``progress(fraction)`` with the fraction (0–1) of all images done.
    readers : list, optional
        One image reader per experiment (see :func:`find_spots`); by default each
        is opened with ``processing.io.images.open_imageset``.

    Returns
    -------
    table : ReflectionTable
        All strong spots (``strong.refl``), ``id`` = experiment index;
        ``xyzobs.px.value`` in pixels (x fast, y slow, z frame).
    summary : dict
        JSON-able: ``n_spots``, ``n_images``, ``n_strong_pixels``, one
        :func:`find_spots` summary per experiment (``experiments``), the time (s)
        and images per second.

    Examples
    --------
    >>> from processing.io.expt import read_experiments
    >>> experiments = read_experiments("imported.expt")
    >>> table, summary = run_find_spots(experiments, FindSpotsParams(nproc=4))
    >>> summary["n_spots"]
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
