"""A stage declared only in the registry works on the command line (issue 10): parse
with its limits → run → print its summary (strict: NaN shows as None) → exit status."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from processing import stages
from processing.cli.main import main
from processing.params import StageParams, param


@dataclass(frozen=True)
class ToyParams(StageParams):
    """Parameters of a toy stage."""

    x: int = param(1, "how many", ge=0)


def _run_toy(experiments, reflections, params, progress=None):
    return experiments, reflections, {"n": params.x * 3, "mean": float("nan")}


@pytest.fixture
def toy(monkeypatch):
    stage = stages.Stage("toy", "toy", "a stage with no command module", ToyParams, _run_toy,
                         inputs=(), outputs=(), per_sweep=False, previous=None)
    monkeypatch.setitem(stages.STAGES, "toy", stage)
    return stage


def test_a_registry_entry_is_a_command(toy, capsys):
    assert main(["-h"]) == 0 and "  toy " in capsys.readouterr().out
    assert main(["toy", "-h"]) == 0
    assert "  x = 1\n      how many (≥ 0)" in capsys.readouterr().out
    assert main(["toy", "x=2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n: 6", "mean: None"]
    assert main(["toy", "x=-1"]) == 1
    err = capsys.readouterr().err
    assert err == "xtal toy: error: x=-1: must be ≥ 0\n"
