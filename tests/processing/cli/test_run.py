"""`xtal run` (issue 14, point 1): the tiny simulated images to merged intensities in one
command — every stage's DIALS-named file written, one summary at the end with a row per
sweep, the symmetry and the merging table; a wrong parameter is one line."""
from __future__ import annotations

import gemmi
import pytest

from .conftest import assert_one_line_error, check, run_xtal, table_rows


@pytest.fixture(scope="module")
def whole_run(tiny_spots, tmp_path_factory):
    folder = tmp_path_factory.mktemp("xtal_run")
    masters = sorted(str(p) for p in (tiny_spots.folder / "sim").glob("crystal_*_master.h5"))
    return folder, check(run_xtal("run", *masters, f"output_dir={folder}", cwd=folder))


def test_every_stage_writes_its_files(whole_run):
    folder, _ = whole_run
    for name in ("imported.expt", "strong.refl", "indexed.refl", "refined.expt", "integrated.refl",
                 "symmetrized.refl", "scaled.refl", "filtered.refl", "merged.mtz", "scaled_unmerged.mtz", "scaled.cif"):
        assert (folder / name).stat().st_size > 0, name
    mtz = gemmi.read_mtz_file(str(folder / "merged.mtz"))
    assert mtz.spacegroup.xhm() in ("I 2 3", "I 21 3") and mtz.cell.a == pytest.approx(78.1, rel=0.01)


def test_one_summary_at_the_end(whole_run):
    _, proc = whole_run
    out = proc.stdout.split("Summary", 1)[1]
    rows = table_rows(out, "% indexed")
    assert [r[0] for r in rows] == [f"crystal_{k:03d}_master.h5" for k in range(3)]
    assert all(float(r[2]) > 90 and int(r[6]) > 3000 and r[7] == "" for r in rows)
    assert "Laue group I m -3" in out and "3 of 3 data sets placed" in out
    cc_half = next(line for line in out.splitlines() if line.startswith("CC half")).split()[2]
    assert float(cc_half) > 0.95
    assert "merged.mtz" in out.splitlines()[-1]
    # the clusters of the filtered data: the whole ensemble is the first (largest) candidate
    clusters = table_rows(out.split("Clusters of the filtered data sets", 1)[1], "Completeness")
    assert clusters and int(clusters[0][1]) == 3 and float(clusters[0][6]) > 0.95


def test_a_wrong_parameter_is_one_line(tmp_path):
    proc = run_xtal("run", "x_master.h5", "joint=true", cwd=tmp_path)
    assert_one_line_error(proc, "joint: not a parameter of xtal run")
