"""Which candidate clusters to merge, as xia2.multiplex chooses them.

Candidates (the merge nodes of the intensity trees) are taken largest first (ties: the
higher node first, then the order given); a member set already seen is a duplicate
(kept once, the other methods that found it noted); each remaining cluster's
completeness and multiplicity come from ``merging_statistics`` on its members' scaled
observations over the whole data's resolution range; clusters below
``min_completeness`` (a fraction) or ``min_multiplicity`` are rejected with the reason;
selection stops at ``max_clusters``.
"""
from __future__ import annotations

import gemmi
import numpy as np

from ..merging.merge import d_spacing, valid_observations
from ..merging.statistics import merging_statistics
from .params import ClusterParams, MultiplexParams


def _key(members) -> tuple:
    return tuple(sorted(members))


def cluster_statistics(members, hkl, intensity, variance, dataset, space_group: gemmi.SpaceGroup, cell, *,
                       d_min: float | None = None, d_max: float | None = None, n_bins: int = 10,
                       seed: int = 0) -> dict:
    """Merging statistics of one cluster: the observations of the data sets ``members``.

    Returns ``{"completeness" (fraction), "multiplicity", "n_obs", "n_unique", "cc_half",
    "rpim", "i_over_sigma", "d_min", "d_max", "statistics" (merging_statistics's dict)}``.
    """
    sel = np.isin(np.asarray(dataset), np.asarray(list(members)))
    stats = merging_statistics(np.asarray(hkl).reshape(-1, 3)[sel], np.asarray(intensity)[sel],
                               np.asarray(variance)[sel], space_group, cell, d_min=d_min, d_max=d_max,
                               n_bins=n_bins, seed=seed)
    o = stats["overall"]
    comp = o.get("completeness")
    return {"completeness": None if comp is None else comp / 100.0, "multiplicity": o.get("multiplicity"),
            "n_obs": o.get("n_obs"), "n_unique": o.get("n_unique"), "cc_half": o.get("cc_half"),
            "rpim": o.get("rpim"), "i_over_sigma": o.get("i_over_sigma"), "d_min": stats["d_min"],
            "d_max": stats["d_max"], "statistics": stats}


def select_clusters(candidates, hkl, intensity, variance, dataset, space_group: gemmi.SpaceGroup, cell,
                    params: MultiplexParams | ClusterParams | None = None, *, n_bins: int = 10) -> dict:
    """The clusters to merge among ``candidates`` (dicts with ``members`` and optionally
    ``method``, ``node``, ``height``; e.g. the ``clusters`` of the intensity clusterings,
    tagged with their method).

    hkl, intensity, variance, dataset: the scaled observations of every data set
    (intensity and variance divided by the inverse scale factor); space_group, cell: of
    the merged data.

    Returns (strict JSON) ``{"selected": [...], "rejected": [...], "duplicates": [...],
    "d_min", "d_max"}``; each selected or rejected cluster is the candidate's fields plus
    ``name`` ("cluster_<node>" with the method), ``completeness`` (fraction),
    ``multiplicity``, ``cc_half``, ``rpim``, ``i_over_sigma``, ``n_obs``, ``n_unique``,
    ``also_from`` (other methods that found the same data sets) and, when rejected,
    ``reason``. Candidates after the ``max_clusters``-th selected one are not examined
    (listed with reason "max_clusters reached").
    """
    params = params or MultiplexParams()
    hkl = np.asarray(hkl).reshape(-1, 3)
    intensity = np.asarray(intensity, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    ok = valid_observations(intensity, variance)
    d = d_spacing(hkl[ok], cell) if ok.any() else np.zeros(0)
    d_min = float(d.min()) if len(d) else None
    d_max = float(d.max()) if len(d) else None

    indexed = list(enumerate(candidates))
    indexed.sort(key=lambda t: (-len(t[1]["members"]), -float(t[1].get("height", 0.0)), t[0]))
    seen: dict[tuple, dict] = {}
    selected, rejected, duplicates = [], [], []
    for _, cand in indexed:
        members = [m.item() if hasattr(m, "item") else m for m in cand["members"]]
        key = _key(members)
        method = cand.get("method")
        if key in seen:
            first = seen[key]
            if method and method != first.get("method") and method not in first["also_from"]:
                first["also_from"].append(method)
            duplicates.append({"members": list(key), "method": method, "node": cand.get("node"),
                               "same_as": first["name"]})
            continue
        row = {k: v for k, v in cand.items() if k not in ("members",)}
        row["members"] = list(key)
        row["size"] = len(key)
        row["name"] = f"{method}_cluster_{cand['node']}" if method and "node" in cand else \
            f"cluster_{len(seen) + 1}"
        row["also_from"] = []
        seen[key] = row
        if params.max_clusters is not None and len(selected) >= params.max_clusters:
            row["reason"] = "max_clusters reached"
            rejected.append(row)
            continue
        st = cluster_statistics(key, hkl, intensity, variance, dataset, space_group, cell, d_min=d_min,
                                d_max=d_max, n_bins=n_bins, seed=params.seed)
        row.update({k: v for k, v in st.items() if k not in ("statistics", "d_min", "d_max")})
        comp, mult = row["completeness"], row["multiplicity"]
        if params.min_completeness is not None and (comp is None or comp < params.min_completeness):
            row["reason"] = f"completeness {0 if comp is None else comp:.3f} < min_completeness " \
                            f"{params.min_completeness:g}"
            rejected.append(row)
        elif params.min_multiplicity is not None and (mult is None or mult < params.min_multiplicity):
            row["reason"] = f"multiplicity {0 if mult is None else mult:.2f} < min_multiplicity " \
                            f"{params.min_multiplicity:g}"
            rejected.append(row)
        else:
            selected.append(row)
    return {"selected": selected, "rejected": rejected, "duplicates": duplicates, "d_min": d_min,
            "d_max": d_max}


def candidates_of(clustering: dict) -> list[dict]:
    """The candidate clusters of one intensity clustering's result, tagged with its method."""
    return [dict(c, method=clustering["method"]) for c in clustering["clusters"]]


__all__ = ["cluster_statistics", "select_clusters", "candidates_of"]
