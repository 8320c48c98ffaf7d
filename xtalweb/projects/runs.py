"""Creating, dispatching, chaining and retrying StageRuns.

A run is created queued (with one SweepRun row per sweep for a per-sweep stage) and
dispatched after its transaction commits: a whole-project stage is one Celery task,
a per-sweep stage a chord of unit tasks and a join (``per_sweep.py``). A succeeded or
partial run may queue the next stage of its ``follow_up`` list on its succeeded
sweeps; a partial or failed run may retry its failed sweeps into the same run.
"""

from __future__ import annotations

import logging
import os
import traceback

from django.db import transaction
from django.utils import timezone

from .context import update_run_progress
from .folders import new_output_dir
from .models import Project, StageRun, SweepRun
from .stages import is_per_sweep, previous_stage, takes_sweeps

logger = logging.getLogger(__name__)


def available_sweeps(parent: StageRun | None) -> list[dict]:
    """The sweeps a run on top of ``parent`` may process: ``[{index, name}]``.

    ``index`` is the sweep's position in the import's experiment list (DIALS's
    experiment id); after an import every sweep is available, after a per-sweep
    stage the sweeps that succeeded there.
    """
    if parent is None or parent.status not in StageRun.USABLE:
        return []
    if parent.sweep_runs.exists():
        return [{"index": sr.index, "name": sr.name}
                for sr in parent.sweep_runs.filter(status=StageRun.Status.SUCCEEDED).order_by("index")]
    sweeps = (parent.summary or {}).get("sweeps") or []
    return [{"index": k, "name": str(s.get("name") or f"sweep_{k}")} for k, s in enumerate(sweeps)]


def default_parent(project: Project, stage: str) -> StageRun | None:
    """The latest succeeded run of the stage before ``stage``."""
    previous = previous_stage(stage)
    return (project.runs.filter(stage=previous, status__in=StageRun.USABLE)
            .order_by("-finished", "-id").first())


def left_out_sweeps(parent: StageRun | None) -> list[dict]:
    """The sweeps of ``parent`` a next run cannot process: ``[{index, name, error}]``."""
    if parent is None or not parent.sweep_runs.exists():
        return []
    return [{"index": sr.index, "name": sr.name, "error": sr.error or sr.status}
            for sr in parent.sweep_runs.exclude(status=StageRun.Status.SUCCEEDED).order_by("index")]


def create_run(project: Project, stage: str, *, parameters: dict | None = None,
               parents: list[StageRun] | tuple = (), sweeps: list[dict] | None = None,
               follow_up: list[str] | tuple = (), by=None, verb: str | None = None,
               detail: str = "") -> StageRun:
    """Create a queued StageRun (and its SweepRun rows for a per-sweep stage), and its line
    in the activity list: ``by`` (the user; None: the app, a follow-up) ``verb`` (default
    "ran", or "queued automatically" without a user) with ``detail``.

    Call inside ``transaction.atomic()`` and dispatch with
    ``transaction.on_commit(lambda: dispatch_run(run.pk))``. ``sweeps`` are
    ``[{index, name}]`` (see :func:`available_sweeps`).
    """
    from .review import Verb, record

    run = StageRun.objects.create(project=project, stage=stage, parameters=parameters or {},
                                  follow_up=list(follow_up))
    record(project, by, verb or (Verb.RAN if by is not None else Verb.QUEUED), run=run, parameters=run.parameters,
           detail=detail or (f"on {len(sweeps)} data set(s)" if sweeps else ""))
    if parents:
        run.parents.set(parents)
    if takes_sweeps(stage):
        if not sweeps:
            raise ValueError("a stage run needs at least one sweep")
        # one unit task per sweep; one for all (index joint=true, and an ensemble stage)
        joint = not is_per_sweep(stage) or (stage == "index" and bool((parameters or {}).get("joint")))
        rows = {s.name: s for s in project.sweeps.all()}
        SweepRun.objects.bulk_create([
            SweepRun(run=run, index=int(s["index"]), name=str(s["name"])[:255], sweep=rows.get(s["name"]),
                     unit=0 if joint else pos)
            for pos, s in enumerate(sorted(sweeps, key=lambda s: int(s["index"])))
        ])
    return run


def dispatch_run(run_id: int) -> None:
    """Queue the run's task(s); if the broker cannot be reached, fail the run visibly.
    Sending sets the run's heartbeat: the watchdog (``watchdog.py``) counts from it how
    long the run has waited for its task."""
    from . import tasks

    try:
        StageRun.objects.filter(pk=run_id).update(heartbeat=timezone.now())
        run = StageRun.objects.get(pk=run_id)
        if run.stage == "import":
            tasks.run_import_stage.delay(run_id)
        elif run.stage == "simulate":
            tasks.run_simulate_stage.delay(run_id)
        elif is_per_sweep(run.stage):
            from celery import chord

            units = sorted(set(run.sweep_runs.values_list("unit", flat=True)))
            chord([tasks.run_sweep_unit.si(run_id, u) for u in units])(tasks.join_stage_run.si(run_id))
        elif takes_sweeps(run.stage):
            tasks.run_ensemble_stage.delay(run_id)
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


class RetryError(Exception):
    """The run has no failed sweeps to retry (or is still running); ``str(e)`` says why."""


def retry_failed_sweeps(run: StageRun) -> list[str]:
    """Queue the failed sweeps of a finished fanned-out run again, into the same run and
    folder; the sweeps that succeeded are kept as they are and merged again at the join.
    Call inside ``transaction.atomic()``, then ``dispatch_units(run.pk, units)`` on commit.
    Returns the retried sweeps' names."""
    run = StageRun.objects.select_for_update().get(pk=run.pk)
    if not is_per_sweep(run.stage):
        raise RetryError(f"a {run.stage} run has no sweeps to retry")
    if run.status not in (StageRun.Status.PARTIAL, StageRun.Status.FAILED):
        raise RetryError(f"run #{run.pk} is {run.status}: only a partial or failed run has sweeps to retry")
    units = set(run.sweep_runs.exclude(status=StageRun.Status.SUCCEEDED).values_list("unit", flat=True))
    if not units:
        raise RetryError(f"run #{run.pk} has no failed sweeps")
    rows = run.sweep_runs.filter(unit__in=units)
    names = list(rows.order_by("index").values_list("name", flat=True))
    rows.update(status=StageRun.Status.QUEUED, progress=0.0, error="", started=None, finished=None)
    if not run.output_dir or not os.path.isdir(run.output_dir):
        run.output_dir = new_output_dir(run.project.work_dir, run.stage)
    os.makedirs(os.path.join(run.output_dir, "sweeps"), exist_ok=True)
    run.status = StageRun.Status.RUNNING
    run.error = ""
    run.finished = None
    run.log += f"Retrying {len(names)} failed sweep(s): {', '.join(names)}\n"
    run.save(update_fields=["output_dir", "status", "error", "finished", "log"])
    update_run_progress(run.pk)
    return names


def dispatch_units(run_id: int, units: list[int] | None = None) -> None:
    """Queue the units of ``run_id`` whose sweeps are queued (or only ``units``), and the join."""
    from celery import chord

    from . import tasks

    try:
        StageRun.objects.filter(pk=run_id).update(heartbeat=timezone.now())
        queued = set(SweepRun.objects.filter(run_id=run_id, status=StageRun.Status.QUEUED)
                     .values_list("unit", flat=True))
        units = sorted(queued if units is None else queued & set(units))
        chord([tasks.run_sweep_unit.si(run_id, u) for u in units])(tasks.join_stage_run.si(run_id))
    except Exception:
        logger.exception("could not queue the retry of StageRun %s", run_id)
        message = "Could not queue the retry: the task queue (Redis) is unreachable. Try again later."
        SweepRun.objects.filter(run_id=run_id, status=StageRun.Status.QUEUED).update(
            status=StageRun.Status.FAILED, error=message, finished=timezone.now())
        StageRun.objects.filter(pk=run_id, status=StageRun.Status.RUNNING).update(
            status=StageRun.Status.FAILED, error=message, finished=timezone.now())


def queue_run(project, stage: str, params, parents, sweeps, follow_up=(), by=None, verb=None, detail="") -> int:
    """Create a run from a report's control (drop data sets, merge at a d_min …) and
    dispatch it once the transaction commits; its id. ``by``, ``verb``, ``detail``: its
    line in the activity list (:func:`create_run`)."""
    from .stages import params_json

    with transaction.atomic():
        new = create_run(project, stage, parameters=params_json(params), parents=parents, sweeps=sweeps,
                         follow_up=list(follow_up), by=by, verb=verb, detail=detail)
        new_id = new.pk
        transaction.on_commit(lambda: dispatch_run(new_id))
    return new_id


def queue_follow_up(run_id: int) -> StageRun | None:
    """After ``run`` succeeded: queue the next stage of its ``follow_up`` list with the
    default parameters on every included sweep; the rest of the list goes with it.
    Never raises (a failure is logged on the finished run)."""
    try:
        run = StageRun.objects.select_related("project").get(pk=run_id)
        if run.status not in StageRun.USABLE or not run.follow_up:
            return None
        stage, rest = run.follow_up[0], list(run.follow_up[1:])
        if run.children.filter(stage=stage).exists():  # queued already (a redelivered task)
            return None
        project = run.project
        from .stages import build_params, params_json, words_from_values

        parameters = {}
        sweeps = None
        if takes_sweeps(stage):
            parameters = params_json(build_params(stage, words_from_values(stage, {})))
            from .review import excluded_names

            left_out = set(project.sweeps.filter(included=False).values_list("name", flat=True))
            left_out |= excluded_names(project)  # flagged "exclude" by a reviewer
            sweeps = [s for s in available_sweeps(run) if s["name"] not in left_out]
            if not sweeps:
                append_log(run_id, f"follow-up {stage}: no included sweep to process; not queued\n")
                return None
        with transaction.atomic():
            nxt = create_run(project, stage, parameters=parameters, parents=[run], sweeps=sweeps, follow_up=rest,
                             detail=f"after run #{run.pk} (its follow-up)")
            nxt_id = nxt.pk
            transaction.on_commit(lambda: dispatch_run(nxt_id))
        return nxt
    except Exception:
        logger.exception("could not queue the follow-up of StageRun %s", run_id)
        append_log(run_id, "could not queue the follow-up stage:\n" + traceback.format_exc())
        return None


def append_log(run_id: int, text: str) -> None:
    run = StageRun.objects.filter(pk=run_id).first()
    if run is not None:
        StageRun.objects.filter(pk=run_id).update(log=run.log + text)
