"""Downloading a run's output files (merged.mtz, scaled_unmerged.mtz, scaled.cif, scaled.expt/.refl …).

``/projects/<pk>/runs/<run_id>/files/<name>`` serves one file of the run's folder, and
only a file its stage declares as an output (``processing.stages.STAGES[stage].outputs``):
any other name — another file of the folder, ``..``, a path — is a 404, as is a run
that has not finished with outputs (succeeded or partial). The project goes through
:func:`permissions.get_project_for_user`, so a user outside the project's group gets a
404 and learns nothing about the run or the file.
"""

from __future__ import annotations

import os

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_safe

from .models import StageRun
from .permissions import get_project_for_user, is_inside

#: stages whose files are offered for download on the report and project pages
DOWNLOAD_STAGES = ("scale", "merge", "export")

_CONTENT_TYPES = {".mtz": "application/octet-stream", ".refl": "application/octet-stream",
                  ".expt": "application/json", ".cif": "chemical/x-mmcif"}


def output_path(run: StageRun, name: str) -> str | None:
    """The path of the run's output ``name``, or None if it may not (or cannot) be served."""
    from processing.stages import STAGES

    stage = STAGES.get(run.stage)
    if stage is None or name not in stage.outputs or run.status not in StageRun.USABLE or not run.output_dir:
        return None
    folder = os.path.realpath(run.output_dir)
    path = os.path.realpath(os.path.join(folder, name))
    if os.path.dirname(path) != folder or not is_inside(path, folder) or not os.path.isfile(path):
        return None
    return path


def downloads_of(run: StageRun) -> list[dict]:
    """``[{name, url, size}]``: the run's output files that can be downloaded (stages of
    :data:`DOWNLOAD_STAGES`, succeeded or partial, files present), in the stage's order."""
    from processing.stages import STAGES

    if run.stage not in DOWNLOAD_STAGES or run.status not in StageRun.USABLE or not run.output_dir:
        return []
    out = []
    for name in STAGES[run.stage].outputs:
        path = output_path(run, name)
        if path is not None:
            out.append({"name": name, "url": reverse("stagerun_file", args=[run.project_id, run.pk, name]),
                        "size": os.path.getsize(path)})
    return out


@login_required
@require_safe
def stagerun_file(request, pk: int, run_id: int, name: str):
    """One output file of a run, as an attachment."""
    project = get_project_for_user(request, pk)
    run = get_object_or_404(StageRun, pk=run_id, project=project)
    path = output_path(run, name)
    if path is None:
        raise Http404("No such file")
    content_type = _CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
    response = FileResponse(open(path, "rb"), as_attachment=True, filename=name, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    return response
