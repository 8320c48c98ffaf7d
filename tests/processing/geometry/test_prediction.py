"""Rotation prediction: Ewald geometry to 1e-9, a hand-computed pixel, both crossings."""
import math

import numpy as np
import pytest

from processing.geometry.prediction import generate_indices, predict_rotation
from processing.models import Beam, Crystal, Detector, Goniometer, Panel, Scan
from processing.models.detector import PARALLAX


def _setup(parallax=False, setting=None):
    beam = Beam(direction=[0, 0, 1], wavelength=1.0)
    panel = Panel(fast_axis=[1, 0, 0], slow_axis=[0, -1, 0], origin=[-50.0, 50.0, -100.0],
                  image_size=(1000, 1000), pixel_size=(0.1, 0.1),
                  thickness=0.75 if parallax else 0.0, mu=45.0 if parallax else 0.0,
                  px_mm_strategy=PARALLAX if parallax else "SimplePxMmStrategy")
    gonio = Goniometer(rotation_axis=[1, 0, 0])
    if setting is not None:
        gonio = Goniometer(rotation_axis=[1, 0, 0], setting_rotation=setting[0], fixed_rotation=setting[1])
    scan = Scan(image_range=(1, 3600), oscillation=(0.0, 0.1))
    return beam, Detector([panel]), gonio, scan


def test_ewald_condition_and_s1_minus_s0():

    from scipy.spatial.transform import Rotation
    U = Rotation.random(random_state=4).as_matrix()
    S = Rotation.random(random_state=5).as_matrix()
    F = Rotation.random(random_state=6).as_matrix()
    beam, det, gonio, scan = _setup(setting=(S, F))
    xtal = Crystal.from_cell_and_U((40.0, 50.0, 60.0, 90, 100, 90), U, " P 2y")
    pred = predict_rotation(xtal.A, beam, det, gonio, scan, d_min=2.0, keep_off_detector=True)
    assert len(pred["d"]) > 5000
    s1 = pred["s1"]
    assert np.max(np.abs(np.linalg.norm(s1, axis=1) - 1.0 / beam.wavelength)) < 1e-9
    R = gonio.rotation_matrix(pred["xyzcal.mm"][:, 2])
    r = np.einsum("nij,jk,nk->ni", R, xtal.A, pred["miller_index"].astype(float))
    assert np.max(np.abs(s1 - beam.s0 - r)) < 1e-9
    # each index crosses twice in 360°, once entering and once exiting
    _, counts = np.unique(pred["miller_index"], axis=0, return_counts=True)
    assert np.all(counts == 2)
    assert abs(np.mean(pred["entering"]) - 0.5) < 1e-9
    assert np.all(pred["d"] >= 2.0 - 1e-9)



def test_known_geometry_gives_known_pixel():
    beam, det, gonio, scan = _setup()
    xtal = Crystal.from_cell_and_U((50.0, 50.0, 50.0, 90, 90, 90), np.eye(3))
    pred = predict_rotation(xtal.A, beam, det, gonio, scan, miller_indices=[[0, 1, 0]])
    # r = (0, 0.02 cos φ, 0.02 sin φ); 2 s0·r + |r|² = 0 → sin φ = 0.01
    phi = np.sort(pred["xyzcal.mm"][:, 2])
    assert phi[0] == pytest.approx(math.asin(0.01), abs=1e-12)
    first = np.argmin(pred["xyzcal.mm"][:, 2])
    y_lab = 100.0 * 0.02 * math.cos(math.asin(0.01)) / (1 - 0.0002)
    x_px, y_px, z = pred["xyzcal.px"][first]
    assert x_px == pytest.approx(500.0, abs=1e-9)
    assert y_px == pytest.approx(500.0 - y_lab / 0.1, abs=1e-9)  # slow axis points down
    assert z == pytest.approx(math.degrees(math.asin(0.01)) / 0.1, abs=1e-9)
    # the second crossing (φ = 180° − 0.573°) goes to the opposite side
    other = 1 - first
    assert pred["xyzcal.px"][other][1] == pytest.approx(500.0 + y_lab / 0.1, abs=1e-9)
    assert pred["entering"][first] != pred["entering"][other]


def test_parallax_shifts_outwards_and_scan_range_limits():
    beam, det, gonio, scan = _setup(parallax=True)
    scan = Scan(image_range=(1, 50), oscillation=(10.0, 0.1))
    xtal = Crystal.from_cell_and_U((50.0, 50.0, 50.0, 90, 90, 90), np.eye(3))
    pred = predict_rotation(xtal.A, beam, det, gonio, scan, d_min=3.0)
    phi_deg = np.degrees(pred["xyzcal.mm"][:, 2])
    assert len(phi_deg) > 20
    assert phi_deg.min() >= 10.0 - 1e-9 and phi_deg.max() <= 15.0 + 1e-9
    z = pred["xyzcal.px"][:, 2]
    assert np.allclose(z, (phi_deg - 10.0) / 0.1)
    mm = pred["xyzcal.mm"][:, :2] - np.array([50.0, 50.0])
    px = pred["xyzcal.px"][:, :2] * 0.1 - np.array([50.0, 50.0])
    r_mm, r_px = np.hypot(*mm.T), np.hypot(*px.T)
    assert np.all(r_px >= r_mm - 1e-12)  # recorded position is further out
    assert np.max(r_px - r_mm) > 0.005  # by up to tens of µm in CdTe


def test_generate_indices_respects_absences():
    h = generate_indices((78.0, 78.0, 78.0, 90, 90, 90), 4.0, "I 21 3")
    assert len(h) > 1000
    assert np.all(h.sum(axis=1) % 2 == 0)
    assert not np.any(np.all(h == 0, axis=1))
    d = 78.0 / np.linalg.norm(h, axis=1)
    assert d.min() >= 4.0 - 1e-9


def test_generate_indices_complete_for_oblique_cell():
    """Every index inside the resolution sphere of a triclinic cell is generated."""
    import numpy as np
    from processing.geometry.prediction import generate_indices
    from processing.models.crystal import b_matrix
    cell = (30.0, 45.0, 60.0, 60.0, 110.0, 75.0)
    d_min = 4.0
    got = {tuple(h) for h in generate_indices(cell, d_min)}
    r = np.arange(-25, 26)
    h = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    inv_d2 = np.sum((h @ b_matrix(cell).T) ** 2, axis=1)
    brute = {tuple(x) for x in h[(inv_d2 > 0) & (inv_d2 <= 1 / d_min**2)]}
    assert got == brute and len(brute) > 3000
