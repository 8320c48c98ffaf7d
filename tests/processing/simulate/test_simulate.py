"""The simulator: the tiny set on disk, geometry, spots vs prediction, symmetry, Wilson,
the reflection-level mode and parameter validation."""
import dataclasses
import json
import math

import gemmi
import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.images import open_image_file
from processing.io.refl import read_reflections
from processing.simulate import SimulateParams, simulate
from processing.simulate.params import resolve
from processing.simulate.truth import (form_factors, parse_abc, random_structure, structure_factors,
                                       true_intensities, wilson_scale)


@pytest.fixture(scope="session")
def tiny(tiny_seed1):
    return tiny_seed1


def test_tiny_writes_three_sweeps_of_ten_images(tiny):
    out, files, summary = tiny
    assert len(files["images"]) == 3
    for written in files["images"]:
        f = open_image_file(written[0])
        assert f.n_images == 10
        assert f.get_raw_data(9)[0].shape == (1062, 1028)
    truth = json.loads((out / "truth.json").read_text())
    assert len(truth["truth"]["crystals"]) == 3
    assert json.dumps(summary)  # JSON-able


def test_header_models_equal_truth(tiny):
    out, files, summary = tiny
    from processing.io.expt import read_experiments
    truth = read_experiments(str(out / "truth.expt"))
    for k, written in enumerate(files["images"]):
        beam, det, gonio, scan = open_image_file(written[0]).models()
        e = truth[k]
        assert beam.wavelength == pytest.approx(e.beam.wavelength, rel=1e-9)
        assert np.allclose(beam.s0, e.beam.s0, atol=1e-9)
        p, q = det[0], e.detector[0]
        assert np.allclose(p.origin, q.origin, atol=1e-6)
        assert np.allclose(p.fast_axis, q.fast_axis, atol=1e-9)
        assert np.allclose(p.slow_axis, q.slow_axis, atol=1e-9)
        assert tuple(p.image_size) == tuple(q.image_size)
        assert p.pixel_size == pytest.approx(q.pixel_size)
        assert p.mu == pytest.approx(q.mu, rel=1e-6)
        assert p.thickness == pytest.approx(q.thickness)
        assert np.allclose(gonio.rotation_axis_lab, e.goniometer.rotation_axis_lab, atol=1e-9)
        assert scan.image_range == e.scan.image_range
        assert scan.oscillation == pytest.approx(e.scan.oscillation)


def test_spots_appear_where_prediction_says(tiny):
    out, files, summary = tiny
    t = read_reflections(str(out / "truth_reflections_000.refl"))
    f = open_image_file(files["images"][0][0])
    stack = np.stack([f.get_raw_data(i)[0] for i in range(10)]).astype(float)
    x, y, z = t["xyzcal.px"].T
    ok = ((t["partiality"] > 0.99) & (x > 8) & (x < 1020) & (y > 8) & (y < 1054)
          & (np.abs(y - 531) > 30) & (t["lattice"] == 0))
    idx = np.nonzero(ok)[0]
    brightest = idx[np.argsort(t["intensity.true.value"][idx])[::-1][:20]]
    errors, peak_ok = [], 0
    for i in brightest:
        z0, z1 = max(0, int(z[i] - 3)), min(10, int(z[i] + 4))
        img = stack[z0:z1].sum(axis=0)
        xi, yi = int(x[i]), int(y[i])
        box = img[yi - 4:yi + 5, xi - 4:xi + 5]
        py, px = np.unravel_index(np.argmax(box), box.shape)
        peak_ok += abs(px + xi - 4 + 0.5 - x[i]) <= 1.0 and abs(py + yi - 4 + 0.5 - y[i]) <= 1.0
        sig = box - np.median(img[yi - 12:yi + 13, xi - 12:xi + 13])
        gy, gx = np.mgrid[yi - 4:yi + 5, xi - 4:xi + 5] + 0.5
        errors.append(math.hypot((sig * gx).sum() / sig.sum() - x[i], (sig * gy).sum() / sig.sum() - y[i]))
    assert peak_ok == 20
    assert np.median(errors) < 0.15  # centroid of the rendered spot vs prediction (px)


def test_systematic_absences_absent_in_true_mtz(tiny):
    out, _, _ = tiny
    mtz = gemmi.read_mtz_file(str(out / "true.mtz"))
    assert mtz.spacegroup.hm == "I 21 3"
    hkl = np.array(mtz.make_miller_array())
    assert len(hkl) > 5000
    assert np.all(hkl.sum(axis=1) % 2 == 0)  # I-centring: h+k+l odd are absent
    # and the structure factors of absent indices really vanish
    sg = gemmi.SpaceGroup("I 21 3")
    st = random_structure(sg, (78.1,) * 3 + (90.0,) * 3, 50, np.random.default_rng(0))
    absent = np.array([[1, 0, 0], [1, 1, 1], [2, 1, 0], [0, 0, 3], [3, 2, 2]])
    present = np.array([[1, 1, 0], [2, 1, 1], [0, 0, 4], [3, 2, 1]])
    Fa, Fp = structure_factors(st, absent), structure_factors(st, present)
    assert np.max(np.abs(Fa)) < 1e-9 * np.max(np.abs(Fp))
    i_mean = mtz.column_with_label("IMEAN").array
    assert np.all(i_mean >= 0) and np.mean(i_mean) > 0


def test_wilson_falloff():
    sg = gemmi.SpaceGroup("P 21 21 21")
    cell = (50.0, 60.0, 70.0, 90.0, 90.0, 90.0)
    st = random_structure(sg, cell, 300, np.random.default_rng(2), b_overall=25.0)
    ti = true_intensities(st, 2.0)
    stol2 = 0.25 / ti.d**2
    f, elem = form_factors(st.elements, stol2)
    sum_f2 = 4 * (f[:, elem] ** 2).sum(axis=1) / wilson_scale(st) * 1000
    ratio = ti.intensity / sum_f2
    edges = np.quantile(stol2, np.linspace(0.1, 1, 10))
    which = np.digitize(stol2, edges[:-1])
    xs = np.array([stol2[which == k].mean() for k in range(1, 9)])
    ys = np.array([np.log(ratio[which == k].mean()) for k in range(1, 9)])
    slope = np.polyfit(xs, ys, 1)[0]
    assert slope == pytest.approx(-2 * 25.0, rel=0.1)


def test_alternative_setting_is_a_real_ambiguity(tiny):
    out, _, summary = tiny
    ops = [c["change_of_basis_op"] for c in summary["crystals"]]
    assert sorted(set(ops)) == ["-b,a,c", "a,b,c"]
    t = read_reflections(str(out / f"truth_reflections_{ops.index('-b,a,c'):03d}.refl"))
    M = parse_abc("-b,a,c")
    assert np.array_equal(t["miller_index_reference"], t["miller_index"] @ M.T)
    # Laue m-3 ≠ lattice m-3m: I(h) and I(M·h) are different intensities
    sg = gemmi.SpaceGroup("I 21 3")
    st = random_structure(sg, (78.1,) * 3 + (90.0,) * 3, 200, np.random.default_rng(5))
    ti = true_intensities(st, 3.0)
    h = ti.miller_index
    cc = np.corrcoef(ti.lookup(h), ti.lookup(h @ M.T))[0, 1]
    assert cc < 0.5
    assert np.allclose(ti.lookup(h), ti.lookup(h @ np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]).T))


def test_reflection_mode_1000_data_sets():
    r = simulate(SimulateParams(preset="tiny", mode="reflections", n_crystals=1000, d_min=3.0, seed=3))
    t = r.reflections
    assert len(set(t["id"].tolist())) == 1000
    assert len(t.experiment_identifiers) == 1000
    i_obs, var = t["intensity.sum.value"], t["intensity.sum.variance"]
    expected = t["intensity.true.value"]
    clean = ~t["outlier.true"]
    mean_ios = np.mean(i_obs[clean] / np.sqrt(var[clean]))
    assert mean_ios == pytest.approx(np.mean(expected[clean] / np.sqrt(var[clean])), rel=0.02)
    assert mean_ios > 20
    # intensities corrected by the scale the simulator applied correlate with the truth
    corr = i_obs * t["lp"] / t["qe"]
    true_corr = expected * t["lp"] / t["qe"]
    assert np.corrcoef(corr[clean], true_corr[clean])[0, 1] > 0.95
    # the error model: normalised deviations have sd ≈ a (1.2) for weak reflections
    weak = clean & (expected < 0.2 * np.sqrt(var))
    z = (i_obs - expected)[weak] / np.sqrt(var[weak])
    assert np.std(z) == pytest.approx(1.2, rel=0.1)
    assert t["outlier.true"].mean() == pytest.approx(0.002, rel=0.3)


@pytest.mark.parametrize("change, message", [
    (dict(preset="nope"), "known presets: tiny, insulin-24, lysozyme-wedges"),
    (dict(unit_cell=(-78.0, 78.0, 78.0, 90, 90, 90)), "cell lengths must be positive"),
    (dict(unit_cell=(78.0, 79.0, 78.0, 90, 90, 90)), "does not fit space group I 21 3 (cubic)"),
    (dict(unit_cell=(78.0, 78.0, 78.0, 150, 150, 90)), "these angles make no cell"),
    (dict(n_images=0), "n_images=0: a sweep needs at least one image"),
    (dict(space_group="P 99 99"), "unknown space group"),
    (dict(detector="pilatus"), "must be one of eiger1m, eiger9m"),
])
def test_validation_messages(change, message):
    with pytest.raises(XtalError) as e:
        resolve(dataclasses.replace(SimulateParams(), **change))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_insulin_preset_flags_and_settings():
    p = resolve(SimulateParams(preset="insulin-24"))
    assert p.n_crystals == 24 and p.n_images == 50 and p.oscillation_width == pytest.approx(0.1)
    r = simulate(SimulateParams(preset="insulin-24", mode="reflections", d_min=4.0))
    flags = [c.flags for c in r.crystals]
    assert sum("non_isomorphous" in f for f in flags) == 1 and sum("weak" in f for f in flags) == 1
    assert sum(c.change_of_basis_op == "-b,a,c" for c in r.crystals) == 12
    ni = next(c for c in r.crystals if "non_isomorphous" in c.flags)
    assert ni.cell[0] / 78.1 == pytest.approx(1.02, abs=0.01)
    assert r.summary["distance_mm"] == pytest.approx(149.0, abs=3.0)
