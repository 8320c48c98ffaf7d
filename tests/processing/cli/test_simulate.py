"""`xtal simulate` on the command line: files written, truth consistent, one-line errors."""
import json

import pytest

from processing.cli.main import main
from processing.io.expt import read_experiments


def test_simulate_writes_sweeps_and_truth(tmp_path, capsys):
    rc = main(["simulate", "preset=tiny", f"output_dir={tmp_path}", "n_crystals=1", "n_images=2"])
    out = capsys.readouterr().out
    assert rc == 0 and "Simulated 1 crystal(s)" in out
    truth = json.loads((tmp_path / "truth.json").read_text())
    el = read_experiments(str(tmp_path / "truth.expt"))
    assert len(el) == 1 and el[0].scan.num_images == 2
    assert el[0].crystal.unit_cell[0] == pytest.approx(truth["truth"]["crystals"][0]["unit_cell"][0], rel=1e-7)
    assert (tmp_path / "crystal_000_master.h5").exists()


@pytest.mark.parametrize("words,message", [
    (["preset=huge"], "unknown preset 'huge'"),
    (["unit_cell=78,79,78,90,90,90"], "does not fit space group I 21 3"),
    (["n_images=0"], "at least one image"),
    (["unit_cell=-78,78,78,90,90,90"], "unit_cell"),
])
def test_simulate_bad_parameters(tmp_path, capsys, words, message):
    rc = main(["simulate", f"output_dir={tmp_path / 'out'}", *words])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()
