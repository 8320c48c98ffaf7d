"""Honest run status (issue 9): a fanned-out run with failed sweeps is ``partial``, says
which sweeps failed and why, keeps what was computed, and "retry failed sweeps" reruns
only those sweeps into the same run. The next stage's form offers the sweeps that
succeeded and lists the ones left out with their reasons.

Input: the session's tiny set indexed once (``indexed_project`` in conftest.py)."""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil

import pytest
from django.urls import reverse

from xtalweb.projects.models import StageRun

from .helpers import wait_for_run

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]


def run_stage(client, project, stage, parent, sweeps, params=None) -> StageRun:
    data = {f"{stage}-{k}": v for k, v in (params or {}).items()}
    data[f"{stage}-parent"] = parent.pk
    data[f"{stage}-sweeps"] = [str(k) for k in sweeps]
    before = set(project.runs.values_list("pk", flat=True))
    response = client.post(reverse("stagerun_new", args=[project.pk, stage]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    (run_id,) = set(project.runs.values_list("pk", flat=True)) - before
    return wait_for_run(run_id, timeout=240)


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_partial_run_and_retry_of_only_the_failed_sweep(client, users, indexed_project, tiny_data):
    project, idx = indexed_project["project"], indexed_project["index"]
    client.force_login(users["alice"])

    # --- refine with sweep 1's indexed reflections truncated: that sweep alone fails --------
    idx_row = idx.sweep_runs.get(index=1)
    refl = idx_row.output_files[1]
    shutil.copyfile(refl, refl + ".orig")
    with open(refl, "r+b") as f:
        f.truncate(os.path.getsize(refl) // 3)
    ref = run_stage(client, project, "refine", idx, [0, 1, 2], {"scan_varying": "false"})
    assert (ref.status, ref.error) == ("partial", "1 of 3 sweeps failed"), ref.log
    rows = list(ref.sweep_runs.order_by("index"))
    assert [r.status for r in rows] == ["succeeded", "failed", "succeeded"]
    reason = rows[1].error
    assert reason and "\n" not in reason and not reason.startswith("Internal error"), rows[1].log

    # the project page, the status JSON and the report say "partial", with the reason
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert 'class="badge partial"' in page and "1 of 3 sweeps failed" in page and html.escape(reason) in page
    assert reverse("stagerun_retry", args=[project.pk, ref.pk]) in page
    status = client.get(reverse("project_status", args=[project.pk])).json()
    (r,) = [r for r in status["runs"] if r["id"] == ref.pk]
    assert (r["status"], r["error"], r["n_failed_sweeps"]) == ("partial", "1 of 3 sweeps failed", 1)
    assert r["retry_url"] == reverse("stagerun_retry", args=[project.pk, ref.pk])
    assert [(s["name"], s["status"], s["error"]) for s in r["sweeps"]][1] == ("crystal_001", "failed", reason)
    report = client.get(reverse("stagerun_report", args=[project.pk, ref.pk])).content.decode()
    assert 'class="badge partial"' in report and "Retry failed sweeps" in report

    # --- the next stage's form (fetched when its card is opened): the succeeded sweeps, and which
    # was left out and why
    form = client.get(reverse("stagerun_new", args=[project.pk, "integrate"])).content.decode()
    assert 'value="0"' in form and 'value="2"' in form and 'value="1"' not in form
    assert "Left out: 1 sweep" in form and f"<strong>crystal_001</strong>: {html.escape(reason)}" in form

    # --- retry: only sweep 1 is rerun, into the same run and folder ---------------------------
    kept = {r.index: (r.finished, [digest(p) for p in r.output_files]) for r in rows if r.status == "succeeded"}
    merged_before = os.path.getmtime(os.path.join(ref.output_dir, "refined.refl"))
    shutil.copyfile(refl + ".orig", refl)  # the input the sweep failed on, repaired
    response = client.post(reverse("stagerun_retry", args=[project.pk, ref.pk]))
    assert response.status_code == 302
    ref = wait_for_run(ref.pk, timeout=240)
    assert (ref.status, ref.error) == ("succeeded", ""), ref.log
    rows = list(ref.sweep_runs.order_by("index"))
    assert [r.status for r in rows] == ["succeeded"] * 3
    for r in rows:
        if r.index in kept:  # untouched: same finish time, same files
            assert (r.finished, [digest(p) for p in r.output_files]) == kept[r.index]
    assert ref.output_dir.endswith("004_refine") and not os.path.exists(os.path.join(project.work_dir, "005_refine"))
    assert ref.summary["n_succeeded"] == 3 and ref.summary["n_experiments"] == 3
    assert os.path.getmtime(os.path.join(ref.output_dir, "refined.refl")) >= merged_before
    assert "Retrying 1 failed sweep(s): crystal_001" in ref.log

    # a run with nothing to retry says so
    response = client.post(reverse("stagerun_retry", args=[project.pk, ref.pk]), follow=True)
    assert "only a partial or failed run has sweeps to retry" in response.content.decode()


def test_retry_is_refused_to_another_group(client, users, indexed_project):
    project, idx = indexed_project["project"], indexed_project["index"]
    client.force_login(users["carol"])
    response = client.post(reverse("stagerun_retry", args=[project.pk, idx.pk]))
    assert response.status_code == 404


def test_bookkeeping_failure_keeps_the_sweeps_files(indexed_project):
    """The science finished but its summary cannot be saved (here: a NaN, refused by the
    strict JSON encoder): the sweep is failed with a message naming the kept files, and the
    files stay in the run folder."""
    from xtalweb.projects import context, per_sweep, runs

    project, idx = indexed_project["project"], indexed_project["index"]
    run = runs.create_run(project, "refine", parameters={}, parents=[idx], sweeps=runs.available_sweeps(idx))
    run = per_sweep.start_run(run.pk)
    rows = context.claim_rows(run.pk, 0)
    path = os.path.join(run.output_dir, "sweeps", "000_crystal_000.refl")
    with open(path, "w") as f:
        f.write("result")
    with context.UnitContext(run, rows) as ctx:
        ctx.finish(rows[0], StageRun.Status.SUCCEEDED, summary={"rmsd": float("nan")}, files=[path])
    row = run.sweep_runs.get(index=0)
    assert row.status == "failed" and "the sweep's files are kept: " + path in row.error
    assert "ValueError" in row.error and os.path.isfile(path)
    json.dumps(row.summary, allow_nan=False)
