"""Clustering science of xtal multiplex (issue 14, point 2): unit-cell clustering on NCDist,
intensity clustering on the correlation matrix and on cos-angles, and the choice of the
clusters to merge — on cells and a reflection-level ensemble with known truth."""
from __future__ import annotations

import json

import gemmi
import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.models.crystal import cell_from_real_space
from processing.multiplex import (MultiplexParams, candidates_of, cluster_unit_cells, correlation_clustering,
                                  cos_angle_clustering, intensity_clustering, ncdist, ncdist_matrix, niggli_g6,
                                  scaled_observations, select_clusters)
from processing.multiplex.intensity import compared_observations
from processing.multiplex.intensity import correlation_matrix, merged_matrix
from processing.multiplex.unit_cell import BOUNDARIES, cell_from_g6, g6_from_cell
from processing.params import from_strings
from processing.scaling import ScaleParams, run_scale
from processing.simulate import SimulateParams, run_simulate
from processing.symmetry import CosymParams, run_cosym


def strict(obj) -> str:
    return json.dumps(obj, allow_nan=False, sort_keys=True)


# ---------------------------------------------------------------- unit cells

CUBIC = (78.1, 78.1, 78.1, 90.0, 90.0, 90.0)       # I 2 3 insulin
TETRA = (60.0, 60.0, 100.0, 90.0, 90.0, 90.0)      # P 41


def two_forms(seed=0):
    """20 cubic I cells and 10 tetragonal P cells, each edge jittered by 0.3 %, interleaved."""
    rng = np.random.default_rng(seed)
    cells, cents, truth = [], [], []
    for k in range(30):
        ref, cen = (CUBIC, "I") if k % 3 != 2 else (TETRA, "P")
        f = 1 + 0.003 * rng.normal(size=3)
        cells.append(tuple(ref[i] * f[i] for i in range(3)) + ref[3:])
        cents.append(cen)
        truth.append(ref)
    return cells, cents, truth


def test_two_crystal_forms_give_two_clusters_with_their_median_cells():
    cells, cents, truth = two_forms()
    result = cluster_unit_cells(cells, centrings=cents)           # threshold 5000 as DIALS
    assert [c["size"] for c in result["clusters"]] == [20, 10]
    cubic_ids = [k for k in range(30) if truth[k] == CUBIC]
    assert result["clusters"][0]["members"] == cubic_ids
    assert result["clusters"][1]["members"] == [k for k in range(30) if truth[k] == TETRA]
    for cluster, ref in zip(result["clusters"], (CUBIC, TETRA)):
        med = np.array(cluster["median_cell"])
        assert np.all(np.abs(med[:3] / np.array(ref[:3]) - 1) < 0.005), med
        assert np.allclose(med[3:], 90.0)
    # the I cubic cell's primitive Niggli cell: rhombohedral, 67.64 Å, 109.47°
    niggli = result["clusters"][0]["median_niggli_cell"]
    assert abs(niggli[0] - 78.1 * np.sqrt(3) / 2) < 0.5 and abs(niggli[3] - 109.47) < 0.5
    # within a form a few tens of Å², between the forms ≈ 7700 Å² (> 5000)
    D = ncdist_matrix(niggli_g6(cells, cents))
    cub = np.array(cubic_ids)
    tet = np.array(result["clusters"][1]["members"])
    assert D[np.ix_(cub, cub)].max() < 200 and D[np.ix_(tet, tet)].max() < 200
    assert 7000 < D[np.ix_(cub, tet)].min() < 8500
    assert abs(ncdist(CUBIC, TETRA, "I", "P") - 7697) < 5
    # the dendrogram: every data set once, heights finite, the top join above the threshold
    tree = result["dendrogram"]
    assert sorted(tree["leaves"]) == list(range(30)) and len(tree["linkage"]) == 29
    assert tree["linkage"][-1][2] > 5000 > tree["linkage"][-2][2]
    strict(result)
    assert strict(cluster_unit_cells(cells, centrings=cents)) == strict(result)


def test_min_cluster_size_and_threshold():
    cells, cents, _ = two_forms(seed=1)
    small = cluster_unit_cells(cells, centrings=cents, min_cluster_size=11, labels=[f"x{k}" for k in range(30)])
    assert [c["size"] for c in small["clusters"]] == [20]
    assert small["outliers"] == [k for k in range(30) if k % 3 == 2]
    assert set(small["dendrogram"]["labels"]) == {f"x{k}" for k in range(30)}
    one = cluster_unit_cells(cells, centrings=cents, threshold=10000)
    assert [c["size"] for c in one["clusters"]] == [30]


def test_niggli_equivalent_settings_have_zero_distance():
    R = np.array([[50.0, 0, 0], [10.0, 60, 0], [5.0, 7, 70]])
    M = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]])           # the same lattice, another basis
    c0, c1 = cell_from_real_space(R), cell_from_real_space(M @ R)
    assert abs(c1[1] - c0[1]) > 20                            # the cells as written differ a lot
    assert ncdist(c0, c1) < 1e-6
    # a centred cell and its primitive cell
    a, al = 78.1 * np.sqrt(3) / 2, np.degrees(np.arccos(-1 / 3))
    assert ncdist(CUBIC, (a, a, a, al, al, al), "I", "P") < 1e-6


def test_boundary_paths_join_cells_on_either_side_of_a_niggli_boundary():
    # a ≈ b: Niggli puts the 95° angle on β for one, on α for the other
    c1, c2 = (60.0, 60.05, 70.0, 90.0, 95.0, 90.0), (60.05, 60.0, 70.0, 90.0, 95.0, 90.0)
    g = niggli_g6([c1, c2])
    plain = float(np.linalg.norm(g[0] - g[1]))
    d = ncdist(c1, c2)
    assert plain > 1000 and d < 10, (plain, d)
    # an angle either side of 90°: the +++ and −−− forms
    assert ncdist((50, 60, 70, 89.98, 90.0, 90.0), (50, 60, 70, 90.02, 90.0, 90.0)) < 5
    # g4 ≈ g2 (2bc·cosα ≈ b²): reduced cells on either side of the boundary
    c3 = (40.0, 50.0, 60.0, 65.0, 80.0, 85.0)
    b, c = 50.0, 60.0
    alpha = np.degrees(np.arccos(b / (2 * c)))                 # g4 = g2 exactly
    near = [(40.0, b, c, alpha + s, 80.0, 85.0) for s in (-0.05, 0.05)]
    gn = niggli_g6(near)
    assert np.linalg.norm(gn[0] - gn[1]) > 5000 and ncdist(*near) < 20
    assert ncdist(c3, c3) == 0.0


def test_boundary_transformations_are_changes_of_basis():
    rng = np.random.default_rng(4)
    for _ in range(5):
        R = np.diag([40.0, 55.0, 70.0]) + rng.normal(scale=8.0, size=(3, 3))
        g = g6_from_cell(cell_from_real_space(R))
        ref = niggli_g6([cell_from_real_space(R)])[0]
        for name, _, T in BOUNDARIES:
            if name.endswith("=0"):
                continue                                      # sign flips valid on their boundary only
            assert np.allclose(niggli_g6([cell_from_g6(T @ g)])[0], ref, rtol=1e-6, atol=1e-3), name


def test_ncdist_matrix_is_symmetric_and_not_above_the_g6_distance():
    cells, cents, _ = two_forms(seed=2)
    g = niggli_g6(cells, cents)
    D = ncdist_matrix(g)
    plain = np.linalg.norm(g[:, None] - g[None], axis=-1)
    assert np.allclose(D, D.T) and np.all(np.diag(D) == 0)
    assert np.all(D <= plain + 1e-9)


# ---------------------------------------------------------------- intensities (small, synthetic)

def test_pairs_without_common_reflections_are_distance_one():
    sg = gemmi.SpaceGroup("P 1")
    rng = np.random.default_rng(0)
    hkl_a = np.array([(h, k, 1) for h in range(1, 9) for k in range(1, 9)])
    hkl_b = hkl_a + [0, 0, 5]                                 # disjoint
    truth_a, truth_b = rng.gamma(2.0, 100.0, len(hkl_a)), rng.gamma(2.0, 100.0, len(hkl_b))
    hkl = np.concatenate([hkl_a, hkl_a, hkl_b])
    inten = np.concatenate([truth_a, truth_a * 2 + rng.normal(0, 1, len(hkl_a)), truth_b])
    ds = np.repeat([0, 1, 2], 64)
    out = correlation_clustering(hkl, inten, np.ones(len(hkl)), ds, sg, min_common=10)
    cc = out["correlation"]
    assert cc[0][1] > 0.99 and cc[0][2] is None and cc[1][2] is None
    assert out["distance"][0][2] == 1.0 and out["n_common"][0][2] == 0
    assert out["clusters"][0]["members"] == [0, 1] and out["clusters"][-1]["height"] == pytest.approx(1.0)
    strict(out)
    # the sparse sums equal a direct Pearson CC on the common reflections
    ids, X, P = merged_matrix(hkl, inten, np.ones(len(hkl)), ds, sg)
    both = (P[0].toarray() > 0).ravel() & (P[1].toarray() > 0).ravel()
    assert both.sum() == 64
    direct = np.corrcoef(X[0].toarray().ravel()[both], X[1].toarray().ravel()[both])[0, 1]
    assert correlation_matrix(X, P)[0][0, 1] == pytest.approx(direct, abs=1e-12)


def test_dense_and_sparse_products_give_one_correlation_matrix(monkeypatch):
    from processing.multiplex import intensity

    sg = gemmi.SpaceGroup("P 1")
    rng = np.random.default_rng(4)
    hkl = rng.integers(1, 12, size=(3000, 3))
    ds = rng.integers(0, 12, 3000)
    inten = rng.gamma(2.0, 100.0, 3000) * (1 + 0.1 * ds)
    _, X, P = merged_matrix(hkl, inten, np.ones(3000), ds, sg)
    monkeypatch.setattr(intensity, "DENSE_FRACTION", 0.0)
    dense = correlation_matrix(X, P, min_common=3)
    monkeypatch.setattr(intensity, "DENSE_FRACTION", 2.0)
    sparse = correlation_matrix(X, P, min_common=3)
    assert np.array_equal(dense[1], sparse[1]) and dense[1][0, 1] >= 3
    assert np.array_equal(np.isnan(dense[0]), np.isnan(sparse[0]))
    assert np.nanmax(np.abs(dense[0] - sparse[0])) < 1e-12


def test_the_embedding_takes_the_elbow_of_the_functional():
    from processing.symmetry.embedding import elbow_dimensions

    # Φ (×1e6) of a 12-crystal ensemble, 2 non-isomorphous: the relative fall never drops below 20 %
    phi = {2: 31.9, 3: 14.7, 4: 4.0, 5: 3.16, 6: 1.85}
    assert elbow_dimensions(phi) == 4
    assert elbow_dimensions({2: 10.0, 3: 1.0, 4: 0.9, 5: 0.85}) == 3
    assert elbow_dimensions({2: 1.0, 3: 0.5}) == 2


def test_cos_angle_clustering_of_two_directions():
    rng = np.random.default_rng(1)
    x = np.concatenate([[1, 0.1] + 0.02 * rng.normal(size=(6, 2)), [0.2, 1] + 0.02 * rng.normal(size=(4, 2))])
    x[:3] *= 0.3                                              # length does not matter, angle does
    out = cos_angle_clustering(x)
    top = out["clusters"][-1]["children"]
    assert sorted(len(next(c for c in out["clusters"] if c["node"] == ch)["members"]) for ch in top) == [4, 6]
    strict(out)


# ---------------------------------------------------------------- a reflection-level ensemble

@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """insulin-24 as 12 crystals, 2 non-isomorphous (cell +2 %, perturbed atoms) → cosym → scale."""
    out = tmp_path_factory.mktemp("multiplex")
    _, truth = run_simulate(SimulateParams(preset="insulin-24", mode="reflections", output_dir=str(out),
                                           n_crystals=12, n_non_isomorphous=2, n_weak=0, n_damaged=0, seed=3))
    e, r = read_experiments(str(out / "integrated.expt")), read_reflections(str(out / "integrated.refl"))
    e, r, cosym = run_cosym(e, r, CosymParams(stability="false"))
    e, r, _ = run_scale(e, r, ScaleParams())
    bad_names = {c["identifier"] for c in truth["crystals"] if "non_isomorphous" in c["flags"]}
    bad = sorted(i for i, x in enumerate(e) if x.identifier in bad_names)
    obs = scaled_observations(r)
    sg = gemmi.SpaceGroup(e[0].crystal.space_group_symbol)
    compared = compared_observations(r, sg)  # what clustering compares
    settings = {c["identifier"]: c["change_of_basis_op"] for c in truth["crystals"]}
    return {"obs": obs, "compared": compared, "sg": sg, "cell": e[0].crystal.unit_cell, "bad": bad, "n": len(e),
            "cosym": cosym,
            "settings": settings}


@pytest.fixture(scope="module")
def clustered(ensemble):
    o = ensemble["compared"]
    return intensity_clustering(o["hkl"], o["intensity"], o["variance"], o["dataset"], ensemble["sg"], seed=0)


def smallest_holding(clusters, ids):
    return min((c for c in clusters if set(ids) <= set(c["members"])), key=lambda c: c["size"])


def test_correlation_clustering_separates_the_non_isomorphous_crystals(ensemble, clustered):
    n, bad = ensemble["n"], ensemble["bad"]
    good = [k for k in range(n) if k not in bad]
    assert n == 12 and len(bad) == 2
    corr = clustered["correlation"]
    assert smallest_holding(corr["clusters"], good)["members"] == good
    cc = np.array(corr["correlation"], dtype=float)
    gg = cc[np.ix_(good, good)][~np.eye(10, dtype=bool)]
    gb = cc[np.ix_(good, bad)]
    # scaling rejected most of the bad ones' deviating observations; winsorised at 6σ they
    # still set every bad–good correlation below every good–good one
    assert np.median(gg) > 0.99 and gg.min() > gb.max()
    # the good ten join first, the bad ones join them only above
    node = smallest_holding(corr["clusters"], good)
    assert node["height"] < 0.01 and corr["clusters"][-1]["height"] > 2 * node["height"]


def test_cos_angle_clustering_separates_the_non_isomorphous_crystals(ensemble, clustered):
    """The ten isomorphous data sets form one tight branch; each non-isomorphous one joins it
    only an order of magnitude higher. (An absolute 1 − cos > 0.5, a 60° angle, is out of reach:
    a non-isomorphous crystal still correlates with the others at CC ≈ 0.9, so its cos-angle to
    them is ≈ CC_gb / sqrt(CC_gg·CC_bb) ≈ 0.9.)"""
    n, bad = ensemble["n"], ensemble["bad"]
    good = [k for k in range(n) if k not in bad]
    cos = clustered["cos_angle"]
    assert cos["dimensions"] == 4  # Φ's elbow (Φ keeps falling by > 20 % per dimension after it)
    node = smallest_holding(cos["clusters"], good)
    assert node["members"] == good and node["height"] < 0.01
    for b in bad:
        assert smallest_holding(cos["clusters"], good + [b])["height"] > 10 * node["height"]


def test_selection_honours_min_completeness_max_clusters_and_duplicates(ensemble, clustered):
    o, bad = ensemble["obs"], ensemble["bad"]
    good = [k for k in range(ensemble["n"]) if k not in bad]
    cands = candidates_of(clustered["correlation"]) + candidates_of(clustered["cos_angle"])
    args = (o["hkl"], o["intensity"], o["variance"], o["dataset"], ensemble["sg"], ensemble["cell"])
    everything = select_clusters(cands, *args, MultiplexParams())
    stats = {tuple(c["members"]): c for c in everything["selected"]}
    assert len(stats) == len(everything["selected"]) and not everything["rejected"]
    assert len(everything["duplicates"]) >= 1                    # the root at least (both trees have it)
    good_row = stats[tuple(good)]
    assert "correlation" in good_row["also_from"] + [good_row["method"]]
    sizes = [c["size"] for c in everything["selected"]]
    assert sizes == sorted(sizes, reverse=True)
    # completeness and multiplicity grow with the data sets: all 12 > the good 10 > a pair
    pair = next(c for c in everything["selected"] if c["size"] == 2)
    assert stats[tuple(range(12))]["completeness"] > good_row["completeness"] > pair["completeness"]
    assert good_row["multiplicity"] > pair["multiplicity"]
    threshold = 0.5 * (good_row["completeness"] + stats[tuple(range(12))]["completeness"])
    sel = select_clusters(cands, *args, MultiplexParams(min_completeness=threshold))
    kept = [c["members"] for c in sel["selected"]]
    assert list(range(12)) in kept
    assert all(c["completeness"] >= threshold for c in sel["selected"])
    low = [c for c in sel["rejected"] if c["members"] == good]
    assert low and "min_completeness" in low[0]["reason"]
    capped = select_clusters(cands, *args, MultiplexParams(max_clusters=2))
    assert [c["size"] for c in capped["selected"]] == sizes[:2]
    assert all(c["reason"] == "max_clusters reached" for c in capped["rejected"])
    many = select_clusters(cands, *args, MultiplexParams(min_multiplicity=good_row["multiplicity"] - 0.01))
    assert all(c["multiplicity"] >= good_row["multiplicity"] - 0.01 for c in many["selected"])
    for out in (everything, sel, capped, many):
        strict(out)
    assert strict(select_clusters(cands, *args, MultiplexParams(max_clusters=2))) == strict(capped)


def test_intensity_clustering_is_strict_json_and_repeats_exactly(ensemble, clustered):
    o = ensemble["compared"]
    again = intensity_clustering(o["hkl"], o["intensity"], o["variance"], o["dataset"], ensemble["sg"], seed=0)
    assert strict(again) == strict(clustered)


def test_cosym_summary_coordinates_follow_the_indexing_setting(ensemble):
    """cosym's summary coordinates are each data set's identity copy in its *input* indexing
    (2 dimensions): their angles tell the indexing settings apart, not isomorphism — which is
    why cos-angle clustering uses the embedding of the scaled data's correlation matrix."""
    rows = ensemble["cosym"]["datasets"]
    out = cos_angle_clustering([r["coordinates"] for r in rows], [r["identifier"] for r in rows])
    strict(out)
    by_node = {c["node"]: c["members"] for c in out["clusters"]}
    top = sorted(sorted(by_node[ch] if ch in by_node else [rows[ch]["identifier"]])
                 for ch in out["clusters"][-1]["children"])
    settings = ensemble["settings"]
    truth = sorted(sorted(n for n, op in settings.items() if op == key) for key in set(settings.values()))
    assert top == truth


# ---------------------------------------------------------------- parameters

def test_params_names_and_limits():
    p = from_strings(MultiplexParams, ["unit_cell.threshold=3000", "clustering.method=correlation",
                                       "min_completeness=0.9", "max_clusters=3", "min_cluster_size=2"])
    assert (p.unit_cell_threshold, p.cluster_method, p.min_completeness, p.max_clusters) == \
        (3000.0, "correlation", 0.9, 3)
    assert MultiplexParams().unit_cell_threshold == 5000.0 and MultiplexParams().cluster_method == "cos_angle"
    with pytest.raises(XtalError, match="cluster_method"):
        from_strings(MultiplexParams, ["cluster_method=ward"])
    with pytest.raises(XtalError):
        MultiplexParams(min_completeness=1.5)
