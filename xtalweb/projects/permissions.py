"""Who may see a project, and which folders may be imported.

* A project is visible to its owner and to the members of its lab group, nobody else
  (not even other logged-in users): every project view goes through
  :func:`get_project_for_user`, which answers 404 rather than 403 so that project ids
  of other groups are not revealed.
* A data folder must lie inside one of ``settings.DATA_ROOTS`` after resolving
  symlinks and ``..``: :func:`resolve_data_path`.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404

from .models import Project


class DataPathError(ValueError):
    """A path the user may not import from; ``str(e)`` is the one clear message."""


def visible_projects(user) -> QuerySet[Project]:
    """Projects ``user`` may see: owned, or shared with one of the user's groups."""
    if user is None or not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(Q(owner=user) | Q(group__in=user.groups.all())).distinct()


def can_view_project(user, project: Project) -> bool:
    if user is None or not user.is_authenticated:
        return False
    if project.owner_id == user.pk:
        return True
    return project.group_id is not None and user.groups.filter(pk=project.group_id).exists()


def get_project_for_user(request, pk) -> Project:
    """The project ``pk`` if ``request.user`` may see it, else :class:`Http404`."""
    try:
        project = Project.objects.select_related("owner", "group").get(pk=pk)
    except (Project.DoesNotExist, ValueError, TypeError):
        raise Http404("No such project") from None
    if not can_view_project(getattr(request, "user", None), project):
        raise Http404("No such project")
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
