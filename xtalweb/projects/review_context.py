"""What the pages show of the lab-group review: the project page's review section
(:func:`project_review`), a run report's notes and approval (:func:`run_review`), and the
data-set pages' flags and notes (:func:`dataset_review`). Read only; the changes go
through ``review_views``."""

from __future__ import annotations

from django.contrib.auth.models import Group

from .models import StageRun
from .review import access_for, approval_of, export_for, flags_of, shown_parameters
from .review_models import Activity, Approval, Note

#: activity lines on the project page (the rest on the activity page)
ACTIVITY_ON_PAGE = 25
NOTES_ON_PAGE = 100


def activity_rows(entries) -> list[dict]:
    return [{"a": a, "params": shown_parameters(a)} for a in entries]


def dataset_review(project) -> dict[str, dict]:
    """``{data set name: {"flag", "notes"}}`` for the data sets with a flag or a note."""
    out: dict[str, dict] = {}
    for name, flag in flags_of(project).items():
        out.setdefault(name, {"flag": None, "notes": []})["flag"] = flag
    for note in Note.objects.filter(project=project).exclude(dataset="").select_related("author"):
        out.setdefault(note.dataset, {"flag": None, "notes": []})["notes"].append(note)
    return out


def project_review(request, project, runs: list[StageRun] | None = None, sweeps=None) -> dict:
    """The project page's review context: access, notes, flags, shares, approvals, activity.
    ``runs`` and ``sweeps``: the project's, when the page has them loaded already."""
    access = access_for(request.user, project)
    approvals = list(Approval.objects.filter(run__project=project).select_related("run", "approved_by")
                     .order_by("-approved"))
    approved = {a.run_id for a in approvals}
    if runs is None:
        runs = list(project.runs.only("id", "project_id", "stage", "status"))
    newest_first = sorted(runs, key=lambda r: -r.pk)
    merges = [r for r in newest_first if r.stage == "merge" and r.status in StageRun.USABLE and r.pk not in approved]
    names = ([s.name for s in sweeps] if sweeps is not None
             else list(project.sweeps.order_by("id").values_list("name", flat=True)))
    entries = Activity.objects.filter(project=project).select_related("user", "run")[:ACTIVITY_ON_PAGE + 1]
    entries = list(entries)
    return {
        "access": access,
        "review_notes": Note.objects.filter(project=project).select_related("author", "run")[:NOTES_ON_PAGE],
        "datasets_review": dataset_review(project),
        "note_runs": [(r.pk, r.stage) for r in newest_first],
        "dataset_choices": names,
        "shares": project.shares.select_related("group", "user", "created_by"),
        "share_groups": (Group.objects.exclude(pk=project.group_id).order_by("name") if access.can_share else []),
        "approvals": approvals,
        "approved_ids": approved,
        "approvable": merges,
        "activity": activity_rows(entries[:ACTIVITY_ON_PAGE]),
        "more_activity": len(entries) > ACTIVITY_ON_PAGE,
    }


def run_review(user, run: StageRun) -> dict:
    """A run report's review: access, the run's notes, its approval (merge runs), the export
    the bundle takes, and the flags on the run's data sets."""
    project = run.project
    access = access_for(user, project)
    approval = approval_of(run)
    scale = export = None
    if run.stage == "merge":
        scale, export = export_for(run)
    flags = flags_of(project)
    names = [r.name for r in run.sweep_runs.all()]
    return {
        "access": access,
        "notes": run.notes.select_related("author"),
        "approval": approval,
        "can_approve": (access.can_write and approval is None and run.stage == "merge"
                        and run.status in StageRun.USABLE),
        "scale": scale,
        "export": export,
        "flags": [flags[n] for n in names if n in flags],
    }
