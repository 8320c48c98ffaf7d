"""Heartbeats of running tasks, and the watchdog that finds runs whose tasks vanished.

A task can vanish: its worker is killed (SIGKILL, out of memory, the machine goes away),
Redis is flushed or restarted without its data, a worker of another instance takes it.
Celery does not notice (with ``acks_late`` an unacknowledged message waits in Redis for
the visibility timeout, 12 h), so without this a run would show "running" forever.

- **Heartbeat**: while a task of a run runs (``tasks.RunTask``), a thread writes
  ``StageRun.heartbeat`` (and ``SweepRun.heartbeat`` of the unit's sweeps) every
  :func:`heartbeat_period` seconds; sending a run's tasks sets it too.
- **A killed worker process**: the worker's main process sees its pool process die
  (``WorkerLostError``) and fails the run or the unit's sweeps at once
  (:func:`worker_lost`), with the signal, keeping the log so far. The message is handed
  back to the queue (``task_reject_on_worker_lost``); the redelivered task finds its work
  finished and does nothing, so a stage that kills its worker is not run again and again.
- **A task that raises** (outside the stage's own error handling) fails its run with the
  exception's message (:func:`task_raised`).
- **The watchdog** (:func:`check_runs`) looks at the queued and running runs:

  * running, but no heartbeat for :func:`lost_after` seconds → failed: "The worker
    running this … stopped sending its heartbeat …". Not re-queued: what killed the
    worker (memory) may kill the next.
  * queued (or a fanned-out run's queued sweeps, or its join once every sweep has
    finished) for :func:`queued_grace` seconds, and no message for it in this instance's
    queues nor taken by a worker (Redis's ``unacked``) → re-queued once; lost again →
    failed with a message that says to check the workers.

  It runs when the project page or its status JSON is served (:func:`check_project`,
  at most every :func:`page_throttle` seconds per project and process) and in every
  worker every ``XTALWEB_WATCHDOG_PERIOD`` seconds (:func:`start_periodic`).

Settings (Django settings or the environment; seconds): ``XTALWEB_HEARTBEAT_PERIOD``
(20), ``XTALWEB_HEARTBEAT_TIMEOUT`` (300), ``XTALWEB_QUEUED_GRACE`` (120),
``XTALWEB_WATCHDOG_PERIOD`` (60; 0: no periodic check), ``XTALWEB_WATCHDOG_THROTTLE`` (15).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Q, TextField, Value
from django.db.models.functions import Concat
from django.utils import timezone

from .broker import _present, pending_messages  # noqa: F401  (pending_messages re-exported for the tests)
from .models import StageRun, SweepRun

logger = logging.getLogger(__name__)

ACTIVE = (StageRun.Status.QUEUED, StageRun.Status.RUNNING)
TASKS = "xtalweb.projects.tasks."
UNIT, JOIN = TASKS + "run_sweep_unit", TASKS + "join_stage_run"


def _seconds(name: str, default: float) -> float:
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def heartbeat_period() -> float:
    return _seconds("XTALWEB_HEARTBEAT_PERIOD", 20.0)


def lost_after() -> float:
    return _seconds("XTALWEB_HEARTBEAT_TIMEOUT", 300.0)


def queued_grace() -> float:
    return _seconds("XTALWEB_QUEUED_GRACE", 120.0)


def check_period() -> float:
    return _seconds("XTALWEB_WATCHDOG_PERIOD", 60.0)


def page_throttle() -> float:
    return _seconds("XTALWEB_WATCHDOG_THROTTLE", 15.0)


def _append(text: str):
    """``log = log || text`` in the UPDATE itself (no lost update of a concurrent write)."""
    return Concat("log", Value(text), output_field=TextField())


def _one_line(message: str) -> str:
    from .context import one_line

    return one_line(message)


# --- heartbeat ---------------------------------------------------------------------------


class Heartbeat:
    """While the block runs, write the run's (and the unit's sweeps') heartbeat every
    :func:`heartbeat_period` seconds from a thread of its own."""

    def __init__(self, run_id: int | None, unit: int | None = None, period: float | None = None):
        self.run_id, self.unit = run_id, unit
        self.period = period if period is not None else heartbeat_period()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        if self.run_id is None:
            return
        now = timezone.now()
        try:
            StageRun.objects.filter(pk=self.run_id, status__in=ACTIVE).update(heartbeat=now)
            if self.unit is not None:
                SweepRun.objects.filter(run_id=self.run_id, unit=self.unit,
                                        status__in=ACTIVE).update(heartbeat=now)
        except Exception:  # the database is busy or away: the next beat may get through
            logger.warning("heartbeat of StageRun %s not written", self.run_id, exc_info=True)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.period):
                self.beat()
                connections.close_all()  # this thread's own connections
        finally:
            connections.close_all()

    def __enter__(self) -> Heartbeat:
        self.beat()
        if self.run_id is not None and self.period > 0:
            self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.run_id}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


# --- a worker process killed, a task that raised -------------------------------------------


def _what(task_name: str) -> str:
    return {UNIT: "sweep", JOIN: "run's join"}.get(task_name, "stage")


def _fail_run(run_id: int, message: str, log: str, **extra) -> int:
    """Fail an active run (and its active sweeps); how many runs changed (0 or 1)."""
    now = timezone.now()
    changed = StageRun.objects.filter(pk=run_id, status__in=ACTIVE, **extra).update(
        status=StageRun.Status.FAILED, error=_one_line(message), finished=now, log=_append(log))
    if changed:
        SweepRun.objects.filter(run_id=run_id, status__in=ACTIVE).update(
            status=StageRun.Status.FAILED, error="the run failed: " + _one_line(message)[:900], finished=now)
    return changed


def _fail_rows(rows, message: str) -> int:
    """Fail the active sweeps of ``rows`` (a SweepRun queryset); how many changed."""
    changed = rows.filter(status__in=ACTIVE).update(
        status=StageRun.Status.FAILED, error=_one_line(message), progress=1.0, finished=timezone.now(),
        log=_append(f"FAILED: {message}\n"))
    return changed


def _run_id(args) -> int | None:
    try:
        return int(args[0])
    except (TypeError, ValueError, IndexError):
        return None


def worker_lost(task_name: str, args, reason: str) -> None:
    """The pool process running ``task_name(*args)`` died (``reason``: Celery's
    "Worker exited prematurely: signal 9 (SIGKILL)."): fail what it was doing, keep the log."""
    run_id = _run_id(args)
    if run_id is None or not task_name.startswith(TASKS):
        return
    match = re.search(r"(signal \d+(?: \(\w+\))?|exitcode \d+)", reason or "")
    how = match.group(1) if match else (reason or "no reason given")
    what = _what(task_name)
    advice = "retry the failed sweeps to run it again" if task_name == UNIT else "start the run again"
    message = (f"The worker process running this {what} was killed ({how}): it may have run out of "
               f"memory, or it was stopped. The log up to then is kept; {advice}.")
    try:
        if task_name == UNIT and len(args) > 1:
            from .context import update_run_progress

            n = _fail_rows(SweepRun.objects.filter(run_id=run_id, unit=int(args[1])), message)
            update_run_progress(run_id)
            logger.error("StageRun %s unit %s: %s (%d sweep(s) failed)", run_id, args[1], message, n)
        else:
            _fail_run(run_id, message, f"FAILED: {message}\n")
            logger.error("StageRun %s: %s", run_id, message)
    finally:
        connections.close_all()  # the worker's main process forks new pool processes


def task_raised(task_name: str, args, exc: BaseException, tb: str = "") -> None:
    """A task raised past the stage's own error handling: fail its run with the message."""
    run_id = _run_id(args)
    if run_id is None:
        return
    text = str(exc).strip()
    message = f"The {_what(task_name)} task failed: {type(exc).__name__}" + (f": {text}" if text else "")
    log = (tb if tb.endswith("\n") or not tb else tb + "\n") + f"FAILED: {message}\n"
    if task_name == UNIT and len(args) > 1:
        _fail_rows(SweepRun.objects.filter(run_id=run_id, unit=int(args[1])), message)
    else:
        _fail_run(run_id, message, log)




# --- the watchdog --------------------------------------------------------------------------


class _Broker:
    """The broker's messages, read once per check and only if a check needs them."""

    def __init__(self):
        self._value, self._read = None, False

    def get(self) -> dict | None:
        if not self._read:
            self._value, self._read = pending_messages(), True
        return self._value


def check_runs(runs=None) -> list[str]:
    """Check the queued and running runs of ``runs`` (a StageRun queryset; default all);
    fail or re-queue those whose tasks vanished. Returns what was done, one line each."""
    from .stages import is_per_sweep

    qs = (runs if runs is not None else StageRun.objects.all()).filter(status__in=ACTIVE)
    done: list[str] = []
    broker = _Broker()
    for run in qs.order_by("id"):
        try:
            if is_per_sweep(run.stage):
                _check_fanned_out(run, broker, done)
            else:
                _check_single(run, broker, done)
        except Exception:
            logger.exception("watchdog: checking StageRun %s", run.pk)
    for line in done:
        logger.warning("watchdog: %s", line)
    return done


def _ago(then) -> str:
    seconds = int((timezone.now() - then).total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def _silent_message(what: str, last) -> str:
    return (f"The worker running this {what} stopped sending its heartbeat {_ago(last)} ago: it was killed, "
            "ran out of memory, or its machine went away. The log up to then is kept; start the run again.")


def _lost_twice_message(what: str) -> str:
    from ..celery import app

    return (f"The task of this {what} was lost from the task queue twice (Redis flushed or restarted without "
            f"its data, or the task taken by a worker that stopped): check that a worker of this instance "
            f"is running on queue {app.conf.task_default_queue} (README: \"Several workers\"), then start "
            "the run again.")


def _task_name(run: StageRun) -> str:
    from .stages import takes_sweeps

    if run.stage == "import":
        return TASKS + "run_import_stage"
    if run.stage == "simulate":
        return TASKS + "run_simulate_stage"
    return TASKS + ("run_ensemble_stage" if takes_sweeps(run.stage) else "run_unknown")


def _claim_requeue(run: StageRun, line: str) -> bool:
    """Count a re-queue of the run (once only, one process wins); False if it was re-queued before."""
    if run.requeues >= 1:
        return False
    return bool(StageRun.objects.filter(pk=run.pk, requeues=run.requeues, status__in=ACTIVE).update(
        requeues=run.requeues + 1, heartbeat=timezone.now(), log=_append(f"[watchdog] {line}\n")))


def _check_single(run: StageRun, broker: _Broker, done: list) -> None:
    """A run that is one task (import, simulate, an ensemble stage)."""
    now = timezone.now()
    if run.status == StageRun.Status.RUNNING:
        last = run.heartbeat or run.started or run.created
        cut = now - timedelta(seconds=lost_after())
        if last < cut:
            message = _silent_message("stage", last)
            if _fail_run(run.pk, message, f"FAILED: {message}\n",
                         **({"heartbeat__lt": cut} if run.heartbeat else {"heartbeat__isnull": True})):
                done.append(f"run #{run.pk} ({run.stage}) failed: no heartbeat since {last:%H:%M:%S}")
        return
    grace = queued_grace()
    last = run.heartbeat or run.created
    if (now - last).total_seconds() <= grace:
        return
    pending = broker.get()
    if pending is None or _present(pending, (_task_name(run), run.pk, None), grace):
        return
    if _claim_requeue(run, "its task was not in the task queue any more (Redis flushed or restarted, or taken "
                           "by a worker that stopped): queued again"):
        from .runs import dispatch_run

        dispatch_run(run.pk)
        done.append(f"run #{run.pk} ({run.stage}) re-queued: its task was lost")
    elif run.requeues >= 1:
        message = _lost_twice_message("run")
        if _fail_run(run.pk, message, f"FAILED: {message}\n", status=StageRun.Status.QUEUED):
            done.append(f"run #{run.pk} ({run.stage}) failed: its task was lost twice")


def _check_fanned_out(run: StageRun, broker: _Broker, done: list) -> None:
    """A per-sweep run: unit tasks (one per sweep or group) and a join."""
    from .context import update_run_progress

    now = timezone.now()
    cut = now - timedelta(seconds=lost_after())
    grace = queued_grace()
    rows = list(run.sweep_runs.all())
    # 1. sweeps whose unit task went silent
    silent = [r for r in rows if r.status == StageRun.Status.RUNNING
              and (r.heartbeat or r.started or run.heartbeat or run.created) < cut]
    failed_now = 0
    for row in silent:
        message = _silent_message("sweep", row.heartbeat or row.started or run.created)
        message = message.replace("start the run again", "retry the failed sweeps to run it again")
        stale = Q(heartbeat__lt=cut) | Q(heartbeat__isnull=True)
        failed_now += _fail_rows(SweepRun.objects.filter(Q(pk=row.pk) & stale), message)
    if failed_now:
        update_run_progress(run.pk)
        done.append(f"run #{run.pk} ({run.stage}): {failed_now} sweep(s) failed, no heartbeat")
    rows = list(run.sweep_runs.all())
    queued_units = sorted({r.unit for r in rows if r.status == StageRun.Status.QUEUED})
    active = [r for r in rows if r.status in ACTIVE]
    last = max([t for t in [run.heartbeat, run.created] + [r.heartbeat for r in rows] if t is not None])
    if queued_units and (now - last).total_seconds() > grace:
        # 2. sweeps whose unit task is in no queue and with no worker
        pending = broker.get()
        if pending is not None:
            lost = [u for u in queued_units if not _present(pending, (UNIT, run.pk, u), grace)]
            if lost:
                _lost_units(run, lost, done)
        return
    if active:
        return
    # 3. every sweep finished: the join merges them and finishes the run
    if failed_now:  # the silent unit's message is held by a dead worker: the chord cannot end
        StageRun.objects.filter(pk=run.pk).update(log=_append(
            "[watchdog] every sweep has finished (the silent ones failed): join sent\n"))
        _send_join(run.pk)
        done.append(f"run #{run.pk} ({run.stage}): join sent")
        return
    ends = [r.finished for r in rows if r.finished] + [t for t in (run.heartbeat, run.created) if t]
    if (now - max(ends)).total_seconds() <= grace:
        return
    pending = broker.get()
    if pending is None or _present(pending, (JOIN, run.pk, None), grace):
        return
    if _claim_requeue(run, "every sweep has finished but the join that merges them was lost: queued again"):
        _send_join(run.pk)
        done.append(f"run #{run.pk} ({run.stage}) re-queued its join")
    elif run.requeues >= 1:
        message = _lost_twice_message("run's join")
        if _fail_run(run.pk, message, f"FAILED: {message}\n"):
            done.append(f"run #{run.pk} ({run.stage}) failed: its join was lost")


def _send_join(run_id: int) -> None:
    from . import tasks

    tasks.join_stage_run.delay(run_id)


def _lost_units(run: StageRun, units: list[int], done: list) -> None:
    names = ", ".join(SweepRun.objects.filter(run=run, unit__in=units).order_by("index")
                      .values_list("name", flat=True))
    if _claim_requeue(run, f"the tasks of sweep(s) {names} were not in the task queue any more (Redis flushed "
                           "or restarted, or taken by a worker that stopped): queued again"):
        from .runs import dispatch_units

        dispatch_units(run.pk, units)
        done.append(f"run #{run.pk} ({run.stage}) re-queued sweep(s) {names}")
    elif run.requeues >= 1:
        message = _lost_twice_message("sweep")
        n = _fail_rows(SweepRun.objects.filter(run=run, unit__in=units, status=StageRun.Status.QUEUED), message)
        if n:
            done.append(f"run #{run.pk} ({run.stage}): {n} sweep(s) failed, their tasks lost twice")
            if not SweepRun.objects.filter(run=run, status__in=ACTIVE).exists():
                _send_join(run.pk)


# --- when pages are served, and in every worker ---------------------------------------------

_last_page_check: dict[int, float] = {}


def check_project(project) -> list[str]:
    """The watchdog on one project's runs, at most every :func:`page_throttle` seconds per
    project in this process; never raises (a page is served whatever happens here)."""
    now = time.monotonic()
    throttle = page_throttle()
    if throttle > 0 and now - _last_page_check.get(project.pk, -1e9) < throttle:
        return []
    _last_page_check[project.pk] = now
    try:
        runs = StageRun.objects.filter(project=project, status__in=ACTIVE)
        if not runs.exists():
            return []
        return check_runs(runs)
    except Exception:
        logger.exception("watchdog: checking project %s", getattr(project, "pk", project))
        return []


_periodic: dict[str, object] = {}


def start_periodic(period: float | None = None) -> threading.Thread | None:
    """Run :func:`check_runs` on every run of this instance every ``period`` seconds in a
    daemon thread of this process (a worker's main process); None if turned off."""
    period = check_period() if period is None else period
    if period <= 0 or _periodic.get("thread") is not None:
        return None
    stop = threading.Event()

    def loop():
        while not stop.wait(period):
            try:
                check_runs()
            except Exception:
                logger.exception("watchdog: periodic check")
            finally:
                connections.close_all()  # none kept open while the worker forks

    thread = threading.Thread(target=loop, name="xtalweb-watchdog", daemon=True)
    _periodic.update(thread=thread, stop=stop)
    thread.start()
    return thread


def stop_periodic() -> None:
    stop = _periodic.pop("stop", None)
    thread = _periodic.pop("thread", None)
    if stop is not None:
        stop.set()
    if thread is not None:
        thread.join(timeout=10)
