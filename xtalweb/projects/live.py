"""What the live pages show of a run while it runs: its state (also in the browser tab's
title: "▶ 45 % integrate #12 — xtalweb") and its log, which the log page streams.

The log of a run is made of parts: one per sweep of a fanned-out run (each sweep's task
writes its own), then the run's own log (the join, or the whole log of an ensemble
stage). ``log.json?from=<cursors>`` answers, for every part, the text after the cursor
the page holds; a cursor is ``<offset>.<crc32 of the text before it>``, so a part that
was rewritten rather than appended to (a retried sweep) is sent again from its start
(``reset``). ``/log`` is that page for a browser and the whole log as plain text for
anything else (``curl``, scripts; ``?format=text`` forces it).
"""

from __future__ import annotations

import zlib

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from .models import StageRun
from .permissions import get_project_for_user

#: the state's sign in the tab title
SIGNS = {"queued": "◷", "running": "▶", "succeeded": "✓", "partial": "◐", "failed": "✗"}
#: most characters of one part sent in one answer; the page asks again at once for the rest
CHUNK = 256 * 1024


def run_state(run: StageRun) -> dict:
    """Status, progress and the tab title's text: ``▶ 45 % integrate #12``,
    ``◷ queued integrate #12``, ``✓ integrate #12``, ``◐ …`` (partial), ``✗ …``."""
    label = f"{run.get_stage_display()} #{run.pk}"
    sign = SIGNS.get(run.status, "?")
    if run.status == StageRun.Status.RUNNING:
        title = f"{sign} {round(100 * (run.progress or 0.0))} % {label}"
    elif run.status == StageRun.Status.QUEUED:
        title = f"{sign} queued {label}"
    else:
        title = f"{sign} {label}"
    return {"status": run.status, "progress": run.progress, "active": run.is_active,
            "error": run.error, "title": title}


def log_parts(run: StageRun) -> list[dict]:
    """``[{key, title, status, text}]``: each sweep's log of a fanned-out run, then the run's own."""
    sweep_runs = list(run.sweep_runs.all())
    if not sweep_runs:
        return [{"key": "run", "title": "", "status": run.status, "text": run.log}]
    parts = [{"key": f"sweep-{s.index}", "title": f"sweep {s.name} (experiment {s.index})",
              "status": s.status, "text": s.log} for s in sweep_runs]
    if run.log:
        parts.append({"key": "run", "title": "join", "status": run.status, "text": run.log})
    return parts


def log_text(run: StageRun) -> str:
    """The whole log as one text, a ``=== sweep … ===`` header before each sweep's part."""
    parts = log_parts(run)
    if len(parts) == 1 and parts[0]["key"] == "run":
        return parts[0]["text"]
    out = []
    for p in parts:
        if p["key"] == "run":
            out.append(f"=== join ===\n{p['text']}")
        else:
            block = f"=== {p['title']}: {p['status']} ===\n{p['text']}"
            out.append(block if block.endswith("\n") else block + "\n")
    return "".join(out)


def cursor(text: str, offset: int) -> str:
    return f"{offset}.{zlib.crc32(text[:offset].encode('utf-8')):08x}"


def _parse_cursors(value: str) -> dict[str, tuple[int, str]]:
    out = {}
    for item in value.split(","):
        key, _, rest = item.partition(":")
        offset, _, crc = rest.partition(".")
        try:
            out[key.strip()] = (int(offset), crc.strip())
        except ValueError:
            continue
    return out


def _from_cursor(text: str, held: tuple[int, str] | None) -> tuple[int, bool]:
    """Where to continue ``text`` for a page that holds ``held``; and whether it starts over."""
    if held is None:
        return 0, False
    offset, crc = held
    if 0 <= offset <= len(text) and cursor(text, offset).split(".")[1] == crc:
        return offset, False
    return 0, True


def _run(request, pk: int, run_id: int) -> StageRun:
    project = get_project_for_user(request, pk)
    return get_object_or_404(StageRun.objects.select_related("project"), pk=run_id, project=project)


def _wants_html(request) -> bool:
    if request.GET.get("format") == "text":
        return False
    return "text/html" in request.headers.get("Accept", "")


@login_required
@require_GET
def stagerun_log(request, pk: int, run_id: int):
    """The run's log: the live page for a browser, plain text for anything else."""
    run = _run(request, pk, run_id)
    if not _wants_html(request):
        response = HttpResponse(log_text(run), content_type="text/plain; charset=utf-8")
        response["X-Content-Type-Options"] = "nosniff"
    else:
        parts = [dict(p, cursor=cursor(p["text"], len(p["text"]))) for p in log_parts(run)]
        response = render(request, "projects/stagerun_log.html",
                          {"project": run.project, "run": run, "state": run_state(run), "parts": parts,
                           "has_text": any(p["text"] for p in parts)})
    if "format" not in request.GET:
        patch_vary_headers(response, ["Accept"])
    return response


@login_required
@require_GET
def stagerun_log_json(request, pk: int, run_id: int):
    """``{"state": run_state, "parts": [{key, title, status, text, reset, cursor, more}]}``:
    each part's text after the cursor given for it in ``?from=key:offset.crc,…`` (all of it
    for a part not named there)."""
    run = _run(request, pk, run_id)
    held = _parse_cursors(request.GET.get("from", ""))
    parts = []
    for p in log_parts(run):
        text = p.pop("text")
        start, reset = _from_cursor(text, held.get(p["key"]))
        end = min(len(text), start + CHUNK)
        parts.append(dict(p, text=text[start:end], reset=reset, cursor=cursor(text, end), more=end < len(text)))
    response = JsonResponse({"state": run_state(run), "parts": parts}, json_dumps_params={"ensure_ascii": False})
    response["Cache-Control"] = "no-store"
    return response
