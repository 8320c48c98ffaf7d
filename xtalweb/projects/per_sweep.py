"""The fan-out and the join of every per-sweep stage, driven by ``processing.stages``.

A per-sweep run is one Celery *chord*: one unit task per group of SweepRun rows (a
sweep; all selected sweeps for ``index joint=true``) and a join. :func:`run_unit`
reads the unit's inputs (``sweep_inputs``), runs the stage, writes the stage's
DIALS-named outputs for the unit into ``<run folder>/sweeps/`` and records each
sweep's outcome; it never raises (a raising header task would cancel the join).
:func:`join_run` merges the succeeded sweeps' files into the run's outputs
(``strong.refl``, ``indexed.*`` …) and marks the run succeeded, partial (some sweeps
failed: "2 of 12 sweeps failed") or failed. Outputs are written under a temporary
name and renamed; a run's folder with files in it is never removed.
"""

from __future__ import annotations

import logging
import os
import traceback

from django.db import transaction
from django.utils import timezone

from .context import RunContext, UnitContext, claim_rows, failure_message
from .folders import holds_files, new_output_dir, remove, sweep_path
from .models import StageRun, SweepRun
from .permissions import DataPathError
from .sweep_inputs import StageInputError, sweep_inputs

logger = logging.getLogger(__name__)


def params_of(run: StageRun):
    """The run's parameter dataclass, rebuilt from its stored JSON."""
    import dataclasses

    from processing.stages import STAGES

    cls = STAGES[run.stage].params
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (run.parameters or {}).items() if k in names}
    return cls(**values)


def start_run(stagerun_id: int) -> StageRun | None:
    """Mark the run running and make its output folder, once (row lock); None if the
    run is finished (or gone)."""
    with transaction.atomic():
        run = StageRun.objects.select_for_update().select_related("project").filter(pk=stagerun_id).first()
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


def run_unit(stagerun_id: int, unit: int) -> dict:
    """One unit of a per-sweep run: ``{run, unit, succeeded, failed}``. Never raises."""
    try:
        try:
            run = start_run(stagerun_id)
        except OSError as exc:  # no run folder (work folder unwritable, disk full): the run fails, once
            _fail_run_at_start(stagerun_id, exc)
            return {"run": stagerun_id, "unit": unit, "error": True}
        rows = claim_rows(stagerun_id, unit) if run is not None else []
        if not rows:
            return {"run": stagerun_id, "unit": unit, "skipped": True}
        with UnitContext(run, rows) as ctx:
            host = _worker_name()
            if host:  # which machine processed which sweep: in the sweep's log
                ctx.info("%s on worker %s", ", ".join(r.name for r in rows), host)
            try:
                _process(run, rows, ctx)
            except Exception as exc:
                ctx.fail_rows(failure_message(exc, run.stage), tb=traceback.format_exc())
            finally:  # a row left unfinished is a failure, never "running" forever
                SweepRun.objects.filter(pk__in=[r.pk for r in rows], status=StageRun.Status.RUNNING).update(
                    status=StageRun.Status.FAILED, error="ended without a result", finished=timezone.now())
        statuses = list(SweepRun.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True))
        return {"run": stagerun_id, "unit": unit, "succeeded": statuses.count(StageRun.Status.SUCCEEDED),
                "failed": statuses.count(StageRun.Status.FAILED)}
    except Exception as exc:
        logger.exception("unit %s of StageRun %s", unit, stagerun_id)
        try:
            message = failure_message(exc, "the sweep's task")
            SweepRun.objects.filter(run_id=stagerun_id, unit=unit,
                                    status__in=(StageRun.Status.QUEUED, StageRun.Status.RUNNING)).update(
                status=StageRun.Status.FAILED, error=message, finished=timezone.now(),
                log=traceback.format_exc() + f"FAILED: {message}\n")
        except Exception:
            logger.exception("could not mark unit %s of StageRun %s failed", unit, stagerun_id)
        return {"run": stagerun_id, "unit": unit, "error": True}


def _worker_name() -> str:
    """The Celery worker running this task (``w1@host``), or "" outside a worker."""
    try:
        from celery import current_task

        return str(getattr(current_task.request, "hostname", "") or "") if current_task else ""
    except Exception:
        return ""


def _fail_run_at_start(stagerun_id: int, exc: OSError) -> None:
    """The run's folder cannot be made: fail the run (and its sweeps) with one message."""
    logger.warning("StageRun %s: %s", stagerun_id, exc)
    message = failure_message(exc, "the start of the run")
    now = timezone.now()
    with transaction.atomic():
        if StageRun.objects.filter(pk=stagerun_id, status__in=(StageRun.Status.QUEUED, StageRun.Status.RUNNING)
                                   ).update(status=StageRun.Status.FAILED, error=message, progress=1.0,
                                            finished=now, log=traceback.format_exc() + f"FAILED: {message}\n"):
            SweepRun.objects.filter(run_id=stagerun_id).exclude(status=StageRun.Status.SUCCEEDED).update(
                status=StageRun.Status.FAILED, error="the run failed: " + message[:900], finished=now)


def _process(run: StageRun, rows: list[SweepRun], ctx: UnitContext) -> None:
    """Read the unit's inputs, run the stage, write its files, record each sweep."""
    from processing.errors import XtalError
    from processing.stages import STAGES

    stage = STAGES[run.stage]
    try:
        params = params_of(run)
        experiments, reflections = sweep_inputs(run, rows, stage)
        ctx.info("%s: %s (%d experiment(s)%s)", stage.title, ", ".join(r.name for r in rows), len(experiments),
                 "" if reflections is None else f", {len(reflections)} reflections")
        out_expts, out_refl, summary = stage.execute(experiments, reflections, params,
                                                     progress=ctx.progress_for(rows))
    except (XtalError, StageInputError, DataPathError) as exc:
        reasons = getattr(exc, "reasons", None) or {}
        for pos, row in enumerate(rows):
            ctx.finish(row, StageRun.Status.FAILED, error=reasons.get(pos, str(exc)))
        return
    try:
        files = _write_unit(run, rows, stage, out_expts, out_refl)
    except Exception as exc:  # a full disk, an unwritable folder: no result written, one clear message
        message = failure_message(exc, run.stage)
        tb = None if isinstance(exc, (XtalError, OSError)) else traceback.format_exc()
        for row in rows:
            ctx.finish(row, StageRun.Status.FAILED, error=message, tb=tb)
        return
    for pos, (row, outcome) in enumerate(zip(rows, stage.sweep_outcomes(summary, len(rows)))):
        row_summary = dict(outcome.summary)
        if "sweep" in row_summary:  # the science numbers its own input; the web names the import's id
            row_summary["sweep"] = row.index
        if len(rows) == 1 and out_expts is not None and stage.experiments_output:
            row_summary["identifiers"] = [e.identifier for e in out_expts]
        if outcome.ok:
            ctx.info("%s: %s", row.name, outcome.line or "done")
            ctx.finish(row, StageRun.Status.SUCCEEDED, summary=row_summary, files=files)
        else:
            ctx.finish(row, StageRun.Status.FAILED, error=outcome.reason, summary=row_summary, tb=outcome.traceback)


def _write_unit(run: StageRun, rows: list[SweepRun], stage, experiments, reflections) -> list[str]:
    """The unit's outputs, ``sweeps/<nnn>_<name>.expt/.refl`` (``sweeps/joint.*`` for a
    joint unit), atomically; the files written."""
    from processing.io.expt import write_experiments
    from processing.io.refl import write_reflections

    stem = (sweep_path(run.output_dir, rows[0].index, rows[0].name, "") if len(rows) == 1
            else os.path.join(run.output_dir, "sweeps", "joint"))
    files = []
    if stage.experiments_output and experiments is not None and len(experiments):
        write_experiments(stem + ".expt", experiments)
        files.append(stem + ".expt")
    if stage.reflections_output and reflections is not None and (files or not stage.experiments_output):
        write_reflections(stem + ".refl", reflections)
        files.append(stem + ".refl")
    return files


# --- the join --------------------------------------------------------------------------


def join_run(stagerun_id: int) -> str | None:
    """The chord body: merge the succeeded sweeps, finish the run; its final status."""
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
    with RunContext(run, keep_log=True) as ctx:
        for r in failed:
            ctx.info("Sweep %s failed: %s", r.name, r.error)
        if not ok:
            keep = holds_files(run.output_dir)  # results a failed bookkeeping left: never lost
            if not keep:
                remove(run.output_dir)
            reasons = "; ".join(f"{r.name}: {r.error}" for r in failed)
            ctx.fail(f"All {len(rows)} sweep(s) failed — {reasons}" if rows else "No sweeps to process",
                     keep_output=keep)
            StageRun.objects.filter(pk=run.pk).update(summary=summary)
            return StageRun.Status.FAILED
        try:
            summary.update(merge_sweeps(run, ok, ctx))
        except Exception as exc:
            from processing.errors import XtalError

            if isinstance(exc, XtalError):
                ctx.fail(str(exc), keep_output=True)
            else:
                ctx.fail(failure_message(exc, "the merge of the sweeps"), traceback.format_exc(), keep_output=True)
            StageRun.objects.filter(pk=run.pk).update(summary=summary)
            return StageRun.Status.FAILED
        if failed:
            ctx.partial(f"{len(failed)} of {len(rows)} sweeps failed", summary=summary, output_dir=run.output_dir)
        else:
            ctx.succeed(summary=summary, output_dir=run.output_dir)
    return StageRun.Status.PARTIAL if failed else StageRun.Status.SUCCEEDED


def merge_sweeps(run: StageRun, rows: list[SweepRun], ctx) -> dict:
    """The run's DIALS-named outputs from the succeeded sweeps' files, and their counts.

    With an experiment list, experiments are renumbered in sweep order (each keeps its
    identifier); a reflection file alone (``strong.refl``) keeps the import's ids."""
    from processing.io.expt import read_experiments, write_experiments
    from processing.io.refl import read_reflections, write_reflections
    from processing.models import ExperimentList
    from processing.reflections import ReflectionTable
    from processing.stages import STAGES

    stage = STAGES[run.stage]
    seen, expts, tables = set(), ExperimentList(), []
    for row in rows:
        refl = next((f for f in row.output_files if f.endswith(".refl")), None)
        if refl is None or refl in seen:  # a joint unit: one file for several sweeps
            continue
        seen.add(refl)
        table = read_reflections(refl)
        if stage.experiments_output:
            expts.extend(read_experiments(refl[: -len(".refl")] + ".expt"))
        elif "id" in table:  # strong.refl: ids are the imported experiment list's
            idents = dict(table.experiment_identifiers)
            table["id"] = table["id"] * 0 + row.index
            table.experiment_identifiers = {row.index: v for v in idents.values()} if idents else {}
        tables.append(table)
    if stage.experiments_output:
        table = ReflectionTable.concatenate(tables) if len(tables) > 1 else tables[0]
        expts = _in_table_order(expts, table)
        write_experiments(os.path.join(run.output_dir, stage.experiments_output), expts)
    else:
        table = tables[0]
        for t in tables[1:]:
            table.extend(t)
    write_reflections(os.path.join(run.output_dir, stage.reflections_output), table)
    ctx.info("Wrote %s from %d sweep(s): %d experiment(s), %d reflections", ", ".join(stage.outputs), len(rows),
             len(expts), len(table))
    counts = {"n_experiments": len(expts)} if stage.experiments_output else {}
    counts["n_reflections"] = int(len(table))
    for key in stage.summed_counts:
        counts[key] = int(sum(int((r.summary or {}).get(key) or 0) for r in rows))
    if stage.experiments_output:
        counts["experiments"] = experiment_ids(expts, rows)
    return counts


def _in_table_order(expts, table):
    """The experiments in the order of the merged table's ids (concatenate numbers them
    by first appearance)."""
    from processing.models import ExperimentList

    by_ident = {e.identifier: e for e in expts}
    ident = table.experiment_identifiers
    if sorted(ident) == list(range(len(expts))) and set(ident.values()) == set(by_ident):
        ordered = ExperimentList()
        ordered.extend(by_ident[ident[i]] for i in range(len(expts)))
        return ordered
    return expts


def experiment_ids(expts, rows: list[SweepRun]) -> list[dict]:
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
