"""Project pages and their JSON endpoints. Every project view goes through
:func:`permissions.get_project_for_user` (404 for anyone outside the owner's group)."""

from __future__ import annotations

import logging
import os
import traceback

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from . import tasks
from .forms import NewProjectForm
from .models import Project, StageRun
from .permissions import get_project_for_user, visible_projects

logger = logging.getLogger(__name__)


def dispatch_import(run_id: int) -> None:
    """Queue the import task; if the broker cannot be reached, fail the run visibly."""
    try:
        tasks.run_import_stage.delay(run_id)
    except Exception:
        logger.exception("could not queue StageRun %s", run_id)
        StageRun.objects.filter(pk=run_id, status=StageRun.Status.QUEUED).update(
            status=StageRun.Status.FAILED,
            error="Could not queue the import: the task queue (Redis) is unreachable. Try again later.",
            log=traceback.format_exc(),
            finished=timezone.now(),
        )


@login_required
@require_GET
def project_list(request):
    projects = visible_projects(request.user).select_related("owner", "group")
    return render(request, "projects/project_list.html", {"projects": projects})


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request):
    form = NewProjectForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        work_root = os.path.realpath(os.path.expanduser(str(settings.WORK_ROOT)))
        try:
            with transaction.atomic():
                project = Project.objects.create(
                    name=data["name"], owner=request.user, group=data["group"], data_root=data["data_root"]
                )
                project.work_dir = os.path.join(work_root, str(project.pk))
                os.makedirs(project.work_dir, exist_ok=True)
                project.save(update_fields=["work_dir"])
                run = StageRun.objects.create(
                    project=project, stage=StageRun.Stage.IMPORT, parameters={"data_root": project.data_root}
                )
                run_id = run.pk
                transaction.on_commit(lambda: dispatch_import(run_id))
        except OSError as exc:
            form.add_error(None, f"Cannot create the project's work folder under {work_root}: {exc.strerror}")
        else:
            return redirect(project)
    return render(request, "projects/project_new.html", {"form": form})


@login_required
@require_GET
def project_detail(request, pk: int):
    project = get_project_for_user(request, pk)
    return render(
        request,
        "projects/project_detail.html",
        {"project": project, "sweeps": project.sweeps.all(), "runs": project.runs.all()},
    )


@login_required
@require_GET
def project_status(request, pk: int):
    project = get_project_for_user(request, pk)
    return JsonResponse(
        {
            "project": {"id": project.pk, "name": project.name},
            "runs": [run.as_dict() for run in project.runs.all()],
            "sweeps": [sweep.as_dict() for sweep in project.sweeps.all()],
        }
    )


@login_required
@require_GET
def stagerun_log(request, pk: int, run_id: int):
    project = get_project_for_user(request, pk)
    run = get_object_or_404(StageRun, pk=run_id, project=project)
    response = HttpResponse(run.log, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    return response
