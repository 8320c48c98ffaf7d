"""ΔCC½ filtering (issue 13, point 1) on reflection-level ensembles with known truth: the
non-isomorphous crystals are the ones removed, the merged data get no worse, the
leave-one-out equals a recomputation, image groups find the damaged crystal's late
images, and bad input ends in one clear message."""
from __future__ import annotations

import json

import gemmi
import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.merging.delta_cc_half import cutoff_value, delta_cc_half, image_groups, resolution_shells
from processing.merging.filter_params import DeltaCcHalfParams
from processing.merging.filtering import image_numbers, reestimate_resolution, run_compute_delta_cchalf, usable_rows
from processing.merging.merge import asu_index, d_spacing, merge_intensities, unpack_hkl
from processing.merging.statistics import cc_half_from_terms, sigma_tau_terms
from processing.params import from_strings
from processing.reflections import Flags
from processing.scaling import ScaleParams, run_scale
from processing.simulate import SimulateParams, run_simulate
from processing.simulate.truth import canonical_keys, point_group_index_ops
from processing.symmetry import CosymParams, run_cosym

#: the indexing ambiguity of I 2 3 in its cubic lattice (cosym may choose either setting)
TWIN = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]])


def flagged(summary, flag):
    return sorted(c["identifier"] for c in summary["crystals"] if flag in c["flags"])


@pytest.fixture(scope="module")
def insulin(tmp_path_factory):
    """insulin-24 (one non-isomorphous, one weak, one damaged crystal) → cosym → scale."""
    out = tmp_path_factory.mktemp("dcc_insulin")
    _, truth = run_simulate(SimulateParams(preset="insulin-24", mode="reflections", output_dir=str(out)))
    e, r = read_experiments(str(out / "integrated.expt")), read_reflections(str(out / "integrated.refl"))
    e, r, _ = run_cosym(e, r, CosymParams(stability="false"))
    e, r, _ = run_scale(e, r, ScaleParams())
    return e, r, truth, str(out / "true.mtz"), out


@pytest.fixture(scope="module")
def insulin_filtered(insulin):
    e, r, *_ = insulin
    return run_compute_delta_cchalf(e, r, DeltaCcHalfParams())


@pytest.fixture(scope="module")
def forty(tmp_path_factory):
    """40 crystals, 3 non-isomorphous, otherwise clean (no weak, damaged or outliers), all in
    one setting (no cosym needed); 25 images each and 50 atoms keep it quick."""
    out = tmp_path_factory.mktemp("dcc_forty")
    _, truth = run_simulate(SimulateParams(preset="insulin-24", mode="reflections", output_dir=str(out),
                                           n_crystals=40, n_non_isomorphous=3, n_weak=0, n_damaged=0,
                                           outlier_fraction=0.0, alt_setting_fraction=0.0, n_images=25,
                                           n_atoms=50))
    e, r = read_experiments(str(out / "integrated.expt")), read_reflections(str(out / "integrated.refl"))
    e, r, _ = run_scale(e, r, ScaleParams())
    return e, r, truth


def cc_to_truth(experiments, table, truth_mtz: str) -> float:
    ok = usable_rows(table)
    sg = gemmi.SpaceGroup(experiments[0].crystal.space_group_symbol)
    g = table["inverse_scale_factor"][ok]
    merged = merge_intensities(table["miller_index"][ok], table["intensity.scale.value"][ok] / g,
                               table["intensity.scale.variance"][ok] / g ** 2, sg,
                               experiments[0].crystal.unit_cell, 1.0)
    data = np.array(gemmi.read_mtz_file(truth_mtz))
    ops = point_group_index_ops(sg)
    tk = canonical_keys(data[:, :3].astype(int), ops)
    order = np.argsort(tk)
    best = -1.0
    for M in (np.eye(3, dtype=int), TWIN):
        mk = canonical_keys(merged.hkl @ M.T, ops)
        pos = np.clip(np.searchsorted(tk[order], mk), 0, len(tk) - 1)
        found = tk[order][pos] == mk
        best = max(best, float(np.corrcoef(merged.imean[found], data[order[pos[found]], 3])[0, 1]))
    return best


# ---------------------------------------------------------------- (a) insulin-24

def test_insulin_24_non_isomorphous_crystal_is_lowest_and_removed(insulin, insulin_filtered):
    e, r, truth, true_mtz, _ = insulin
    e2, r2, s = insulin_filtered
    json.dumps(s, allow_nan=False)
    (bad,) = flagged(truth, "non_isomorphous")
    c = s["cycles"][0]
    # lowest ΔCC½, alone below mean − 4σ (population σ, as DIALS)
    assert c["table"][0]["identifier"] == bad
    deltas = [row["delta_cc_half"] for row in c["table"]]
    assert deltas == sorted(deltas)
    mean, sd, cut = cutoff_value(np.array(deltas), 4.0)
    assert c["cutoff"] == pytest.approx(cut) == pytest.approx(c["mean"] - 4 * c["sd"])
    assert deltas[0] < cut < deltas[1]
    # far below the rest (measured ×100: -0.24 against a median |ΔCC½| of 0.027)
    assert abs(deltas[0]) > 5 * np.median(np.abs(deltas[1:]))
    assert [x["identifier"] for x in s["removed"]] == [bad] and s["removed"][0]["cycle"] == 1
    # every data set named in the summary, by its input id
    rows = {d["identifier"]: d for d in s["datasets"]}
    assert [d["id"] for d in s["datasets"]] == list(range(24))
    assert rows[bad]["removed_in_cycle"] == 1 and rows[bad]["delta_cc_half"] == deltas[0]
    assert sum(d["removed_in_cycle"] is not None for d in s["datasets"]) == 1
    # the outputs: 23 data sets, ids 0…22, the bad one gone
    assert len(e2) == 23 and bad not in e2.identifiers()
    assert sorted(np.unique(r2["id"]).tolist()) == list(range(23))
    assert s["n_observations"] == int(usable_rows(r2).sum()) < s["n_observations_in"]
    # CC½ of the ΔCC½ calculation rises (measured 0.903 → 0.994); the merged data get no
    # worse against the truth (measured 0.99879 → 0.99892)
    assert c["cc_half_after"] > c["cc_half_before"] + 0.05
    before, after = cc_to_truth(e, r, true_mtz), cc_to_truth(e2, r2, true_mtz)
    assert after >= before and after > 0.995
    assert s["termination_reason"] == "max_cycles" and not s["rescaled"]


def test_d_min_is_re_estimated_after_filtering(insulin, insulin_filtered):
    """xia2.multiplex re-estimates d_min after filtering: without the non-isomorphous
    crystal CC½ stays above 0.3 further out."""
    pytest.importorskip("processing.merging.resolution")
    e, r, *_ = insulin
    e2, r2, s = insulin_filtered
    assert s["resolution"]["available"]
    before = reestimate_resolution(e, r, False)["d_min"]
    after = s["d_min_estimate"]
    data_d_min = s["merging_statistics"]["d_min"]
    # measured: 1.20 Å before (data to 1.18 Å), no cut needed after
    assert before is not None and before > data_d_min + 0.005
    assert after is None or after < before


# ---------------------------------------------------------------- (b) 40 with 3 bad

def test_forty_data_sets_three_non_isomorphous_all_removed_no_good_one(forty):
    """Iterative filtering as xia2.multiplex (max_cycles=6, rescaling between cycles): the
    non-isomorphous crystals leave over the cycles (mean − 4σ over 40 values catches only the
    worst one or two at a time), then a cycle removes nothing; no good crystal goes.
    With DIALS's error model and outlier rejection the first cycle removes two (ΔCC½×100
    −0.323, −0.311; cutoff −0.293), the next the third; CC½ 0.996 at the end."""
    e, r, truth = forty
    e2, r2, s = run_compute_delta_cchalf(e, r, DeltaCcHalfParams(max_cycles=6))
    json.dumps(s, allow_nan=False)
    bad = flagged(truth, "non_isomorphous")
    assert len(bad) == 3
    assert sorted(x["identifier"] for x in s["removed"]) == bad
    assert s["termination_reason"] == "no_more_removed"
    assert len(e2) == 37 and not set(bad) & set(e2.identifiers())
    assert all(c["n_removed"] <= 2 for c in s["cycles"])
    assert s["cycles"][-1]["n_removed"] == 0 and s["rescaled"]
    # each removal was the cycle's lowest value and the data got better each time
    for c in s["cycles"][:-1]:
        assert c["removed"][0]["identifier"] == c["table"][0]["identifier"]
        assert c["cc_half_after"] > c["cc_half_before"]
    assert s["cc_half_out"] > s["cc_half_in"]
    # and, once the bad ones are gone, no good data set is below the cutoff
    last = s["cycles"][-1]
    assert min(row["delta_cc_half"] for row in last["table"]) > last["cutoff"]


def test_max_percent_removed_stops_the_cycles(insulin):
    e, r, truth, *_ = insulin
    # 4 % of 24 data sets is less than one: the non-isomorphous crystal stays, and says why
    e2, _, s = run_compute_delta_cchalf(e, r, DeltaCcHalfParams(max_percent_removed=4.0))
    assert len(e2) == 24 and not s["removed"] and s["termination_reason"] == "max_percent_removed"
    c = s["cycles"][0]
    assert c["n_below_cutoff"] == 1 and c["n_removed"] == 0
    assert c["table"][0]["identifier"] == flagged(truth, "non_isomorphous")[0]
    # an absolute cutoff above every value would remove all but two: never fewer than two are kept
    e3, _, s = run_compute_delta_cchalf(e, r, DeltaCcHalfParams(cutoff=1.0, max_percent_removed=100))
    assert len(e3) == 2 and s["termination_reason"] == "too_few_groups"
    assert s["cycles"][0]["cutoff_from"] == "cutoff" and s["cycles"][0]["n_below_cutoff"] == 24


# ---------------------------------------------------------------- (c) leave-one-out

def _brute_force(inv, intensity, group, shell, n_shells, n_ref, common):
    """CC½ with and without each group, each recomputed from scratch (statistics.py's σ-τ)."""
    def cc(sel, keep_refl=None):
        n, mean, var_half = sigma_tau_terms(inv[sel], n_ref, intensity[sel])
        if keep_refl is not None:
            n = np.where(keep_refl, n, 0)
        per_shell = cc_half_from_terms(n, mean, var_half, shell, n_shells)
        counts = np.bincount(shell[n >= 2], minlength=n_shells)
        ok = np.isfinite(per_shell) & (counts >= 2)
        return float(np.sum(per_shell[ok] * counts[ok]) / np.sum(counts[ok]))

    every = np.ones(len(inv), bool)
    with_, without = [], []
    for k in range(group.max() + 1):
        rest = group != k
        measured_twice = np.bincount(inv[rest], minlength=n_ref) >= 2
        with_.append(cc(every, measured_twice) if common else cc(every))
        without.append(cc(rest))
    return np.array(with_), np.array(without)


@pytest.mark.parametrize("common", [True, False])
@pytest.mark.parametrize("mode", ["dataset", "image_group"])
def test_leave_one_out_equals_brute_force(insulin, common, mode):
    e, r, *_ = insulin
    ok = usable_rows(r) & (r["id"] < 6) & (r["d"] > 1.6)
    hkl = r["miller_index"][ok]
    intensity = r["intensity.scale.value"][ok] / r["inverse_scale_factor"][ok]
    ids = r["id"][ok].astype(np.int64)
    group = ids if mode == "dataset" else image_groups(ids, np.floor(r["xyzobs.px.value"][ok][:, 2]).astype(int) + 1,
                                                        10)[0]
    sg = gemmi.SpaceGroup(e[0].crystal.space_group_symbol)
    cell = np.mean([x.crystal.unit_cell for x in e], axis=0)
    res = delta_cc_half(hkl, intensity, group, sg, cell, n_bins=10, common=common)
    _, _, key = asu_index(hkl, sg)
    uk, inv = np.unique(key, return_inverse=True)
    shell = resolution_shells(d_spacing(unpack_hkl(uk >> 1), cell), 10)
    with_, without = _brute_force(inv, intensity, group, shell, 10, len(uk), common)
    assert len(res.delta_cc_half) == group.max() + 1 >= 6
    np.testing.assert_allclose(res.cc_half_without, without, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.cc_half_with, with_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.delta_cc_half, with_ - without, rtol=0, atol=1e-9)
    assert np.ptp(res.delta_cc_half) > 1e-5  # the groups differ: the comparison is not vacuous


def test_image_groups_as_dials():
    """Groups of 10 from each data set's first image; a last group shorter than 10 joins the one before."""
    ds = np.repeat([0, 1, 2], [25, 30, 29])
    img = np.concatenate([np.arange(1, 26), np.arange(1, 31), np.arange(5, 34)])
    group, g_ds, g_lo, g_hi = image_groups(ds, img, 10)
    assert g_ds.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert list(zip(g_lo.tolist(), g_hi.tolist())) == [(1, 10), (11, 25), (1, 10), (11, 20), (21, 30),
                                                       (5, 14), (15, 33)]
    assert np.all((img >= g_lo[group]) & (img <= g_hi[group])) and np.all(g_ds[group] == ds)


# ---------------------------------------------------------------- (d) image groups

def test_image_groups_find_the_damaged_crystals_late_images(insulin):
    """After the non-isomorphous crystal is gone and the rest rescaled, image-group ΔCC½ is
    lowest for the damaged crystal's last 10 images and falls along its sweep; only groups
    of that crystal, from the end of its sweep inward, are flagged; its data set stays."""
    e, r, truth, *_ = insulin
    (damaged,) = flagged(truth, "damaged")
    e1, r1, s1 = run_compute_delta_cchalf(e, r, DeltaCcHalfParams(final_rescale=True))
    assert s1["rescaled"] and len(e1) == 23
    e2, r2, s = run_compute_delta_cchalf(e1, r1, DeltaCcHalfParams(mode="image_group"))
    json.dumps(s, allow_nan=False)
    c = s["cycles"][0]
    assert c["table"][0]["identifier"] == damaged and c["table"][0]["image_range"] == [41, 50]
    own = sorted((row for row in c["table"] if row["identifier"] == damaged), key=lambda row: row["image_range"])
    assert [row["image_range"][0] for row in own] == [1, 11, 21, 31, 41]
    assert own[-1]["delta_cc_half"] < own[0]["delta_cc_half"] - 1e-4
    removed = sorted(x["image_range"] for x in c["removed"])
    assert {x["identifier"] for x in c["removed"]} == {damaged} and removed[-1] == [41, 50]
    assert [g[0] for g in removed] == list(range(removed[0][0], 42, 10))  # contiguous to the end
    assert s["n_datasets"] == 23 and not s["removed"]  # the data set itself stays
    k = e2.identifiers().index(damaged)
    first = removed[0][0]
    assert e2[k].scan.valid_image_ranges[damaged] == [[1, first - 1]]
    excluded = (r2["flags"].astype(np.uint64) & np.uint64(int(Flags.user_excluded_in_scaling))) != 0
    mine = r2["id"] == k
    images = image_numbers(r2, e2)
    assert excluded[mine & (images >= first)].all() and not excluded[mine & (images < first)].any()
    assert not excluded[~mine].any()
    assert s["n_observations"] == s["n_observations_in"] - c["n_observations_removed"]
    assert {g["identifier"] for g in s["image_groups"]} == set(e1.identifiers())


# ---------------------------------------------------------------- (e) bad input

def test_unscaled_or_wrong_input_is_one_clear_message(insulin, tmp_path):
    e, r, *_ = insulin
    unscaled = r.copy()
    del unscaled["inverse_scale_factor"]
    with pytest.raises(XtalError, match="not scaled.*xtal scale") as err:
        run_compute_delta_cchalf(e, unscaled, DeltaCcHalfParams())
    assert "\n" not in str(err.value)
    none_scaled = r.copy()
    none_scaled["flags"] = none_scaled["flags"].astype(np.uint64) & ~np.uint64(int(Flags.scaled))
    with pytest.raises(XtalError, match="no scaled observations"):
        run_compute_delta_cchalf(e, none_scaled, DeltaCcHalfParams())
    one = r.select(r["id"] == 0)
    with pytest.raises(XtalError, match="mode=image_group") as err:
        run_compute_delta_cchalf(type(e)([e[0]]), one, DeltaCcHalfParams())
    assert err.value.field == "mode"
    with pytest.raises(XtalError, match="at least two groups"):
        run_compute_delta_cchalf(type(e)([e[0]]), one, DeltaCcHalfParams(mode="image_group", group_size=1000))
    with pytest.raises(XtalError, match="no experiments"):
        run_compute_delta_cchalf(type(e)(), r, DeltaCcHalfParams())


def test_parameter_limits_refuse_bad_values():
    with pytest.raises(XtalError, match="stdcutoff=-1") as err:
        DeltaCcHalfParams(stdcutoff=-1.0)
    assert err.value.field == "stdcutoff"
    with pytest.raises(XtalError) as err:
        from_strings(DeltaCcHalfParams, ["filtering.deltacchalf.stdcutoff=-0.5"])
    assert err.value.field == "stdcutoff"
    for words, field in ((["group_size=0"], "group_size"), (["mode=images"], "mode"),
                         (["max_percent_removed=150"], "max_percent_removed"), (["dmin=3", "dmax=2"], "d_min")):
        with pytest.raises(XtalError) as err:
            from_strings(DeltaCcHalfParams, words)
        assert err.value.field == field
    p = from_strings(DeltaCcHalfParams, ["dmin=1.5", "nbins=20", "filtering.deltacchalf.max_cycles=6"])
    assert (p.d_min, p.n_bins, p.max_cycles) == (1.5, 20, 6)


# ---------------------------------------------------------------- command line

def test_command_line_prints_the_sorted_table_and_writes_filtered_files(insulin, tmp_path, capsys):
    from processing.cli.main import main
    from processing.io.outputs import write_output

    e, r, truth, _, _ = insulin
    (bad,) = flagged(truth, "non_isomorphous")
    bad_id = e.identifiers().index(bad)
    write_output(str(tmp_path / "scaled.expt"), e, r)
    write_output(str(tmp_path / "scaled.refl"), e, r)
    rc = main(["compute_delta_cchalf", str(tmp_path / "scaled.expt"), str(tmp_path / "scaled.refl"),
               f"output.experiments={tmp_path / 'filtered.expt'}", f"output.reflections={tmp_path / 'filtered.refl'}",
               "output.html=x.html"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    table = [ln for ln in lines if ln.startswith("Dataset: ")]
    assert len(table) == 24 and table[0].startswith(f"Dataset: {bad_id}, ΔCC½: -")
    values = [float(ln.rsplit(" ", 1)[1]) for ln in table]
    assert values == sorted(values)
    assert any(ln.startswith("mean delta_cc_half: ") for ln in lines)
    assert any(ln.startswith("cutoff value: -") for ln in lines)
    assert f"Removing dataset {bad_id}" in lines
    assert len(read_experiments(str(tmp_path / "filtered.expt"))) == 23
    # a bad parameter: one line, exit 1
    assert main(["compute_delta_cchalf", str(tmp_path / "scaled.expt"), str(tmp_path / "scaled.refl"),
                 "stdcutoff=-2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stdcutoff" in err
