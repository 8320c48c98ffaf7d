"""Scaling (issue 12) on reflection-level ensembles with known truth and on real DIALS
data: merged intensities against the truth, the scale factors against the simulated
ones, the error model, incremental scaling, excluded data sets and bad input."""
from __future__ import annotations

import json
import os

import gemmi
import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.merging.merge import merge_intensities
from processing.reflections import Flags
from processing.scaling import ScaleParams, run_scale
from processing.simulate import SimulateParams, run_simulate
from processing.simulate.truth import canonical_keys, point_group_index_ops
from processing.symmetry import CosymParams, run_cosym

QUIET = dict(n_weak=0, n_non_isomorphous=0, n_damaged=0, outlier_fraction=0.0)
REAL = "../shared/data/real/l_cysteine_narrow_wedge"
#: the indexing ambiguity of I 2 3 in its cubic lattice
TWIN = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]])


def simulate(tmp_path_factory, name, **kw):
    out = tmp_path_factory.mktemp(name)
    run_simulate(SimulateParams(preset="insulin-24", mode="reflections", output_dir=str(out), **kw))
    e, r = read_experiments(str(out / "integrated.expt")), read_reflections(str(out / "integrated.refl"))
    e, r, _ = run_cosym(e, r, CosymParams(stability="false"))
    return e, r, str(out / "true.mtz")


@pytest.fixture(scope="module")
def insulin(tmp_path_factory):
    return simulate(tmp_path_factory, "insulin24")


@pytest.fixture(scope="module")
def insulin_scaled(insulin):
    e, r, truth = insulin
    return run_scale(e, r, ScaleParams())


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    return simulate(tmp_path_factory, "quiet", n_crystals=8, **QUIET)


@pytest.fixture(scope="module")
def one_non_isomorphous(tmp_path_factory):
    return simulate(tmp_path_factory, "noniso", n_crystals=6, **{**QUIET, "n_non_isomorphous": 1})


def scaled_rows(table):
    flags = table["flags"].astype(np.uint64)
    return ((flags & np.uint64(int(Flags.scaled))) != 0) & ((flags & np.uint64(int(Flags.bad_for_scaling))) == 0)


def cc_to_truth(experiments, table, truth_mtz: str) -> float:
    ok = scaled_rows(table)
    sg = gemmi.SpaceGroup(experiments[0].crystal.space_group_symbol)
    g = table["inverse_scale_factor"][ok]
    merged = merge_intensities(table["miller_index"][ok], table["intensity.scale.value"][ok] / g,
                               table["intensity.scale.variance"][ok] / g ** 2, sg, experiments[0].crystal.unit_cell,
                               1.0)
    mtz = gemmi.read_mtz_file(truth_mtz)
    data = np.array(mtz)
    ops = point_group_index_ops(sg)
    tk = canonical_keys(data[:, :3].astype(int), ops)
    order = np.argsort(tk)
    best = -1.0
    for M in (np.eye(3, dtype=int), TWIN):  # cosym's setting is the truth's or its twin
        mk = canonical_keys(merged.hkl @ M.T, ops)
        pos = np.clip(np.searchsorted(tk[order], mk), 0, len(tk) - 1)
        found = tk[order][pos] == mk
        best = max(best, float(np.corrcoef(merged.imean[found], data[order[pos[found]], 3])[0, 1]))
    return best


def test_insulin_24_merged_intensities_match_the_truth(insulin, insulin_scaled):
    _, _, truth = insulin
    e, r, s = insulin_scaled
    assert cc_to_truth(e, r, truth) >= 0.99
    assert s["n_datasets"] == 24 and s["space_group"] in ("I 2 3", "I 21 3")
    overall = s["merging_statistics"]["overall"]
    assert overall["completeness"] > 90 and overall["cc_half"] > 0.99
    json.dumps(s, allow_nan=False)


def test_outlier_rejection_finds_the_simulated_outliers(insulin_scaled):
    _, r, s = insulin_scaled
    flagged = (r["flags"].astype(np.uint64) & np.uint64(int(Flags.outlier_in_scaling))) != 0
    true = r["outlier.true"].astype(bool)
    assert (flagged & true).sum() >= 0.9 * true.sum()
    # apart from the non-isomorphous crystal, few good observations are rejected
    usual = np.median(np.bincount(r["id"][flagged & ~true], minlength=24))
    assert usual < 0.005 * len(r) / 24


def test_one_non_isomorphous_crystal_is_rejected_not_put_into_every_sigma(one_non_isomorphous):
    """Five isomorphous crystals and one with a 2 % larger cell: DIALS's error model (a from the
    central normal probability plot, b from binned variances, both on the observations that are
    not outliers; δ with unit variance) leaves σ to the good crystals and the rejection takes about
    half of the odd one. Measured: a = 1.56, b = 0.033, 48 % of the odd crystal rejected, ≤ 2 % of
    the others, CC½ 0.991, I/σ 20.9. The earlier fit (on every observation) gave a = 2.0, b = 0.058,
    rejected a quarter of the odd crystal, and CC½ 0.978, I/σ 11."""
    e, r, truth = one_non_isomorphous
    with open(os.path.join(os.path.dirname(truth), "truth.json")) as f:
        odd = next(c["identifier"] for c in json.load(f)["truth"]["crystals"] if "non_isomorphous" in c["flags"])
    e2, r2, s = run_scale(e, r, ScaleParams())
    em = s["error_model"]
    assert em["refined"] and em["a"] < 1.7 and em["b"] < 0.045
    flagged = (r2["flags"].astype(np.uint64) & np.uint64(int(Flags.outlier_in_scaling))) != 0
    rejected = {x.identifier: flagged[r2["id"] == k].mean() for k, x in enumerate(e2)}
    assert rejected.pop(odd) > 0.4
    assert max(rejected.values()) < 0.03
    overall = s["merging_statistics"]["overall"]
    assert overall["cc_half"] > 0.99 and overall["i_over_sigma"] > 18
    assert cc_to_truth(e2, r2, truth) > 0.99


def test_scale_factors_follow_the_simulated_ones(quiet):
    """g against the simulation's own factor, expected counts / (true I × lp/qe/p): the
    same up to one overall constant. The simulated drift (a sine over the wedge) and
    absorption (a lab-frame surface) are not exactly the model's shapes, so each
    observation's g is right to a few per cent; each data set's mean to a fraction of one."""
    e, r, truth = quiet
    e2, r2, s = run_scale(e, r, ScaleParams())
    ok = scaled_rows(r2)
    sg = gemmi.SpaceGroup(e2[0].crystal.space_group_symbol)
    data = np.array(gemmi.read_mtz_file(truth))
    ops = point_group_index_ops(sg)
    tk = canonical_keys(data[:, :3].astype(int), ops)
    order = np.argsort(tk)
    per_set = []
    for k in range(len(e2)):
        sel = ok & (r2["id"] == k)
        factor = r2["lp"][sel] / r2["qe"][sel] / r2["partiality"][sel]
        best = None
        for M in (np.eye(3, dtype=int), TWIN):  # the truth's setting of this crystal
            key = canonical_keys(r2["miller_index"][sel] @ M.T, ops)
            pos = np.clip(np.searchsorted(tk[order], key), 0, len(tk) - 1)
            true_i = data[order[pos], 3]
            strong = (tk[order][pos] == key) & (true_i > np.median(true_i))
            ratio = np.log(r2["inverse_scale_factor"][sel][strong]) \
                - np.log(r2["intensity.true.value"][sel][strong] * factor[strong] / true_i[strong])
            if best is None or np.std(ratio) < np.std(best):
                best = ratio
        per_set.append(best)
    means = np.array([np.mean(x) for x in per_set])
    assert np.ptp(means) < 0.01  # relative scales of the data sets within 1 %
    assert np.std(np.concatenate(per_set)) < 0.1
    assert 0.9 < s["normal_probability"]["sd"] < 1.1  # error model: normalised deviations SD 1.0 ± 0.1
    assert s["error_model"]["refined"] and 0.8 < s["error_model"]["a"] < 2.0


def test_incremental_scaling_keeps_the_earlier_scales(quiet):
    e, r, truth = quiet
    first = r.select(np.isin(r["id"], range(5)))
    e5 = type(e)(e[k] for k in range(5))
    e_a, r_a, _ = run_scale(e5, first, ScaleParams())
    # the earlier scaled set plus three new data sets in one table
    new = r.select(np.isin(r["id"], range(5, 8)))
    for name in ("inverse_scale_factor", "inverse_scale_factor_variance", "intensity.scale.value",
                 "intensity.scale.variance"):
        new[name] = np.zeros(len(new))
    from processing.reflections import ReflectionTable

    both = ReflectionTable.concatenate([r_a, new])
    e_all = type(e)(list(e_a) + [e[k] for k in range(5, 8)])
    e_b, r_b, s = run_scale(e_all, both, ScaleParams())
    assert s["n_fixed"] == 5
    before = r_a["inverse_scale_factor"][scaled_rows(r_a)]
    after = r_b["inverse_scale_factor"][:len(r_a)][scaled_rows(r_a)]
    assert np.allclose(before, after, rtol=1e-9)
    assert cc_to_truth(e_b, r_b, truth) > 0.98


def test_excluded_data_sets_leave_the_output(quiet):
    e, r, _ = quiet
    e2, r2, s = run_scale(e, r, ScaleParams(exclude_datasets=(2,)))
    assert len(e2) == 7 and e[2].identifier not in e2.identifiers()
    assert s["excluded"][0]["id"] == 2 and "exclude_datasets" in s["excluded"][0]["reason"]
    assert sorted(np.unique(r2["id"]).tolist()) == list(range(7))
    with pytest.raises(XtalError) as err:
        run_scale(e, r, ScaleParams(exclude_datasets=(9,)))
    assert err.value.field == "exclude_datasets"


def test_a_data_set_of_nan_intensities_is_left_out_by_name(quiet):
    e, r, _ = quiet
    bad = r.copy()
    sel = bad["id"] == 3
    for name in ("intensity.sum.value", "intensity.prf.value"):
        v = bad[name].copy()
        v[sel] = np.nan
        bad[name] = v
    e2, _, s = run_scale(e, bad, ScaleParams())
    assert len(e2) == 7
    assert [x["id"] for x in s["excluded"]] == [3] and "too few observations" in s["excluded"][0]["reason"]
    json.dumps(s, allow_nan=False)


def test_user_d_min_is_respected(quiet):
    e, r, _ = quiet
    _, r2, s = run_scale(e, r, ScaleParams(d_min=2.5))
    assert r2["d"][scaled_rows(r2)].min() >= 2.5
    assert s["merging_statistics"]["shells"][-1]["d_min"] == pytest.approx(2.5, abs=1e-6)


def test_unsymmetrized_data_are_refused(tmp_path):
    from processing.models import ExperimentList

    with pytest.raises(XtalError, match="no experiments"):
        run_scale(ExperimentList(), None, ScaleParams())
    with pytest.raises(XtalError, match="d_min"):
        ScaleParams(d_min=3.0, d_max=2.0)


@pytest.mark.skipif(not os.path.isdir(REAL), reason="real data not present")
def test_l_cysteine_completeness_and_multiplicity_as_dials_scale():
    """dials.scale.log there: 40 observations, 38 unique, completeness 2.8 %, multiplicity 1.05."""
    from processing.models import ExperimentList
    from processing.reflections import ReflectionTable
    from processing.symmetry import run_symmetry

    experiments, tables = ExperimentList(), []
    for n in ("11", "23"):
        experiments.extend(read_experiments(f"{REAL}/{n}_integrated.expt"))
        tables.append(read_reflections(f"{REAL}/{n}_integrated.refl"))
    e, r, _ = run_symmetry(experiments, ReflectionTable.concatenate(tables), CosymParams())
    _, _, s = run_scale(e, r, ScaleParams())
    overall = s["merging_statistics"]["overall"]
    assert overall["completeness"] == pytest.approx(2.8, rel=0.1)
    assert overall["multiplicity"] == pytest.approx(40 / 38, rel=0.1)
    assert overall["n_obs"] == pytest.approx(40, abs=4)


def test_data_all_scaled_before_are_scaled_again(quiet):
    """As dials.scale on filtered.* after ΔCC½: every data set was scaled before, so all are
    rescaled (no incremental fixing) and the result matches a first scaling's quality."""
    e, r, truth = quiet
    e1, r1, _ = run_scale(e, r, ScaleParams())
    e2, r2, s = run_scale(e1, r1, ScaleParams())
    assert s["n_fixed"] == 0 and s["n_datasets"] == len(e)
    assert cc_to_truth(e2, r2, truth) == pytest.approx(cc_to_truth(e1, r1, truth), abs=2e-4)


def test_a_rescale_starts_from_each_data_sets_model(quiet):
    """As dials.scale: scaled data start from their models (one cycle stays at the converged
    scales), and overwrite_existing_models=True starts from fresh ones (one cycle per
    refinement stays further away)."""
    e, r, _ = quiet
    e1, r1, _ = run_scale(e, r, ScaleParams())
    g1 = r1["inverse_scale_factor"][scaled_rows(r1)]
    _, r_warm, _ = run_scale(e1, r1, ScaleParams(max_iterations=1))
    _, r_cold, _ = run_scale(e1, r1, ScaleParams(max_iterations=1, overwrite_existing_models=True))
    warm = r_warm["inverse_scale_factor"][scaled_rows(r1)]
    cold = r_cold["inverse_scale_factor"][scaled_rows(r1)]
    spread = lambda g: float(np.std(np.log(g / g1)))  # noqa: E731
    assert spread(warm) < 0.0005 and spread(cold) > 5 * spread(warm)  # measured 0.00024 and 0.0036
