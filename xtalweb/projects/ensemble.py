"""An ensemble stage (cosym, and the stages after it): one task on all chosen sweeps.

The run reads the DIALS-named inputs its stage declares (``processing.stages``) from
the nearest ancestor run that wrote them (e.g. ``integrated.expt/.refl``), keeps the
experiments of the sweeps chosen in the form (its SweepRun rows), runs the stage once
and writes its outputs into its own new folder. A data set the stage leaves out
(``summary["excluded"]``: too few reflections, nothing shared …) is marked failed on
its row with the reason, and the run is then ``partial``.
"""

from __future__ import annotations

import os
import traceback

from django.db import transaction
from django.utils import timezone

from .context import RunContext, claim, failure_message, one_line
from .folders import new_output_dir, remove
from .models import StageRun, SweepRun
from .permissions import DataPathError
from .sweep_inputs import StageInputError, ancestor, check_image_paths


def sweeps_by_identifier(run: StageRun) -> dict:
    """``{experiment identifier: sweep index}`` from the nearest run at or above ``run``
    whose summary lists its experiments by sweep (a per-sweep stage's join)."""
    seen, todo = set(), [run]
    while todo:
        r = todo.pop(0)
        if r.pk in seen:
            continue
        seen.add(r.pk)
        found = {e.get("identifier"): e.get("sweep") for e in (r.summary or {}).get("experiments") or []
                 if isinstance(e, dict) and e.get("identifier") and e.get("sweep") is not None}
        if found:
            return found
        todo.extend(r.parents.all())
    return {}


def _inputs(run: StageRun, stage):
    """The experiments and reflections of the run's sweeps, from its stage's input files."""
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections
    from processing.models import ExperimentList
    from processing.stages import producer

    expt_name = next(n for n in stage.inputs if n.endswith(".expt"))
    refl_name = next(n for n in stage.inputs if n.endswith(".refl"))
    src = ancestor(run, producer(expt_name))
    if src is None or not src.output_dir:
        raise StageInputError(f"This run has no {producer(expt_name)} run among its inputs")
    paths = [os.path.join(src.output_dir, n) for n in (expt_name, refl_name)]
    for p in paths:
        if not os.path.isfile(p):
            raise StageInputError(f"The input {p} is gone (was run #{src.pk}'s folder removed?)")
    experiments, table = read_experiments(paths[0]), read_reflections(paths[1])
    check_image_paths(experiments)
    wanted = {r.index for r in run.sweep_runs.all()}
    by_ident = sweeps_by_identifier(src)
    keep = [e for e in experiments if by_ident.get(e.identifier, None) in wanted or not by_ident]
    if not keep:
        raise StageInputError("none of the chosen sweeps is in the input run")
    if len(keep) < len(experiments):
        table = table.select_on_experiment_identifiers([e.identifier for e in keep])
        table.reset_ids()
        experiments = ExperimentList(keep)
    return experiments, table, by_ident


def run_ensemble(stagerun_id: int) -> str | None:
    """Run an ensemble stage; its final status."""
    from processing.stages import STAGES

    run = StageRun.objects.filter(pk=stagerun_id).first()
    if run is None:
        return None
    run = claim(stagerun_id, run.stage)
    if run is None:
        return None
    stage = STAGES[run.stage]
    out_dir = None
    with RunContext(run) as ctx:
        try:
            from processing.errors import XtalError
            from processing.io.outputs import write_output

            from .per_sweep import params_of

            params = params_of(run)
            experiments, table, sweep_of = _inputs(run, stage)
            # the folder first: an unwritable or full work folder fails before the work, not after
            out_dir = new_output_dir(run.project.work_dir, run.stage)
            ctx.info("%s: %d data set(s), %d reflections", stage.title, len(experiments), len(table))
            out_e, out_r, summary = stage.execute(experiments, table, params, progress=ctx.progress)
            for name in stage.outputs:
                write_output(os.path.join(out_dir, name), out_e, out_r, params=params)
            if stage.outputs:
                ctx.info("Wrote %s into %s", ", ".join(stage.outputs), out_dir)
            else:
                ctx.info("No files to write: the results are in the run's summary (its report)")
            left_out = {sweep_of.get(x.get("identifier")): x.get("reason", "") for x in summary.get("excluded") or []}
            with transaction.atomic():
                now = timezone.now()
                for row in run.sweep_runs.all():
                    reason = left_out.get(row.index)
                    SweepRun.objects.filter(pk=row.pk).update(
                        status=StageRun.Status.FAILED if reason is not None else StageRun.Status.SUCCEEDED,
                        error=one_line(reason) if reason else "", progress=1.0, finished=now)
                n = run.sweep_runs.count()
                if left_out:
                    ctx.partial(f"{len(left_out)} of {n} data sets left out", summary=summary, output_dir=out_dir)
                else:
                    ctx.succeed(summary=summary, output_dir=out_dir)
            return StageRun.Status.PARTIAL if left_out else StageRun.Status.SUCCEEDED
        except (XtalError, StageInputError, DataPathError) as exc:
            remove(out_dir)
            ctx.fail(str(exc))
        except Exception as exc:
            remove(out_dir)
            ctx.fail(failure_message(exc, run.stage), traceback.format_exc())
        SweepRun.objects.filter(run=run).update(status=StageRun.Status.FAILED, error="the run failed",
                                                finished=timezone.now())
    return StageRun.Status.FAILED
