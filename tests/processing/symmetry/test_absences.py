"""Screw-axis analysis of systematic absences (dials.symmetry's direct method) on
synthetic merged data with known truth: every reflection the true space group allows
has I/σ = Wilson-like signal + N(0, 1) noise, every one it makes absent pure noise;
each unique reflection is observed twice (h and its Friedel mate -h)."""
from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from processing.symmetry.absences import MIN_REFLECTIONS, absence_scores, score_screw_axis
from processing.symmetry.spacegroup import space_groups_of


def synthetic(true_sg: str, n_max: int = 12, strong: float = 15.0, seed: int = 1,
              axial_odd_strong: bool = False, keep=None):
    """(hkl, I/σ) of every hkl with |h|,|k|,|l| ≤ n_max the true group's lattice allows,
    twice (h and -h). ``axial_odd_strong``: odd axial reflections strong whatever the
    group says. ``keep``: a mask function on hkl to thin the data."""
    rng = np.random.default_rng(seed)
    r = np.arange(-n_max, n_max + 1)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    sg = gemmi.SpaceGroup(true_sg)
    ops = sg.operations()
    centred = np.ones(len(hkl), bool)
    for t in ops.cen_ops:
        centred &= (hkl @ np.asarray(t)) % 24 == 0
    hkl = hkl[centred]
    hkl = hkl[(hkl[:, 0] > 0) | ((hkl[:, 0] == 0) & (hkl[:, 1] > 0))
              | ((hkl[:, 0] == 0) & (hkl[:, 1] == 0) & (hkl[:, 2] > 0))]  # one of each Friedel pair
    if keep is not None:
        hkl = hkl[keep(hkl)]
    absent = np.asarray(ops.systematic_absences(hkl.astype(np.int32)), bool)
    if axial_odd_strong:
        axial = (hkl != 0).sum(axis=1) == 1
        absent &= ~(axial & (hkl.sum(axis=1) % 2 != 0))
    signal = np.where(absent, 0.0, rng.exponential(strong, len(hkl)) + 2.0)
    obs_hkl = np.concatenate([hkl, -hkl])
    obs = np.concatenate([signal, signal]) + rng.normal(0.0, 1.0, 2 * len(hkl))
    return obs_hkl, obs


def candidates(patterson: str):
    return space_groups_of(gemmi.SpaceGroup(patterson))


def axes_by_name(result) -> dict:
    return {a["axis"]: a for a in result["screw_axes"]}


def test_p41_is_found_and_told_from_p4_and_p42_not_from_p43():
    result = absence_scores(synthetic("P 41"), candidates("P 4/m"))
    axes = axes_by_name(result)
    assert set(axes) == {"41c", "42c"}
    a41 = axes["41c"]
    # 00l, l = 1…12: l = 4, 8, 12 expected present; the nine others expected absent
    assert (a41["n_expected_present"], a41["n_expected_absent"]) == (3, 9)
    assert a41["verdict"] == "present" and a41["score"] > 0.99
    assert abs(a41["mean_i_over_sigma_absent"]) < 1.0 < 10.0 < a41["mean_i_over_sigma_present"]
    assert a41["z_score"] == pytest.approx(a41["mean_i_over_sigma_absent"])
    assert axes["42c"]["verdict"] == "present"  # odd l absent too
    assert result["chosen"] == "P 41"
    scores = {r["space_group"]: r["score"] for r in result["rows"]}
    assert scores["P 41"] == scores["P 43"] > 0.99
    assert scores["P 4"] < 1e-6 and scores["P 42"] < 1e-6
    assert "P 41 and P 43 cannot be distinguished" in result["note"]
    assert "enantiomorphs" in result["note"]
    for r in result["rows"]:  # the keys callers and reports read are kept
        assert {"space_group", "n_absent", "mean_i_over_sigma_absent", "chosen"} <= set(r)
    assert [r["space_group"] for r in result["rows"] if r["chosen"]] == ["P 41"]


def test_p42_is_not_p41():
    result = absence_scores(synthetic("P 42", seed=2), candidates("P 4/m"))
    axes = axes_by_name(result)
    # 41c: l = 2, 6, 10 are strong among the expected absent → no 41 screw
    assert axes["41c"]["verdict"] == "absent" and axes["41c"]["z_score"] > 1.645
    assert axes["42c"]["verdict"] == "present"
    assert result["chosen"] == "P 42" and result["note"] == ""


def test_p212121_all_three_axes():
    result = absence_scores(synthetic("P 21 21 21", seed=3), candidates("P m m m"))
    axes = axes_by_name(result)
    assert set(axes) == {"21a", "21b", "21c"}
    for a in axes.values():
        assert a["verdict"] == "present", a
        assert (a["n_expected_present"], a["n_expected_absent"]) == (6, 6)
        assert abs(a["mean_i_over_sigma_absent"]) < 1.0
    assert result["chosen"] == "P 21 21 21" and result["note"] == ""
    assert [r["space_group"] for r in result["rows"] if r["consistent"]] == ["P 21 21 21"]


def test_p222_with_strong_odd_axial_reflections():
    result = absence_scores(synthetic("P 2 2 2", seed=4, axial_odd_strong=True), candidates("P m m m"))
    for a in result["screw_axes"]:
        assert a["verdict"] == "absent" and a["z_score"] > 5 and a["score"] < 1e-6
    assert result["chosen"] == "P 2 2 2" and result["note"] == ""


def test_a_screw_along_a_only_gives_the_setting_of_the_cell():
    """21 along a alone: P 21 2 2 (P 2 2 21's setting), as dials writes it."""
    result = absence_scores(synthetic("P 21 2 2", seed=5), candidates("P m m m"))
    verdicts = {k: a["verdict"] for k, a in axes_by_name(result).items()}
    assert verdicts == {"21a": "present", "21b": "absent", "21c": "absent"}
    assert result["chosen"] == "P 21 2 2" and result["note"] == ""


def test_too_few_axial_reflections_leave_the_axes_undetermined():
    """Only 00l with l ≤ 1 and no h00/0k0 measured: nothing tells the screws apart;
    P 2 2 2 is written (dials: no evidence scores a screw 0) and the note says so."""
    def keep(hkl):
        axial = (hkl != 0).sum(axis=1) == 1
        return ~axial | ((hkl[:, 2] != 0) & (np.abs(hkl[:, 2]) < MIN_REFLECTIONS))

    result = absence_scores(synthetic("P 21 21 21", seed=6, keep=keep), candidates("P m m m"))
    for a in result["screw_axes"]:
        assert a["verdict"] == "undetermined" and a["comment"] == "not enough data" and a["score"] == 0.0
        assert a["n_expected_present"] < MIN_REFLECTIONS
    assert result["chosen"] == "P 2 2 2"
    assert "P 21 21 21" in result["note"] and "cannot be distinguished" in result["note"]
    assert "P 2 2 2 is written" in result["note"] and "too few axial reflections for 21a, 21b, 21c" in result["note"]
    assert all(r["consistent"] for r in result["rows"]) and len(result["rows"]) == 8


def test_i23_and_i213_cannot_be_distinguished():
    result = absence_scores(synthetic("I 21 3", n_max=8, seed=7), candidates("I m -3"))
    assert result["screw_axes"] == []  # the 21 absences are the centring's
    assert result["chosen"] == "I 2 3"
    assert "I 2 3 and I 21 3 cannot be distinguished" in result["note"]


def test_i41_against_i4_uses_only_the_reflections_the_centring_allows():
    result = absence_scores(synthetic("I 41", seed=8), candidates("I 4/m"))
    a = axes_by_name(result)["41c"]
    # 00l, l even ≤ 12: 4, 8, 12 expected present, 2, 6, 10 expected absent
    assert (a["n_expected_present"], a["n_expected_absent"]) == (3, 3)
    assert a["verdict"] == "present" and result["chosen"] == "I 41" and result["note"] == ""


def test_p63_among_the_hexagonal_screws():
    result = absence_scores(synthetic("P 63", seed=9), candidates("P 6/m"))
    verdicts = {k: a["verdict"] for k, a in axes_by_name(result).items()}
    assert verdicts == {"61c": "absent", "62c": "absent", "63c": "present"}
    assert result["chosen"] == "P 63" and result["note"] == ""


def test_one_strong_expected_absent_reflection_is_taken_as_an_outlier():
    """dials: z_abs > 1.645 but ⟨I/σ⟩ present > 20 ⟨I/σ⟩ absent → drop the strongest
    expected-absent reflection and test again."""
    absent = np.array([0.3, -0.5, 0.8, -1.2, 0.1, 0.4, -0.2, 0.6, 0.0, -0.4, 0.2, 30.0])
    present = np.array([120.0, 80.0, 95.0, 150.0, 60.0, 110.0])
    out = score_screw_axis(present, absent)
    assert out["verdict"] == "present" and "outlier" in out["comment"]
    assert out["mean_i_over_sigma_absent"] == pytest.approx(np.mean(absent[:-1]))
    assert out["score"] == pytest.approx(1.0)


def test_the_direct_score_formula():
    absent, present = np.array([2.5, 3.5]), np.array([4.0, 4.0])  # z_abs 3, z_pres 4
    out = score_screw_axis(present, absent)
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert out["verdict"] == "absent" and out["z_score"] == pytest.approx(3.0)
    assert out["score"] == pytest.approx((1 - phi(3.0)) * phi(4.0))
    out = score_screw_axis(np.array([1.0, 2.0]), np.array([0.2, -0.1]))  # z_pres 1.5 < 1.645
    assert out["verdict"] == "undetermined" and out["score"] == 0.0
    out = score_screw_axis(np.array([3.0, 2.0]), np.array([0.2, -0.1]))
    assert out["verdict"] == "present" and out["score"] == pytest.approx(phi(2.5))


def test_no_data_at_all():
    result = absence_scores((np.zeros((0, 3), int), np.zeros(0)), candidates("P 4/m"))
    assert result["chosen"] == "P 4" and "cannot be distinguished" in result["note"]
    assert all(a["verdict"] == "undetermined" for a in result["screw_axes"])
