"""Click to merge (issue 14): from the cluster report, scale and merge the data sets a user
picked — a dendrogram node, a lasso in the embedding, or a row of the cluster table.

:func:`cluster_merge` takes the picked data sets' experiment identifiers and queues, as
"Scale again without these" does (``runs.queue_run`` with the scale run's own parameters,
``per_sweep.params_of``), a scale run from the cosym run the cluster run's scale run was
made from, on that scale run's sweeps, with every other data set in ``exclude_datasets``
and ``follow_up=("merge",)``. Data sets are matched to scale's ids (positions in scale's
input) by identifier. The earlier runs stay as they are.

The view goes through :func:`permissions.get_project_for_user` with ``write=True`` (404 for
anyone outside the project's group and shares, 403 for a read-only member) and answers only POST.
"""

from __future__ import annotations

import dataclasses

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods

from . import runs
from .models import StageRun
from .permissions import get_project_for_user
from .stages import registry


class ChoiceError(ValueError):
    """The picked data sets cannot be merged; ``str(e)`` is the one message."""


def inputs_of(run: StageRun) -> tuple[StageRun, StageRun]:
    """The cluster run's scale run and the cosym (or symmetry) run that scale run started from."""
    scale = run.parents.filter(stage=registry()["cluster"].previous, status__in=StageRun.USABLE).first()
    cosym = scale and scale.parents.filter(stage=registry()["scale"].previous, status__in=StageRun.USABLE).first()
    if scale is None or cosym is None:
        raise ChoiceError(f"The scale run of run #{run.pk}, or the run it was scaled from, is gone or not usable: "
                          "start a new scale run from the project page.")
    return scale, cosym


def excluded_for(run: StageRun, scale: StageRun, identifiers) -> tuple[int, ...]:
    """scale's ``exclude_datasets`` that keep exactly the data sets ``identifiers`` of the cluster run:
    every other data set of scale's input."""
    chosen = list(dict.fromkeys(str(x).strip() for x in identifiers if str(x).strip()))
    clustered = {d.get("identifier") for d in (run.summary or {}).get("datasets") or []}
    scale_sets = (scale.summary or {}).get("datasets") or []
    scaled = {d.get("identifier"): int(d["id"]) for d in scale_sets if "excluded" not in d and d.get("id") is not None}
    unknown = [x for x in chosen if x not in clustered or x not in scaled]
    if unknown or len(chosen) < 2:
        what = (f"{len(unknown)} of them {'is' if len(unknown) == 1 else 'are'} not a data set of this clustering"
                if unknown else f"{len(chosen)} given")
        raise ChoiceError(f"Choose at least two data sets of cluster run #{run.pk} to scale and merge ({what}).")
    keep = {scaled[x] for x in chosen}
    return tuple(sorted(int(d["id"]) for d in scale_sets if d.get("id") is not None and int(d["id"]) not in keep))


@login_required
@require_http_methods(["POST"])
def cluster_merge(request, pk: int, run_id: int):
    """A scale run (then merge) of the posted ``identifiers`` of cluster run ``run_id``."""
    from .per_sweep import params_of

    project = get_project_for_user(request, pk, write=True)
    run = get_object_or_404(StageRun, pk=run_id, project=project, stage="cluster")
    back = redirect(run.get_report_url())
    if run.status not in StageRun.USABLE:
        messages.error(request, f"Run #{run.pk} is {run.status}: merge the clusters of a finished clustering.")
        return back
    try:
        scale, cosym = inputs_of(run)
        excluded = excluded_for(run, scale, request.POST.getlist("identifiers"))
    except ChoiceError as exc:
        messages.error(request, str(exc))
        return back
    params = dataclasses.replace(params_of(scale), exclude_datasets=excluded)
    sweeps = [{"index": r.index, "name": r.name} for r in scale.sweep_runs.order_by("index")]
    new_id = runs.queue_run(project, "scale", params, [cosym], sweeps, follow_up=("merge",), by=request.user,
                            detail=f"scale then merge of {len(request.POST.getlist('identifiers'))} data sets "
                                   f"picked on cluster run #{run.pk}")
    n_kept = len((scale.summary or {}).get("datasets") or []) - len(excluded)
    compare = reverse("compare_runs", args=[project.pk]) + f"?a={scale.pk}&b={new_id}"
    messages.success(request, format_html(
        "Queued scale (run #{}) of {} data sets of cluster run #{} from run #{} (exclude_datasets={}), then merge; "
        "<a href=\"{}\">compare with parent</a> (scale run #{}).", new_id, n_kept, run.pk, cosym.pk,
        ",".join(map(str, excluded)) or "none", compare, scale.pk))
    return redirect(reverse("stagerun_report", args=[project.pk, new_id]))
