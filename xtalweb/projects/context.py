"""Bookkeeping of a running StageRun: status, progress and log, written as the task runs.

:class:`RunContext` serves a whole-project task (import, simulate) and a join;
:class:`UnitContext` one unit task of a fanned-out run, whose SweepRun rows it alone
writes (so any number of workers may run units of one run). A row whose result cannot
be saved is failed with a message that names the files the science left in the run
folder: nothing computed is lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback

from django.db import transaction
from django.utils import timezone

from .models import StageRun, SweepRun

logger = logging.getLogger(__name__)


def failure_message(exc: BaseException, doing: str) -> str:
    """The one line a user sees for an exception the stage did not expect: a full disk and
    a work folder the worker cannot write say so (and where); anything else names the
    exception and its message, the traceback going to the log."""
    import errno

    full = "Free space on the disk of the project's work folder, then run again."
    if type(exc).__name__ == "XtalError":  # the science's own one-line message (a file it cannot write …)
        text = one_line(str(exc))
        return f"{text} {full}" if os.strerror(errno.ENOSPC) in text else text
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = exc.filename or "the project's work folder"
        return f"The disk is full: cannot write {where} ({exc.strerror or 'no space left on device'}). {full}"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = exc.filename or "the project's work folder"
        return (f"Cannot write into {where} ({exc.strerror or 'permission denied'}): the project's work folder "
                "must be writable by the workers (WORK_ROOT).")
    text = one_line(str(exc), 300) if str(exc).strip() else ""
    return (f"Internal error during {doing} ({type(exc).__name__}{': ' + text if text else ''}); "
            "the traceback is in the log")


def one_line(message: str, limit: int = 1000) -> str:
    """Collapse ``message`` to a single line of at most ``limit`` characters."""
    text = " ".join(str(message).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text or "Failed"


class RunLogHandler(logging.Handler):
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


class RunContext:
    """Status, progress and log bookkeeping of one StageRun while its task runs."""

    LOGGERS = ("processing", "xtalweb")

    def __init__(self, run: StageRun, keep_log: bool = False) -> None:
        self.run_id = run.pk
        #: the run's log so far, kept in front of this task's lines (a join after a retry)
        self.before = run.log if keep_log else ""
        self.handler = RunLogHandler()
        self.task_logger = logging.getLogger(f"xtalweb.stage.{run.stage}")
        self._saved_levels: dict[str, int] = {}

    def __enter__(self) -> RunContext:
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

    def progress(self, value: float, *message) -> None:
        StageRun.objects.filter(pk=self.run_id).update(
            progress=min(max(float(value), 0.0), 1.0), log=self.text()
        )

    def text(self) -> str:
        return self.before + self.handler.text()

    def succeed(self, **fields) -> None:
        self._finish(StageRun.Status.SUCCEEDED, "", self.text(), **fields)

    def partial(self, message: str, **fields) -> None:
        """Some sweeps succeeded, some failed: ``message`` says how many."""
        self._finish(StageRun.Status.PARTIAL, one_line(message), self.text() + f"PARTIAL: {message}\n",
                     **fields)

    def fail(self, message: str, tb: str | None = None, keep_output: bool = False) -> None:
        """Mark the run failed; its output folder is forgotten unless ``keep_output``
        (the per-sweep files of a fanned-out run stay, for a retry)."""
        log = self.text()
        if tb:
            log += tb if tb.endswith("\n") else tb + "\n"
        log += f"FAILED: {message}\n"
        fields = {} if keep_output else {"output_dir": ""}
        self._finish(StageRun.Status.FAILED, one_line(message), log, **fields)

    def _finish(self, status: str, error: str, log: str, **fields) -> None:
        StageRun.objects.filter(pk=self.run_id).update(
            status=status, progress=1.0, error=error, log=log, finished=timezone.now(), **fields)


def claim(stagerun_id: int, stage: str) -> StageRun | None:
    """Mark a queued run as running; None if it is gone or was already taken."""
    claimed = StageRun.objects.filter(pk=stagerun_id, stage=stage, status=StageRun.Status.QUEUED).update(
        status=StageRun.Status.RUNNING, started=timezone.now(), progress=0.0, error=""
    )
    if not claimed:
        logger.warning("StageRun %s (%s) is not queued; nothing to do", stagerun_id, stage)
        return None
    return StageRun.objects.select_related("project").get(pk=stagerun_id)


def update_run_progress(run_id: int) -> None:
    """StageRun.progress = mean of its sweeps' progress (one statement; ≤ 0.99 until joined)."""
    from django.db.models import Avg, FloatField, OuterRef, Subquery, Value
    from django.db.models.functions import Coalesce, Least

    mean = (SweepRun.objects.filter(run_id=OuterRef("pk")).values("run_id")
            .annotate(p=Avg("progress")).values("p")[:1])
    StageRun.objects.filter(pk=run_id, status=StageRun.Status.RUNNING).update(
        progress=Least(Coalesce(Subquery(mean, output_field=FloatField()), Value(0.0)), Value(0.99)))


class UnitContext(RunContext):
    """Bookkeeping of one unit task: its SweepRun rows' status, progress and log."""

    PERIOD = 0.5  # s between progress writes of one sweep

    def __init__(self, run: StageRun, rows: list[SweepRun]) -> None:
        super().__init__(run)
        self.rows = rows
        self._last: dict[int, float] = {}

    def progress_for(self, rows: list[SweepRun]):
        """A ``progress(fraction, *message)`` callback updating ``rows``."""
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
            update_run_progress(self.run_id)

        return progress

    def finish(self, row: SweepRun, status: str, *, error: str = "", summary: dict | None = None,
               files: list[str] | None = None, tb: str | None = None) -> None:
        """Record one sweep's outcome. If that fails (the science is done, its files are
        written), the sweep is failed with a message naming the kept files."""
        log = self.handler.text()
        if tb:
            log += tb if tb.endswith("\n") else tb + "\n"
        if status == StageRun.Status.FAILED:
            log += f"FAILED: {error}\n"
        try:
            with transaction.atomic():
                SweepRun.objects.filter(pk=row.pk).update(
                    status=status, error=one_line(error) if error else "", summary=summary or {},
                    output_files=files or [], progress=1.0, log=log, finished=timezone.now())
        except Exception as exc:
            logger.exception("saving sweep %s of StageRun %s", row.name, self.run_id)
            kept = ", ".join(files or []) or "none"
            message = (f"Internal error while saving the result ({type(exc).__name__}: {exc}); "
                       f"the sweep's files are kept: {kept}")
            SweepRun.objects.filter(pk=row.pk).update(
                status=StageRun.Status.FAILED, error=one_line(message), output_files=[], progress=1.0,
                log=log + traceback.format_exc() + f"FAILED: {message}\n", finished=timezone.now())
        update_run_progress(self.run_id)

    def fail_rows(self, message: str, tb: str | None = None) -> None:
        """Fail every row of the unit still running with ``message``."""
        for row in self.rows:
            if SweepRun.objects.filter(pk=row.pk, status=StageRun.Status.RUNNING).exists():
                self.finish(row, StageRun.Status.FAILED, error=message, tb=tb)


def claim_rows(run_id: int, unit: int) -> list[SweepRun]:
    """Take the unit's queued rows. A redelivered message finds its rows running (another
    worker runs them: the watchdog fails them if it went silent) or finished, and takes
    none: a sweep never runs twice at once."""
    with transaction.atomic():
        rows = list(SweepRun.objects.select_for_update()
                    .filter(run_id=run_id, unit=unit, status=StageRun.Status.QUEUED).order_by("index"))
        if rows:
            SweepRun.objects.filter(pk__in=[r.pk for r in rows]).update(
                status=StageRun.Status.RUNNING, started=timezone.now(), progress=0.0, error="")
    return rows
