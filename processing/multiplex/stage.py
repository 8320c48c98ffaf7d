"""``run_cluster``: xia2.multiplex's clustering of scaled data as a stage of its own.

On the scaled observations of every data set (scaled.expt/.refl, or filtered.* after
ΔCC½):

1. unit-cell clustering of the data sets' cells (NCDist, single linkage, cut at
   ``unit_cell_threshold``: :func:`~processing.multiplex.unit_cell.cluster_unit_cells`);
2. intensity clustering: the correlation matrix of the merged intensities and the
   cos-angles of the data sets' vectors in its embedding, each clustered by average
   linkage (:func:`~processing.multiplex.intensity.intensity_clustering`);
3. the candidate clusters — every merge node of the ``cluster_method`` tree, largest
   first, at most :data:`MAX_TABLE_CLUSTERS` — with their merging statistics over the
   whole data's resolution range (completeness as a fraction, multiplicity, CC½, Rpim),
   their own d_min (Å, the highest resolution among their members' observations), and
   whether xia2.multiplex would merge them (``min_completeness``, ``min_multiplicity``,
   ``max_clusters``: :func:`~processing.multiplex.selection.select_clusters`).

Nothing is written: the stage returns its input unchanged and everything in the summary
(strict JSON). Each tree carries its flat groups at :data:`COLOUR_FRACTION` of its top
height (the colours of a scipy/matplotlib dendrogram; for the unit cells, the clusters
at the threshold). Above :data:`MAX_MATRIX_DATASETS` data sets the n × n matrices and the
member lists of every tree node are left out (``summary["matrices"]`` says so); the trees'
linkage rows, the embedding and the table stay. Results repeat exactly for one seed.
"""
from __future__ import annotations

import numpy as np
from scipy.cluster import hierarchy

from ..errors import XtalError
from ..merging.filtering import SCALED_COLUMNS, usable_rows
from ..merging.merge import d_spacing
from ..scaling.scale import common_space_group, median_cell
from .intensity import compared_observations, intensity_clustering, scaled_observations
from .params import ClusterParams
from .selection import candidates_of, cluster_statistics, select_clusters
from .unit_cell import cluster_unit_cells

#: above this many data sets the n × n matrices and the trees' member lists are left out
MAX_MATRIX_DATASETS = 300
#: the candidate clusters listed (largest first); smaller ones are counted, not listed
MAX_TABLE_CLUSTERS = 100
#: decimals kept of the correlation and cos-angle matrices and of the embedding
MATRIX_DIGITS = 5
#: subtrees joined below this fraction of a tree's top height share a colour (scipy's default)
COLOUR_FRACTION = 0.7
#: merging-statistics resolution bins of each candidate cluster
N_BINS = 10


def check_input(experiments, reflections) -> None:
    """One clear XtalError for input the clustering cannot use."""
    if experiments is None or len(experiments) == 0:
        raise XtalError("no experiments: give scaled.expt and scaled.refl")
    if reflections is None or len(reflections) == 0:
        raise XtalError("no reflections: give scaled.expt and scaled.refl")
    for col in ("miller_index", "id", "flags", *SCALED_COLUMNS):
        if col not in reflections:
            raise XtalError(f"the reflections are not scaled (no {col} column): run xtal scale first")
    ids = reflections["id"]
    if len(ids) and ids.max() >= len(experiments):
        raise XtalError(f"the reflections name data set {int(ids.max())} but there are only "
                        f"{len(experiments)} experiments: give the .expt and .refl written together")
    if any(e.crystal is None for e in experiments):
        raise XtalError("every experiment needs a crystal model: give scaled data")
    if len(experiments) < 2:
        raise XtalError("clustering needs at least two data sets")
    if not usable_rows(reflections).any():
        raise XtalError("no scaled observations (none flagged scaled): run xtal scale first")


def colour_groups(linkage_rows, n: int, fraction: float = COLOUR_FRACTION) -> tuple[list[int], float]:
    """Flat groups of a tree's leaves 0 … n − 1 (numbered 1, 2 … in leaf order) joined below
    ``fraction`` of the top height, and that height; one group for a flat or single-leaf tree."""
    Z = np.asarray(linkage_rows, dtype=np.float64).reshape(-1, 4)
    top = float(Z[:, 2].max()) if len(Z) else 0.0
    t = fraction * top
    if n < 2 or top <= 0:
        return [1] * n, t
    raw = hierarchy.fcluster(Z, t=t, criterion="distance")
    order = {}
    for leaf in hierarchy.leaves_list(Z):
        order.setdefault(int(raw[leaf]), len(order) + 1)
    return [order[int(c)] for c in raw], t


def _per_dataset(obs: dict, n: int, cell) -> tuple[np.ndarray, np.ndarray]:
    """(usable observations, d_min in Å or inf) of each data set 0 … n − 1."""
    ds = np.asarray(obs["dataset"], dtype=np.int64)
    counts = np.bincount(ds, minlength=n)[:n]
    d_min = np.full(n, np.inf)
    if len(ds):
        np.minimum.at(d_min, ds, d_spacing(obs["hkl"], cell))
    return counts, d_min


def _rounded(matrix) -> list:
    return [[None if v is None else round(float(v), MATRIX_DIGITS) for v in row] for row in matrix]


def _tree_summary(result: dict, n: int, full: bool) -> dict:
    """An intensity clustering as the summary keeps it: no distance matrix; its colour groups."""
    out = {k: v for k, v in result.items() if k != "distance"}
    out["groups"], out["colour_threshold"] = colour_groups(result["dendrogram"]["linkage"], n)
    for key in ("correlation", "cos_angle", "coordinates"):
        if key in out:
            out[key] = _rounded(out[key])
    if not full:
        for key in ("correlation", "n_common", "cos_angle", "clusters"):
            out.pop(key, None)
    return out


def cluster_table(clustering: dict, obs: dict, space_group, cell, params: ClusterParams, identifiers: list,
                  dataset_d_min: np.ndarray) -> tuple[list[dict], int]:
    """The candidate clusters of one intensity clustering, largest first (at most
    :data:`MAX_TABLE_CLUSTERS`), each with its statistics and ``selected``/``reason``;
    and how many candidates there were."""
    cands = candidates_of(clustering)
    cands.sort(key=lambda c: (-c["size"], -c["height"], c["node"]))
    listed = cands[:MAX_TABLE_CLUSTERS]
    args = (obs["hkl"], obs["intensity"], obs["variance"], obs["dataset"], space_group, cell)
    chosen = select_clusters(listed, *args, params, n_bins=N_BINS)
    rows = {tuple(c["members"]): dict(c, selected=True, reason=None) for c in chosen["selected"]}
    for c in chosen["rejected"]:
        row = dict(c, selected=False)
        if "completeness" not in row:  # past max_clusters: not examined there, its statistics here
            st = cluster_statistics(row["members"], *args, d_min=chosen["d_min"], d_max=chosen["d_max"],
                                    n_bins=N_BINS, seed=params.seed)
            row.update({k: v for k, v in st.items() if k not in ("statistics", "d_min", "d_max")})
        rows[tuple(c["members"])] = row
    table = []
    for c in listed:
        row = rows[tuple(sorted(c["members"]))]
        row.pop("children", None)
        row.pop("also_from", None)
        row["identifiers"] = [identifiers[k] for k in row["members"]]
        d = float(np.min(dataset_d_min[row["members"]]))
        row["d_min"] = d if np.isfinite(d) else None
        table.append(row)
    return table, len(cands)


def run_cluster(experiments, reflections, params: ClusterParams, progress=None):
    """Cluster scaled data sets as xia2.multiplex does; nothing is changed or written.

    Parameters
    ----------
    experiments : ExperimentList of the scaled data sets (one space group, crystal models)
    reflections : ReflectionTable with dials.scale's columns (inverse_scale_factor,
        intensity.scale.value/.variance, flags), ids 0 … n − 1
    params : ClusterParams
    progress : optional ``progress(fraction, message)``

    Returns
    -------
    (experiments, reflections, summary) : the input unchanged, and the summary (strict
    JSON once through ``json_ready``): ``datasets`` (id, identifier, n_observations, d_min,
    unit_cell), ``unit_cell_clustering``, ``correlation`` and ``cos_angle`` (trees with
    ``groups``; matrices and the embedding ``coordinates``), ``clusters`` (the candidate
    table), ``n_candidates``, ``n_selected``, ``matrices`` (included or why not),
    ``space_group``, ``unit_cell``, ``d_min``/``d_max`` (Å) of all the data.
    """
    check_input(experiments, reflections)
    say = progress or (lambda *_: None)
    n = len(experiments)
    ids = list(range(n))
    identifiers = [e.identifier for e in experiments]
    space_group = common_space_group(experiments, "give scaled data (xtal cosym, then xtal scale)")
    cell = median_cell(experiments)
    full = n <= MAX_MATRIX_DATASETS

    say(0.05, f"unit-cell clustering of {n} data sets")
    forms = cluster_unit_cells([e.crystal.unit_cell for e in experiments], ids=ids, centrings=space_group,
                               threshold=params.unit_cell_threshold)
    group_of = {k: c["cluster_id"] for c in forms["clusters"] for k in c["members"]}
    forms["groups"] = [group_of[k] for k in ids]

    say(0.15, "correlation matrix and its embedding")
    compared = compared_observations(reflections, space_group)
    trees = intensity_clustering(compared["hkl"], compared["intensity"], compared["variance"],
                                 np.asarray(compared["dataset"], dtype=np.int64), space_group, dataset_ids=ids,
                                 min_common=params.min_common, dimensions=params.dimensions, seed=params.seed)
    obs = scaled_observations(reflections)
    obs["dataset"] = np.asarray(obs["dataset"], dtype=np.int64)

    say(0.4, f"statistics of the {params.cluster_method} clusters")
    counts, d_min = _per_dataset(obs, n, cell)
    table, n_candidates = cluster_table(trees[params.cluster_method], obs, space_group, cell, params,
                                        identifiers, d_min)
    d_all = d_spacing(obs["hkl"], cell)
    datasets = [{"id": k, "identifier": identifiers[k], "n_observations": int(counts[k]),
                 "d_min": float(d_min[k]) if np.isfinite(d_min[k]) else None,
                 "unit_cell": [float(x) for x in experiments[k].crystal.unit_cell]} for k in ids]
    summary = {
        "n_datasets": n, "datasets": datasets, "space_group": space_group.xhm(),
        "unit_cell": [float(x) for x in cell], "n_observations": len(obs["dataset"]),
        "d_min": float(d_all.min()) if len(d_all) else None, "d_max": float(d_all.max()) if len(d_all) else None,
        "no_observations": [k for k in ids if counts[k] == 0],
        "cluster_method": params.cluster_method,
        "unit_cell_clustering": forms,
        "correlation": _tree_summary(trees["correlation"], n, full),
        "cos_angle": _tree_summary(trees["cos_angle"], n, full),
        "clusters": table, "n_candidates": n_candidates, "n_listed": len(table),
        "n_selected": sum(1 for c in table if c["selected"]),
        "matrices": {"included": full, "limit": MAX_MATRIX_DATASETS,
                     "note": "" if full else f"{n} data sets (more than {MAX_MATRIX_DATASETS}): the n × n "
                                             "correlation and cos-angle matrices and the member lists of every "
                                             "tree node are left out; the trees' linkage, the embedding and the "
                                             "cluster table are kept"},
    }
    say(1.0, f"{n_candidates} candidate clusters, {summary['n_selected']} selected")
    return experiments, reflections, summary


__all__ = ["run_cluster", "check_input", "cluster_table", "colour_groups", "MAX_MATRIX_DATASETS",
           "MAX_TABLE_CLUSTERS"]
