"""Template tags of the lab-group review (``{% load review %}``) for pages whose views
build no review context: the report page (``run_review``), the data-set pages
(``dataset_review``), and any page that hides its forms from read-only members
(``project_access``)."""

from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def project_access(context, project):
    """The request's user's :class:`review.Access` to ``project``."""
    from xtalweb.projects.review import access_for

    request = context.get("request")
    return access_for(getattr(request, "user", None), project)


@register.simple_tag(takes_context=True)
def run_review(context, run):
    from xtalweb.projects.review_context import run_review as build

    request = context.get("request")
    return build(getattr(request, "user", None), run)


@register.simple_tag
def dataset_review(project):
    from xtalweb.projects.review_context import dataset_review as build

    return build(project)


@register.filter
def get_item(mapping, key):
    """``mapping[key]`` or None."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None
