"""`xtal import` / `xtal show` end to end: summaries, image_range, clear errors, nothing written."""
import os

import h5py
import numpy as np
import pytest

from processing.cli.main import main
from processing.io.expt import read_experiments
from processing.io.nxmx import write_nxmx
from tests.processing.io.test_nxmx import synthetic_images, sweep_models


@pytest.fixture
def nexus_sweep(tmp_path):
    paths = write_nxmx(str(tmp_path / "xtal_1_master.h5"), *sweep_models(), iter(synthetic_images()),
                       images_per_file=2)
    return paths


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_import_nexus_sweep_and_image_range(tmp_path, nexus_sweep, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(["import", nexus_sweep[0], "image_range=2,4"], capsys)
    assert rc == 0, err
    assert "format: FormatNXmx" in out and "num images: 3" in out and "sweep:    1" in out
    el = read_experiments("imported.expt")
    assert len(el) == 1
    scan = el[0].scan
    assert scan.image_range == (2, 4)
    assert scan.oscillation == pytest.approx((10.25, 0.25))  # start of image 2
    assert el[0].imageset.single_file_indices == [1, 2, 3]
    rc, out, err = run(["show", "imported.expt"], capsys)
    assert rc == 0 and "oscillation:   {10.25,0.25}" in out and "image range:   {2,4}" in out


def test_import_real_cbf_images_folder(real_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(["import", str(real_data / "images"), "output=two.expt"], capsys)
    assert rc == 0, err
    el = read_experiments("two.expt")
    # two single images from different detectors: two one-image sweeps
    assert len(el) == 2 and "num images: 2" in out
    by_size = {e.detector[0].image_size: e for e in el}
    smargon = by_size[(2463, 2527)]
    assert smargon.beam.wavelength == pytest.approx(0.97625)
    assert smargon.detector[0].get_beam_centre_px(smargon.beam.s0) == pytest.approx((1229.30, 1200.47), abs=0.006)
    assert smargon.scan.oscillation == pytest.approx((45.0, 0.1))


def _expect_failure(argv, capsys, tmp_path, message):
    before = sorted(os.listdir(tmp_path))
    rc, out, err = run(argv, capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before  # nothing written


def test_missing_data_file_behind_external_link(tmp_path, nexus_sweep, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.remove(nexus_sweep[2])
    _expect_failure(["import", nexus_sweep[0]], capsys, tmp_path,
                    "xtal_1_data_000002.h5 (external link from")


def test_truncated_cbf(real_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = (real_data / "images" / "DLS_I03_smargon_0001.cbf").read_bytes()
    (tmp_path / "cut_0001.cbf").write_bytes(raw[: len(raw) // 2])
    _expect_failure(["import", "cut_0001.cbf"], capsys, tmp_path, "CBF file is truncated")


def test_non_image_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes_0001.cbf").write_text("not an image\n")
    _expect_failure(["import", "notes_0001.cbf"], capsys, tmp_path, "notes_0001.cbf")


def test_hdf5_without_nxmx_entry(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with h5py.File(tmp_path / "plain_master.h5", "w") as h:
        h["entry/data"] = np.zeros((2, 3))
    _expect_failure(["import", "plain_master.h5"], capsys, tmp_path, "has no NXmx entry")


@pytest.mark.parametrize("words,message", [
    (["image_range=5,2"], "image_range=5,2 is not a valid range"),
    (["image_range=20,30"], "lies outside the images 1–5"),
    (["imagerange=1,2"], "unknown parameter 'imagerange'"),
])
def test_bad_parameters(tmp_path, nexus_sweep, capsys, monkeypatch, words, message):
    monkeypatch.chdir(tmp_path)
    _expect_failure(["import", nexus_sweep[0], *words], capsys, tmp_path, message)


def test_missing_input(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _expect_failure(["import", "nothing_here.cbf"], capsys, tmp_path, "no such file or folder")

