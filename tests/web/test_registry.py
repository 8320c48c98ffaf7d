"""One declaration per stage (issue 10): every stage of the science's registry has a
command line, a web form (import: the new-project form), a StageRun choice and a report,
and the web's own options name only real parameters."""

from __future__ import annotations

import dataclasses

import pytest

from processing.cli.main import commands, main
from processing.stages import STAGES, producer
from xtalweb.projects.models import StageRun, stage_choices
from xtalweb.projects.stages import form_fields, form_stages
from xtalweb.reports.registry import REPORTS

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", list(STAGES))
def test_every_stage_is_declared_everywhere(name, capsys):
    stage = STAGES[name]
    # the command line: `xtal <stage> -h` lists every parameter and the outputs
    assert name in commands()
    assert main([name, "-h"]) == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(stage.params):
        assert f"  {f.name} = " in text
    for out in stage.outputs:
        assert f"= {out}" in text
    # a StageRun may be of this stage, with its title
    assert (name, stage.title) in stage_choices()
    assert StageRun(stage=name).get_stage_display() == stage.title
    # a report, and web options that name real parameters
    web = REPORTS[name]
    names = {f.name for f in dataclasses.fields(stage.params)}
    assert web.hidden <= names and set(web.web_defaults) <= names
    # a form on the project page (import's is the new-project form)
    if stage.previous is None:
        assert name == "import"
    else:
        assert name in form_stages()
        assert {f.name for f in form_fields(name)} == names - web.hidden
        assert STAGES[stage.previous].per_sweep or stage.previous == "import" or not stage.per_sweep
    # inputs are outputs of earlier stages; outputs are DIALS's names
    for f in stage.inputs:
        assert list(STAGES).index(producer(f)) < list(STAGES).index(name)
    assert all(o.endswith((".expt", ".refl", ".mtz", ".cif")) for o in stage.outputs)


def test_nothing_else_lists_the_stages():
    assert set(REPORTS.keys()) == set(STAGES)
    assert [c for c, _ in stage_choices()] == ["simulate", *STAGES]
    assert list(form_stages()) == [n for n, s in STAGES.items() if s.previous]
