"""cosym on reflection-level ensembles with known truth (issue 11): Laue group, one
consistent setting for every data set, pseudo-symmetry, bad data sets, the user's
space group, and exact repeatability.

Consistency with the truth is checked through the simulator's true intensities: after
cosym, two data sets are in one setting exactly when their true intensities agree at
the same (asymmetric-unit) indices."""
from __future__ import annotations

import numpy as np
import pytest

from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.simulate import SimulateParams, run_simulate
from processing.symmetry import CosymParams, run_cosym

QUIET = dict(n_weak=0, n_non_isomorphous=0, n_damaged=0, outlier_fraction=0.0)


def simulate(tmp_path_factory, name, **kw):
    out = tmp_path_factory.mktemp(name)
    files, summary = run_simulate(SimulateParams(preset="insulin-24", mode="reflections", output_dir=str(out), **kw))
    return read_experiments(str(out / "integrated.expt")), read_reflections(str(out / "integrated.refl")), summary


@pytest.fixture(scope="module")
def insulin(tmp_path_factory):
    return simulate(tmp_path_factory, "insulin24")


@pytest.fixture(scope="module")
def p41(tmp_path_factory):
    return simulate(tmp_path_factory, "p41", space_group="P 41", unit_cell=(60, 60, 100, 90, 90, 90),
                    n_crystals=16, **QUIET)


def truth_ops(summary) -> list[str]:
    return [c["change_of_basis_op"] for c in summary["crystals"]]


def abc_matrix(op: str) -> np.ndarray:
    """``-b,a,c`` → the Miller-index matrix M (new basis rows in terms of a, b, c)."""
    rows = []
    for term in op.split(","):
        row = np.zeros(3)
        for sign, name in __import__("re").findall(r"([+-]?)([abc])", term):
            row["abc".index(name)] += -1.0 if sign == "-" else 1.0
        rows.append(row)
    return np.array(rows)


def assert_consistent(truth: list[str], datasets: list[dict], space_group: str) -> None:
    """Every data set ends in the setting the truth's reference setting maps to: the
    output indexing of data set i, composed with the truth's change of basis of crystal i,
    is the same for all data sets up to a rotation of the output space group."""
    import gemmi

    group = [np.rint(np.array(op.rot) / op.DEN).T for op in gemmi.SpaceGroup(space_group).operations().sym_ops]
    for convention in (lambda M: np.linalg.inv(M), lambda M: M):
        X = {d["id"]: np.array(d["matrix"]) @ convention(abc_matrix(truth[int(d["identifier"].rsplit("-", 1)[1])]))
             for d in datasets}
        first = next(iter(X.values()))
        if all(any(np.allclose(x @ np.linalg.inv(first), g) for g in group) for x in X.values()):
            return
    raise AssertionError("data sets are not all in one setting")


def test_insulin_24_m3_and_every_data_set_in_one_setting(insulin):
    experiments, table, truth = insulin
    out_e, out_r, s = run_cosym(experiments, table, CosymParams())
    assert s["best"]["patterson_group"] == "I m -3" and s["best"]["probability"] > 0.95
    assert s["best"]["space_group"] in ("I 2 3", "I 21 3")
    assert "I 2 3 and I 21 3 cannot be distinguished" in s["absences_note"]
    assert s["lattice_group"] == "I m -3 m" and s["n_operations"] == 24
    assert len(out_e) == 24 and not s["excluded"]
    assert np.allclose(out_e[0].crystal.unit_cell[:3], 78.1, rtol=0.01)
    assert out_e[0].crystal.space_group_symbol in ("I 2 3", "I 21 3")
    # the operators split the data sets as the truth's settings do (12 each)
    assert_consistent(truth_ops(truth), s["datasets"], "I 2 3")
    assert sorted(truth_ops(truth).count(t) for t in set(truth_ops(truth))) == [12, 12]
    ops = [d["operator"] for d in s["datasets"]]
    assert sorted(ops.count(o) for o in set(ops)) == [12, 12]
    # the stability check: halves and a second seed give the same answer
    assert s["stability"]["laue_group_agreement"] == 1.0 and len(s["stability"]["runs"]) == 5
    assert set(s["stability"]["operator_agreement"].values()) == {1.0}
    # the input is not modified, and the same seed gives the same answer exactly
    assert experiments[2].crystal.space_group_symbol == table_sg(experiments)
    again = run_cosym(experiments, table, CosymParams())[2]
    assert again["datasets"] == s["datasets"] and again["operators"] == s["operators"]


def table_sg(experiments):
    return experiments[0].crystal.space_group_symbol


def test_p41_4_over_m_with_the_k_h_minus_l_ambiguity(p41):
    experiments, table, truth = p41
    out_e, out_r, s = run_cosym(experiments, table, CosymParams())
    assert s["best"]["patterson_group"] == "P 4/m" and s["best"]["probability"] > 0.95
    assert_consistent(truth_ops(truth), s["datasets"], "P 4")
    assert len({d["operator"] for d in s["datasets"]}) == 2


def test_pseudo_cubic_4_over_m_is_not_m3m(tmp_path_factory):
    experiments, table, truth = simulate(tmp_path_factory, "pseudo", space_group="P 4",
                                         unit_cell=(60, 60, 60.05, 90, 90, 90), n_crystals=10, **QUIET)
    out_e, out_r, s = run_cosym(experiments, table, CosymParams())
    assert s["lattice_group"] == "P m -3 m" and s["n_operations"] == 24
    assert s["best"]["patterson_group"] == "P 4/m"
    assert_consistent(truth_ops(truth), s["datasets"], "P 4")


def test_bad_data_sets_are_left_out_by_name(p41):
    experiments, table, truth = p41
    t = table.copy()
    ids = t["id"]
    for col in ("intensity.prf.value", "intensity.sum.value"):
        v = t[col].copy()
        v[ids == 3] = np.nan  # data set 3: NaN intensities
        t[col] = v
    keep = np.ones(len(t), bool)
    keep[np.nonzero(ids == 5)[0][3:]] = False  # data set 5: three reflections
    hkl = t["miller_index"].copy()
    hkl[ids == 7] += 400  # data set 7: indices nobody else has
    t["miller_index"] = hkl
    t = t.select(keep)
    out_e, out_r, s = run_cosym(experiments, t, CosymParams())
    reasons = {x["id"]: x["reason"] for x in s["excluded"]}
    assert set(reasons) == {3, 5, 7}
    assert reasons[3].startswith("only 0 usable") and reasons[5].startswith("only 3 usable")
    assert "shares fewer than 3 reflections" in reasons[7]
    assert {x["identifier"] for x in s["excluded"]} == {experiments[i].identifier for i in (3, 5, 7)}
    assert len(out_e) == 13 and s["best"]["patterson_group"] == "P 4/m"
    assert_consistent(truth_ops(truth), s["datasets"], "P 4")


def test_the_users_space_group_is_honoured_and_flagged(p41):
    experiments, table, _ = p41
    out_e, out_r, s = run_cosym(experiments, table, CosymParams(space_group="P 4 2 2"))
    assert s["best"]["patterson_group"] == "P 4/m m m" and s["best"]["space_group"] == "P 4 2 2"
    assert s["best"]["analysis_would_choose"] == "P 4/m"
    assert {e.crystal.space_group_symbol for e in out_e} == {"P 4 2 2"}


def test_symmetry_of_the_real_l_cysteine_wedges_is_pmmm(real_data):
    """Two 1° wedges of L-cysteine taken together, as dials.symmetry (see its log in the
    data folder): P m m m, and P 2 2 2 written since no axial reflection tells the
    screw axes apart."""
    from processing.models import ExperimentList
    from processing.reflections import ReflectionTable
    from processing.symmetry import run_symmetry

    folder = real_data / "l_cysteine_narrow_wedge"
    experiments, tables = ExperimentList(), []
    for n in ("11", "23"):
        experiments.extend(read_experiments(str(folder / f"{n}_integrated.expt")))
        tables.append(read_reflections(str(folder / f"{n}_integrated.refl")))
    out_e, out_r, s = run_symmetry(experiments, ReflectionTable.concatenate(tables), CosymParams())
    assert s["lattice_group"] == "P m m m"
    assert s["best"]["patterson_group"] == "P m m m" and s["best"]["space_group"] == "P 2 2 2"
    assert "P 21 21 21" in s["absences_note"] and "cannot be distinguished" in s["absences_note"]
    assert np.allclose(out_e[0].crystal.unit_cell, (5.43, 8.13, 12.06, 90, 90, 90), atol=0.02)


def test_a_reference_mtz_chooses_the_output_setting(tmp_path_factory):
    """Three quarters of the crystals in the alternative setting: alone, cosym keeps the
    majority's indexing; with the true merged intensities as reference= the output takes
    the reference's setting (its CC with the reference is the higher)."""
    from processing.io.mtz import read_reference_intensities

    out = tmp_path_factory.mktemp("alt")
    run_simulate(SimulateParams(preset="insulin-24", mode="reflections", output_dir=str(out), n_crystals=12,
                                alt_setting_fraction=0.75, **QUIET))
    import json

    truth = [c["change_of_basis_op"] for c in json.loads((out / "truth.json").read_text())["truth"]["crystals"]]
    experiments = read_experiments(str(out / "integrated.expt"))
    table = read_reflections(str(out / "integrated.refl"))
    params = CosymParams(stability="false")
    alone = {d["id"]: d["operator"] for d in run_cosym(experiments, table, params)[2]["datasets"]}
    ref = read_reference_intensities(str(out / "true.mtz"))
    _, _, s = run_cosym(experiments, table, params, reference=ref)
    ours = {d["id"]: d["operator"] for d in s["datasets"]}
    majority = max(set(truth), key=truth.count)
    assert {alone[k] for k, t in enumerate(truth) if t == majority} == {"x,y,z"}
    assert {ours[k] for k, t in enumerate(truth) if t == "a,b,c"} == {"x,y,z"}
    ccs = sorted(r["cc"] for r in s["reference"]["settings"])
    assert len(ccs) == 2 and ccs[1] > 0.9 > ccs[0]
    with pytest.raises(Exception, match="no such file"):
        read_reference_intensities(str(out / "missing.mtz"))


def test_lattice_group_restricts_the_search(p41):
    """lattice_group=P m m m on P 4₁ data: 4 operations; of them only the 2-fold along c
    is symmetry, so 2/m (the 4-fold is outside the given lattice group)."""
    experiments, table, _ = p41
    _, _, s = run_cosym(experiments, table, CosymParams(lattice_group="P m m m", stability="false"))
    assert s["n_operations"] == 4 and s["lattice_group"] == "P m m m"
    assert s["best"]["patterson_group"] == "P 1 2/m 1"
    with pytest.raises(Exception, match="does not fit the data sets' lattice"):
        run_cosym(experiments, table, CosymParams(lattice_group="I m -3 m"))


def test_three_bad_data_sets_among_1000_are_left_out_by_name(tmp_path_factory):
    """1,000 P 41 data sets (4 Å, a thousand reflections each): one of NaN intensities, one
    of three reflections, one sharing no reflection with any other — each reported by name
    with its reason; the 997 others analysed and all put in one setting."""
    experiments, t, truth = simulate(tmp_path_factory, "p41_1000", space_group="P 41",
                                     unit_cell=(60, 60, 100, 90, 90, 90), n_crystals=1000, d_edge=4.0, **QUIET)
    ids = t["id"]
    for col in ("intensity.prf.value", "intensity.sum.value"):
        v = t[col].copy()
        v[ids == 3] = np.nan
        t[col] = v
    keep = np.ones(len(t), bool)
    keep[np.nonzero(ids == 500)[0][3:]] = False
    hkl = t["miller_index"].copy()
    hkl[ids == 997] += 400
    t["miller_index"] = hkl
    out_e, _, s = run_cosym(experiments, t.select(keep), CosymParams(stability="false"))
    reasons = {x["id"]: x["reason"] for x in s["excluded"]}
    assert set(reasons) == {3, 500, 997}
    assert reasons[3].startswith("only 0 usable") and reasons[500].startswith("only 3 usable")
    assert "shares fewer than 3 reflections" in reasons[997]
    assert {x["identifier"] for x in s["excluded"]} == {experiments[i].identifier for i in (3, 500, 997)}
    assert len(out_e) == 997 and s["best"]["patterson_group"] == "P 4/m"
    assert_consistent(truth_ops(truth), s["datasets"], "P 4")
