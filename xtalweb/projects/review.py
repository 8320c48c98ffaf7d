"""Lab-group review (issue 15): who may do what, the activity list, notes, data-set flags
and approved (locked) merge runs. The models are in ``review_models.py``, the views in
``review_views.py``, the deposition bundle in ``bundle.py``.

* **Access** (:func:`access_for`): the owner (may share), read-write (the project's lab
  group, or a read-write share), read-only (a read-only share). Views ask
  ``permissions.get_project_for_user(request, pk, write=True)`` for anything that changes
  something; pages hide their forms for read-only members and say why.
* **Activity** (:func:`record`): every run created (``runs.create_run``, with who asked,
  the verb — ran, dropped, queued automatically — and the parameters), every retry,
  note, flag, share and approval.
* **Flags** (:func:`apply_flags`): an ``exclude`` flag leaves the data set out of the
  next run's default selection (the form lists it with the reason) and out of automatic
  follow-up runs (:func:`excluded_names`); ``suspect`` is a warning badge next to it.
* **Approval** (:func:`approve`): a succeeded merge run; its files are chmod-ed read-only,
  their sha256 kept; the run cannot be deleted (``Approval.run`` is PROTECT) and
  ``folders.remove`` refuses its folder (:func:`assert_not_locked`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass

from django.db import transaction

from .models import StageRun
from .permissions import OWNER, READ, WRITE, access_level, is_inside
from .review_models import Activity, Approval, DatasetFlag, Note, ProjectShare

Verb = Activity.Verb
logger = logging.getLogger(__name__)


class ReviewError(ValueError):
    """An action that cannot be done; ``str(e)`` is the one message shown."""


class LockedError(PermissionError):
    """A write or removal under an approved run's folder."""


# --- access --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    level: str | None
    how: str  # how the user has this access, for the page

    @property
    def can_write(self) -> bool:
        return self.level in (WRITE, OWNER)

    @property
    def can_share(self) -> bool:
        return self.level == OWNER

    @property
    def read_only(self) -> bool:
        return self.level == READ

    @property
    def label(self) -> str:
        return {OWNER: "owner", WRITE: "read-write", READ: "read-only"}.get(self.level, "none")


def access_for(user, project) -> Access:
    level = access_level(user, project)
    if level == OWNER:
        how = "you own this project"
    elif level == WRITE and project.group_id and user.groups.filter(pk=project.group_id).exists():
        how = f"member of the project's lab group {project.group.name}"
    elif level in (WRITE, READ):
        shares = project.shares.filter(access=level).select_related("group", "user")
        names = [s.who for s in shares if s.user_id == user.pk or
                 (s.group_id and user.groups.filter(pk=s.group_id).exists())]
        how = f"shared with {', '.join(names) or 'you'} by {project.owner.get_username()}"
    else:
        how = ""
    return Access(level, how)


# --- activity ------------------------------------------------------------------------------------


def record(project, user, verb: str, *, run: StageRun | None = None, detail: str = "",
           parameters: dict | None = None) -> Activity:
    """One line of the activity list (``user`` None: the app itself, e.g. a follow-up)."""
    user = user if user is not None and getattr(user, "is_authenticated", False) else None
    return Activity.objects.create(project=project, user=user, verb=verb, run=run,
                                   stage=run.stage if run is not None else "", detail=detail[:1000],
                                   parameters=dict(parameters or {}))


def shown_parameters(activity: Activity) -> list[str]:
    """``name=value`` of the recorded parameters away from the stage's defaults."""
    from xtalweb.reports.overrides import _same, defaults, show

    params = activity.parameters or {}
    base = (defaults(activity.stage) if activity.stage else None) or {}
    return [f"{k}={show(v)}" for k, v in sorted(params.items())
            if k not in base or not _same(v, base[k])]


# --- notes and flags -----------------------------------------------------------------------------


def add_note(project, user, text: str, *, run: StageRun | None = None, dataset: str = "") -> Note:
    text = (text or "").strip()
    if not text:
        raise ReviewError("Write something in the note.")
    if len(text) > 4000:
        raise ReviewError("A note holds at most 4000 characters.")
    with transaction.atomic():
        note = Note.objects.create(project=project, run=run, dataset=dataset, text=text, author=user)
        record(project, user, Verb.COMMENTED, run=run, detail=text if run is not None else f"on {note.about}: {text}")
    return note


def dataset_names(project) -> list[str]:
    """The project's data sets (sweep names) in import order."""
    return list(project.sweeps.order_by("id").values_list("name", flat=True))


def flags_of(project) -> dict[str, DatasetFlag]:
    return {f.dataset: f for f in DatasetFlag.objects.filter(project=project).select_related("author")}


def excluded_names(project) -> set[str]:
    """Data sets flagged ``exclude``: left out of the next run's default selection."""
    return set(DatasetFlag.objects.filter(project=project, kind=DatasetFlag.Kind.EXCLUDE)
               .values_list("dataset", flat=True))


def set_flag(project, user, dataset: str, kind: str, reason: str = "") -> DatasetFlag | None:
    """Flag ``dataset`` suspect or exclude, or clear its flag (``kind`` "none")."""
    if dataset not in dataset_names(project):
        raise ReviewError(f"{dataset or 'That'} is not a data set of this project.")
    reason = " ".join((reason or "").split())[:500]
    with transaction.atomic():
        if kind == "none":
            deleted, _ = DatasetFlag.objects.filter(project=project, dataset=dataset).delete()
            if deleted:
                record(project, user, Verb.FLAGGED, detail=f"cleared the flag of data set {dataset}")
            return None
        if kind not in DatasetFlag.Kind.values:
            raise ReviewError(f"A flag is suspect or exclude, not {kind!r}.")
        flag, _ = DatasetFlag.objects.update_or_create(project=project, dataset=dataset,
                                                       defaults={"kind": kind, "reason": reason, "author": user})
        record(project, user, Verb.FLAGGED, detail=f"data set {dataset} {kind}" + (f": {reason}" if reason else ""))
    return flag


def apply_flags(form) -> None:
    """Honour the project's flags in a run form (``forms.StageRunForm``): an ``exclude``
    data set is not ticked by default and is listed with its reason (``form.flagged_out``);
    a ``suspect`` one keeps its tick and gets a warning in its label (``form.suspect``)."""
    flags = flags_of(form.project)
    form.flagged_out, form.suspect = [], []
    if not flags:
        return
    initial = list(form.fields["sweeps"].initial or [])
    choices = []
    for s in form.available:
        flag, label = flags.get(s["name"]), s["name"]
        if flag is not None:
            entry = {"index": s["index"], "name": s["name"], "reason": flag.reason or "no reason given",
                     "author": flag.author.get_username() if flag.author else "someone"}
            if flag.kind == DatasetFlag.Kind.EXCLUDE:
                form.flagged_out.append(entry)
                initial = [i for i in initial if i != s["index"]]
                label += " — flagged exclude"
            else:
                form.suspect.append(entry)
                label += " ⚠ suspect"
        choices.append((s["index"], label))
    form.fields["sweeps"].choices = choices
    form.fields["sweeps"].initial = initial


# --- sharing -------------------------------------------------------------------------------------


def share(project, by, access: str, *, group=None, user=None) -> ProjectShare:
    if access not in ProjectShare.Access.values:
        raise ReviewError("Choose read-only or read-write.")
    if (group is None) == (user is None):
        raise ReviewError("Share with one lab group or one user.")
    if user is not None and user.pk == project.owner_id:
        raise ReviewError("The owner has every right already.")
    if group is not None and group.pk == project.group_id:
        raise ReviewError(f"{group.name} is the project's own lab group (read-write already).")
    with transaction.atomic():
        key = {"group": group} if group is not None else {"user": user}
        obj, _ = ProjectShare.objects.update_or_create(project=project, **key,
                                                       defaults={"access": access, "created_by": by})
        record(project, by, Verb.SHARED, detail=f"shared with {obj.who}, {obj.get_access_display()}")
    return obj


def unshare(project, by, share_id) -> None:
    with transaction.atomic():
        obj = ProjectShare.objects.filter(project=project, pk=share_id).select_related("group", "user").first()
        if obj is None:
            raise ReviewError("No such share.")
        who = obj.who
        obj.delete()
        record(project, by, Verb.SHARED, detail=f"stopped sharing with {who}")


# --- approval and locked files -------------------------------------------------------------------


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_only(path: str) -> None:
    """Remove the write bits of ``path``; best effort (a file of another user — the worker's
    — stays as it is, logged: the app's own lock does not depend on it)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        os.chmod(path, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    except OSError as exc:
        logger.warning("could not make %s read-only: %s", path, exc)


def lock_folder(folder: str) -> dict[str, str]:
    """chmod every file of ``folder`` (and the folder) read-only; ``{relative name: sha256}``."""
    hashes = {}
    for d, _, names in os.walk(folder):
        for n in sorted(names):
            path = os.path.join(d, n)
            hashes[os.path.relpath(path, folder)] = sha256(path)
            _read_only(path)
    for d, _, _ in os.walk(folder, topdown=False):
        _read_only(d)
    return hashes


def approval_of(run: StageRun) -> Approval | None:
    return Approval.objects.filter(run=run).select_related("approved_by").first()


def approve(run: StageRun, user, comment: str = "") -> Approval:
    """Approve a finished merge run: lock its files, record who and when."""
    if run.stage != "merge":
        raise ReviewError(f"Only a merge run can be approved (run #{run.pk} is {run.stage}).")
    if run.status not in StageRun.USABLE:
        raise ReviewError(f"Run #{run.pk} is {run.status}: only a finished merge run can be approved.")
    if not run.output_dir or not os.path.isfile(os.path.join(run.output_dir, "merged.mtz")):
        raise ReviewError(f"Run #{run.pk} has no merged.mtz in its folder.")
    comment = " ".join((comment or "").split())[:500]
    with transaction.atomic():
        StageRun.objects.select_for_update().filter(pk=run.pk).first()
        if Approval.objects.filter(run=run).exists():
            raise ReviewError(f"Run #{run.pk} is approved already.")
        files = lock_folder(run.output_dir)
        approval = Approval.objects.create(run=run, approved_by=user, comment=comment, files=files)
        record(run.project, user, Verb.APPROVED, run=run, parameters=run.parameters, detail=comment)
    return approval


def locked_folders() -> list[str]:
    """The (resolved) folders of every approved run."""
    return [os.path.realpath(d) for d in Approval.objects.values_list("run__output_dir", flat=True) if d]


def is_locked(path: str | None) -> bool:
    """Whether ``path`` is, lies in, or holds an approved run's folder."""
    if not path:
        return False
    real = os.path.realpath(path)
    return any(is_inside(real, d) or is_inside(d, real) for d in locked_folders())


def assert_not_locked(path: str | None) -> None:
    """Refuse (LockedError) to overwrite or remove anything of an approved run."""
    if is_locked(path):
        raise LockedError(f"{path} holds the files of an approved run: they cannot be overwritten or removed.")


def export_for(merge: StageRun) -> tuple[StageRun | None, StageRun | None]:
    """(the merge run's scale run, the latest usable export run from that same scale run)."""
    scale = merge.parents.filter(stage="scale").first()
    if scale is None:
        return None, None
    export = (StageRun.objects.filter(parents=scale, stage="export", status__in=StageRun.USABLE)
              .order_by("-finished", "-id").first())
    return scale, export


# --- read-only pages -----------------------------------------------------------------------------


def read_only_overview(overview: dict | None) -> dict | None:
    """The overview without what a read-only member cannot do (retry, run forms)."""
    if not overview:
        return overview
    for entry in overview.get("stages") or []:
        if isinstance(entry, dict) and isinstance(entry.get("next"), list):
            entry["next"] = [n for n in entry["next"] if n.get("kind") not in ("retry", "form")]
    return overview


__all__ = ["Access", "LockedError", "ReviewError", "access_for", "add_note", "apply_flags", "approve",
           "approval_of", "assert_not_locked", "excluded_names", "export_for", "flags_of", "is_locked",
           "lock_folder", "read_only_overview", "record", "set_flag", "share", "shown_parameters", "unshare"]
