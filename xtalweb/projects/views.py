"""Project pages and their JSON endpoints. Every project view goes through
:func:`permissions.get_project_for_user` (404 for anyone outside the owner's group)."""

from __future__ import annotations

import logging
import os

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from . import runs, watchdog
from .forms import NewProjectForm, PresetProjectForm, StageRunForm
from .models import Project, StageRun
from .permissions import data_roots, get_project_for_user, visible_projects
from .review import Verb, is_locked, read_only_overview, record
from .stages import form_stages, params_json, registry, title

logger = logging.getLogger(__name__)


def dispatch_import(run_id: int) -> None:
    """Queue the import task; if the broker cannot be reached, fail the run visibly."""
    runs.dispatch_run(run_id)


def _new_project(user, name, group, data_root) -> Project:
    work_root = os.path.realpath(os.path.expanduser(str(settings.WORK_ROOT)))
    project = Project.objects.create(name=name, owner=user, group=group, data_root=data_root)
    project.work_dir = os.path.join(work_root, str(project.pk))
    os.makedirs(project.work_dir, exist_ok=True)
    project.save(update_fields=["work_dir"])
    return project


@login_required
@require_GET
def project_list(request):
    projects = visible_projects(request.user).select_related("owner", "group")
    return render(request, "projects/project_list.html", {"projects": projects})


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request):
    is_preset = request.method == "POST" and "preset-preset" in request.POST
    form = NewProjectForm(request.POST if request.method == "POST" and not is_preset else None, user=request.user)
    preset_form = PresetProjectForm(request.POST if is_preset else None, user=request.user)
    work_root = os.path.realpath(os.path.expanduser(str(settings.WORK_ROOT)))
    if request.method == "POST" and not is_preset and form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                project = _new_project(request.user, data["name"], data["group"], data["data_root"])
                run = runs.create_run(project, "import", parameters={"data_root": project.data_root},
                                      by=request.user, detail=f"created the project; import of {project.data_root}")
                run_id = run.pk
                transaction.on_commit(lambda: dispatch_import(run_id))
        except OSError as exc:
            form.add_error(None, f"Cannot create the project's work folder under {work_root}: {exc.strerror}")
        else:
            return redirect(project)
    if is_preset and preset_form.is_valid():
        data = preset_form.cleaned_data
        try:
            with transaction.atomic():
                project = _new_project(request.user, data["name"], data["group"], "")
                project.data_root = os.path.join(data_roots()[0], "simulated", f"{project.pk:04d}-{data['preset']}")
                project.save(update_fields=["data_root"])
                run = runs.create_run(project, "simulate", parameters={"preset": data["preset"]},
                                       follow_up=["import"], by=request.user,
                                       detail=f"created the project; simulate {data['preset']}, then import")
                run_id = run.pk
                transaction.on_commit(lambda: runs.dispatch_run(run_id))
        except OSError as exc:
            preset_form.add_error(None, f"Cannot create the project's work folder under {work_root}: {exc.strerror}")
        else:
            return redirect(project)
    return render(request, "projects/project_new.html", {"form": form, "preset_form": preset_form})


def _stage_forms(project, bound: StageRunForm | None = None) -> list[dict]:
    """One entry per runnable stage: where its form is fetched when the user opens it
    (:func:`stagerun_new`), and the form itself only for ``bound`` (a form sent back with
    its errors)."""
    out = []
    for stage in form_stages():
        entry = {"stage": stage, "title": title(stage), "url": reverse("stagerun_new", args=[project.pk, stage]),
                 "form": None}
        if bound is not None and bound.stage == stage:
            entry.update(_stage_form(project, stage, bound))
        out.append(entry)
    return out


def _stage_form(project, stage: str, bound: StageRunForm | None = None) -> dict:
    """The form of ``stage`` (``bound``, or a new one), or why it cannot be shown."""
    entry = {"stage": stage, "title": title(stage), "previous": registry()[stage].previous, "form": bound,
             "unavailable": ""}
    if bound is None:
        try:
            entry["form"] = StageRunForm(stage, project)
        except Exception as exc:  # the science is being changed under us: say so, keep the page
            logger.exception("form of stage %s", stage)
            entry["unavailable"] = f"{type(exc).__name__}: {exc}"
    return entry


def _render_project(request, project, bound: StageRunForm | None = None, status: int = 200):
    """The project page from one read of the runs (with their parents and SweepRun rows),
    shared by the runs table, the overview, the files, the review and the warnings."""
    from .downloads import DOWNLOAD_STAGES, downloads_of
    from .lineage import Lineage, leave_out_warnings
    from .overview import build_overview, safe_overview
    from .review_context import project_review
    from .status import log_tails, page_runs

    all_runs = page_runs(project)
    sweeps = list(project.sweeps.defer("files", "summary"))
    review = project_review(request, project, runs=all_runs, sweeps=sweeps)
    can_write = review["access"].can_write
    overview = safe_overview(build_overview, all_runs)
    lin = Lineage(project, runs=all_runs)
    files = [{"run": r, "files": downloads_of(r)} for r in reversed(all_runs)
             if r.stage in DOWNLOAD_STAGES and r.status in StageRun.USABLE]
    tails = log_tails(all_runs)
    for r in all_runs:
        r.log_tail = tails.get(r.pk, "")
    return render(
        request,
        "projects/project_detail.html",
        {"project": project, "sweeps": sweeps,
         "overview": overview if can_write else read_only_overview(overview),
         "runs": all_runs, "warnings": leave_out_warnings(lin.line(lin.main_end()), lin=lin),
         "downloads": [f for f in files if f["files"]],
         "stage_forms": _stage_forms(project, bound) if can_write else [], **review},
        status=status,
    )


@login_required
@require_GET
def project_detail(request, pk: int):
    project = get_project_for_user(request, pk)
    watchdog.check_project(project)  # a run whose tasks vanished: re-queued or failed, never "running" forever
    return _render_project(request, project)


@login_required
@require_http_methods(["GET", "POST"])
def stagerun_new(request, pk: int, stage: str):
    """GET: the "Run / rerun" form of ``stage`` (an HTML fragment the project page fetches
    when the user opens it); POST: queue a run (or rerun) of ``stage`` from that form."""
    project = get_project_for_user(request, pk, write=True)
    if stage not in form_stages():
        raise Http404("No such stage")
    if request.method == "GET":
        response = render(request, "projects/_stage_form.html",
                          {"project": project, "entry": _stage_form(project, stage)})
        response["Cache-Control"] = "private, no-store"
        return response
    form = StageRunForm(stage, project, request.POST, request.FILES)
    if not form.is_valid():
        return _render_project(request, project, bound=form)
    with transaction.atomic():
        run = runs.create_run(project, stage, parameters=params_json(form.params),
                               parents=[form.cleaned_data["parent"]], sweeps=form.selected_sweeps(), by=request.user)
        run_id = run.pk
        transaction.on_commit(lambda: runs.dispatch_run(run_id))
    messages.success(request, f"Queued {title(stage)} (run #{run_id}) on "
                              f"{len(form.selected_sweeps())} sweep(s).")
    return redirect(f"{project.get_absolute_url()}#run-{run_id}")


@login_required
@require_http_methods(["POST"])
def stagerun_retry(request, pk: int, run_id: int):
    """Rerun only the failed sweeps of a partial (or failed) fanned-out run, into that run."""
    project = get_project_for_user(request, pk, write=True)
    run = get_object_or_404(StageRun, pk=run_id, project=project)
    try:
        with transaction.atomic():
            if is_locked(run.output_dir):
                raise runs.RetryError(f"run #{run.pk} is approved: its files are locked")
            names = runs.retry_failed_sweeps(run)
            record(project, request.user, Verb.RETRIED, run=run, parameters=run.parameters,
                   detail=f"{len(names)} failed sweep(s): {', '.join(names)}")
            transaction.on_commit(lambda: runs.dispatch_units(run_id))
    except runs.RetryError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Retrying {len(names)} failed sweep(s) of run #{run_id}: {', '.join(names)}.")
    return redirect(f"{project.get_absolute_url()}#run-{run_id}")


@login_required
@require_http_methods(["POST"])
def scale_drop(request, pk: int, run_id: int):
    """"Scale again without these": a new scale run from the same cosym run, on the same
    sweeps, with the ticked data sets (ids as in the scale run's input, i.e. its
    summary's ``datasets[i]["id"]``) added to ``exclude_datasets``. The earlier run and
    its folder are left as they are."""
    import dataclasses

    from .per_sweep import params_of

    project = get_project_for_user(request, pk, write=True)
    run = get_object_or_404(StageRun, pk=run_id, project=project, stage="scale")
    back = redirect(run.get_report_url())
    if run.status not in StageRun.USABLE:
        messages.error(request, f"Run #{run.pk} is {run.status}: only a finished scale run's data sets can be dropped.")
        return back
    datasets = (run.summary or {}).get("datasets") or []
    scaled = {int(d["id"]) for d in datasets if "excluded" not in d and d.get("id") is not None}
    try:
        chosen = {int(v) for v in request.POST.getlist("exclude_datasets")}
    except (TypeError, ValueError):
        chosen = None
    if not chosen or not chosen <= scaled:
        messages.error(request, "Tick the data sets to leave out (data sets of this run that were scaled).")
        return back
    if chosen == scaled:
        messages.error(request, "Every data set would be left out: keep at least one.")
        return back
    parent = run.parents.filter(stage=registry()["scale"].previous, status__in=StageRun.USABLE).first()
    if parent is None:
        messages.error(request, f"The input run of run #{run.pk} is gone or not usable: start a new scale run "
                                "from the project page.")
        return back
    old = params_of(run)
    excluded = tuple(sorted(set(old.exclude_datasets) | chosen))
    params = dataclasses.replace(old, exclude_datasets=excluded)
    sweeps = [{"index": r.index, "name": r.name} for r in run.sweep_runs.order_by("index")]
    then_merge = bool(request.POST.get("then_merge"))  # the form's "then merge": go on downstream
    new_id = runs.queue_run(project, "scale", params, [parent], sweeps, follow_up=("merge",) if then_merge else (),
                            by=request.user, verb=Verb.DROPPED,
                            detail=f"left out data set(s) {', '.join(map(str, sorted(chosen)))} of scale run #{run.pk}")
    messages.success(request, f"Queued scale (run #{new_id}) from run #{parent.pk} without data set"
                              f"{'s' if len(chosen) > 1 else ''} {', '.join(map(str, sorted(chosen)))} "
                              f"(exclude_datasets={','.join(map(str, excluded))}){', then merge' if then_merge else ''}; "
                              f"run #{run.pk} is kept.")
    return redirect(f"{project.get_absolute_url()}#run-{new_id}")
