"""Views of lab-group review (issue 15): notes, data-set flags, sharing, approving a merge
run, running the export an approved run's bundle lacks, the bundle itself and the
activity list.

Every POST view asks :func:`permissions.get_project_for_user` for ``write=True`` (sharing:
``share=True``, the owner only): a read-only member gets 403, a stranger 404, and
nothing changes. The bundle and the activity list are GET, for anyone who may see the
project.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_safe

from . import review, runs
from .models import StageRun
from .permissions import get_project_for_user
from .review_models import Activity


def _back(request, project, anchor: str = "review"):
    """Back to the page the form was on (``next``, a path of this site), else the project page."""
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect(f"{project.get_absolute_url()}#{anchor}")


@login_required
@require_http_methods(["POST"])
def note_add(request, pk: int):
    """A note on the project, a run (``about=run:<id>``) or a data set (``about=dataset:<name>``)."""
    project = get_project_for_user(request, pk, write=True)
    about = request.POST.get("about") or "project"
    run, dataset = None, ""
    if about.startswith("run:"):
        try:
            run = StageRun.objects.get(pk=int(about[4:]), project=project)
        except (ValueError, StageRun.DoesNotExist):
            messages.error(request, "That run is not a run of this project.")
            return _back(request, project)
    elif about.startswith("dataset:"):
        dataset = about[len("dataset:"):]
        if dataset not in review.dataset_names(project):
            messages.error(request, f"{dataset} is not a data set of this project.")
            return _back(request, project)
    elif about != "project":
        messages.error(request, "Choose what the note is about.")
        return _back(request, project)
    try:
        note = review.add_note(project, request.user, request.POST.get("text", ""), run=run, dataset=dataset)
    except review.ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Note added on {note.about}.")
    return _back(request, project, "notes")


@login_required
@require_http_methods(["POST"])
def flag_set(request, pk: int):
    """Flag a data set suspect or exclude, or clear its flag (``kind=none``)."""
    project = get_project_for_user(request, pk, write=True)
    dataset = request.POST.get("dataset", "")
    try:
        flag = review.set_flag(project, request.user, dataset, request.POST.get("kind", ""),
                               request.POST.get("reason", ""))
    except review.ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Data set {dataset} flagged {flag.kind}." if flag else
                         f"The flag of data set {dataset} is cleared.")
    return _back(request, project, "flags")


@login_required
@require_http_methods(["POST"])
def share_add(request, pk: int):
    """The owner shares the project with a lab group or a user, read-only or read-write."""
    project = get_project_for_user(request, pk, share=True)
    group = user = None
    name = (request.POST.get("username") or "").strip()
    if request.POST.get("group"):
        try:
            group = Group.objects.get(pk=int(request.POST["group"]))
        except (ValueError, Group.DoesNotExist):
            messages.error(request, "No such lab group.")
            return _back(request, project, "sharing")
    if name:
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            messages.error(request, f"No user {name!r}.")
            return _back(request, project, "sharing")
    try:
        obj = review.share(project, request.user, request.POST.get("access", ""), group=group, user=user)
    except review.ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Shared with {obj.who}, {obj.get_access_display()}.")
    return _back(request, project, "sharing")


@login_required
@require_http_methods(["POST"])
def share_remove(request, pk: int, share_id: int):
    project = get_project_for_user(request, pk, share=True)
    try:
        review.unshare(project, request.user, share_id)
    except review.ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Sharing removed.")
    return _back(request, project, "sharing")


@login_required
@require_http_methods(["POST"])
def approve_run(request, pk: int, run_id: int):
    """Mark a merge run approved: its files locked, its bundle offered."""
    project = get_project_for_user(request, pk, write=True)
    run = get_object_or_404(StageRun.objects.select_related("project"), pk=run_id, project=project)
    try:
        review.approve(run, request.user, request.POST.get("comment", ""))
    except review.ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Merge run #{run.pk} is approved: its files are locked and its deposition "
                                  "bundle can be downloaded.")
    return redirect(run.get_report_url())


@login_required
@require_http_methods(["POST"])
def run_export(request, pk: int, run_id: int):
    """Export (unmerged MTZ, mmCIF) from the scale run an approved merge run was made from."""
    from .stages import build_params, words_from_values

    project = get_project_for_user(request, pk, write=True)
    merge = get_object_or_404(StageRun, pk=run_id, project=project, stage="merge")
    scale, export = review.export_for(merge)
    if scale is None or scale.status not in StageRun.USABLE:
        messages.error(request, f"The scale run of merge run #{merge.pk} is gone or not usable.")
    elif export is not None:
        messages.info(request, f"Export run #{export.pk} from scale run #{scale.pk} is there already.")
    else:
        sweeps = runs.available_sweeps(scale)
        params = build_params("export", words_from_values("export", {}))
        new_id = runs.queue_run(project, "export", params, [scale], sweeps, by=request.user,
                                detail=f"for the bundle of approved merge run #{merge.pk}")
        messages.success(request, f"Queued export (run #{new_id}) from scale run #{scale.pk}; the bundle of run "
                                  f"#{merge.pk} includes its files once it has finished.")
    return redirect(merge.get_report_url())


@login_required
@require_safe
def bundle_download(request, pk: int, run_id: int):
    """The deposition bundle (zip) of an approved merge run."""
    from .bundle import BundleError, bundle_path

    project = get_project_for_user(request, pk)
    run = get_object_or_404(StageRun.objects.select_related("project"), pk=run_id, project=project)
    if review.approval_of(run) is None:
        raise Http404("This run is not approved")
    try:
        path, name = bundle_path(run)
    except (BundleError, OSError) as exc:
        return HttpResponse(f"The bundle cannot be made: {exc}\n", status=409,
                            content_type="text/plain; charset=utf-8")
    response = FileResponse(open(path, "rb"), as_attachment=True, filename=name, content_type="application/zip")
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_safe
def project_activity(request, pk: int):
    """Every line of the project's activity list, newest first, 100 a page."""
    project = get_project_for_user(request, pk)
    entries = Activity.objects.filter(project=project).select_related("user", "run")
    page = Paginator(entries, 100).get_page(request.GET.get("page"))
    from .review_context import activity_rows

    return render(request, "projects/activity.html", {"project": project, "page": page,
                                                      "rows": activity_rows(page.object_list)})


__all__ = ["approve_run", "bundle_download", "flag_set", "note_add", "project_activity", "run_export",
           "share_add", "share_remove"]
