"""Template tags of the steering pages, for pages whose views build no such context:
the project page's warning (a stage on the main line left out more than 10 % of its
data sets) and a report's overrides (``{% load steering %}``)."""

from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag
def leave_out_warnings(project):
    """The main line's runs that left out more than 10 % of the data sets they were given."""
    from xtalweb.projects.lineage import Lineage, leave_out_warnings as warnings

    lin = Lineage(project)
    return warnings(lin.line(lin.main_end()), lin=lin)


@register.simple_tag
def run_overrides(run):
    """``{"highlighted", "others"}``: the non-default parameters of ``run`` and its ancestors."""
    from xtalweb.reports.overrides import overrides_for

    return overrides_for(run)
