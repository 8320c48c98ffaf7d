"""Indexing from a wrong header beam centre (issue #16): the detector shifts are refined
in the macro-cycles, the spots re-mapped from them, and the refined detector written."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from processing.indexing import IndexParams, run_index
from processing.indexing.lattice import closest_rotation, rotation_angle_deg
from processing.indexing.lattice_search import shifted_experiments
from processing.indexing.spots import centroids_to_reciprocal_space

from .wedges import INSULIN, make_wedge, small_eiger

KNOWN = {"unit_cell": INSULIN, "space_group": "I 21 3", "max_lattices": 5}


def _wrong_header(wedge, shift_px, distance_mm=0.0):
    """The wedge's experiments with the detector moved by ``shift_px`` (fast, slow px) in
    its plane and ``distance_mm`` further from the sample: the spots stay where they were."""
    expts = copy.deepcopy(wedge.experiments)
    p = expts[0].detector[0]
    px = p.pixel_size
    p.origin = p.origin + shift_px[0] * px[0] * p.fast_axis + shift_px[1] * px[1] * p.slow_axis \
        + distance_mm * p.normal * np.sign(p.origin @ p.normal)
    return expts


def _angle_to(A_found, A_true) -> float:
    """Rotation (deg) between a found lattice (any basis, possibly primitive) and a true one
    whose real-space basis is an integer combination of the found one's; inf if none is."""
    R, Rt = np.linalg.inv(A_found), np.linalg.inv(A_true)  # rows a, b, c (Å)
    N = Rt @ np.linalg.inv(R)
    Ni = np.rint(N)
    if np.abs(N - Ni).max() > 0.1 or abs(round(np.linalg.det(Ni))) < 1:
        return np.inf
    return rotation_angle_deg(closest_rotation((Ni @ R).T @ np.linalg.inv(Rt.T)))


def _beam_centre_px(e):
    return np.asarray(e.detector[0].get_beam_centre_px(e.beam.s0))


@pytest.fixture(scope="module")
def one_crystal():
    """A tiny-preset-like sweep (insulin, 10 × 0.5°), header 3 px and 0.5 mm off."""
    w = make_wedge(n_lattices=1, n_spots=(300,), n_images=10, osc=0.5, seed=4)
    header = _wrong_header(w, (3.0, -3.0), 0.5)
    before = _beam_centre_px(header[0]) - _beam_centre_px(w.experiments[0])
    out, refl, summary = run_index(header, w.table, IndexParams())
    return w, header, before, out, refl, summary


def test_one_crystal_indexes_and_recovers_the_beam_centre(one_crystal):
    w, header, before, out, _, summary = one_crystal
    assert np.abs(before).max() > 2.9  # the header is really off
    assert len(out) == 1
    assert _angle_to(out[0].crystal.A, w.A[0]) < 0.05
    row = summary["sweeps"][0]
    assert row["percent_indexed"] >= 90.0
    err = _beam_centre_px(out[0]) - _beam_centre_px(w.experiments[0])
    assert np.abs(err).max() < 0.3
    assert np.allclose(row["beam_centre_shift_px"], _beam_centre_px(out[0]) - _beam_centre_px(header[0]))
    # the header itself is not modified
    assert np.allclose(_beam_centre_px(header[0]) - _beam_centre_px(w.experiments[0]), before)


def test_one_crystal_indices_are_right(one_crystal):
    w, _, _, out, refl, _ = one_crystal
    ok = np.asarray(refl["id"]) == 0
    hkl = np.asarray(refl["miller_index"], float)[ok]
    N = np.rint(np.linalg.inv(w.A[0]) @ out[0].crystal.A)  # found hkl → true (conventional) hkl
    true_rlp = centroids_to_reciprocal_space(w.experiments[0], np.asarray(refl["xyzobs.px.value"])[ok], None,
                                             np.zeros(ok.sum(), int))["rlp"]
    h_true = np.rint(true_rlp @ np.linalg.inv(w.A[0]).T)
    assert np.mean(np.all(hkl @ N.T == h_true, axis=1)) >= 0.99  # no index off by one


def test_fixed_detector_keeps_the_header():
    w = make_wedge(n_lattices=1, n_spots=(300,), n_images=10, osc=0.5, seed=4)
    header = _wrong_header(w, (1.0, 0.0))
    out, _, summary = run_index(header, w.table, IndexParams(refine_detector="none", beam_search=False))
    assert np.allclose(_beam_centre_px(out[0]), _beam_centre_px(header[0]))
    assert summary["sweeps"][0]["beam_centre_shift_px"] == [0.0, 0.0]


def test_two_lattices_in_a_narrow_wedge_with_a_wrong_beam_centre():
    w = make_wedge(n_lattices=2, seed=0)  # 1° in 10 × 0.1°
    header = _wrong_header(w, (2.5, -1.8))
    out, _, summary = run_index(header, w.table, IndexParams(**KNOWN))
    assert len(out) == 2
    angles = np.array([[_angle_to(e.crystal.A, A) for A in w.A] for e in out])
    assert sorted(np.argmin(angles, axis=1)) == [0, 1]
    assert np.all(angles.min(axis=1) < 0.1)
    for L in summary["sweeps"][0]["lattices"]:
        assert L["rmsd"][2] <= 1.0 and L["rmsd_xy_px"] <= 1.0  # fixed header: up to 1.7 px, 5.9 images
    err = _beam_centre_px(out[0]) - _beam_centre_px(w.experiments[0])
    assert np.abs(err).max() < 1.0


def test_beam_search_shift_moves_the_beam_centre_only():
    e = small_eiger()
    origin = e.detector[0].origin.copy()
    moved = shifted_experiments([e], (3.0, -2.0))[0]
    assert np.allclose(_beam_centre_px(moved) - _beam_centre_px(e), (-3.0, 2.0))
    assert abs(moved.detector[0].distance - e.detector[0].distance) < 1e-12
    assert np.array_equal(e.detector[0].origin, origin)  # the input is not moved
