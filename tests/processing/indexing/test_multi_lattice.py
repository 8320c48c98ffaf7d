"""Several lattices in one narrow wedge with a known cell (issue #16): lattices found,
spots on the right lattice, orientations and cells against the truth, no false lattice,
random spots refused."""
from __future__ import annotations

import numpy as np
import pytest

from processing.errors import XtalError
from processing.indexing import IndexParams, run_index
from processing.indexing.lattice import closest_rotation, rotation_angle_deg
from processing.indexing.lattice_search import (
    lattice_quality,
    misorientation_deg,
    rejection,
)
from processing.models.goniometer import axis_angle_matrix

from .wedges import INSULIN, make_wedge

KNOWN = {"unit_cell": INSULIN, "space_group": "I 21 3", "max_lattices": 5}


def _angle_to(A_found, A_true) -> float:
    """Rotation (deg) between two bases of one lattice; inf if they are different lattices."""
    R, Rt = np.linalg.inv(A_found), np.linalg.inv(A_true)
    M = R @ np.linalg.inv(Rt)
    Mi = np.rint(M)
    if np.abs(M - Mi).max() > 0.1 or abs(round(np.linalg.det(Mi))) != 1:
        return np.inf
    return rotation_angle_deg(closest_rotation(R.T @ np.linalg.inv((Mi @ Rt).T)))


def _match(out, wedge):
    """For each found lattice, (true lattice, misorientation deg) of the nearest true one."""
    pairs = []
    for e in out:
        angles = [_angle_to(e.crystal.A, A) for A in wedge.A]
        j = int(np.argmin(angles))
        pairs.append((j, angles[j]))
    return pairs


@pytest.fixture(scope="module")
def three_lattices():
    w = make_wedge(n_lattices=3, seed=0)
    out, refl, summary = run_index(w.experiments, w.table, IndexParams(**KNOWN))
    return w, out, refl, summary


def test_three_lattices_found_and_spots_assigned(three_lattices):
    w, out, refl, summary = three_lattices
    assert 80 <= len(w.lattice) <= 500  # a microcrystal wedge: 100–500 spots
    assert len(out) == 3 and summary["sweeps"][0]["n_lattices"] == 3
    pairs = _match(out, w)
    assert sorted(j for j, _ in pairs) == [0, 1, 2]  # each true lattice once, no false one
    ids = np.asarray(refl["id"])
    for k, (j, angle) in enumerate(pairs):
        assert angle < 0.1
        mine = w.lattice == j
        assert np.mean(ids[mine] == k) >= 0.9  # spots of lattice j on the found lattice k
        cell = out[k].crystal.unit_cell
        assert out[k].crystal.space_group_symbol == "I 21 3"
        assert np.max(np.abs(np.array(cell[:3]) / np.array(w.cells[j][:3]) - 1)) < 0.003
    for L in summary["sweeps"][0]["lattices"]:
        assert L["rmsd_xy_px"] < 1.0 and L["n_indexed"] >= 20


def test_one_lattice_and_random_spots_give_one_lattice():
    w = make_wedge(n_lattices=1, n_spots=(140,), n_random=60, seed=1)
    out, refl, summary = run_index(w.experiments, w.table, IndexParams(**KNOWN))
    assert len(out) == 1  # not a false second lattice made of the random spots
    (j, angle), = _match(out, w)
    assert j == 0 and angle < 0.1
    ids = np.asarray(refl["id"])
    assert np.mean(ids[w.lattice == 0] == 0) >= 0.95
    assert summary["sweeps"][0]["lattices"][0]["n_indexed"] >= 0.9 * np.sum(w.lattice == 0)


def test_random_spots_are_refused_with_the_limits():
    w = make_wedge(n_lattices=0, n_random=300, seed=2)
    with pytest.raises(XtalError) as err:
        run_index(w.experiments, w.table, IndexParams(**KNOWN, beam_search=False))  # the search would only cost time
    msg = str(err.value)
    assert "no lattice meets the acceptance limits" in msg and "max_rmsd_xy=3 px" in msg
    assert "\n" not in msg
    # the best false candidate is far outside the XY limit
    rmsd_xy = float(msg.split("RMSD_XY ")[-1].split(" px")[0])
    assert rmsd_xy > 4.0


def test_max_lattices_one_keeps_the_best_lattice_only():
    w = make_wedge(n_lattices=2, seed=3)
    out, refl, _ = run_index(w.experiments, w.table, IndexParams(unit_cell=INSULIN, space_group="I 21 3"))
    assert len(out) == 1
    (j, angle), = _match(out, w)
    assert angle < 0.1
    ids = np.asarray(refl["id"])
    assert np.mean(ids[w.lattice == j] == 0) >= 0.9
    assert np.mean(ids[w.lattice == 1 - j] == 0) < 0.3  # the other lattice's spots are not taken


def test_rejection_names_each_limit():
    params = IndexParams()
    ok = {"n_indexed": 50, "rmsd_xy_px": 0.4, "rmsd_z_images": 1.0}
    assert rejection(ok, params) is None
    bad = {"n_indexed": 12, "rmsd_xy_px": 4.2, "rmsd_z_images": 9.0}
    why = rejection(bad, params)
    assert "12 spots < min_lattice_spots=20" in why and "RMSD_XY 4.20 px > max_rmsd_xy=3" in why
    assert "RMSD_Z 9.00 images > max_rmsd_z=6" in why
    assert rejection(ok, IndexParams(max_rmsd_xy=0.3)) == "RMSD_XY 0.40 px > max_rmsd_xy=0.3"

    class Res:
        rmsd_px_img = (0.3, 0.4, 0.7)
    q = lattice_quality(Res(), 33)
    assert q == {"n_indexed": 33, "rmsd_xy_px": pytest.approx(0.5), "rmsd_z_images": 0.7}


def test_misorientation_over_equivalent_bases():
    R = np.diag([67.6, 67.6, 67.6]) @ axis_angle_matrix([1, 2, 3], 0.4).T
    for deg in (0.5, 3.0, 20.0):
        Q = axis_angle_matrix([0.3, -1, 0.2], np.radians(deg))
        assert misorientation_deg(R @ Q.T, R) == pytest.approx(deg, abs=1e-6)
        # the same rotated lattice written in a permuted, sign-flipped basis
        P = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]) * np.array([[-1], [-1], [1]])
        assert misorientation_deg(P @ R @ Q.T, R) == pytest.approx(deg, abs=1e-6)
