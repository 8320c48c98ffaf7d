"""DIALS-style key=value parameters built into frozen dataclasses."""
from dataclasses import FrozenInstanceError, dataclass

import pytest

from processing.errors import XtalError
from processing.params import describe, from_strings, param, to_json
from processing.pipeline import ImportParams


@dataclass(frozen=True)
class Example:
    """An example."""

    d_min: float | None = param(None, "high-resolution limit (Å)")
    unit_cell: tuple[float, ...] | None = param(None, "a,b,c,alpha,beta,gamma")
    joint: bool = param(True, "index sweeps jointly")
    nproc: int = param(1, "processes")


def test_parse_dials_style_words():
    p = from_strings(Example, ["d_min=1.54", "unit_cell=67,67,67,109,109,109", "joint=false", "nproc=2"])
    assert p.d_min == 1.54 and p.unit_cell == (67.0, 67.0, 67.0, 109.0, 109.0, 109.0)
    assert p.joint is False and p.nproc == 2
    assert to_json(p)["unit_cell"] == [67.0, 67.0, 67.0, 109.0, 109.0, 109.0]
    with pytest.raises(FrozenInstanceError):
        p.nproc = 3


@pytest.mark.parametrize("word,message", [
    ("dmin=2", "unknown parameter 'dmin'"),
    ("nproc=two", "expected an integer"),
    ("d_min=nan", "not a number"),
    ("joint=maybe", "expected true or false"),
    ("1.5", "key=value"),
])
def test_bad_words_one_message(word, message):
    with pytest.raises(XtalError, match=message):
        from_strings(Example, [word])


def test_image_range_pair_and_describe():
    p = from_strings(ImportParams, ["image_range=1,20"], paths=("a",))
    assert p.image_range == (1, 20)
    with pytest.raises(XtalError, match="expected 2 comma-separated values"):
        from_strings(ImportParams, ["image_range=1,2,3"])
    names = [row[0] for row in describe(ImportParams)]
    assert names == ["paths", "image_range"]
