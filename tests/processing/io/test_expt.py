"""DIALS .expt round trip on DIALS-written files and clear errors on bad input."""
import json

import pytest

from processing.errors import XtalError
from processing.io.expt import read_experiments, write_experiments


@pytest.mark.parametrize("name", ["11_integrated.expt", "23_integrated.expt"])
def test_expt_round_trip_identical(real_data, tmp_path, name):
    src = real_data / "l_cysteine_narrow_wedge" / name
    el = read_experiments(str(src))
    out = tmp_path / "again.expt"
    write_experiments(str(out), el)
    el2 = read_experiments(str(out))
    a, b = json.loads(src.read_text()), json.loads(out.read_text())
    for key in ("beam", "detector", "goniometer", "scan", "crystal", "profile", "imageset"):
        assert a[key] == b[key], key
    assert [e.identifier for e in el2] == [e.identifier for e in el]
    assert el2[0].crystal.unit_cell == pytest.approx(el[0].crystal.unit_cell, abs=0)
    assert el2[0].scan.num_images == 10


def test_shared_models_written_once(real_data, tmp_path):
    el = read_experiments(str(real_data / "l_cysteine_narrow_wedge" / "11_integrated.expt"))
    el.append(type(el[0])(beam=el[0].beam, detector=el[0].detector, identifier="second"))
    write_experiments(str(tmp_path / "two.expt"), el)
    d = json.loads((tmp_path / "two.expt").read_text())
    assert len(d["beam"]) == 1 and len(d["detector"]) == 1 and len(d["experiment"]) == 2
    assert d["experiment"][1]["beam"] == 0 and "crystal" not in d["experiment"][1]


@pytest.mark.parametrize("content,message", [
    (None, "no such experiment list"),
    (b"", "not JSON, or truncated"),
    (b'{"__id__": "ExperimentList", "experiment": [{"beam": 3', "not JSON, or truncated"),
    (b'{"__id__": "Something"}', "not a DIALS experiment list"),
    (b'{"__id__": "ExperimentList", "experiment": [{"beam": 2}], "beam": []}', "malformed"),
])
def test_bad_expt_one_clear_message(tmp_path, content, message):
    p = tmp_path / "bad.expt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(XtalError, match=message):
        read_experiments(str(p))


def test_write_is_atomic_and_leaves_no_temporary(tmp_path, real_data):
    el = read_experiments(str(real_data / "l_cysteine_narrow_wedge" / "11_integrated.expt"))
    write_experiments(str(tmp_path / "a.expt"), el)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.expt"]
