"""Celery entry points: ids in, the work done by the modules named for it.

- ``run_simulate_stage`` / ``run_import_stage``: the whole-project stages
  (``whole_project.py``).
- ``run_ensemble_stage``: a stage on the whole ensemble (``ensemble.py``).
- ``run_sweep_unit`` / ``join_stage_run``: the header tasks and the body of the chord
  a per-sweep run is (``per_sweep.py``; created and dispatched by ``runs.py``).

Tasks are idempotent under redelivery (``task_acks_late``): a finished run or sweep is
skipped. The science (``processing``) is imported inside the work, never here: the web
process imports this module to dispatch tasks and has no use for numpy/h5py/numba.
"""

from __future__ import annotations

from celery import shared_task

from . import ensemble, per_sweep, runs, whole_project


@shared_task(name="xtalweb.projects.tasks.run_simulate_stage")
def run_simulate_stage(stagerun_id: int) -> str | None:
    """Simulate a preset into the project's data folder (then the follow-up: import)."""
    return whole_project.simulate_preset(stagerun_id)


@shared_task(name="xtalweb.projects.tasks.run_import_stage")
def run_import_stage(stagerun_id: int) -> str | None:
    """Import the images of the project's data folder: ``imported.expt`` + Sweep rows."""
    return whole_project.import_images(stagerun_id)


@shared_task(name="xtalweb.projects.tasks.run_sweep_unit")
def run_sweep_unit(stagerun_id: int, unit: int) -> dict:
    """One unit of a per-sweep run (a chord header task). Never raises."""
    return per_sweep.run_unit(stagerun_id, unit)


@shared_task(name="xtalweb.projects.tasks.join_stage_run")
def join_stage_run(stagerun_id: int) -> str | None:
    """The chord body: merge the succeeded sweeps, finish the run, queue the follow-up."""
    status = per_sweep.join_run(stagerun_id)
    if status is not None:
        runs.queue_follow_up(stagerun_id)
    return status


@shared_task(name="xtalweb.projects.tasks.run_ensemble_stage")
def run_ensemble_stage(stagerun_id: int) -> str | None:
    """A stage on the whole ensemble (cosym …), then the follow-up."""
    status = ensemble.run_ensemble(stagerun_id)
    if status is not None:
        runs.queue_follow_up(stagerun_id)
    return status
