"""The project page's polled status (``status.json``): only what changes while runs run.

Each run: its state, progress, error, input runs, times, links, per-sweep state and, while
it is queued or running, the last line of its log. Each sweep: the geometry the sweeps
table shows. The pipeline overview (``overview.py``). No summaries, parameters or file
lists: the report page fetches a run's summary (``report.json``), not the poller.

The answer carries an ``ETag``; a poll that sends it back in ``If-None-Match`` while
nothing changed gets ``304 Not Modified`` with no body, found from the few columns that
change (:class:`Snapshot`) without reading a summary or building the overview.
"""

from __future__ import annotations

import hashlib
import json

from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch
from django.db.models.functions import Right
from django.http import HttpResponse, HttpResponseNotModified
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import watchdog
from .models import StageRun, SweepRun
from .permissions import READ, get_project_for_user

ACTIVE = (StageRun.Status.QUEUED, StageRun.Status.RUNNING)
#: characters read from the end of a log for its last line (one log line is shorter)
TAIL_CHARS = 400
#: the last line is cut to this many characters
TAIL_LINE = 200


def page_runs(project) -> list[StageRun]:
    """Every run of ``project`` with its input runs and SweepRun rows (three queries), without
    the bulky columns no page of the project needs at once (logs, parameters, per-sweep
    summaries); the runs' own summaries stay (the overview reads a few numbers of them)."""
    rows = Prefetch("sweep_runs", queryset=SweepRun.objects.defer("log", "summary", "output_files"))
    parents = Prefetch("parents", queryset=StageRun.objects.only("id", "project_id", "stage", "status"))
    return list(project.runs.defer("log", "parameters").prefetch_related(rows, parents).order_by("id"))


def _last_line(text: str | None) -> str:
    lines = [x for x in (text or "").splitlines() if x.strip()]
    if not lines:
        return ""
    line = lines[-1].strip()
    return line if len(line) <= TAIL_LINE else line[: TAIL_LINE - 1] + "…"


def log_tails(runs) -> dict[int, str]:
    """``{run id: the last line of its log}`` of the queued and running runs among ``runs``
    (StageRuns, or ``(id, status)`` pairs; no query when none is active): the run's own log,
    else the latest line of its sweeps' logs (a line starts with its time, so the greatest is
    the latest). Two queries that read only the ends of the logs."""
    pairs = [(r.pk, r.status) if isinstance(r, StageRun) else r for r in runs]
    active = [pk for pk, status in pairs if status in ACTIVE]
    if not active:
        return {}
    tails = {pk: _last_line(t) for pk, t in StageRun.objects.filter(pk__in=active).order_by()
             .annotate(tail=Right("log", TAIL_CHARS)).values_list("pk", "tail")}
    from_sweeps: dict[int, str] = {}
    for run_id, t in (SweepRun.objects.filter(run_id__in=[pk for pk in active if not tails.get(pk)]).order_by()
                      .annotate(tail=Right("log", TAIL_CHARS)).values_list("run_id", "tail")):
        line = _last_line(t)
        if line > from_sweeps.get(run_id, ""):
            from_sweeps[run_id] = line
    return {pk: tails.get(pk) or from_sweeps.get(pk, "") for pk in active}


def run_status(run: StageRun, writable: bool, tail: str = "") -> dict:
    """What the runs table shows of ``run`` (its SweepRun rows and parents prefetched)."""
    rows = list(run.sweep_runs.all())
    retry = (writable and run.is_per_sweep
             and run.status in (StageRun.Status.PARTIAL, StageRun.Status.FAILED))
    return {
        "id": run.pk, "stage": run.stage, "status": run.status, "progress": run.progress, "error": run.error,
        "parents": [p.pk for p in run.parents.all()],
        "started": run.started.isoformat() if run.started else None,
        "finished": run.finished.isoformat() if run.finished else None,
        "report_url": run.get_report_url(), "log_url": run.get_log_url(),
        "retry_url": reverse("stagerun_retry", args=[run.project_id, run.pk]) if retry else None,
        "n_failed_sweeps": sum(1 for s in rows if s.status == StageRun.Status.FAILED),
        "log_tail": tail,
        "sweeps": [{"index": s.index, "name": s.name, "status": s.status, "progress": s.progress, "error": s.error}
                   for s in rows],
    }


SWEEP_COLUMNS = ("id", "name", "image_range_start", "image_range_end", "n_images", "oscillation_start",
                 "oscillation_width", "detector", "wavelength", "beam_centre_x", "beam_centre_y", "distance", "included")


def sweep_status(row: tuple) -> dict:
    """A row of the sweeps table from the columns :data:`SWEEP_COLUMNS` (no file list: a
    sweep may have thousands of images)."""
    s = dict(zip(SWEEP_COLUMNS, row))
    return {"id": s["id"], "name": s["name"], "image_range": [s["image_range_start"], s["image_range_end"]],
            "n_images": s["n_images"], "oscillation": [s["oscillation_start"], s["oscillation_width"]],
            "detector": s["detector"], "wavelength": s["wavelength"],
            "beam_centre_px": [s["beam_centre_x"], s["beam_centre_y"]], "distance_mm": s["distance"],
            "included": s["included"]}


class Snapshot:
    """What changes in a project's status, read in three to five small queries (no summary,
    no log but the active runs' last lines): its :attr:`etag`, and what :func:`status_of`
    takes from it. A run's summary and input runs are written with its state (at its
    creation or finish), so they need no column of their own in the ETag."""

    def __init__(self, project):
        self.project = project
        self.runs = list(project.runs.order_by("id").values_list(
            "id", "stage", "status", "progress", "error", "started", "finished", "output_dir"))
        self.rows = list(SweepRun.objects.filter(run__project=project).order_by("run_id", "index")
                         .values_list("run_id", "index", "name", "status", "progress", "error"))
        self.sweeps = list(project.sweeps.order_by("id").values_list(*SWEEP_COLUMNS))
        self.tails = log_tails([(r[0], r[2]) for r in self.runs])
        text = repr((project.pk, project.name, project.access, self.runs, self.rows, self.sweeps,
                     sorted(self.tails.items())))
        self.etag = '"' + hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest() + '"'


def status_of(project, snapshot: Snapshot | None = None) -> dict:
    """The polled status of ``project`` (``project.access`` set by ``get_project_for_user``)."""
    from .overview import build_overview, safe_overview
    from .review import read_only_overview

    snapshot = snapshot or Snapshot(project)
    runs = page_runs(project)
    writable = project.access != READ
    overview = safe_overview(build_overview, runs)
    return {
        "project": {"id": project.pk, "name": project.name, "access": project.access},
        "runs": [run_status(r, writable, snapshot.tails.get(r.pk, "")) for r in runs],
        "sweeps": [sweep_status(row) for row in snapshot.sweeps],
        "overview": overview if writable else read_only_overview(overview),
    }


def _etag_matches(header: str, etag: str) -> bool:
    return any(tag.strip() in (etag, "*", "W/" + etag) for tag in header.split(","))


@login_required
@require_GET
def project_status(request, pk: int):
    """``status.json``: :func:`status_of`, strict JSON; ``304`` when the ETag sent is current."""
    project = get_project_for_user(request, pk)
    watchdog.check_project(project)  # a run whose tasks vanished: re-queued or failed, never "running" forever
    snapshot = Snapshot(project)
    etag = snapshot.etag
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        response = HttpResponseNotModified()
    else:
        body = json.dumps(status_of(project, snapshot), cls=DjangoJSONEncoder, allow_nan=False,
                          separators=(",", ":"))
        response = HttpResponse(body.encode("utf-8"), content_type="application/json")
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    return response
