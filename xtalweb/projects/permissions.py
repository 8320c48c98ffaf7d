"""Who may see a project, and which folders may be imported.

* A project is visible to its owner, to the members of its lab group (read-write) and to
  the groups and users the owner shared it with (read-only or read-write), nobody else
  (not even other logged-in users): every project view goes through
  :func:`get_project_for_user`, which answers 404 rather than 403 so that project ids
  of other groups are not revealed. Every form and POST endpoint asks for
  ``write=True``: a read-only member gets 403 and nothing changes.
* A data folder must lie inside one of ``settings.DATA_ROOTS`` after resolving
  symlinks and ``..``: :func:`resolve_data_path`.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.db.models import Q, QuerySet
from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import Project


class DataPathError(ValueError):
    """A path the user may not import from; ``str(e)`` is the one clear message."""


#: access levels, weakest first: may see; may also run, comment, flag, approve; may also share
READ, WRITE, OWNER = "read", "write", "owner"


def _group_ids(user) -> list[int]:
    return list(user.groups.values_list("pk", flat=True))


def visible_projects(user) -> QuerySet[Project]:
    """Projects ``user`` may see: owned, of one of the user's groups, or shared with the
    user or one of the user's groups."""
    if user is None or not user.is_authenticated:
        return Project.objects.none()
    groups = _group_ids(user)
    return Project.objects.filter(Q(owner=user) | Q(group__in=groups) | Q(shares__user=user)
                                  | Q(shares__group__in=groups)).distinct()


def access_level(user, project: Project) -> str | None:
    """``OWNER``, ``WRITE`` (the project's lab group, or a read-write share), ``READ`` (a
    read-only share) or None (a stranger)."""
    if user is None or not user.is_authenticated:
        return None
    if project.owner_id == user.pk:
        return OWNER
    groups = _group_ids(user)
    if project.group_id is not None and project.group_id in groups:
        return WRITE
    from .review_models import ProjectShare

    shares = set(ProjectShare.objects.filter(project=project).filter(Q(user=user) | Q(group__in=groups))
                 .values_list("access", flat=True))
    if ProjectShare.Access.WRITE in shares:
        return WRITE
    return READ if shares else None


def can_view_project(user, project: Project) -> bool:
    return access_level(user, project) is not None


def can_write_project(user, project: Project) -> bool:
    return access_level(user, project) in (WRITE, OWNER)


def get_project_for_user(request, pk, write: bool = False, share: bool = False) -> Project:
    """The project ``pk`` if ``request.user`` may see it, else :class:`Http404` (a stranger
    learns nothing, not even that the id exists).

    ``write=True`` (every form and POST endpoint): a member with read-only access gets
    :class:`PermissionDenied` (403). ``share=True``: only the owner may change the shares.
    The level is kept on the project as ``project.access``.
    """
    try:
        project = Project.objects.select_related("owner", "group").get(pk=pk)
    except (Project.DoesNotExist, ValueError, TypeError):
        raise Http404("No such project") from None
    level = access_level(getattr(request, "user", None), project)
    if level is None:
        raise Http404("No such project")
    if share and level != OWNER:
        raise PermissionDenied("Only the project's owner shares it.")
    if (write or share) and level not in (WRITE, OWNER):
        raise PermissionDenied("You have read-only access to this project: you can see everything in it, but not "
                               "start runs, drop data sets, comment, flag or approve.")
    project.access = level
    return project


def data_roots() -> list[str]:
    """The configured data roots, resolved (realpath)."""
    return [os.path.realpath(os.path.expanduser(str(r))) for r in settings.DATA_ROOTS if str(r).strip()]


def is_inside(path: str, root: str) -> bool:
    """True if the (already resolved) ``path`` is ``root`` or lies below it."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives, or a mix of absolute and relative
        return False


def resolve_data_path(path: str | os.PathLike) -> str:
    """Resolve ``path`` (symlinks and ``..`` included) and check it lies in a data root.

    A relative path is taken relative to the first data root. Returns the resolved
    absolute path; raises :class:`DataPathError` with a clear message otherwise.
    """
    text = os.fspath(path).strip() if path is not None else ""
    if not text:
        raise DataPathError("No data folder given")
    if "\x00" in text:
        raise DataPathError("The path contains a NUL character")
    roots = data_roots()
    if not roots:
        raise DataPathError("No data roots are configured (DATA_ROOTS)")
    expanded = os.path.expanduser(text)
    if not os.path.isabs(expanded):
        expanded = os.path.join(roots[0], expanded)
    real = os.path.realpath(expanded)
    if not any(is_inside(real, root) for root in roots):
        raise DataPathError(
            f"{text} is outside the allowed data roots ({os.pathsep.join(roots)})"
        )
    return real
