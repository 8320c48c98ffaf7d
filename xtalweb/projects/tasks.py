"""Celery entry points: ids in, the work done by the modules named for it.

- ``run_simulate_stage`` / ``run_import_stage``: the whole-project stages
  (``whole_project.py``).
- ``run_ensemble_stage``: a stage on the whole ensemble (``ensemble.py``).
- ``run_sweep_unit`` / ``join_stage_run``: the header tasks and the body of the chord
  a per-sweep run is (``per_sweep.py``; created and dispatched by ``runs.py``).

Tasks are idempotent under redelivery (``task_acks_late``): a finished run or sweep is
skipped. The science (``processing``) is imported inside the work, never here: the web
process imports this module to dispatch tasks and has no use for numpy/h5py/numba.

Every task is a :class:`RunTask`: it beats the run's heartbeat while it runs, a task that
raises fails its run with the exception's message, a pool process killed under it fails
what it was doing at once (:class:`RunRequest`), and a worker of another xtalweb instance
hands its message back unrun (``xtalweb.instance.strategy``). See ``watchdog.py``.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.worker.request import Request

from . import ensemble, per_sweep, runs, whole_project

logger = logging.getLogger(__name__)


class RunRequest(Request):
    """A task request in the worker's main process: if the pool process running it dies
    (SIGKILL, out of memory), its run or sweeps are failed with the signal before Celery
    hands the message back to the queue (where its redelivery finds nothing left to do)."""

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        from billiard.exceptions import WorkerLostError

        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # ExceptionWithTraceback
        lost = isinstance(exc, WorkerLostError) or (
            isinstance(exc, SystemExit) and not (self._already_cancelled or self._already_revoked))
        if lost:
            try:
                from .watchdog import worker_lost

                reason = str(self._worker_lost_info(exc).exception) if isinstance(exc, SystemExit) else str(exc)
                worker_lost(self.name, self.args, reason)
            except Exception:
                logger.exception("could not record the lost worker of task %s[%s]", self.name, self.id)
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class RunTask(Task):
    """A task on one StageRun (its id the first argument; a unit's number the second)."""

    Strategy = "xtalweb.instance:strategy"
    Request = "xtalweb.projects.tasks:RunRequest"

    def __call__(self, *args, **kwargs):
        from .watchdog import Heartbeat

        run_id = args[0] if args else kwargs.get("stagerun_id")
        unit = (args[1] if len(args) > 1 else kwargs.get("unit")) if self.name.endswith(".run_sweep_unit") else None
        with Heartbeat(run_id, unit):
            return super().__call__(*args, **kwargs)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        try:
            from .watchdog import task_raised

            task_raised(self.name, args, exc, str(einfo) if einfo is not None else "")
        except Exception:
            logger.exception("could not record the failure of task %s[%s]", self.name, task_id)


@shared_task(base=RunTask, name="xtalweb.projects.tasks.run_simulate_stage")
def run_simulate_stage(stagerun_id: int) -> str | None:
    """Simulate a preset into the project's data folder (then the follow-up: import)."""
    return whole_project.simulate_preset(stagerun_id)


@shared_task(base=RunTask, name="xtalweb.projects.tasks.run_import_stage")
def run_import_stage(stagerun_id: int) -> str | None:
    """Import the images of the project's data folder: ``imported.expt`` + Sweep rows."""
    return whole_project.import_images(stagerun_id)


@shared_task(base=RunTask, name="xtalweb.projects.tasks.run_sweep_unit")
def run_sweep_unit(stagerun_id: int, unit: int) -> dict:
    """One unit of a per-sweep run (a chord header task). Never raises."""
    return per_sweep.run_unit(stagerun_id, unit)


@shared_task(base=RunTask, name="xtalweb.projects.tasks.join_stage_run")
def join_stage_run(stagerun_id: int) -> str | None:
    """The chord body: merge the succeeded sweeps, finish the run, queue the follow-up."""
    status = per_sweep.join_run(stagerun_id)
    if status is not None:
        runs.queue_follow_up(stagerun_id)
    return status


@shared_task(base=RunTask, name="xtalweb.projects.tasks.run_ensemble_stage")
def run_ensemble_stage(stagerun_id: int) -> str | None:
    """A stage on the whole ensemble (cosym …), then the follow-up."""
    status = ensemble.run_ensemble(stagerun_id)
    if status is not None:
        runs.queue_follow_up(stagerun_id)
    return status
