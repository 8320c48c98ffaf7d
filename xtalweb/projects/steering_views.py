"""Steering from a report: new runs made from what a report shows, the earlier runs kept.

* :func:`merge_at_d_min` — "Merge at this d_min" on the estimate_resolution report: a
  merge run from the estimate's input scale run, the merge defaults with the chosen
  ``d_min``.
* :func:`delta_cc_half_drop` — "Scale again without these" on the ΔCC½ report: a new
  scale run from the cosym run before the ΔCC½ run's scale run, with the ticked data
  sets added to ``exclude_datasets``. The ΔCC½ run numbers data sets by their position
  in its input (scaled.expt: the data sets scale kept, on the sweeps chosen for it);
  scale's ``exclude_datasets`` by their position in scale's input (the cosym output on
  scale's sweeps). They are matched by experiment identifier.

Both go through :func:`permissions.get_project_for_user` with ``write=True`` (404 for
anyone outside the project's group and shares, 403 for a read-only member) and answer
only POST.
"""

from __future__ import annotations

import dataclasses
import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods

from . import runs
from .models import StageRun
from .permissions import get_project_for_user
from .review import Verb
from .stages import ParamsError, build_params, registry, title, words_from_values


def _queue(project, stage: str, params, parents, sweeps, follow_up=(), **activity) -> int:
    return runs.queue_run(project, stage, params, parents, sweeps, follow_up=follow_up, **activity)


@login_required
@require_http_methods(["POST"])
def merge_at_d_min(request, pk: int, run_id: int):
    """A merge run at the posted ``d_min`` from the estimate_resolution run's scale run,
    on the sweeps the estimate analysed."""
    project = get_project_for_user(request, pk, write=True)
    run = get_object_or_404(StageRun, pk=run_id, project=project, stage="estimate_resolution")
    back = redirect(run.get_report_url())
    if run.status not in StageRun.USABLE:
        messages.error(request, f"Run #{run.pk} is {run.status}: merge from a finished resolution estimate.")
        return back
    text = (request.POST.get("d_min") or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        messages.error(request, f"d_min must be a resolution in Å above 0, not {text!r}.")
        return back
    try:
        params = build_params("merge", words_from_values("merge", {"d_min": text}))
    except ParamsError as exc:
        messages.error(request, f"merge: {exc}")
        return back
    scale = run.parents.filter(stage=registry()["estimate_resolution"].previous, status__in=StageRun.USABLE).first()
    if scale is None:
        messages.error(request, f"The input scale run of run #{run.pk} is gone or not usable: start a merge run "
                                "from the project page.")
        return back
    sweeps = [{"index": r.index, "name": r.name}
              for r in run.sweep_runs.filter(status=StageRun.Status.SUCCEEDED).order_by("index")]
    offered = {s["index"] for s in runs.available_sweeps(scale)}
    sweeps = [s for s in sweeps if s["index"] in offered] or runs.available_sweeps(scale)
    if not sweeps:
        messages.error(request, f"Scale run #{scale.pk} has no data set to merge.")
        return back
    new_id = _queue(project, "merge", params, [scale], sweeps, by=request.user,
                    detail=f"merge at d_min={params.d_min:g} chosen on resolution estimate run #{run.pk}")
    messages.success(request, f"Queued {title('merge')} (run #{new_id}) from scale run #{scale.pk} with "
                              f"d_min={params.d_min:g} (chosen on the resolution estimate, run #{run.pk}).")
    return redirect(f"{project.get_absolute_url()}#run-{new_id}")


@login_required
@require_http_methods(["POST"])
def delta_cc_half_drop(request, pk: int, run_id: int):
    """A new scale run from the same cosym run without the ticked data sets (ids as in
    the ΔCC½ run's input, its summary's ``datasets[i]["id"]``)."""
    from .per_sweep import params_of

    project = get_project_for_user(request, pk, write=True)
    run = get_object_or_404(StageRun, pk=run_id, project=project, stage="compute_delta_cchalf")
    back = redirect(run.get_report_url())
    if run.status not in StageRun.USABLE:
        messages.error(request, f"Run #{run.pk} is {run.status}: only a finished ΔCC½ run's data sets can be "
                                "dropped.")
        return back
    identifier_of = {int(d["id"]): d.get("identifier") for d in (run.summary or {}).get("datasets") or []
                     if d.get("id") is not None}
    try:
        chosen = {int(v) for v in request.POST.getlist("exclude_datasets")}
    except (TypeError, ValueError):
        chosen = None
    if not chosen or not chosen <= set(identifier_of):
        messages.error(request, "Tick the data sets to leave out (data sets of this ΔCC½ run).")
        return back
    scale = run.parents.filter(stage=registry()["compute_delta_cchalf"].previous,
                               status__in=StageRun.USABLE).first()
    cosym = scale and scale.parents.filter(stage=registry()["scale"].previous, status__in=StageRun.USABLE).first()
    if scale is None or cosym is None:
        messages.error(request, f"The scale run before run #{run.pk}, or the cosym run before it, is gone or not "
                                "usable: start a new scale run from the project page.")
        return back
    scale_sets = (scale.summary or {}).get("datasets") or []
    scale_id = {d.get("identifier"): int(d["id"]) for d in scale_sets if d.get("id") is not None}
    missing = [k for k in sorted(chosen) if identifier_of[k] not in scale_id]
    if missing:
        messages.error(request, f"Data set{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of run "
                                f"#{run.pk} {'are' if len(missing) > 1 else 'is'} not among scale run #{scale.pk}'s "
                                "data sets.")
        return back
    mapped = {scale_id[identifier_of[k]] for k in chosen}
    old = params_of(scale)
    excluded = tuple(sorted(set(old.exclude_datasets) | mapped))
    left = [d for d in scale_sets if "excluded" not in d and int(d["id"]) not in excluded]
    if not left:
        messages.error(request, "Every data set would be left out: keep at least one.")
        return back
    params = dataclasses.replace(old, exclude_datasets=excluded)
    sweeps = [{"index": r.index, "name": r.name} for r in scale.sweep_runs.order_by("index")]
    # the form's "then merge": the new scale run goes on downstream
    new_id = _queue(project, "scale", params, [cosym], sweeps,
                    follow_up=("merge",) if request.POST.get("then_merge") else (), by=request.user,
                    verb=Verb.DROPPED, detail=f"left out data set(s) {', '.join(map(str, sorted(chosen)))} of "
                                              f"ΔCC½ run #{run.pk}")
    ids = ", ".join(map(str, sorted(chosen)))
    messages.success(request, f"Queued scale (run #{new_id}) from cosym run #{cosym.pk} without data set"
                              f"{'s' if len(chosen) > 1 else ''} {ids} of ΔCC½ run #{run.pk} "
                              f"(exclude_datasets={','.join(map(str, excluded))}); runs #{scale.pk} and #{run.pk} "
                              "are kept.")
    return redirect(f"{project.get_absolute_url()}#run-{new_id}")
