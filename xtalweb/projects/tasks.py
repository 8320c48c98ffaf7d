"""Celery tasks: each one runs a stage of ``processing`` for one StageRun.

The task wires the science to the database and the project's folders, nothing more:
it builds the stage's parameter dataclass, calls the stage, writes the outputs into
the StageRun's own new folder ``<work_dir>/<nnn>_<stage>/`` and stores the summary.

Errors: a user error (:class:`processing.errors.XtalError`, a data path outside the
data roots, no images found) marks the run failed with ``error`` = its one-line
message; anything else also fails the run, with a short ``error`` and the traceback
in ``log``. A failed run leaves no output folder behind.

``processing`` is imported inside the tasks, not at module level: the web process
imports this module to dispatch tasks and has no use for numpy/h5py/numba.
"""

from __future__ import annotations

import dataclasses
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

from .models import Project, StageRun, Sweep
from .permissions import DataPathError, data_roots, is_inside, resolve_data_path

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
