"""`xtal refine` on the command line: the RMSD table, refined cells against the truth, errors."""
import pytest

from processing.io.expt import read_experiments
from processing.io.refl import read_reflections

from .conftest import assert_one_line_error, run_xtal, table_rows, true_cell


def test_refine_rmsds_by_experiment(refined):
    out = refined.proc.stdout
    assert "RMSDs by experiment:" in out
    rows = table_rows(out, "RMSD_X")
    assert [r[0] for r in rows] == ["0", "1", "2"]
    for _, nref, rmsd_x, rmsd_y, rmsd_z in rows:
        assert int(nref) > 2000
        # simulated centroids: ~0.02 px and ~0.2 images today
        assert float(rmsd_x) < 0.1 and float(rmsd_y) < 0.1 and float(rmsd_z) < 0.5


def test_refine_writes_files_with_true_cells(refined, truth):
    experiments = read_experiments(refined.path("refined.expt"))
    assert len(experiments) == 3
    assert len(read_reflections(refined.path("refined.refl"))) > 10000
    for e in experiments:
        a_true = true_cell(truth, e)[0]
        assert e.crystal.unit_cell[:3] == pytest.approx([a_true] * 3, rel=1e-3)


def test_refine_missing_experiment_file(indexed, tmp_path):
    proc = run_xtal("refine", "nowhere.expt", indexed.path("indexed.refl"), cwd=tmp_path)
    assert_one_line_error(proc, "nowhere.expt")
    assert list(tmp_path.iterdir()) == []
