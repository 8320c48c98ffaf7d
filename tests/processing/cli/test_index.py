"""`xtal index` on the command line: files, % indexed per sweep, cells in the right setting, errors."""
import pytest

from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.reflections import Flags

from .conftest import assert_one_line_error, run_xtal, table_rows, true_cell


def test_index_writes_files_and_indexes_every_sweep(indexed):
    experiments = read_experiments(indexed.path("indexed.expt"))
    table = read_reflections(indexed.path("indexed.refl"))
    assert len(experiments) == 3
    rows = table_rows(indexed.proc.stdout, "% indexed")
    assert [r[0] for r in rows] == ["0", "1", "2"]
    for _, n_indexed, _, percent in rows:
        assert float(percent.rstrip("%")) >= 95.0, rows  # tiny gives 100.0 % on every sweep
        assert int(n_indexed) > 4000
    n_flagged = int(table.get_flags(Flags.indexed).sum())
    assert n_flagged == sum(int(r[1]) for r in rows)
    assert "3 of 3 sweeps indexed" in indexed.proc.stdout


def test_index_cells_match_truth_in_cubic_setting(indexed, truth):
    for e in read_experiments(indexed.path("indexed.expt")):
        cell = e.crystal.unit_cell
        a_true = true_cell(truth, e)[0]
        assert cell[:3] == pytest.approx([a_true] * 3, rel=0.01)  # the primitive cell would be 67.7 Å
        assert cell[3:] == pytest.approx([90.0] * 3, abs=0.01)
        assert e.crystal.space_group_symbol == "I 2 3"  # the lowest space group of cI


def test_index_rmsds_by_experiment(indexed):
    rows = table_rows(indexed.proc.stdout, "RMSD_X")
    assert len(rows) == 3
    for _, _, rmsd_x, rmsd_y, rmsd_z in rows:
        assert float(rmsd_x) < 0.1 and float(rmsd_y) < 0.1 and float(rmsd_z) < 0.5


def test_index_missing_reflection_file(tiny_spots, tmp_path):
    proc = run_xtal("index", tiny_spots.path("imported.expt"), "nowhere.refl", cwd=tmp_path)
    assert_one_line_error(proc, "nowhere.refl")
    assert list(tmp_path.iterdir()) == []  # nothing written
