"""Report pages of a StageRun, their JSON, and plotly.js from the installed package."""

from __future__ import annotations

import os

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from xtalweb.projects.live import run_state
from xtalweb.projects.models import StageRun
from xtalweb.projects.permissions import get_project_for_user

from .figures import report_for_run


def _run(request, pk: int, run_id: int) -> StageRun:
    """The run with its SweepRun rows and input runs; no logs (the log page has them)."""
    from django.db.models import Prefetch

    from xtalweb.projects.models import SweepRun

    project = get_project_for_user(request, pk)
    rows = Prefetch("sweep_runs", queryset=SweepRun.objects.defer("log"))
    parents = Prefetch("parents", queryset=StageRun.objects.defer("log"))
    return get_object_or_404(StageRun.objects.select_related("project").defer("log").prefetch_related(rows, parents),
                             pk=run_id, project=project)


@login_required
@require_GET
def stagerun_report(request, pk: int, run_id: int):
    run = _run(request, pk, run_id)
    report = report_for_run(run)
    tables = [dict(t, pairs=list(zip(t["rows"], t["row_status"]))) for t in report["tables"]]
    return render(request, "reports/stagerun_report.html",
                  {"project": run.project, "run": run, "report": report, "tables": tables,
                   "state": run_state(run), "parameters": sorted((run.parameters or {}).items())})


@login_required
@require_GET
def stagerun_report_json(request, pk: int, run_id: int):
    run = _run(request, pk, run_id)
    data = dict(report_for_run(run), state=run_state(run))  # the page's live status and tab title
    response = JsonResponse(data, json_dumps_params={"ensure_ascii": False, "allow_nan": False})
    response["Cache-Control"] = "no-store"
    return response


def plotly_js_path() -> str:
    import plotly

    return os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")


@login_required
@require_GET
@cache_control(private=True, max_age=7 * 24 * 3600)
def plotly_js(request):
    """plotly.min.js as shipped inside the installed ``plotly`` package (no CDN, no copy in
    git), to logged-in users as every other URL but the login page."""
    try:
        path = plotly_js_path()
    except ImportError:
        raise Http404("plotly is not installed") from None
    if not os.path.isfile(path):
        raise Http404("plotly.min.js is not in the installed plotly package")
    return FileResponse(open(path, "rb"), content_type="text/javascript; charset=utf-8")
