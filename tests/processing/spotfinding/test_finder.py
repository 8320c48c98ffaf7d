"""Spot finding: DIALS's threshold and spots on real images, the simulated `tiny` set
against its truth, 3-D labelling and centroids on synthetic sweeps, bad input."""
from __future__ import annotations

import csv
import os
import shutil

import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.images import open_image_file
from processing.models import Beam, Detector, Experiment, ImageSource, Panel, Scan
from processing.params import from_strings
from processing.reflections import Flags
from processing.spotfinding import DispersionThreshold, FindSpotsParams, find_spots, run_find_spots
from processing.spotfinding.masks import ice_ring_d_ranges, pixel_resolution, static_panel_mask
from processing.spotfinding.regions import PanelLabeller

REAL_IMAGES = ("DLS_I03_smargon_0001", "dlsnxs2cbf_therm_0001")


# --- helpers ----------------------------------------------------------------------------

def _experiment_from_file(path, image_range=None, template=None):
    f = open_image_file(path)
    beam, detector, gonio, scan = f.models()
    if image_range is not None:
        scan = Scan(image_range=image_range, oscillation=scan.oscillation)
    src = ImageSource(kind="ImageSequence", template=template or path)
    return Experiment(beam=beam, detector=detector, goniometer=gonio, scan=scan, imageset=src)


class FakeReader:
    """Images from a list of arrays; ``bad`` indices raise like an unreadable file."""

    def __init__(self, images, mask=None, bad=()):
        self.images = images
        self.mask = mask if mask is not None else np.ones(images[0].shape, bool)
        self.bad = set(bad)

    def __len__(self):
        return len(self.images)

    def get_raw_data(self, i):
        if i in self.bad:
            raise OSError("truncated file")
        return (self.images[i],)

    def get_mask(self, i=0):
        return (self.mask,)

    def path_of(self, i):
        return f"/data/sweep_{i + 1:04d}.cbf"


def _synthetic_sweep(spots, n_images=8, shape=(120, 160), background=1.0, seed=0, oscillation=0.1):
    """Poisson images with Gaussian spots (x, y, z, sigma_xy, sigma_z, counts)."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx] + 0.5
    images = []
    for k in range(n_images):
        lam = np.full(shape, background)
        for x, y, z, s, sz, counts in spots:
            # fraction of the spot on image k (Gaussian in z integrated over [k, k+1))
            from math import erf, sqrt
            f = 0.5 * (erf((k + 1 - z) / (sqrt(2) * sz)) - erf((k - z) / (sqrt(2) * sz)))
            lam += counts * f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) / (2 * np.pi * s * s)
        images.append(rng.poisson(lam).astype(np.int32))
    panel = Panel(image_size=(nx, ny), pixel_size=(0.1, 0.1), trusted_range=(-1, 1e6),
                  origin=np.array([-8.0, 6.0, -100.0]))
    e = Experiment(beam=Beam(wavelength=1.0), detector=Detector([panel]),
                   scan=Scan(image_range=(1, n_images), oscillation=(0.0, oscillation)),
                   imageset=ImageSource(kind="ImageSequence", template="/data/sweep_####.cbf"))
    from processing.models import Goniometer
    e.goniometer = Goniometer()
    return e, images


def _dials_csv(path):
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(r[k]) for k in ("x_px", "y_px", "z_px", "intensity")] for r in rows])


# --- real images against DIALS --------------------------------------------------------------

@pytest.mark.parametrize("name", REAL_IMAGES)
def test_real_image_spots_match_dials(real_data, name):
    path = real_data / "images" / f"{name}.cbf"
    ref_path = real_data / "images" / f"{name}.dials_spots.csv"
    if not path.exists() or not ref_path.exists():
        pytest.skip(f"{path.name} or its DIALS spots are absent")
    ref = _dials_csv(ref_path)
    e = _experiment_from_file(str(path))
    from processing.io.images import open_imageset
    table, summary = find_spots(e, open_imageset(e.imageset, e.scan), FindSpotsParams())
    xyz = table["xyzobs.px.value"]
    assert abs(len(table) - len(ref)) <= 0.05 * len(ref)
    d = np.linalg.norm(xyz[:, None, :] - ref[None, :, :3], axis=2)
    nearest = d.argmin(axis=0)
    matched = d[nearest, np.arange(len(ref))] < 1.0
    assert matched.mean() >= 0.95
    # DIALS's CSV has 3 decimals: centroids agree to its rounding, sums exactly
    assert np.max(d[nearest[matched], np.flatnonzero(matched)]) < 2e-3
    np.testing.assert_array_equal(table["intensity.sum.value"][nearest[matched]], ref[matched, 3])
    np.testing.assert_array_equal(table["intensity.sum.variance"], np.abs(table["intensity.sum.value"]))
    assert np.all(table["flags"] == int(Flags.strong))
    assert summary["labelling"] == "3d" and summary["min_spot_size"] == 3


def test_threshold_is_dials_dispersion_extended_on_a_small_patch(real_data):
    """Hand-checkable: the strong pixels of a Pilatus patch, both algorithms."""
    path = real_data / "images" / "DLS_I03_smargon_0001.cbf"
    if not path.exists():
        pytest.skip("Pilatus image absent")
    f = open_image_file(str(path))
    im = f.get_raw_data(0)[0]
    mask = f.get_mask()[0]
    tr = f.models()[1][0].trusted_range
    ext = DispersionThreshold().threshold(im, mask, tr)
    plain = DispersionThreshold(extended=False).threshold(im, mask, tr)
    # DIALS 3.12 on this image: 1108 strong pixels (extended), 725 (plain dispersion)
    assert ext.sum() == 1108
    assert plain.sum() == 725
    assert not np.any(ext & ~mask)


# --- simulated truth -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tiny_seed1):
    out = tiny_seed1[0]
    from processing.io.expt import read_experiments
    return out, read_experiments(str(out / "truth.expt"))


def test_tiny_finds_true_reflections(tiny):
    from scipy.ndimage import minimum_filter
    from scipy.spatial import cKDTree

    from processing.io.images import open_imageset
    from processing.io.refl import read_reflections

    out, experiments = tiny
    table, summary = run_find_spots(experiments, FindSpotsParams())
    assert set(np.unique(table["id"])) == {0, 1, 2}
    assert table.experiment_identifiers == {k: e.identifier for k, e in enumerate(experiments)}
    for k, e in enumerate(experiments):
        truth = read_reflections(str(out / f"truth_reflections_{k:03d}.refl"))
        reader = open_imageset(e.imageset, e.scan)
        mask = reader.get_mask()[0]
        im = reader.get_raw_data(0)[0]
        bg = float(np.mean(np.clip(im[mask], 0, 50)))
        xyz, inten = truth["xyzcal.px"], truth["intensity.true.value"]
        area = np.pi * (3 * truth["sigma_px"]) ** 2 * np.maximum(1, 6 * truth["sigma_z"])
        i_over_sigma = inten / np.sqrt(inten + bg * area)
        nx, ny = e.detector[0].image_size
        xi, yi = np.floor(xyz[:, 0]).astype(int), np.floor(xyz[:, 1]).astype(int)
        inside = (xi >= 3) & (xi < nx - 3) & (yi >= 3) & (yi < ny - 3) & (xyz[:, 2] > 0) & (xyz[:, 2] < 10)
        clear = minimum_filter(mask.astype(np.uint8), size=7).astype(bool)  # no masked pixel nearby
        usable = np.zeros(len(xyz), bool)
        usable[inside] = clear[yi[inside], xi[inside]]
        sel = usable & (i_over_sigma > 5)
        assert sel.sum() > 1000
        obs = table["xyzobs.px.value"][table["id"] == k]
        dist, j = cKDTree(obs[:, :2]).query(xyz[:, :2])
        found = (dist < 2) & (np.abs(obs[j, 2] - xyz[:, 2]) < 2)
        assert found[sel].mean() >= 0.98
        full = sel & found & (truth["partiality"] > 0.99)
        assert np.median(dist[full]) < 0.2
        assert summary["experiments"][k]["n_spots"] == int((table["id"] == k).sum())


def test_tiny_parallel_equals_serial(tiny):
    _, experiments = tiny
    e = experiments[:1]
    serial, s1 = run_find_spots(e, FindSpotsParams(nproc=1))
    parallel, s2 = run_find_spots(e, FindSpotsParams(nproc=2))
    assert s2["experiments"][0]["nproc"] == 2
    assert len(serial) == len(parallel) > 1000
    for name in ("bbox", "xyzobs.px.value", "xyzobs.px.variance", "intensity.sum.value", "n_signal"):
        np.testing.assert_array_equal(serial[name], parallel[name])
    assert [r["n_strong_pixels"] for r in s1["experiments"][0]["per_image"]] == \
        [r["n_strong_pixels"] for r in s2["experiments"][0]["per_image"]]


# --- synthetic sweeps: labelling and centroids -------------------------------------------

def test_spot_across_images_is_one_3d_spot_and_2d_splits_it():
    spots = [(40.3, 50.7, 3.6, 1.2, 0.8, 3000.0), (110.2, 80.4, 2.2, 1.0, 0.4, 1500.0)]
    e, images = _synthetic_sweep(spots, background=0.5, seed=3)
    t3, s3 = find_spots(e, FakeReader(images), FindSpotsParams())
    assert s3["labelling"] == "3d"
    assert len(t3) == 2
    xyz = t3["xyzobs.px.value"]
    order = np.argsort(xyz[:, 0])
    np.testing.assert_allclose(xyz[order, :2], [[40.3, 50.7], [110.2, 80.4]], atol=0.15)
    np.testing.assert_allclose(xyz[order, 2], [3.6, 2.2], atol=0.2)
    bbox = t3["bbox"][order[0]]
    assert bbox[5] - bbox[4] >= 3  # the first spot spans at least 3 images
    assert t3["n_signal"][order[0]] > t3["n_signal"][order[1]] >= 3
    t2, s2 = find_spots(e, FakeReader(images), FindSpotsParams(force_2d=True))
    assert s2["labelling"] == "2d"
    assert len(t2) > len(t3)
    assert np.all(t2["bbox"][:, 5] - t2["bbox"][:, 4] == 1)


def test_labeller_connectivity_centroid_and_single_pixel_variance():
    width = 10
    lab = PanelLabeller(panel=0, width=width, twod=False, min_spot_size=1, max_spot_size=100)
    # frame 0: an L of 3 pixels (values 1, 2, 3) and a diagonal neighbour (not connected)
    idx0 = np.array([2 * width + 2, 2 * width + 3, 3 * width + 2, 4 * width + 3])
    lab.add(0, idx0, np.array([1, 2, 3, 5], np.float32))
    # frame 1: the same (2, 2) pixel again -> joins the L in 3-D; a lone pixel elsewhere
    lab.add(1, np.array([2 * width + 2, 8 * width + 8]), np.array([4, 7], np.float32))
    lab.finish()
    spots = lab.take()
    assert sorted(spots["n_pix"].tolist()) == [1, 1, 4]
    big = int(np.flatnonzero(spots["n_pix"] == 4)[0])
    # Σv = 10; x = (1*2.5 + 2*3.5 + 3*2.5 + 4*2.5)/10, y = (1*2.5+2*2.5+3*3.5+4*2.5)/10
    np.testing.assert_allclose(spots["xyz"][big], [2.7, 2.8, (6 * 0.5 + 4 * 1.5) / 10])
    assert spots["isum"][big] == 10.0
    assert spots["bbox"][big].tolist() == [2, 4, 2, 4, 0, 2]
    single = np.flatnonzero(spots["n_pix"] == 1)
    np.testing.assert_allclose(spots["var"][single], 1.0 / 12.0)
    # x variance of the big spot, DIALS's unbiased formula + 1/12
    w = np.array([1, 2, 3, 4.0])
    x = np.array([2.5, 3.5, 2.5, 2.5])
    uv = np.sum(w * (x - 2.7) ** 2) * w.sum() / (w.sum() ** 2 - np.sum(w * w))
    assert spots["var"][big][0] == pytest.approx(uv / w.sum() + 1 / 12)


def test_masks_trusted_range_and_rectangles():
    e, images = _synthetic_sweep([(40.0, 50.0, 3.5, 1.2, 0.8, 3000.0)], background=0.5, seed=5)
    e.detector[0].mask = [[30, 40, 50, 60]]  # covers the spot
    t, _ = find_spots(e, FakeReader(images), FindSpotsParams())
    assert len(t) == 0
    # trusted range (lo < v < hi, as dxtbx): pixels at or above hi are never strong
    im = images[3]
    th = DispersionThreshold()
    idx_all, val_all = th.strong_pixels(im, np.ones(im.shape, bool), (-1.0, 1e6))
    idx_tr, val_tr = th.strong_pixels(im, np.ones(im.shape, bool), (-1.0, 60.0))
    assert val_all.max() >= 60
    assert len(idx_tr) < len(idx_all)
    assert np.all(val_tr < 60)


def test_resolution_and_ice_ring_masks():
    panel = Panel(image_size=(200, 200), pixel_size=(0.5, 0.5), origin=np.array([-50.0, 50.0, -100.0]))
    beam = Beam(wavelength=1.0)
    d = pixel_resolution(panel, beam.s0)
    m = static_panel_mask(panel, beam, d_min=2.0, d_max=10.0)
    assert not m[d <= 2.0].any() and not m[d >= 10.0].any()
    assert m[(d > 2.0) & (d < 10.0)].all()
    rings = ice_ring_d_ranges(2.0)
    centres = sorted((1 / np.sqrt(0.5 * (1 / a ** 2 + 1 / b ** 2)) for a, b in rings), reverse=True)
    # hexagonal ice: 100, 002, 101 at 3.895, 3.669, 3.441 Å
    np.testing.assert_allclose(centres[:3], [3.8953, 3.669, 3.4418], atol=2e-3)
    mi = static_panel_mask(panel, beam, ice_rings=True)
    ring = (d > rings[0][0]) & (d < rings[0][1])
    assert ring.any() and not mi[ring].any()


# --- bad input -----------------------------------------------------------------------------

def test_unreadable_image_mid_sweep_is_named():
    e, images = _synthetic_sweep([(40.0, 50.0, 3.5, 1.2, 0.8, 3000.0)], seed=2)
    with pytest.raises(XtalError, match=r"image 5 \(index 4\) from /data/sweep_0005.cbf.*truncated"):
        find_spots(e, FakeReader(images, bad={4}), FindSpotsParams())


def test_truncated_cbf_mid_sweep_cli_writes_nothing(real_data, tmp_path, monkeypatch):
    src = real_data / "images" / "DLS_I03_smargon_0001.cbf"
    if not src.exists():
        pytest.skip("Pilatus image absent")
    for n in (1, 2, 3):
        shutil.copy(src, tmp_path / f"x_{n:04d}.cbf")
    raw = (tmp_path / "x_0002.cbf").read_bytes()
    (tmp_path / "x_0002.cbf").write_bytes(raw[: len(raw) // 2])
    e = _experiment_from_file(str(tmp_path / "x_0001.cbf"), image_range=(1, 3),
                              template=str(tmp_path / "x_####.cbf"))
    from processing.io.expt import write_experiments
    from processing.models import ExperimentList
    write_experiments(str(tmp_path / "imported.expt"), ExperimentList([e]))
    from processing.cli import find_spots as cli
    monkeypatch.chdir(tmp_path)
    with pytest.raises(XtalError, match=r"image 2 \(index 1\) from .*x_0002\.cbf"):
        cli.run(["imported.expt"])
    assert not os.path.exists(tmp_path / "strong.refl")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("words, message", [
    (["kernel_size=0"], "kernel_size"),
    (["kernel_size=0,0"], "kernel_size"),
    (["sigma_strong=-1"], "sigma_strong"),
    (["sigma_background=-0.5"], "sigma_background"),
    (["min_local=100"], "min_local"),
    (["gain=0"], "gain"),
    (["threshold_algorithm=otsu"], "threshold_algorithm"),
    (["max_strong_pixel_fraction=2"], "max_strong_pixel_fraction"),
    (["d_min=3", "d_max=2"], "d_min"),
    (["scan_range=5,2"], "scan_range"),
    (["nproc=0"], "nproc"),
])
def test_impossible_parameters(words, message):
    with pytest.raises(XtalError, match=message):
        from_strings(FindSpotsParams, words)


def test_too_many_strong_pixels_and_scan_range_errors():
    e, images = _synthetic_sweep([(40.0, 50.0, 3.5, 1.5, 0.8, 30000.0)], seed=4)
    with pytest.raises(XtalError, match=r"image \d+: \d+ strong pixels found, more than the maximum allowed"):
        find_spots(e, FakeReader(images), FindSpotsParams(max_strong_pixel_fraction=0.0001))
    with pytest.raises(XtalError, match="within the image range 1..8"):
        find_spots(e, FakeReader(images), FindSpotsParams(scan_range=(2, 20)))
    t, s = find_spots(e, FakeReader(images), FindSpotsParams(scan_range=(3, 5)))
    assert [r["image"] for r in s["per_image"]] == [3, 4, 5]
    assert np.all((t["bbox"][:, 4] >= 2) & (t["bbox"][:, 5] <= 5))
