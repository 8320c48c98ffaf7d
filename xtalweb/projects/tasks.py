"""Celery tasks: each one runs a stage of ``processing`` for one StageRun.

The task wires the science to the database and the project's folders, nothing more:
it builds the stage's parameter dataclass, calls the stage, writes the outputs into
the StageRun's own new folder ``<work_dir>/<nnn>_<stage>/`` and stores the summary.

Whole-project stages (simulate, import) are one task. Per-sweep stages (find_spots,
index, refine, integrate; see ``stages.py``) fan out: :func:`dispatch_run` sends a Celery *chord* whose
header is one :func:`run_sweep_unit` task per unit of work (a sweep; or, for
``index joint=true``, all selected sweeps together) and whose body is
:func:`join_stage_run`. Each sweep has a :class:`SweepRun` row: the unit task that
owns it writes its status, live progress (throttled), log, one-line error and the
summary the science returned, and its output into ``<run folder>/sweeps/``. Rows are
never shared between tasks, so any number of workers may run them; the StageRun's
overall progress is the mean of its rows, recomputed in one UPDATE. The first unit
task to start creates the run's folder under a row lock (``select_for_update``), so
exactly one folder is made. Unit tasks never raise (a raising header task would
cancel the chord body); the join merges the succeeded sweeps' files into the stage's
DIALS-named outputs (``strong.refl``; ``indexed.*``; ``refined.*``; ``integrated.*``),
atomically, and marks the run succeeded — or failed, with the sweeps' one-line
reasons, when every sweep failed. Refine and integrate work on each sweep alone: the
sweep's own experiment(s) and reflections from the run they start from (index; refine),
so one sweep's failure or bad fit never touches the others. Tasks are idempotent under redelivery
(``task_acks_late``): a finished run or sweep is skipped; outputs are written under a
temporary name and renamed.

Errors: a user error (:class:`processing.errors.XtalError`, a data path outside the
data roots, no images found) marks the run failed with ``error`` = its one-line
message; anything else also fails the run, with a short ``error`` and the traceback
in ``log``. A failed run leaves no output folder behind.

``processing`` is imported inside the tasks, not at module level: the web process
imports this module to dispatch tasks and has no use for numpy/h5py/numba.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import re
import shutil
import threading
import traceback

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from .models import Project, StageRun, Sweep, SweepRun
from .permissions import DataPathError, data_roots, is_inside, resolve_data_path
from .stages import STAGE_DEFS, is_per_sweep

logger = logging.getLogger(__name__)

#: file names the import stage picks up
CBF_SUFFIXES = (".cbf",)
NEXUS_SUFFIXES = (".nxs",)
HDF5_SUFFIXES = (".h5", ".hdf5")
_EIGER_DATA_FILE = re.compile(r"_data_\d+\.(h5|hdf5)$", re.IGNORECASE)
_RUN_DIR = re.compile(r"^(\d+)_")


class StageInputError(Exception):
    """A user error found by the task itself (e.g. no images); ``str(e)`` is the message."""


# --- helpers -------------------------------------------------------------------------


def one_line(message: str, limit: int = 1000) -> str:
    """Collapse ``message`` to a single line of at most ``limit`` characters."""
    text = " ".join(str(message).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text or "Failed"


def _is_nxmx(path: str) -> bool:
    """Whether an HDF5 file that is not called *_master.h5 is an NXmx (master) file.

    A file h5py cannot open is kept, so that the import stage reports it clearly rather
    than it being skipped silently.
    """
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        return True
    try:
        with h5py.File(path, "r") as f:
            for item in f.values():
                attrs = getattr(item, "attrs", {})
                nx_class = attrs.get("NX_class", b"")
                nx_class = nx_class.decode() if isinstance(nx_class, bytes) else str(nx_class)
                if nx_class != "NXentry":
                    continue
                definition = item.get("definition") if hasattr(item, "get") else None
                if definition is None:
                    return True  # an NXentry without definition: let the reader decide
                value = definition[()]
                value = value.decode() if isinstance(value, bytes) else str(value)
                return value.strip() == "NXmx"
    except Exception:
        return True
    return False


def find_image_files(root: str) -> list[str]:
    """Image files below ``root``: ``*.cbf``, ``*.nxs``, ``*_master.h5`` and NXmx ``*.h5``.

    Eiger data files (``*_data_000001.h5``) are left to their master file. Hidden files
    and folders are skipped; symlinked folders are not followed, and a file whose real
    path leaves the data roots raises :class:`DataPathError`.
    """
    roots = data_roots()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            lower = name.lower()
            path = os.path.join(dirpath, name)
            if lower.endswith(CBF_SUFFIXES) or lower.endswith(NEXUS_SUFFIXES):
                pass
            elif lower.endswith(HDF5_SUFFIXES):
                if lower.endswith(("_master.h5", "_master.hdf5")):
                    pass
                elif _EIGER_DATA_FILE.search(lower) or not _is_nxmx(path):
                    continue
            else:
                continue
            real = os.path.realpath(path)
            if not any(is_inside(real, r) for r in roots):
                raise DataPathError(f"{path} links to {real}, which is outside the allowed data roots")
            found.append(path)
    return found


def new_output_dir(work_dir: str, stage: str) -> str:
    """Create and return the next free ``<work_dir>/<nnn>_<stage>`` folder.

    ``os.mkdir`` is atomic, so two workers sharing the storage never get the same one.
    """
    os.makedirs(work_dir, exist_ok=True)
    while True:
        numbers = [int(m.group(1)) for m in map(_RUN_DIR.match, os.listdir(work_dir)) if m]
        path = os.path.join(work_dir, f"{max(numbers, default=0) + 1:03d}_{stage}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path


class _RunLogHandler(logging.Handler):
    """Collects log records of the current thread for the StageRun's log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.thread = threading.get_ident()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            self.lines.append(self.format(record))
        except Exception:  # pragma: no cover
            self.handleError(record)

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


class _StageRunContext:
    """Status, progress and log bookkeeping of one StageRun while its task runs."""

    LOGGERS = ("processing", "xtalweb")

    def __init__(self, run: StageRun) -> None:
        self.run_id = run.pk
        self.handler = _RunLogHandler()
        self.task_logger = logging.getLogger(f"xtalweb.stage.{run.stage}")
        self._saved_levels: dict[str, int] = {}

    def __enter__(self) -> _StageRunContext:
        for name in self.LOGGERS:
            lg = logging.getLogger(name)
            lg.addHandler(self.handler)
            if lg.getEffectiveLevel() > logging.INFO:
                self._saved_levels[name] = lg.level
                lg.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            lg = logging.getLogger(name)
            lg.removeHandler(self.handler)
            if name in self._saved_levels:
                lg.setLevel(self._saved_levels[name])

    def info(self, message: str, *args) -> None:
        self.task_logger.info(message, *args)

    def progress(self, value: float) -> None:
        StageRun.objects.filter(pk=self.run_id).update(
            progress=min(max(float(value), 0.0), 1.0), log=self.handler.text()
        )

    def succeed(self, **fields) -> None:
        StageRun.objects.filter(pk=self.run_id).update(
            status=StageRun.Status.SUCCEEDED,
            progress=1.0,
            error="",
            log=self.handler.text(),
            finished=timezone.now(),
            **fields,
        )

    def fail(self, message: str, tb: str | None = None) -> None:
        log = self.handler.text()
        if tb:
            log += tb if tb.endswith("\n") else tb + "\n"
        log += f"FAILED: {message}\n"
        StageRun.objects.filter(pk=self.run_id).update(
            status=StageRun.Status.FAILED,
            error=one_line(message),
            log=log,
            output_dir="",
            finished=timezone.now(),
        )


def _claim(stagerun_id: int, stage: str) -> StageRun | None:
    """Mark a queued run as running; None if it is gone or was already taken."""
    claimed = StageRun.objects.filter(pk=stagerun_id, stage=stage, status=StageRun.Status.QUEUED).update(
        status=StageRun.Status.RUNNING, started=timezone.now(), progress=0.0, error=""
    )
    if not claimed:
        logger.warning("StageRun %s (%s) is not queued; nothing to do", stagerun_id, stage)
        return None
    return StageRun.objects.select_related("project").get(pk=stagerun_id)


def _sweep_from_summary(project: Project, s: dict, included: bool) -> Sweep:
    image_range = s.get("image_range") or [None, None]
    oscillation = s.get("oscillation") or [None, None]
    beam = s.get("beam_centre_px") or [None, None]
    start, end = image_range[0], image_range[1]
    n_images = (end - start + 1) if start is not None and end is not None else len(s.get("files") or [])
    return Sweep(
        project=project,
        name=str(s.get("name", ""))[:255],
        files=list(s.get("files") or []),
        image_range_start=start,
        image_range_end=end,
        n_images=max(int(n_images), 0),
        oscillation_start=oscillation[0],
        oscillation_width=oscillation[1],
        detector=str(s.get("detector", ""))[:255],
        wavelength=s.get("wavelength"),
        beam_centre_x=beam[0],
        beam_centre_y=beam[1],
        distance=s.get("distance_mm"),
        included=included,
        summary=s,
    )


# --- tasks -----------------------------------------------------------------------------


@shared_task(name="xtalweb.projects.tasks.run_import_stage")
def run_import_stage(stagerun_id: int) -> str | None:
    """Import the images of the project's data folder: ``imported.expt`` + Sweep rows."""
    run = _claim(stagerun_id, StageRun.Stage.IMPORT)
    if run is None:
        return None
    project = run.project
    out_dir: str | None = None
    with _StageRunContext(run) as ctx:
        try:
            from processing.errors import XtalError
        except Exception:
            ctx.fail("Internal error: the processing library cannot be loaded; see the log",
                     traceback.format_exc())
            return StageRun.Status.FAILED
        try:
            root = resolve_data_path(project.data_root)
            if not os.path.isdir(root):
                raise StageInputError(f"The data folder {project.data_root} does not exist")
            ctx.info("Looking for images in %s", root)
            files = find_image_files(root)
            if not files:
                raise StageInputError(
                    f"No image files (*.cbf, *_master.h5, NXmx *.h5, *.nxs) found in {project.data_root}"
                )
            ctx.info("Found %d image file(s)", len(files))
            ctx.progress(0.1)

            from processing.io.expt import write_experiments
            from processing.pipeline import ImportParams, run_import

            image_range = run.parameters.get("image_range") if isinstance(run.parameters, dict) else None
            params = ImportParams(
                paths=tuple(files),
                image_range=tuple(image_range) if image_range else None,
            )
            parameters = dataclasses.asdict(params)
            parameters["paths"] = list(params.paths)
            if params.image_range is not None:
                parameters["image_range"] = list(params.image_range)
            StageRun.objects.filter(pk=run.pk).update(parameters=parameters)
            ctx.info("ImportParams: %s", json.dumps(parameters))

            experiments, summary = run_import(params)
            ctx.progress(0.8)

            out_dir = new_output_dir(project.work_dir, "import")
            write_experiments(os.path.join(out_dir, "imported.expt"), experiments)
            ctx.info("Wrote %s", os.path.join(out_dir, "imported.expt"))
            ctx.info(
                "%s: %s image(s), %s sweep(s), %s still(s)",
                summary.get("format"), summary.get("n_images"), summary.get("n_sweeps"), summary.get("n_stills"),
            )

            with transaction.atomic():
                previous = dict(project.sweeps.values_list("name", "included"))
                project.sweeps.all().delete()
                Sweep.objects.bulk_create(
                    [_sweep_from_summary(project, s, previous.get(s.get("name"), True))
                     for s in summary.get("sweeps", [])]
                )
                ctx.succeed(summary=summary, output_dir=out_dir)
            queue_follow_up(run.pk)
            return StageRun.Status.SUCCEEDED
        except (XtalError, StageInputError, DataPathError) as exc:
            _remove(out_dir)
            ctx.fail(str(exc))
        except Exception as exc:
            _remove(out_dir)
            ctx.fail(f"Internal error during import ({type(exc).__name__}); the traceback is in the log",
                     traceback.format_exc())
    return StageRun.Status.FAILED


def _remove(path: str | None) -> None:
    if path and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


# --- creating, dispatching and chaining runs ----------------------------------------------


def available_sweeps(parent: StageRun | None) -> list[dict]:
    """The sweeps a run on top of ``parent`` may process: ``[{index, name}]``.

    ``index`` is the sweep's position in the import's experiment list (DIALS's
    experiment id); after an import every sweep is available, after a per-sweep
    stage the sweeps that succeeded there.
    """
    if parent is None or parent.status != StageRun.Status.SUCCEEDED:
        return []
    if is_per_sweep(parent.stage):
        return [{"index": sr.index, "name": sr.name}
                for sr in parent.sweep_runs.filter(status=StageRun.Status.SUCCEEDED).order_by("index")]
    sweeps = (parent.summary or {}).get("sweeps") or []
    return [{"index": k, "name": str(s.get("name") or f"sweep_{k}")} for k, s in enumerate(sweeps)]


def default_parent(project: Project, stage: str) -> StageRun | None:
    """The latest succeeded run of the stage before ``stage``."""
    previous = STAGE_DEFS[stage].previous
    return (project.runs.filter(stage=previous, status=StageRun.Status.SUCCEEDED)
            .order_by("-finished", "-id").first())


def create_run(project: Project, stage: str, *, parameters: dict | None = None,
               parents: list[StageRun] | tuple = (), sweeps: list[dict] | None = None,
               follow_up: list[str] | tuple = ()) -> StageRun:
    """Create a queued StageRun (and its SweepRun rows for a per-sweep stage).

    Call inside ``transaction.atomic()`` and dispatch with
    ``transaction.on_commit(lambda: dispatch_run(run.pk))``. ``sweeps`` are
    ``[{index, name}]`` (see :func:`available_sweeps`).
    """
    run = StageRun.objects.create(project=project, stage=stage, parameters=parameters or {},
                                  follow_up=list(follow_up))
    if parents:
        run.parents.set(parents)
    if is_per_sweep(stage):
        if not sweeps:
            raise ValueError("a per-sweep stage needs at least one sweep")
        joint = stage == "index" and bool((parameters or {}).get("joint"))
        rows = {s.name: s for s in project.sweeps.all()}
        SweepRun.objects.bulk_create([
            SweepRun(run=run, index=int(s["index"]), name=str(s["name"])[:255], sweep=rows.get(s["name"]),
                     unit=0 if joint else pos)
            for pos, s in enumerate(sorted(sweeps, key=lambda s: int(s["index"])))
        ])
    return run


def dispatch_run(run_id: int) -> None:
    """Queue the run's task(s); if the broker cannot be reached, fail the run visibly."""
    try:
        run = StageRun.objects.get(pk=run_id)
        if run.stage == StageRun.Stage.IMPORT:
            run_import_stage.delay(run_id)
        elif run.stage == StageRun.Stage.SIMULATE:
            run_simulate_stage.delay(run_id)
        elif is_per_sweep(run.stage):
            from celery import chord

            units = sorted(set(run.sweep_runs.values_list("unit", flat=True)))
            chord([run_sweep_unit.si(run_id, u) for u in units])(join_stage_run.si(run_id))
        else:
            raise ValueError(f"the web app cannot run stage {run.stage!r} yet")
    except Exception:
        logger.exception("could not queue StageRun %s", run_id)
        what = "the import" if StageRun.objects.filter(pk=run_id, stage="import").exists() else "the run"
        StageRun.objects.filter(pk=run_id, status=StageRun.Status.QUEUED).update(
            status=StageRun.Status.FAILED,
            error=f"Could not queue {what}: the task queue (Redis) is unreachable. Try again later.",
            log=traceback.format_exc(),
            finished=timezone.now(),
        )
        SweepRun.objects.filter(run_id=run_id, status=StageRun.Status.QUEUED).update(
            status=StageRun.Status.FAILED, error="not queued", finished=timezone.now())


def queue_follow_up(run_id: int) -> StageRun | None:
    """After ``run`` succeeded: queue the next stage of its ``follow_up`` list with the
    default parameters on every included sweep; the rest of the list goes with it.
    Never raises (a failure is logged on the finished run)."""
    try:
        run = StageRun.objects.select_related("project").get(pk=run_id)
        if run.status != StageRun.Status.SUCCEEDED or not run.follow_up:
            return None
        stage, rest = run.follow_up[0], list(run.follow_up[1:])
        if run.children.filter(stage=stage).exists():  # queued already (a redelivered task)
            return None
        project = run.project
        from .stages import build_params, params_json, words_from_values

        parameters = {}
        sweeps = None
        if stage in STAGE_DEFS:
            parameters = params_json(build_params(stage, words_from_values(stage, {})))
            included = set(project.sweeps.filter(included=True).values_list("name", flat=True))
            sweeps = [s for s in available_sweeps(run) if s["name"] in included]
            if not sweeps:
                _append_log(run_id, f"follow-up {stage}: no included sweep to process; not queued\n")
                return None
        with transaction.atomic():
            nxt = create_run(project, stage, parameters=parameters, parents=[run], sweeps=sweeps, follow_up=rest)
            nxt_id = nxt.pk
            transaction.on_commit(lambda: dispatch_run(nxt_id))
        return nxt
    except Exception:
        logger.exception("could not queue the follow-up of StageRun %s", run_id)
        _append_log(run_id, "could not queue the follow-up stage:\n" + traceback.format_exc())
        return None


def _append_log(run_id: int, text: str) -> None:
    run = StageRun.objects.filter(pk=run_id).first()
    if run is not None:
        StageRun.objects.filter(pk=run_id).update(log=run.log + text)


def ancestor(run: StageRun, stage: str) -> StageRun | None:
    """The nearest run of ``stage`` among ``run``'s parents, grandparents …"""
    seen, todo = set(), list(run.parents.all())
    while todo:
        r = todo.pop(0)
        if r.pk in seen:
            continue
        seen.add(r.pk)
        if r.stage == stage:
            return r
        todo.extend(r.parents.all())
    return None


# --- simulate ----------------------------------------------------------------------------


def simulate_into(preset: str, target: str, seed: int = 0, log=None) -> dict:
    """Simulate ``preset`` into the folder ``target`` (made here), atomically: the files
    are written into a temporary sibling folder that is renamed at the end, so
    ``target`` is either complete or absent. An existing complete ``target``
    (``truth.json`` present) is left alone. Returns the simulation summary."""
    from processing.simulate import SimulateParams, run_simulate

    marker = os.path.join(target, "truth.json")
    if os.path.isfile(marker):
        with open(marker) as f:
            doc = json.load(f)
        return dict(doc.get("truth") or {}, files=doc.get("files"), reused=True)
    if os.path.exists(target):
        raise StageInputError(f"{target} exists but holds no complete simulation (no truth.json)")
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(target)}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        if log:
            log("Simulating preset %s into %s", preset, target)
        _, summary = run_simulate(SimulateParams(preset=preset, seed=seed, output_dir=tmp))
        try:
            os.rename(tmp, target)
        except OSError:
            if os.path.isfile(marker):  # another worker finished first: keep its copy
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = json.loads(json.dumps(summary).replace(tmp, target))  # file paths as they are now
    return summary


@shared_task(name="xtalweb.projects.tasks.run_simulate_stage")
def run_simulate_stage(stagerun_id: int) -> str | None:
    """Simulate a preset into the project's data folder (then the follow-up: import)."""
    run = _claim(stagerun_id, StageRun.Stage.SIMULATE)
    if run is None:
        return None
    project = run.project
    with _StageRunContext(run) as ctx:
        try:
            from processing.errors import XtalError
        except Exception:
            ctx.fail("Internal error: the processing library cannot be loaded; see the log", traceback.format_exc())
            return StageRun.Status.FAILED
        try:
            preset = str((run.parameters or {}).get("preset") or "tiny")
            seed = int((run.parameters or {}).get("seed") or 0)
            # the folder itself does not exist yet: check where it will be
            target = os.path.join(resolve_data_path(os.path.dirname(project.data_root)),
                                  os.path.basename(project.data_root))
            ctx.progress(0.05)
            summary = simulate_into(preset, target, seed=seed, log=ctx.info)
            summary.pop("parameters", None)
            ctx.info("Simulated %s crystal(s) into %s", len(summary.get("crystals") or []), target)
            ctx.succeed(summary=summary, output_dir=target)
        except (XtalError, StageInputError, DataPathError) as exc:
            ctx.fail(str(exc))
            return StageRun.Status.FAILED
        except Exception as exc:
            ctx.fail(f"Internal error during the simulation ({type(exc).__name__}); the traceback is in the log",
                     traceback.format_exc())
            return StageRun.Status.FAILED
    queue_follow_up(run.pk)
    return StageRun.Status.SUCCEEDED


# --- per-sweep stages: the fan-out --------------------------------------------------------


def _start_per_sweep_run(stagerun_id: int) -> StageRun | None:
    """Mark the run running and make its output folder, once (row lock); None if the
    run is finished (or gone)."""
    with transaction.atomic():
        run = (StageRun.objects.select_for_update().select_related("project")
               .filter(pk=stagerun_id).first())
        if run is None:
            return None
        if run.status == StageRun.Status.QUEUED:
            run.output_dir = new_output_dir(run.project.work_dir, run.stage)
            os.makedirs(os.path.join(run.output_dir, "sweeps"), exist_ok=True)
            run.status = StageRun.Status.RUNNING
            run.started = timezone.now()
            run.save(update_fields=["output_dir", "status", "started"])
        elif run.status != StageRun.Status.RUNNING:
            return None
        return run


def _update_run_progress(run_id: int) -> None:
    """StageRun.progress = mean of its sweeps' progress (one statement; ≤ 0.99 until joined)."""
    from django.db.models import Avg, OuterRef, Subquery
    from django.db.models import FloatField, Value
    from django.db.models.functions import Coalesce, Least

    mean = (SweepRun.objects.filter(run_id=OuterRef("pk")).values("run_id")
            .annotate(p=Avg("progress")).values("p")[:1])
    StageRun.objects.filter(pk=run_id, status=StageRun.Status.RUNNING).update(
        progress=Least(Coalesce(Subquery(mean, output_field=FloatField()), Value(0.0)), Value(0.99)))


class _UnitContext(_StageRunContext):
    """Bookkeeping of one unit task: its SweepRun rows' status, progress and log."""

    PERIOD = 0.5  # s between progress writes of one sweep

    def __init__(self, run: StageRun, rows: list[SweepRun]) -> None:
        super().__init__(run)
        self.rows = rows
        self._last: dict[int, float] = {}

    def progress_for(self, rows: list[SweepRun]):
        """A ``progress(fraction, *message)`` callback updating ``rows``."""
        import time

        ids = [r.pk for r in rows]

        def progress(fraction, *args):
            try:
                f = min(max(float(fraction), 0.0), 1.0)
            except (TypeError, ValueError):
                return
            now = time.monotonic()
            if f < 1.0 and now - self._last.get(ids[0], 0.0) < self.PERIOD:
                return
            self._last[ids[0]] = now
            SweepRun.objects.filter(pk__in=ids, status=StageRun.Status.RUNNING).update(
                progress=f, log=self.handler.text())
            _update_run_progress(self.run_id)

        return progress

    def finish(self, row: SweepRun, status: str, *, error: str = "", summary: dict | None = None,
               files: list[str] | None = None, tb: str | None = None) -> None:
        log = self.handler.text()
        if tb:
            log += tb if tb.endswith("\n") else tb + "\n"
        if status == StageRun.Status.FAILED:
            log += f"FAILED: {error}\n"
        SweepRun.objects.filter(pk=row.pk).update(
            status=status, error=one_line(error) if error else "", summary=summary or {},
            output_files=files or [], progress=1.0, log=log, finished=timezone.now())
        _update_run_progress(self.run_id)


def _claim_rows(run_id: int, unit: int) -> list[SweepRun]:
    """Take the unit's rows that are not finished (queued; or running after a redelivery)."""
    active = (StageRun.Status.QUEUED, StageRun.Status.RUNNING)
    with transaction.atomic():
        rows = list(SweepRun.objects.select_for_update()
                    .filter(run_id=run_id, unit=unit, status__in=active).order_by("index"))
        if rows:
            SweepRun.objects.filter(pk__in=[r.pk for r in rows]).update(
                status=StageRun.Status.RUNNING, started=timezone.now(), progress=0.0, error="")
    return rows


def _params_of(run: StageRun):
    """The run's parameter dataclass, rebuilt from its stored JSON."""
    import dataclasses as dc

    from .stages import params_class

    cls = params_class(run.stage)
    names = {f.name for f in dc.fields(cls)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (run.parameters or {}).items() if k in names}
    return cls(**values)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "sweep"


def _sweep_path(run: StageRun, row: SweepRun, suffix: str) -> str:
    return os.path.join(run.output_dir, "sweeps", f"{row.index:03d}_{_safe_name(row.name)}{suffix}")


def _imported_experiments(run: StageRun):
    """The import's experiment list this run works on, with the image paths checked."""
    from processing.io.expt import read_experiments

    imp = run if run.stage == StageRun.Stage.IMPORT else ancestor(run, StageRun.Stage.IMPORT)
    if imp is None or not imp.output_dir:
        raise StageInputError("This run has no import run among its inputs")
    path = os.path.join(imp.output_dir, "imported.expt")
    if not os.path.isfile(path):
        raise StageInputError(f"The input {path} is gone (was the import's folder removed?)")
    experiments = read_experiments(path)
    _check_image_paths(experiments)
    return experiments


def _check_image_paths(experiments) -> None:
    """Raise :class:`DataPathError` if an image of ``experiments`` lies outside the data roots."""
    roots = data_roots()
    for e in experiments:
        src = e.imageset
        for p in ([src.template] if src is not None and src.template else []) + list(getattr(src, "paths", []) or []):
            real = os.path.realpath(p)
            if not any(is_inside(real, r) for r in roots):
                raise DataPathError(f"{p} is outside the allowed data roots")


def _experiment_of(experiments, row: SweepRun):
    if row.index >= len(experiments):
        raise StageInputError(f"sweep {row.name}: experiment {row.index} is not in the imported experiment list")
    return experiments[row.index]


def _find_spots_unit(run: StageRun, rows: list[SweepRun], ctx: _UnitContext) -> None:
    from processing.errors import XtalError
    from processing.io.images import open_imageset
    from processing.io.refl import write_reflections
    from processing.spotfinding import find_spots

    params = _params_of(run)
    experiments = _imported_experiments(run)
    for row in rows:
        try:
            e = _experiment_of(experiments, row)
            if e.imageset is None:
                raise StageInputError(f"sweep {row.name} has no images")
            ctx.info("Finding spots in sweep %s (experiment %d)", row.name, row.index)
            reader = open_imageset(e.imageset, e.scan)
            table, summary = find_spots(e, reader, params, progress=ctx.progress_for([row]),
                                        experiment_id=row.index)
            path = _sweep_path(run, row, ".refl")
            write_reflections(path, table)
            ctx.info("Sweep %s: %d spots on %d images; wrote %s", row.name, summary.get("n_spots", len(table)),
                     summary.get("n_images", 0), path)
            ctx.finish(row, StageRun.Status.SUCCEEDED, summary=summary, files=[path])
        except (XtalError, StageInputError, DataPathError) as exc:
            ctx.finish(row, StageRun.Status.FAILED, error=str(exc))
        except Exception as exc:
            ctx.finish(row, StageRun.Status.FAILED,
                       error=f"Internal error ({type(exc).__name__}: {exc}); the traceback is in the log",
                       tb=traceback.format_exc())


def _strong_spots_of(run: StageRun, row: SweepRun, experiment):
    """The find_spots run's spots of one sweep: its per-sweep file, or strong.refl."""
    from processing.io.refl import read_reflections

    fs = ancestor(run, "find_spots")
    if fs is None or not fs.output_dir:
        raise StageInputError("This run has no find_spots run among its inputs")
    src = fs.sweep_runs.filter(index=row.index, status=StageRun.Status.SUCCEEDED).first()
    for path in (src.output_files if src else []):
        if path.endswith(".refl") and os.path.isfile(path):
            return read_reflections(path)
    path = os.path.join(fs.output_dir, "strong.refl")
    if not os.path.isfile(path):
        raise StageInputError(f"The input {path} is gone (was the find_spots folder removed?)")
    table = read_reflections(path)
    if experiment.identifier and experiment.identifier in table.experiment_identifiers.values():
        return table.select_on_experiment_identifiers([experiment.identifier])
    return table.select(table["id"] == row.index)


_NO_SWEEP = re.compile(r"^no sweep could be indexed \(sweep 0: (.*)\)$", re.S)


def _index_unit(run: StageRun, rows: list[SweepRun], ctx: _UnitContext) -> None:
    from processing.errors import XtalError
    from processing.io.expt import write_experiments
    from processing.io.refl import write_reflections
    from processing.models import ExperimentList
    from processing.reflections import ReflectionTable

    run_index = _science("index", "run_index")
    params = _params_of(run)
    experiments = _imported_experiments(run)
    try:
        expts = ExperimentList()
        tables = []
        for row in rows:
            e = _experiment_of(experiments, row)
            expts.append(e)
            tables.append(_strong_spots_of(run, row, e))
        spots = ReflectionTable.concatenate(tables) if len(tables) > 1 else tables[0]
        names = ", ".join(r.name for r in rows)
        ctx.info("Indexing %s (%d spots)", names, len(spots))
        out_expts, out_refl, summary = run_index(expts, spots, params, progress=ctx.progress_for(rows))
    except XtalError as exc:
        message = str(exc)
        m = _NO_SWEEP.match(message) if len(rows) == 1 else None
        for row in rows:
            ctx.finish(row, StageRun.Status.FAILED, error=m.group(1) if m else message)
        return
    stem = _sweep_path(run, rows[0], "") if len(rows) == 1 else os.path.join(run.output_dir, "sweeps", "joint")
    files = []
    if len(out_expts):
        write_experiments(stem + ".expt", out_expts)
        write_reflections(stem + ".refl", out_refl)
        files = [stem + ".expt", stem + ".refl"]
    per_sweep = {int(r.get("sweep", -1)): r for r in summary.get("sweeps", [])}
    for pos, row in enumerate(rows):
        r = dict(per_sweep.get(pos) or {})
        tb = r.pop("traceback", None)
        r["sweep"] = row.index
        unit = {k: v for k, v in summary.items() if k != "sweeps"}
        if r.get("status") == "indexed":
            ctx.info("Sweep %s: %.1f %% indexed, cell %s, %s", row.name, r.get("percent_indexed", 0.0),
                     r.get("unit_cell"), r.get("space_group"))
            ctx.finish(row, StageRun.Status.SUCCEEDED, summary=dict(r, unit=unit), files=files)
        else:
            ctx.finish(row, StageRun.Status.FAILED, error=r.get("reason") or "not indexed",
                       summary=dict(r, unit=unit), tb=tb)


def _imageset_key(experiment):
    src = experiment.imageset
    if src is None:
        return None
    return (src.template or "", tuple(getattr(src, "paths", None) or ()))


def _sweep_models(run: StageRun, row: SweepRun, stage: str, merged: tuple[str, str]):
    """The experiments and reflections of one sweep, as the ``stage`` run this run starts
    from wrote them: the sweep's own files (``sweeps/<nnn>_<name>.expt/.refl``); from a
    file shared by several sweeps (``index joint=true``), or the merged ``merged`` files
    when the sweep's files are missing, only this sweep's experiments (its identifier, or
    the same images) with their reflections, ids renumbered from 0."""
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections
    from processing.models import ExperimentList

    src = ancestor(run, stage)
    if src is None or not src.output_dir:
        raise StageInputError(f"This run has no {stage} run among its inputs")
    srow = src.sweep_runs.filter(index=row.index, status=StageRun.Status.SUCCEEDED).first()
    if srow is None:
        raise StageInputError(f"sweep {row.name} did not succeed in {stage} run #{src.pk}")
    files = list(srow.output_files or [])
    expt_path = next((f for f in files if f.endswith(".expt")), None)
    refl_path = next((f for f in files if f.endswith(".refl")), None)
    shared = src.sweep_runs.filter(unit=srow.unit).count() > 1
    if not (expt_path and refl_path and os.path.isfile(expt_path) and os.path.isfile(refl_path)):
        expt_path, refl_path = (os.path.join(src.output_dir, n) for n in merged)
        shared = True
    for path in (expt_path, refl_path):
        if not os.path.isfile(path):
            raise StageInputError(f"The input {path} is gone (was the {stage} run's folder removed?)")
    experiments = read_experiments(expt_path)
    table = read_reflections(refl_path)
    if shared:
        imported = _experiment_of(_imported_experiments(run), row)
        key = _imageset_key(imported)
        keep = [e for e in experiments
                if e.identifier == imported.identifier or (key is not None and _imageset_key(e) == key)]
        if not keep:
            raise StageInputError(f"sweep {row.name}: {os.path.basename(expt_path)} of {stage} run #{src.pk} "
                                  "holds no experiment of it")
        table = table.select_on_experiment_identifiers([e.identifier for e in keep])
        old_id = {v: k for k, v in table.experiment_identifiers.items()}
        keep.sort(key=lambda e: old_id.get(e.identifier, 1 << 30))
        table.reset_ids()
        experiments = ExperimentList()
        experiments.extend(keep)
    _check_image_paths(experiments)
    return experiments, table


_SWEEP_PREFIX = re.compile(r"^sweep \d+(?: \([^)]*\))?: ")
_NONE_REFINED = re.compile(r"^no sweep could be refined: ")


def _sweep_message(message: str) -> str:
    """The science's message about the one sweep of a unit, without "sweep 0 (name): "
    (the science numbers the sweeps of its own input; the page names the sweep)."""
    text = _NONE_REFINED.sub("", " ".join(str(message).split()))
    return _SWEEP_PREFIX.sub("", text) or text


def _science(stage: str, function: str):
    from .stages import params_class

    return getattr(importlib.import_module(params_class(stage).__module__), function)


def _refine_unit(run: StageRun, rows: list[SweepRun], ctx: _UnitContext) -> None:
    """Refine each sweep on its own: its experiment(s) and indexed reflections."""
    from processing.errors import XtalError
    from processing.io.expt import write_experiments
    from processing.io.refl import write_reflections

    run_refine = _science("refine", "run_refine")
    params = _params_of(run)
    for row in rows:
        try:
            experiments, table = _sweep_models(run, row, "index", ("indexed.expt", "indexed.refl"))
            ctx.info("Refining sweep %s (experiment %d): %d experiment(s), %d reflections", row.name, row.index,
                     len(experiments), len(table))
            out_expts, out_refl, summary = run_refine(experiments, table, params, progress=ctx.progress_for([row]))
            summary = {k: v for k, v in summary.items() if k != "parameters"}
            summary["identifiers"] = [e.identifier for e in out_expts]
            if not summary.get("rmsds_by_experiment"):
                failed = "; ".join(_sweep_message(f.get("message", "")) for f in summary.get("failed") or [])
                ctx.finish(row, StageRun.Status.FAILED, error=failed or "not refined", summary=summary)
                continue
            stem = _sweep_path(run, row, "")
            write_experiments(stem + ".expt", out_expts)
            write_reflections(stem + ".refl", out_refl)
            for r in summary["rmsds_by_experiment"]:
                ctx.info("Sweep %s: %d reflections, RMSD X %.5g px, Y %.5g px, Z %.5g images", row.name, r["nref"],
                         r["rmsd_x_px"], r["rmsd_y_px"], r["rmsd_z_images"])
            for f in summary.get("failed") or []:
                ctx.info("Sweep %s: %s", row.name, f.get("message"))
            ctx.finish(row, StageRun.Status.SUCCEEDED, summary=summary, files=[stem + ".expt", stem + ".refl"])
        except (XtalError, StageInputError, DataPathError) as exc:
            ctx.finish(row, StageRun.Status.FAILED, error=_sweep_message(str(exc)))
        except Exception as exc:
            ctx.finish(row, StageRun.Status.FAILED,
                       error=f"Internal error ({type(exc).__name__}: {exc}); the traceback is in the log",
                       tb=traceback.format_exc())


def _integrate_unit(run: StageRun, rows: list[SweepRun], ctx: _UnitContext) -> None:
    """Integrate each sweep on its own: its refined experiment(s) and reflections."""
    from processing.errors import XtalError
    from processing.io.expt import write_experiments
    from processing.io.refl import write_reflections

    run_integrate = _science("integrate", "run_integrate")
    params = _params_of(run)
    for row in rows:
        try:
            experiments, table = _sweep_models(run, row, "refine", ("refined.expt", "refined.refl"))
            ctx.info("Integrating sweep %s (experiment %d): %d experiment(s)", row.name, row.index, len(experiments))
            out_expts, out_refl, summary = run_integrate(experiments, table, params,
                                                         progress=ctx.progress_for([row]))
            per_expt = []
            for s in summary.get("sweeps") or []:
                s = dict(s)
                s.pop("name", None)  # "sweep 0 (…)": the science's own numbering
                per_expt.append(s)
            sweep_summary = {k: v for k, v in summary.items() if k != "sweeps"}
            sweep_summary["identifiers"] = [e.identifier for e in out_expts]
            sweep_summary["experiments"] = per_expt
            sweep_summary["n_reflections"] = int(len(out_refl))
            stem = _sweep_path(run, row, "")
            write_experiments(stem + ".expt", out_expts)
            write_reflections(stem + ".refl", out_refl)
            for s in per_expt:
                pm = s.get("profile_model") or {}
                ctx.info("Sweep %s: sigma_b %.4f°, sigma_m %.4f°; %d predicted, integrated sum %d, prf %d",
                         row.name, pm.get("sigma_b", float("nan")), pm.get("sigma_m", float("nan")),
                         s.get("n_predicted", 0), s.get("n_integrated_sum", 0), s.get("n_integrated_prf", 0))
            ctx.finish(row, StageRun.Status.SUCCEEDED, summary=sweep_summary, files=[stem + ".expt", stem + ".refl"])
        except (XtalError, StageInputError, DataPathError) as exc:
            ctx.finish(row, StageRun.Status.FAILED, error=_sweep_message(str(exc)))
        except Exception as exc:
            ctx.finish(row, StageRun.Status.FAILED,
                       error=f"Internal error ({type(exc).__name__}: {exc}); the traceback is in the log",
                       tb=traceback.format_exc())


UNIT_WORKERS = {"find_spots": _find_spots_unit, "index": _index_unit, "refine": _refine_unit,
                "integrate": _integrate_unit}


@shared_task(name="xtalweb.projects.tasks.run_sweep_unit")
def run_sweep_unit(stagerun_id: int, unit: int) -> dict:
    """One unit of a per-sweep run (a chord header task). Never raises."""
    try:
        run = _start_per_sweep_run(stagerun_id)
        if run is None:
            return {"run": stagerun_id, "unit": unit, "skipped": True}
        rows = _claim_rows(stagerun_id, unit)
        if not rows:
            return {"run": stagerun_id, "unit": unit, "skipped": True}
        with _UnitContext(run, rows) as ctx:
            try:
                from processing.errors import XtalError
            except Exception:
                tb = traceback.format_exc()
                for row in rows:
                    ctx.finish(row, StageRun.Status.FAILED, error="Internal error: the processing library "
                               "cannot be loaded; see the log", tb=tb)
                return {"run": stagerun_id, "unit": unit, "failed": len(rows)}
            try:
                UNIT_WORKERS[run.stage](run, rows, ctx)
            except (XtalError, StageInputError, DataPathError) as exc:
                for row in rows:
                    ctx.finish(row, StageRun.Status.FAILED, error=str(exc))
            except Exception as exc:
                tb = traceback.format_exc()
                for row in rows:
                    ctx.finish(row, StageRun.Status.FAILED, tb=tb,
                               error=f"Internal error during {run.stage} ({type(exc).__name__}); "
                                     "the traceback is in the log")
            finally:
                # a row the worker left unfinished is a failure, never "running" forever
                SweepRun.objects.filter(pk__in=[r.pk for r in rows], status=StageRun.Status.RUNNING).update(
                    status=StageRun.Status.FAILED, error="ended without a result", finished=timezone.now())
        statuses = list(SweepRun.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True))
        return {"run": stagerun_id, "unit": unit,
                "succeeded": statuses.count(StageRun.Status.SUCCEEDED),
                "failed": statuses.count(StageRun.Status.FAILED)}
    except Exception:
        logger.exception("unit %s of StageRun %s", unit, stagerun_id)
        try:
            SweepRun.objects.filter(run_id=stagerun_id, unit=unit,
                                    status__in=(StageRun.Status.QUEUED, StageRun.Status.RUNNING)).update(
                status=StageRun.Status.FAILED, error="Internal error; the traceback is in the worker log",
                finished=timezone.now())
        except Exception:
            logger.exception("could not mark unit %s of StageRun %s failed", unit, stagerun_id)
        return {"run": stagerun_id, "unit": unit, "error": True}


# --- per-sweep stages: the join -------------------------------------------------------------


def _merge_find_spots(run: StageRun, rows: list[SweepRun], ctx) -> dict:
    """strong.refl from the sweeps' tables (ids are the import's experiment ids)."""
    from processing.io.refl import read_reflections, write_reflections

    table = None
    for row in rows:
        t = read_reflections(row.output_files[0])
        if table is None:
            table = t
        else:
            table.extend(t)
    path = os.path.join(run.output_dir, "strong.refl")
    write_reflections(path, table)
    ctx.info("Wrote %s: %d spots from %d sweep(s)", path, len(table), len(rows))
    return {"n_spots": int(len(table)),
            "n_images": int(sum(int(r.summary.get("n_images", 0)) for r in rows))}


def _merge_units(run: StageRun, rows: list[SweepRun], ctx, names: tuple[str, str]):
    """``names`` (e.g. indexed.expt + indexed.refl) from the units' files, ids renumbered
    in order; each written atomically. Returns (experiments, table)."""
    from processing.io.expt import read_experiments, write_experiments
    from processing.io.refl import read_reflections, write_reflections
    from processing.models import ExperimentList
    from processing.reflections import ReflectionTable

    seen, expts, tables = set(), ExperimentList(), []
    offset = 0
    for row in rows:
        stem = row.output_files[0][: -len(".expt")]
        if stem in seen:  # a joint unit: one file for several sweeps
            continue
        seen.add(stem)
        unit_expts = read_experiments(stem + ".expt")
        t = read_reflections(stem + ".refl")
        if "imageset_id" in t and len(t):
            n = int(t["imageset_id"].max()) + 1
            t["imageset_id"] = t["imageset_id"] + offset
            offset += n
        expts.extend(unit_expts)
        tables.append(t)
    table = ReflectionTable.concatenate(tables) if len(tables) > 1 else tables[0]
    # experiments in the order of the merged table's ids (concatenate numbers them by first appearance)
    by_ident = {e.identifier: e for e in expts}
    ident = table.experiment_identifiers
    if sorted(ident) == list(range(len(expts))) and set(ident.values()) == set(by_ident):
        ordered = ExperimentList()
        ordered.extend(by_ident[ident[i]] for i in range(len(expts)))
        expts = ordered
    write_experiments(os.path.join(run.output_dir, names[0]), expts)
    write_reflections(os.path.join(run.output_dir, names[1]), table)
    ctx.info("Wrote %s (%d experiment(s)) and %s (%d reflections)", names[0], len(expts), names[1], len(table))
    return expts, table


def _experiment_ids(expts, rows: list[SweepRun]) -> list[dict]:
    """Each merged experiment: its id in the merged files, identifier and sweep."""
    sweep_of = {}
    for row in rows:
        for ident in (row.summary or {}).get("identifiers") or []:
            sweep_of.setdefault(ident, row)
    out = []
    for k, e in enumerate(expts):
        row = sweep_of.get(e.identifier)
        out.append({"id": k, "identifier": e.identifier, "sweep": row.index if row else None,
                    "name": row.name if row else ""})
    return out


def _merge_index(run: StageRun, rows: list[SweepRun], ctx) -> dict:
    """indexed.expt + indexed.refl from the units' files, ids renumbered in order."""
    expts, table = _merge_units(run, rows, ctx, ("indexed.expt", "indexed.refl"))
    return {"n_experiments": len(expts), "n_reflections": int(len(table)),
            "n_spots": int(sum(int(r.summary.get("n_spots", 0)) for r in rows)),
            "n_indexed": int(sum(int(r.summary.get("n_indexed", 0)) for r in rows))}


def _merge_refine(run: StageRun, rows: list[SweepRun], ctx) -> dict:
    """refined.expt + refined.refl; ``experiments`` maps the merged ids to the sweeps
    (the "Exp id" of the RMSD table)."""
    expts, table = _merge_units(run, rows, ctx, ("refined.expt", "refined.refl"))
    return {"n_experiments": len(expts), "n_reflections": int(len(table)),
            "n_used_in_refinement": int(sum(int(r.summary.get("n_used_in_refinement", 0)) for r in rows)),
            "experiments": _experiment_ids(expts, rows)}


def _merge_integrate(run: StageRun, rows: list[SweepRun], ctx) -> dict:
    """integrated.expt + integrated.refl."""
    expts, table = _merge_units(run, rows, ctx, ("integrated.expt", "integrated.refl"))
    total = lambda key: int(sum(int(r.summary.get(key, 0)) for r in rows))  # noqa: E731
    return {"n_experiments": len(expts), "n_reflections": int(len(table)), "n_predicted": total("n_predicted"),
            "n_integrated_sum": total("n_integrated_sum"), "n_integrated_prf": total("n_integrated_prf"),
            "experiments": _experiment_ids(expts, rows)}


MERGERS = {"find_spots": _merge_find_spots, "index": _merge_index, "refine": _merge_refine,
           "integrate": _merge_integrate}


@shared_task(name="xtalweb.projects.tasks.join_stage_run")
def join_stage_run(stagerun_id: int) -> str | None:
    """The chord body: merge the succeeded sweeps, finish the run, queue the follow-up."""
    with transaction.atomic():
        run = StageRun.objects.select_for_update().select_related("project").filter(pk=stagerun_id).first()
        if run is None or run.status not in (StageRun.Status.QUEUED, StageRun.Status.RUNNING):
            return None
        # rows a unit task never finished (it died beyond redelivery) are failures
        SweepRun.objects.filter(run=run, status__in=(StageRun.Status.QUEUED, StageRun.Status.RUNNING)).update(
            status=StageRun.Status.FAILED, error="the sweep's task ended without a result",
            finished=timezone.now())
        if run.status == StageRun.Status.QUEUED:
            StageRun.objects.filter(pk=run.pk).update(status=StageRun.Status.RUNNING, started=timezone.now())
    rows = list(run.sweep_runs.order_by("index"))
    ok = [r for r in rows if r.status == StageRun.Status.SUCCEEDED]
    failed = [r for r in rows if r.status != StageRun.Status.SUCCEEDED]
    sweeps = [dict(r.summary or {}, index=r.index, name=r.name, status=r.status, error=r.error) for r in rows]
    summary = {"n_sweeps": len(rows), "n_succeeded": len(ok), "n_failed": len(failed), "sweeps": sweeps}
    with _StageRunContext(run) as ctx:
        for r in failed:
            ctx.info("Sweep %s failed: %s", r.name, r.error)
        if not ok:
            _remove(run.output_dir)
            reasons = "; ".join(f"{r.name}: {r.error}" for r in failed)
            ctx.fail(f"All {len(rows)} sweep(s) failed — {reasons}" if rows else "No sweeps to process")
            StageRun.objects.filter(pk=run.pk).update(summary=summary)
            return StageRun.Status.FAILED
        try:
            summary.update(MERGERS[run.stage](run, ok, ctx))
        except Exception as exc:
            from processing.errors import XtalError

            if isinstance(exc, XtalError):
                ctx.fail(str(exc))
            else:
                ctx.fail(f"Internal error while merging the sweeps ({type(exc).__name__}); the traceback is in "
                         "the log", traceback.format_exc())
            _remove(run.output_dir)
            StageRun.objects.filter(pk=run.pk).update(summary=summary)
            return StageRun.Status.FAILED
        ctx.succeed(summary=summary, output_dir=run.output_dir)
    queue_follow_up(run.pk)
    return StageRun.Status.SUCCEEDED
