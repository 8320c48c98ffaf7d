"""`xtal cosym → scale → merge → export` on a small reflection-level ensemble (issue 12):
the printed tables, the files (merged MTZ columns, one batch range per data set in the
unmerged MTZ, mmCIF rows), incremental scaling from two file pairs, and one-line errors."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from .conftest import check, run_xtal


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale_cli")
    check(run_xtal("simulate", "preset=insulin-24", "mode=reflections", "n_crystals=5", "n_weak=0",
                   "n_non_isomorphous=0", "n_damaged=0", "d_edge=2.2", "output_dir=.", cwd=folder))
    check(run_xtal("cosym", "integrated.expt", "integrated.refl", "stability=false", cwd=folder))
    proc = check(run_xtal("scale", "symmetrized.expt", "symmetrized.refl", cwd=folder))
    return folder, proc


def overall(text: str, label: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(label))
    return float(line[len(label):].split()[0])


def test_scale_prints_dials_tables(scaled):
    folder, proc = scaled
    out = proc.stdout
    assert "Merging statistics by resolution bin" in out and "Summary of merging statistics" in out
    assert overall(out, "Completeness") > 60
    assert overall(out, "CC half") > 0.98
    assert "Error model: a = " in out
    assert (folder / "scaled.expt").exists() and (folder / "scaled.refl").exists()


def test_merge_writes_an_mtz_that_reads_back(scaled):
    folder, _ = scaled
    proc = check(run_xtal("merge", "scaled.expt", "scaled.refl", "d_min=2.5", cwd=folder))
    mtz = gemmi.read_mtz_file(str(folder / "merged.mtz"))
    labels = {c.label: c.type for c in mtz.columns}
    for label, kind in (("IMEAN", "J"), ("SIGIMEAN", "Q"), ("I(+)", "K"), ("I(-)", "K"), ("F", "F"),
                        ("SIGF", "Q"), ("DANO", "D"), ("SIGDANO", "Q"), ("N", "I")):
        assert labels.get(label) == kind, label
    assert mtz.spacegroup.xhm() in ("I 2 3", "I 21 3")
    assert mtz.cell.a == pytest.approx(78.1, rel=0.01)
    assert mtz.resolution_high() >= 2.5 - 0.01  # d from the median cell
    n_unique = int(proc.stdout.split(" merged into ")[1].split()[0])
    assert mtz.nreflections == n_unique


def test_export_one_batch_range_per_data_set(scaled):
    folder, _ = scaled
    check(run_xtal("export", "scaled.expt", "scaled.refl", cwd=folder))
    mtz = gemmi.read_mtz_file(str(folder / "scaled_unmerged.mtz"))
    batches = np.array(mtz.column_with_label("BATCH"), dtype=int)
    ranges = sorted({(b // 100) for b in batches})
    assert len(ranges) == 5  # 50 images each: 1–50, 101–150, …
    assert len(mtz.batches) == 5 * 50
    doc = gemmi.cif.read(str(folder / "scaled.cif"))
    rows = doc.sole_block().find_loop("_diffrn_refln.intensity_net")
    assert len(rows) == mtz.nreflections


def test_incremental_scaling_from_two_file_pairs(scaled, tmp_path):
    """Three data sets scaled first; then the two others scaled against them."""
    from processing.io.expt import read_experiments, write_experiments
    from processing.io.refl import read_reflections, write_reflections

    folder, _ = scaled
    check(run_xtal("scale", str(folder / "symmetrized.expt"), str(folder / "symmetrized.refl"),
                   "exclude_datasets=3,4", cwd=tmp_path))
    experiments = read_experiments(str(folder / "symmetrized.expt"))
    table = read_reflections(str(folder / "symmetrized.refl"))
    new = table.select_on_experiment_identifiers([experiments[3].identifier, experiments[4].identifier])
    new.reset_ids()
    write_experiments(str(tmp_path / "new.expt"), type(experiments)([experiments[3], experiments[4]]))
    write_reflections(str(tmp_path / "new.refl"), new)
    proc = check(run_xtal("scale", "scaled.expt", "scaled.refl", "new.expt", "new.refl",
                          "output.experiments=all.expt", "output.reflections=all.refl", cwd=tmp_path))
    assert "3 data sets kept as scaled before" in proc.stdout
    assert len(read_experiments(str(tmp_path / "all.expt"))) == 5
    assert overall(proc.stdout, "CC half") > 0.98


def test_unscaled_input_is_one_line_error(scaled):
    folder, _ = scaled
    proc = run_xtal("merge", "symmetrized.expt", "symmetrized.refl", cwd=folder)
    assert proc.returncode == 1 and "not scaled" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_xtal("scale", "symmetrized.expt", cwd=folder)
    assert proc.returncode == 1 and "in pairs" in proc.stderr
    proc = run_xtal("scale", "symmetrized.expt", "symmetrized.refl", "exclude_datasets=7", cwd=folder)
    assert proc.returncode == 1 and "exclude_datasets" in proc.stderr
