"""The image viewer: any sweep's images in the browser, with a run's results over them.

``/projects/<pk>/sweeps/<sweep_id>/viewer/`` is the page (``?image=N&run=R``); it asks
for PNG views of an image (``image.png``: a rectangle of the panel binned to at most
the canvas size, levels, colour map, mask; see :mod:`.image_render`), for what to draw
over it (``overlay.json``: strong spots, indexed spots, predictions, integrated
shoeboxes, resolution rings; see :mod:`.viewer_overlays`) and for the pixel under the
pointer (``pixel.json``: its count and resolution). The run (find_spots, index, refine
or integrate; by default the furthest-along one in which the sweep succeeded) gives
the experiment models and the reflections, read from its DIALS-named files with
``processing.io``; the images are read through ``processing.io.images.open_imageset``.

Every view goes through :func:`permissions.get_project_for_user` (404 for anyone
outside the project's group); image paths must lie inside the data roots. A user error
(an image number outside the sweep, a run without this sweep, a missing file) is a 404
or 400 whose body is one clear message.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from .image_render import COLOUR_MAPS, ImageCache, View, panel_image, render_view
from .models import StageRun, Sweep
from .permissions import DataPathError, get_project_for_user
from .sweep_inputs import ancestor, check_image_paths

logger = logging.getLogger(__name__)

#: the runs whose results the viewer draws, in pipeline order
VIEWER_STAGES = ("find_spots", "index", "refine", "integrate")
IMAGES = ImageCache()


class ViewerError(Exception):
    """A user error: ``str(e)`` is the message, ``status`` the HTTP status (404 or 400)."""

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.status = status


# --- reading the run's files (cached by path and modification time) ---------------------

_FILES: OrderedDict = OrderedDict()
_FILES_LOCK = threading.Lock()


def _cached_read(path: str, reader):
    """``reader(path)``, kept for the next request while the file is unchanged."""
    try:
        st = os.stat(path)
    except OSError:
        raise ViewerError(f"The file {path} is gone (was the run's folder removed?)") from None
    key = (path, st.st_mtime_ns, st.st_size)
    with _FILES_LOCK:
        if key in _FILES:
            _FILES.move_to_end(key)
            return _FILES[key]
    value = reader(path)
    with _FILES_LOCK:
        _FILES[key] = value
        while len(_FILES) > 12:
            _FILES.popitem(last=False)
    return value


def _experiments(path: str):
    from processing.io.expt import read_experiments

    return _cached_read(path, read_experiments)


def _reflections(path: str):
    from processing.io.refl import read_reflections

    return _cached_read(path, read_reflections)


_PREDICTIONS: OrderedDict = OrderedDict()


def _predictions(run: StageRun, sweep: Sweep, experiments):
    """``viewer_overlays.scan_predictions`` of the run's experiments of the sweep, kept
    for the next images (the models of a finished run do not change)."""
    from .viewer_overlays import scan_predictions

    key = (run.pk, sweep.pk, tuple(e.identifier for e in experiments))
    with _FILES_LOCK:
        if key in _PREDICTIONS:
            _PREDICTIONS.move_to_end(key)
            return _PREDICTIONS[key]
    value = scan_predictions(experiments)
    with _FILES_LOCK:
        _PREDICTIONS[key] = value
        while len(_PREDICTIONS) > 6:
            _PREDICTIONS.popitem(last=False)
    return value


# --- what a sweep and a run give the viewer -------------------------------------------------


@dataclass
class SweepData:
    """The experiments of one sweep (the first gives the images and geometry; one per
    lattice) and the run's reflections of it (None: import only)."""

    experiments: list
    table: object | None
    run: StageRun | None


def _sweep_row(run: StageRun, sweep: Sweep):
    rows = run.sweep_runs.filter(status=StageRun.Status.SUCCEEDED)
    return rows.filter(sweep=sweep).first() or rows.filter(name=sweep.name).first()


def viewer_runs(project, sweep: Sweep) -> list[StageRun]:
    """Runs of the viewer's stages in which ``sweep`` succeeded, furthest along first
    (the latest of each stage first)."""
    runs = (project.runs.filter(stage__in=VIEWER_STAGES, status__in=StageRun.USABLE)
            .prefetch_related("sweep_runs"))
    out = [r for r in runs if any(s.status == StageRun.Status.SUCCEEDED
                                  and (s.sweep_id == sweep.pk or s.name == sweep.name) for s in r.sweep_runs.all())]
    out.sort(key=lambda r: (-VIEWER_STAGES.index(r.stage), -r.pk))
    return out


def _latest_import(project) -> StageRun | None:
    return project.runs.filter(stage="import", status=StageRun.Status.SUCCEEDED).order_by("-id").first()


def _imported_experiment(import_run: StageRun | None, index: int | None, sweep: Sweep):
    if import_run is None or not import_run.output_dir:
        raise ViewerError("This project has no succeeded import run: there are no images to show yet")
    experiments = _experiments(os.path.join(import_run.output_dir, "imported.expt"))
    if index is None:  # the sweep's position in the import's summary
        names = [s.get("name") for s in (import_run.summary or {}).get("sweeps") or []]
        if sweep.name not in names:
            raise ViewerError(f"Sweep {sweep.name} is not in import run #{import_run.pk}")
        index = names.index(sweep.name)
    if not 0 <= index < len(experiments):
        raise ViewerError(f"Sweep {sweep.name}: experiment {index} is not in import run #{import_run.pk}")
    return experiments[index]


def _same_images(a, b) -> bool:
    sa, sb = a.imageset, b.imageset
    return sa is not None and sb is not None and (sa.template or "", tuple(sa.paths or ())) == \
        (sb.template or "", tuple(sb.paths or ()))


def sweep_data(project, sweep: Sweep, run: StageRun | None) -> SweepData:
    """The experiments and reflections of ``sweep`` in ``run`` (from the run's own files
    of the sweep, else its merged files), or the imported experiment without a run."""
    from processing.stages import STAGES

    if run is None:
        return SweepData([_imported_experiment(_latest_import(project), None, sweep)], None, None)
    row = _sweep_row(run, sweep)
    if row is None:
        raise ViewerError(f"Sweep {sweep.name} has no result in run #{run.pk} ({run.get_stage_display()})")
    files = [f for f in (row.output_files or []) if os.path.isfile(f)]
    stage = STAGES[run.stage]
    if run.stage == "find_spots":
        experiment = _imported_experiment(ancestor(run, "import"), row.index, sweep)
        own = next((f for f in files if f.endswith(".refl")), None)
        table = _reflections(own or os.path.join(run.output_dir, stage.reflections_output))
        if own is None:
            table = _select(table, [experiment.identifier], fallback_id=row.index)
        return SweepData([experiment], table, run)
    expt = next((f for f in files if f.endswith(".expt")), None)
    refl = next((f for f in files if f.endswith(".refl")), None)
    shared = run.sweep_runs.filter(unit=row.unit).count() > 1
    if expt is None or refl is None:
        expt, refl = (os.path.join(run.output_dir, n) for n in (stage.experiments_output, stage.reflections_output))
        shared = True
    experiments, table = list(_experiments(expt)), _reflections(refl)
    if shared:  # several sweeps in the file: this sweep's experiments (identifiers, else images)
        idents = set((row.summary or {}).get("identifiers") or [])
        keep = [e for e in experiments if e.identifier in idents]
        if not keep:
            try:
                imported = _imported_experiment(ancestor(run, "import"), row.index, sweep)
                keep = [e for e in experiments if _same_images(e, imported)]
            except ViewerError:
                keep = []
        if not keep:
            raise ViewerError(f"Run #{run.pk} holds no experiment of sweep {sweep.name}")
        table = _select(table, [e.identifier for e in keep])
        experiments = keep
    elif len(experiments) and table is not None and table.experiment_identifiers:
        # ids of the table → positions in ``experiments`` (one sweep, maybe several lattices)
        table = _select(table, [e.identifier for e in experiments])
    return SweepData(experiments, table, run)


def _select(table, identifiers, fallback_id: int | None = None):
    """The rows of ``table`` of the experiments ``identifiers``, ids renumbered in that
    order (−1, unindexed, kept as −1)."""
    import numpy as np

    mapping = table.experiment_identifiers
    if mapping and any(i in mapping.values() for i in identifiers):
        old = {v: k for k, v in mapping.items()}
        ids = np.asarray(table["id"]).astype(np.int64)
        new = np.full(len(table), -2, np.int64)
        new[ids == -1] = -1
        for k, ident in enumerate(identifiers):
            if ident in old:
                new[ids == old[ident]] = k
        out = table.select(new >= -1)
        out["id"] = new[new >= -1].astype(np.int32)
        out.experiment_identifiers = {k: ident for k, ident in enumerate(identifiers)}
        return out
    if fallback_id is not None and "id" in table:
        return table.select(np.asarray(table["id"]) == fallback_id)
    return table


# --- request helpers ---------------------------------------------------------------------


def _context(request, pk: int, sweep_id: int):
    """(project, sweep, run or None) of a viewer request; the run from ``?run=`` or the default."""
    project = get_project_for_user(request, pk)
    sweep = get_object_or_404(Sweep, pk=sweep_id, project=project)
    run_id = request.GET.get("run", "")
    if run_id in ("", "default"):
        runs = viewer_runs(project, sweep)
        return project, sweep, (runs[0] if runs else None)
    if run_id == "none":
        return project, sweep, None
    try:
        run = project.runs.get(pk=int(run_id))
    except (ValueError, StageRun.DoesNotExist):
        raise ViewerError(f"No run #{run_id} in this project") from None
    if run.stage not in VIEWER_STAGES:
        raise ViewerError(f"Run #{run.pk} is a {run.get_stage_display()} run: the viewer shows "
                          f"{', '.join(VIEWER_STAGES)} runs", status=400)
    if run.status not in StageRun.USABLE:
        raise ViewerError(f"Run #{run.pk} is {run.status}: it has no results to show")
    return project, sweep, run


def _number(request, name: str, default=None, kind=float):
    text = request.GET.get(name, "")
    if text in ("", "auto"):
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ViewerError(f"{name}={text!r} is not a number", status=400) from None
    if kind is float and value != value:  # NaN
        raise ViewerError(f"{name}={text!r} is not a number", status=400)
    return value


def _image_number(request, experiment) -> tuple[int, int, int]:
    """(image number, reader index, frame) of ``?image=`` (default: the first image)."""
    from .viewer_overlays import frame_of_image

    first = experiment.scan.image_range[0] if experiment.scan is not None else 1
    number = _number(request, "image", first, int)
    try:
        index, frame = frame_of_image(experiment, number)
    except ValueError as exc:
        raise ViewerError(f"Image {number}: {exc}") from None
    return number, index, frame


def _panel(request, experiment) -> int:
    panel = _number(request, "panel", 0, int)
    if not 0 <= panel < len(experiment.detector):
        raise ViewerError(f"panel={panel}: the detector has {len(experiment.detector)} panel(s)", status=400)
    return panel


def _error_response(exc: Exception, as_json: bool):
    status = getattr(exc, "status", 404)
    message = str(exc)
    if as_json:
        return JsonResponse({"error": message}, status=status)
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _guarded(as_json: bool):
    """Turn the viewer's user errors (and unreadable files) into one clear message."""
    def wrap(view):
        def inner(request, *args, **kwargs):
            from processing.errors import XtalError

            try:
                return view(request, *args, **kwargs)
            except ViewerError as exc:
                return _error_response(exc, as_json)
            except DataPathError as exc:
                return _error_response(ViewerError(f"The images cannot be shown: {exc}"), as_json)
            except (XtalError, OSError) as exc:
                logger.info("viewer: %s", exc)
                return _error_response(ViewerError(f"The images cannot be read: {exc}"), as_json)
        inner.__name__ = view.__name__
        inner.__doc__ = view.__doc__
        return inner
    return wrap


def _panel_image(experiment, index: int, panel: int):
    """The decoded panel image (cached), read through ``open_imageset``."""
    from processing.io.images import apply_rectangles, open_imageset

    check_image_paths([experiment])
    reader = open_imageset(experiment.imageset, experiment.scan)
    path = reader.path_of(index)
    first = experiment.scan.image_range[0] if experiment.scan is not None else 1
    p = experiment.detector[panel]

    def load():
        data = reader.get_raw_data(index)
        if len(data) != len(experiment.detector):
            raise ViewerError(f"{path} has {len(data)} panels, the detector model {len(experiment.detector)}")
        static = IMAGES.mask((path, panel), lambda: apply_rectangles(reader.get_mask(index)[panel].copy(),
                                                                      p.mask or []))
        return panel_image(data[panel], static, p.trusted_range)

    return IMAGES.get((path, first + index, panel, tuple(p.trusted_range)), load)


# --- the views ----------------------------------------------------------------------------


@login_required
@require_GET
def sweep_viewer(request, pk: int, sweep_id: int):
    """The viewer page of one sweep."""
    from processing.errors import XtalError

    project = get_project_for_user(request, pk)
    sweep = get_object_or_404(Sweep, pk=sweep_id, project=project)
    runs = viewer_runs(project, sweep)
    error, status, config, run = "", 200, {}, None
    try:
        _, _, run = _context(request, pk, sweep_id)
        data = sweep_data(project, sweep, run)
        e = data.experiments[0]
        check_image_paths([e])
        number, _, _ = _image_number(request, e)
        first, last = e.scan.image_range if e.scan is not None else (1, 1)
        base = reverse("sweep_viewer", args=[project.pk, sweep.pk])
        config = {
            "image": number, "first": first, "last": last, "run": run.pk if run else None,
            "panels": len(e.detector), "image_size": [int(v) for v in e.detector[0].image_size],
            "panel_sizes": [[int(v) for v in p.image_size] for p in e.detector],
            "oscillation": list(e.scan.oscillation) if e.scan is not None else None,
            "urls": {"page": base, "image": base + "image.png", "overlay": base + "overlay.json",
                     "pixel": base + "pixel.json"},
            "colour_maps": list(COLOUR_MAPS),
        }
    except ViewerError as exc:
        error, status = str(exc), exc.status
    except (DataPathError, XtalError, OSError) as exc:
        error = f"The images cannot be shown: {exc}"
    return render(request, "projects/viewer.html",
                  {"project": project, "sweep": sweep, "runs": runs, "run": run, "error": error, "config": config},
                  status=status)


@login_required
@require_GET
@_guarded(as_json=False)
def viewer_image(request, pk: int, sweep_id: int):
    """A PNG view of one image: ``image``, ``panel``, region ``x0 y0 x1 y1`` (px),
    largest size ``w h``, levels ``lo hi`` (``auto``), ``cmap``, ``mask`` (1/0)."""
    project, sweep, run = _context(request, pk, sweep_id)
    e = sweep_data(project, sweep, run).experiments[0]
    number, index, _ = _image_number(request, e)
    panel = _panel(request, e)
    cmap = request.GET.get("cmap", "greys") or "greys"
    if cmap not in COLOUR_MAPS:
        raise ViewerError(f"cmap={cmap!r}: one of {', '.join(COLOUR_MAPS)}", status=400)
    view = View(x0=_number(request, "x0", 0.0), y0=_number(request, "y0", 0.0),
                x1=_number(request, "x1"), y1=_number(request, "y1"),
                max_width=_number(request, "w", 1024, int), max_height=_number(request, "h", 1024, int),
                lo=_number(request, "lo"), hi=_number(request, "hi"), colour_map=cmap,
                show_mask=request.GET.get("mask", "1") not in ("0", "false", "no"))
    image = _panel_image(e, index, panel)
    try:
        png, info = render_view(image, view)
    except ValueError as exc:
        raise ViewerError(str(exc), status=400) from None
    response = HttpResponse(png, content_type="image/png")
    response["X-Region"] = ",".join(str(v) for v in info["region"])
    response["X-Binning"] = str(info["binning"])
    response["X-Levels"] = ",".join(f"{v:g}" for v in info["levels"])
    response["X-Image"] = str(number)
    response["X-Render-Ms"] = f"{info['ms']:.1f}"
    response["Cache-Control"] = "private, max-age=60"
    return response


@login_required
@require_GET
@_guarded(as_json=True)
def viewer_overlay(request, pk: int, sweep_id: int):
    """What to draw over image ``image`` (panel ``panel``) from the run ``run``."""
    from . import viewer_overlays as ov

    project, sweep, run = _context(request, pk, sweep_id)
    data = sweep_data(project, sweep, run)
    e = data.experiments[0]
    number, _, frame = _image_number(request, e)
    panel = _panel(request, e)
    layers = {"strong": ov.strong_spots(data.table, frame, panel)}
    stage = run.stage if run else "import"
    if stage in ("index", "refine"):
        layers["indexed"] = ov.indexed_spots(data.table, frame, panel)
        layers["predicted"] = ov.model_predictions(_predictions(run, sweep, data.experiments), frame, panel)
    elif stage == "integrate":
        layers["shoeboxes"], layers["predicted"] = ov.integrated(data.table, frame, panel)
    body = {
        "image": number, "frame": frame, "panel": panel,
        "run": {"id": run.pk, "stage": stage, "title": run.get_stage_display()} if run else None,
        "layers": layers,
        "counts": {k: len(v.get("xy") or v.get("bbox") or []) for k, v in layers.items()},
        "rings": ov.resolution_rings(e, panel),
        "beam_centre": ov.beam_centre(e, panel),
        "geometry": ov.geometry(e, panel),
        "lattices": [{"id": k, "unit_cell": [round(float(v), 3) for v in x.crystal.unit_cell],
                      "space_group": x.crystal.space_group_symbol}
                     for k, x in enumerate(data.experiments) if x.crystal is not None],
    }
    return JsonResponse(body, json_dumps_params={"allow_nan": False})


@login_required
@require_GET
@_guarded(as_json=True)
def viewer_pixel(request, pk: int, sweep_id: int):
    """The pixel at ``x, y`` (px, continuous) of image ``image``: count, status, d (Å)."""
    from .viewer_overlays import resolution_at

    project, sweep, run = _context(request, pk, sweep_id)
    e = sweep_data(project, sweep, run).experiments[0]
    number, index, _ = _image_number(request, e)
    panel = _panel(request, e)
    x, y = _number(request, "x"), _number(request, "y")
    if x is None or y is None:
        raise ViewerError("x and y (pixels) are needed", status=400)
    nx, ny = e.detector[panel].image_size
    if not (0 <= x < nx and 0 <= y < ny):
        raise ViewerError(f"({x:g}, {y:g}) is outside the {nx}×{ny} panel", status=400)
    image = _panel_image(e, index, panel)
    out = {"image": number, "x": x, "y": y, **image.value(int(x), int(y)), "d": resolution_at(e, panel, x, y)}
    return JsonResponse(out, json_dumps_params={"allow_nan": False})


def viewer_url(project_id: int, sweep_id: int, run_id: int | None = None, image: int | None = None) -> str:
    """The viewer page's address for a sweep, a run and an image (for links from reports)."""
    url = reverse("sweep_viewer", args=[project_id, sweep_id])
    query = [f"run={run_id}"] if run_id else []
    if image is not None:
        query.append(f"image={image}")
    return url + ("?" + "&".join(query) if query else "")

