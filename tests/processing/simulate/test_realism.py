"""Simulator realism (issue 16): header geometry errors, blur, gain, hot/dead pixels and
dead modules, ice and solvent/air scatter, zingers, flux jitter, and the microcrystals
preset with several lattices per sweep. Each option is checked on the rendered images
against what it should do; small sizes (the tiny detector, one sweep, a few images)."""
import functools
import json
import math

import numpy as np
import pytest

from processing.errors import XtalError
from processing.importer import ImportParams, run_import
from processing.io.expt import read_experiments
from processing.io.images import open_image_file
from processing.io.refl import read_reflections
from processing.simulate import SimulateParams, run_simulate, simulate
from processing.simulate.defects import MASK_DEAD, MASK_HOT, gain_map
from processing.simulate.instrument import module_slices
from processing.simulate.params import resolve
from processing.spotfinding.masks import pixel_resolution

# few atoms and a modest resolution keep the structure factors cheap
ONE = {"preset": "tiny", "n_crystals": 1, "n_images": 2, "seed": 4, "n_atoms": 30, "d_min": 2.5}
QUIET = dict(ONE, signal=1e-6, d_min=10.0)  # no spots to speak of: the background and the detector alone


@functools.lru_cache(maxsize=8)
def _render(items):
    r = simulate(SimulateParams(**dict(items)))
    return r, [np.array(list(s.images()), dtype=np.float64) for s in r.sweeps]


def render(**kw):
    """The simulation and its images (float, one stack per sweep); the same call is made once."""
    return _render(tuple(sorted(kw.items())))


def test_blur_widens_spots_by_psf_sigma():
    base = dict(ONE, n_images=6, background=0.0, signal=2e5)
    r0, (im0,) = render(**base)
    r1, (im1,) = render(**base, psf_sigma=1.0)
    t = r0.sweeps[0].table
    assert np.allclose(r1.sweeps[0].table["sigma_px"] ** 2 - t["sigma_px"] ** 2, 1.0)
    x, y = t["xyzcal.px"][:, 0], t["xyzcal.px"][:, 1]
    # bright, fully recorded, isolated spots away from edges and gaps
    ok = (t["partiality"] > 0.99) & (x > 10) & (x < 1018) & (y > 10) & (y < 1052) & (np.abs(y - 531) > 30)
    ok &= t["intensity.true.value"] > 3000
    near = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) < 14
    ok &= near.sum(axis=1) == 1
    idx = np.nonzero(ok)[0][:40]
    assert len(idx) >= 15

    def variance(stack, i):
        xi, yi = int(x[i]), int(y[i])
        box = stack[:, yi - 7:yi + 8, xi - 7:xi + 8].sum(axis=0)
        gy, gx = np.mgrid[yi - 7:yi + 8, xi - 7:xi + 8] + 0.5
        w = box / box.sum()
        return ((w * (gx - (w * gx).sum()) ** 2).sum() + (w * (gy - (w * gy).sum()) ** 2).sum()) / 2

    widen = [variance(im1, i) - variance(im0, i) for i in idx]
    assert np.median(widen) == pytest.approx(1.0, abs=0.1)  # σ² grows by psf_sigma² (px²)


def test_gain_map_has_the_requested_sigma_and_shows_in_images():
    g = gain_map((600, 500), 0.05, seed=3)
    assert np.std(g) == pytest.approx(0.05, rel=0.02) and np.mean(g) == pytest.approx(1.0, abs=1e-3)
    assert np.array_equal(g, gain_map((600, 500), 0.05, seed=3))
    assert not np.array_equal(g, gain_map((600, 500), 0.05, seed=4))
    flat = dict(QUIET, background=2000.0)
    r0, (im0,) = render(**flat)
    _, (im1,) = render(**flat, gain_sigma=0.05)
    expected = r0.sweeps[0]._background[None] * r0.sweeps[0].bg_scale
    live = (expected > 500) & ~r0.sweeps[0]._gap[None]
    live = np.broadcast_to(live, im0.shape)
    v0 = np.var((im0 / np.maximum(expected, 1))[live])
    v1 = np.var((im1 / np.maximum(expected, 1))[live])
    assert v1 - v0 == pytest.approx(0.05 ** 2, rel=0.1)  # the gain variance adds to Poisson's
    # the same map on every sweep of a data set
    r2 = simulate(SimulateParams(**dict(flat, n_crystals=2), gain_sigma=0.05))
    assert r2.sweeps[0].defects.gain is r2.sweeps[1].defects.gain


@pytest.mark.parametrize("masked", [True, False])
def test_hot_dead_pixels_dead_module_and_mask(tmp_path, masked):
    _, summary = run_simulate(SimulateParams(**QUIET, output_dir=str(tmp_path), hot_pixel_fraction=1e-4,
                                             dead_pixel_fraction=2e-4, n_dead_modules=1, hot_pixel_counts=12345,
                                             background=5.0, mask_defects=masked))
    d = np.load(tmp_path / "truth_defects.npz")
    hot, dead, modules = d["hot_xy"], d["dead_xy"], d["dead_modules"]
    module = np.zeros((1062, 1028), bool)
    module[module_slices("eiger1m")[int(modules[0])]] = True
    live = 1 - module.mean() - 38 / 1062  # drawn over the detector, kept off the dead module and the gap
    assert len(hot) == pytest.approx(1e-4 * 1028 * 1062 * live, abs=20)
    assert len(dead) == pytest.approx(2e-4 * 1028 * 1062 * live, abs=30)
    assert not module[hot[:, 1], hot[:, 0]].any() and not module[dead[:, 1], dead[:, 0]].any()
    assert summary["detector_defects"]["n_hot_pixels"] == len(hot)
    f = open_image_file(str(tmp_path / "crystal_000_master.h5"))
    for i in range(2):
        img = f.get_raw_data(i)[0]
        assert np.all(img[hot[:, 1], hot[:, 0]] == 12345)
        assert np.all(img[dead[:, 1], dead[:, 0]] == 0)
        assert np.all(img[module] == 0)
        assert img[~module].mean() > 1.0  # the live module still sees the background
    readable = f.get_mask()[0]
    with __import__("h5py").File(tmp_path / "crystal_000_master.h5") as h5:
        bits = h5["entry/instrument/detector/pixel_mask"][()]
    gap = np.zeros((1062, 1028), bool)
    gap[512:550] = True
    if masked:
        assert np.all(bits[hot[:, 1], hot[:, 0]] == MASK_HOT)
        assert np.all(bits[dead[:, 1], dead[:, 0]] == MASK_DEAD)
        assert np.all(bits[module] == MASK_DEAD)
        assert readable.sum() == (~module & ~gap).sum() - len(hot) - len(dead)
    else:
        assert not np.any(bits[~gap])
        assert readable.sum() == (~gap).sum()


def _radial_gain(r_on, im_on, im_off):
    panel, beam = r_on.experiments[0].detector[0], r_on.experiments[0].beam
    d = pixel_resolution(panel, beam.s0)
    live = ~r_on.sweeps[0]._gap & (r_on.sweeps[0]._background > 0)
    return d, (im_on - im_off).mean(axis=0), live


def test_ice_rings_raise_pixels_at_ice_d_spacings():
    _, (im0,) = render(**QUIET, background=1.0)
    r1, (im1,) = render(**QUIET, background=1.0, ice_ring_intensity=30.0)
    d, diff, live = _radial_gain(r1, im1, im0)
    q = 1 / d ** 2
    on = live & (np.abs(q - 1 / 3.897 ** 2) < 0.0002)  # the strongest ring, (100)
    off = live & (d > 2.8) & (d < 3.2)  # between the 3.44 Å and 2.67 Å rings
    assert on.sum() > 500 and off.sum() > 500
    # peak 30 counts × solid angle, polarisation and sensor efficiency (~0.85 here)
    assert 18 < diff[on].mean() < 31
    assert abs(diff[off].mean()) < 0.3


def test_solvent_ring_and_air_scatter_profiles():
    _, (im0,) = render(**QUIET, background=1.0)
    r1, (im1,) = render(**QUIET, background=1.0, solvent_ring_intensity=20.0)
    d, diff, live = _radial_gain(r1, im1, im0)
    edges = np.linspace(2.2, 8.0, 30)
    which = np.digitize(d, edges)
    prof = np.array([diff[live & (which == k)].mean() for k in range(1, len(edges))])
    centres = 0.5 * (edges[1:] + edges[:-1])
    assert centres[np.argmax(prof)] == pytest.approx(3.7, abs=0.25)
    r2, (im2,) = render(**QUIET, background=1.0, air_scatter_intensity=20.0)
    _, diff, _ = _radial_gain(r2, im2, im0)
    e = r2.experiments[0]
    lab_angle = np.degrees(2 * np.arcsin(e.beam.wavelength / (2 * d)))
    near = live & (np.abs(lab_angle - 4.0) < 0.3)
    far = live & (np.abs(lab_angle - 16.0) < 0.3)
    ratio = diff[near].mean() / diff[far].mean()
    # e-fold per 4° of 2θ: e³ between 4° and 16°, times the small solid-angle/QE differences
    assert ratio == pytest.approx(math.exp(3.0), rel=0.15)


def test_zingers_are_where_the_truth_says(tmp_path):
    files, summary = run_simulate(SimulateParams(**dict(ONE, n_images=4), output_dir=str(tmp_path), zinger_rate=6.0))
    z = np.load(tmp_path / "truth_zingers_000.npz")
    assert len(z["image"]) == summary["crystals"][0]["n_zingers"] > 10
    _, (im0,) = render(**dict(ONE, n_images=4))
    f = open_image_file(files["images"][0][0])
    for i in range(4):
        img = f.get_raw_data(i)[0].astype(np.int64)
        here = z["image"] == i + 1
        diff = img - im0[i].astype(np.int64)
        assert np.array_equal(np.sort(np.flatnonzero(diff)), np.sort(z["y"][here] * 1028 + z["x"][here]))
        assert np.array_equal(diff[z["y"][here], z["x"][here]], z["counts"][here])
        assert np.all(z["counts"][here] >= 300)


def test_image_totals_follow_the_beam_factors():
    kw = dict(ONE, n_images=8, background=20.0)
    _, (im0,) = render(**kw)
    r1, (im1,) = render(**kw, beam_flux_jitter=0.1)
    f = np.array(r1.summary["crystals"][0]["beam_factors"])
    assert len(f) == 8 and np.std(f) > 0.03
    ratio = im1.sum(axis=(1, 2)) / im0.sum(axis=(1, 2))
    assert np.allclose(ratio, f, rtol=2e-3)


def test_imported_header_differs_from_truth_by_the_errors(tmp_path):
    err = {"header_distance_error": 1.5, "header_beam_centre_error": (2.5, -1.8), "header_tilt_error": 0.4,
           "header_tilt_axis": 30.0, "header_wavelength_error": 0.003}
    files, _ = run_simulate(SimulateParams(**ONE, output_dir=str(tmp_path), **err))
    imported, _ = run_import(ImportParams(paths=(files["images"][0][0],)))
    truth = read_experiments(str(tmp_path / "truth.expt"))
    h, t = imported[0], truth[0]
    hp, tp = h.detector[0], t.detector[0]
    assert hp.distance - tp.distance == pytest.approx(1.5, abs=1e-6)
    assert h.beam.wavelength - t.beam.wavelength == pytest.approx(0.003, abs=1e-9)
    angle = math.degrees(math.acos(np.clip(hp.normal @ tp.normal, -1, 1)))
    assert angle == pytest.approx(0.4, abs=1e-6)
    axis = np.cross(tp.normal, hp.normal) / math.sin(math.radians(angle))  # the tilt axis, in the true plane
    assert math.degrees(math.atan2(axis @ tp.slow_axis, axis @ tp.fast_axis)) % 180 == pytest.approx(30.0, abs=1e-4)

    def centre_px(e):  # geometric beam centre (px)
        p = e.detector[0]
        return p.get_beam_centre(e.beam.s0) / np.asarray(p.pixel_size)

    assert centre_px(h) - centre_px(t) == pytest.approx([2.5, -1.8], abs=1e-6)
    doc = json.loads((tmp_path / "truth.json").read_text())["truth"]
    assert doc["true_geometry"]["distance_mm"] == pytest.approx(tp.distance, abs=1e-9)
    assert doc["header_geometry"]["distance_mm"] == pytest.approx(hp.distance, abs=1e-6)
    assert doc["header_geometry"]["beam_centre_px"] == pytest.approx(list(centre_px(h)), abs=1e-6)
    assert doc["true_geometry"]["wavelength"] == pytest.approx(t.beam.wavelength)
    # the rendered spots follow the true geometry: the truth table is the same as without errors
    plain = simulate(SimulateParams(**ONE))
    assert np.array_equal(plain.sweeps[0].table["xyzcal.px"],
                          read_reflections(str(tmp_path / "truth_reflections_000.refl"))["xyzcal.px"])


def test_microcrystals_wedges_hold_several_lattices(tmp_path):
    _, summary = run_simulate(SimulateParams(preset="microcrystals", n_crystals=3, seed=2, output_dir=str(tmp_path)))
    p = resolve(SimulateParams(preset="microcrystals"))
    assert p.n_images * p.oscillation_width == pytest.approx(1.0)
    truth = read_experiments(str(tmp_path / "truth.expt"))
    n_lat = [c["n_lattices"] for c in summary["crystals"]]
    assert all(2 <= n <= 5 for n in n_lat) and len(truth) == sum(n_lat)
    start = 0
    for k, c in enumerate(summary["crystals"]):
        expts = list(truth)[start:start + n_lat[k]]
        start += n_lat[k]
        assert len({e.imageset.template for e in expts}) == 1
        t = read_reflections(str(tmp_path / f"truth_reflections_{k:03d}.refl"))
        assert sorted(set(t["id"].tolist())) == list(range(n_lat[k]))
        assert [t.experiment_identifiers[j] for j in range(n_lat[k])] == [e.identifier for e in expts]
        # reflections recorded on the 10 images (half or more of the rocking curve inside)
        assert 100 <= int(np.sum(t["partiality"] >= 0.5)) <= 500
        for j, e in enumerate(expts):  # one crystal form, each lattice's spots from its own U·B
            assert e.crystal.unit_cell[0] == pytest.approx(79.1, rel=0.02)
            assert e.crystal.unit_cell[2] == pytest.approx(38.0, rel=0.02)
            sel = t["id"] == j
            phi = t["xyzcal.mm"][sel, 2]  # rad
            r = t["miller_index"][sel] @ e.crystal.A.T  # A·h at φ = 0
            ax = e.goniometer.rotation_axis_lab
            rot = (r * np.cos(phi)[:, None] + np.cross(ax, r) * np.sin(phi)[:, None]
                   + ax * (r @ ax)[:, None] * (1 - np.cos(phi))[:, None])
            assert np.abs(rot + e.beam.s0 - t["s1"][sel]).max() < 1e-6


@pytest.mark.parametrize("change, message", [
    ({"lattices_per_sweep": (5, 2)}, "lattices_per_sweep=5,2: give n or lo,hi with lo ≤ hi"),
    ({"n_dead_modules": 2}, "n_dead_modules=2: the eiger1m has 2 modules; leave one alive"),
    ({"hot_pixel_fraction": 0.5}, "hot_pixel_fraction=0.5: must be ≥ 0 and ≤ 0.01"),
])
def test_realism_validation(change, message):
    with pytest.raises(XtalError) as e:
        resolve(SimulateParams(**change))
    assert message in str(e.value)


def test_existing_presets_have_every_realism_option_off():
    for name in ("tiny", "insulin-24", "lysozyme-wedges", "microcrystals"):
        p = resolve(SimulateParams(preset=name))
        assert p.psf_sigma == p.gain_sigma == p.hot_pixel_fraction == p.dead_pixel_fraction == 0
        assert p.n_dead_modules == 0 and p.zinger_rate == 0 and p.beam_flux_jitter == 0
        assert p.ice_ring_intensity == p.solvent_ring_intensity == p.air_scatter_intensity == 0
        assert p.header_distance_error == p.header_tilt_error == p.header_wavelength_error == 0
        assert tuple(p.header_beam_centre_error) == (0, 0)
    real = resolve(SimulateParams(preset="insulin-realistic"))
    assert real.header_distance_error != 0 and real.gain_sigma > 0 and real.zinger_rate > 0
