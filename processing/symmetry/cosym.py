"""``run_cosym``: Laue group and indexing ambiguity of an ensemble (dials.cosym).

1. Each data set's integrated intensities go to one primitive reduced basis, Friedel
   mates merged, normalised to E² in resolution shells (``data.py``); data sets too
   small to place are left out by name.
2. The lattice group: rotations keeping the average reduced lattice (``lattice.py``).
3. CC_ij(g) for every pair and lattice operation (``correlations.py``), then the cosym
   embedding (``embedding.py``) in the dimensions where its functional levels off.
4. Each operation scored from the embedding, each subgroup from those scores
   (``laue.py``); the best subgroup's Patterson group and reference setting
   (``spacegroup.py``); its chiral space groups told apart by systematic absences
   where the data can (``absences.py``).
5. One operation per data set so that all share one setting: each data set's copy
   closest to the ensemble's consensus, reduced to its coset of the Laue group.

Time grows with the data-set pairs that share reflections × (lattice operations)² ×
dimensions per functional evaluation; memory with the reflections plus
(operations × data sets²) float32 correlations.
"""
from __future__ import annotations

import copy

import numpy as np

from ..errors import XtalError
from ..models import ExperimentList
from ..models.crystal import Crystal, cell_from_real_space, hall_symbol
from .absences import absence_scores
from .correlations import pairwise_correlations
from .data import centred_to_primitive, prepare
from .analysis import analyse, cosets, relabel
from .embedding import composition_table
from .lattice import average_reduced_basis, lattice_operations, operator_name, reduce_basis, xyz_string
from .params import CosymParams
from .reference import match_reference
from .spacegroup import conventional_setting, laue_class, restrict_to_group, space_groups_of
from .stability import stability


def _transforms(experiments: ExperimentList) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per experiment: T (h_red = T h) and its reduced basis rows (Å)."""
    Ts, bases = [], []
    for e in experiments:
        if e.crystal is None:
            raise XtalError(f"experiment {e.identifier or '?'} has no crystal model")
        R = e.crystal.real_space_matrix
        C = centred_to_primitive(e.crystal.space_group)
        reduced, M = reduce_basis(C @ R)
        Ts.append(M @ C)
        bases.append(reduced)
    return Ts, bases


def _shells(d: np.ndarray, n: int = 20) -> list[np.ndarray]:
    """Row positions in ``n`` shells of equal counts, low to high resolution."""
    return np.array_split(np.argsort(-d, kind="stable"), n)


def _d_min_i_over_sigma(datasets, threshold: float) -> float | None:
    """The d where ⟨I⟩/⟨σ⟩ of all data sets' reflections, in 20 shells, first falls below
    ``threshold`` (None: it never does)."""
    d = np.concatenate([ds.d for ds in datasets])
    i = np.concatenate([ds.extra["intensity"] for ds in datasets])
    s = np.concatenate([ds.extra["sigma"] for ds in datasets])
    for chunk in _shells(d):
        if np.mean(i[chunk]) / np.mean(s[chunk]) < threshold:
            return float(d[chunk].max())
    return None


def _d_min_cc_half(datasets, threshold: float, ops: np.ndarray) -> tuple[float | None, list]:
    """The d where the σ-τ CC½ of the data sets' E² first falls below ``threshold`` in 20
    shells, and the shells' (d_min, CC½). Each data set's reflection is one observation;
    reflections are grouped by the lattice group ``ops`` (reduced basis, Friedel mates
    together), since the data sets are not yet in one setting."""
    from ..merging.statistics import cc_half_sigma_tau
    from ..scaling.data import reflection_keys

    d = np.concatenate([ds.d for ds in datasets])
    e2 = np.concatenate([ds.e2 for ds in datasets])
    W = np.asarray(ops, dtype=np.int64).transpose(0, 2, 1)
    keys = reflection_keys(np.concatenate([ds.hkl for ds in datasets]), np.concatenate([W, -W]))
    found, shells = None, []
    for chunk in _shells(d):
        cc = cc_half_sigma_tau(keys[chunk], e2[chunk])
        shells.append({"d_min": float(d[chunk].min()), "cc_half": cc})
        if found is None and cc is not None and cc < threshold:
            found = float(d[chunk].max())
    return found, shells


def _auto_d_min(datasets, params, ops) -> tuple[float | None, dict]:
    """dials.cosym's automatic d_min: where both ⟨I⟩/⟨σ⟩ < ``min_i_mean_over_sigma_mean``
    and CC½ < ``min_cc_half`` hold, the higher resolution of the two (None: one of them
    never falls below its limit, and all data are used)."""
    if sum(len(ds.d) for ds in datasets) < 40:
        return None, {}
    d_isig = _d_min_i_over_sigma(datasets, params.min_i_mean_over_sigma_mean)
    d_cc, shells = _d_min_cc_half(datasets, params.min_cc_half, ops)
    d_min = None if d_isig is None or d_cc is None else min(d_isig, d_cc)
    return d_min, {"d_min_i_mean_over_sigma_mean": d_isig, "d_min_cc_half": d_cc, "cc_half_shells": shells}


def run_cosym(experiments: ExperimentList, reflections, params: CosymParams, progress=None, reference=None):
    """Determine the Laue group of an ensemble and put every data set in one setting.

    Parameters
    ----------
    experiments : ExperimentList
        Integrated experiments, one crystal each (any setting: P1 from indexing, or a
        conventional centred cell).
    reflections : ReflectionTable
        Their integrated reflections (``id`` = experiment), DIALS's integrated.refl.
    params : CosymParams
    progress : callable, optional
        ``progress(fraction, message)``.
    reference : processing.io.mtz.ReferenceIntensities, optional
        Merged reference intensities: of the settings the Laue group allows, the output
        takes the one that correlates best with them.

    Returns
    -------
    (experiments, reflections, summary)
        The placed data sets reindexed into the chosen space group's reference setting
        (symmetrized.expt/.refl) and a JSON-able summary: operator and subgroup scores,
        best solution, per-data-set operators, embedding coordinates, excluded data sets.

    Examples
    --------
    >>> expts, refl, summary = run_cosym(expts, refl, CosymParams())
    >>> summary["best"]["patterson_group"]
    'I m -3'
    """
    if len(experiments) < 2:
        raise XtalError("cosym needs at least two data sets")
    tick = progress or (lambda *a: None)
    Ts, bases = _transforms(experiments)
    rows_of = rows_by_experiment(reflections["id"], len(experiments))
    datasets, excluded = [], []
    for i, e in enumerate(experiments):
        ds = prepare(i, e.identifier, reflections.select(rows_of[i]), Ts[i], params.d_min)
        if len(ds.e2) < params.min_reflections:
            excluded.append({"id": i, "identifier": e.identifier,
                             "reason": f"only {len(ds.e2)} usable reflections (need {params.min_reflections})"})
        else:
            datasets.append(ds)
    tick(0.1, "data prepared")
    if len(datasets) < 2:
        raise XtalError("fewer than two data sets can be placed: " + "; ".join(r["reason"] for r in excluded))
    ops = lattice_operations(bases[datasets[0].index], params.lattice_symmetry_max_delta)
    if params.lattice_group:
        ops = restrict_to_group(ops, bases[datasets[0].index], params.lattice_group,
                                params.lattice_symmetry_max_delta)
    R_avg = average_reduced_basis([bases[ds.index] for ds in datasets], ops)
    table = composition_table(ops)
    d_min = params.d_min
    resolution = {"d_min_given": d_min}
    if d_min is None:
        d_min, found = _auto_d_min(datasets, params, ops)
        resolution.update(found)
        if d_min is not None:
            datasets = [ds.cut(d_min) for ds in datasets]
    cc, nn = pairwise_correlations(datasets, ops)
    tick(0.3, "pairwise correlations")
    weights = np.where(nn >= params.min_pairs, nn, 0.0)
    alone = [k for k in range(len(datasets))
             if not np.any(np.delete(weights[:, k, :], k, axis=1) > 0)]
    for k in alone:
        ds = datasets[k]
        excluded.append({"id": ds.index, "identifier": ds.name,
                         "reason": f"shares fewer than {params.min_pairs} reflections with every other data set"})
    keep = [k for k in range(len(datasets)) if k not in alone]
    if len(keep) < 2:
        raise XtalError("fewer than two data sets share reflections")
    datasets = [datasets[k] for k in keep]
    cc, weights = cc[:, keep][:, :, keep], weights[:, keep][:, :, keep]
    weights = weights / max(float(weights[weights > 0].mean()), 1e-12)
    result = analyse(cc, weights, ops, table, params, params.dimensions)
    tick(0.7, "embedding")
    out = _finish(experiments, reflections, params, datasets, excluded, ops, table, R_avg, result, Ts, d_min,
                  reference)
    out[2]["stability"] = stability(cc, weights, ops, table, params, result, datasets, out[2])
    out[2]["resolution"] = resolution
    return out


def _choose_subgroup(result, ops, R_avg, params: CosymParams):
    """The best subgroup (or the user's space group's), its Patterson group and setting."""
    rows = result["subgroups"]
    for r in rows:
        sg, M = conventional_setting(ops[r["elements"]], R_avg, params.lattice_symmetry_max_delta)
        r["patterson_group"] = sg.xhm() if sg is not None else laue_class(ops[r["elements"]])
        r["reindex_operator"] = _abc(M) if M is not None else ""
        r["_setting"] = (sg, M)
    chosen = next((r for r in rows if r["_setting"][0] is not None), rows[0])
    if params.space_group:
        import gemmi

        want = gemmi.find_spacegroup_by_name(params.space_group)
        if want is None:
            raise XtalError(f"unknown space group {params.space_group!r}", field="space_group")
        match = [r for r in rows if r["_setting"][0] is not None
                 and r["_setting"][0].laue_str() == want.laue_str()
                 and r["_setting"][0].centring_type() == want.centring_type()]
        if not match:
            raise XtalError(f"space_group={params.space_group}: its Laue group does not fit the lattice "
                            f"({', '.join(sorted({r['patterson_group'] for r in rows}))})", field="space_group")
        chosen = match[0]
    return chosen


def _abc_any(M) -> str:
    """A change of basis (integer or rational) in cctbx's abc notation."""
    from ..indexing.lattice import abc_string

    return abc_string(np.asarray(M, dtype=float))


def _abc(M) -> str:
    from ..indexing.lattice import abc_string

    return abc_string(np.asarray(M, dtype=int))


def _finish(experiments, reflections, params, datasets, excluded, ops, table, R_avg, result, Ts, d_min,
            reference=None):
    best = _choose_subgroup(result, ops, R_avg, params)
    M_conv = best["_setting"][1]
    if M_conv is None:
        raise XtalError(f"no reference setting found for the Laue group {best['patterson_group']}")
    rep = cosets(best["elements"], table)
    chosen = relabel([rep[int(g)] for g in result["chosen"]], best["elements"], table, rep)
    matched = None
    if reference is not None:
        chosen, matched = match_reference(reference, reflections, Ts, ops, table, best, M_conv,
                                           [ds.index for ds in datasets], chosen, rep)
    per_set = {ds.index: g for ds, g in zip(datasets, chosen)}
    total = {i: M_conv @ ops[g] @ Ts[i] for i, g in per_set.items()}
    placed = [{"id": ds.index, "identifier": ds.name, "n_reflections": int(len(ds.e2)),
               "operator": xyz_string(ops[per_set[ds.index]]),
               # the whole change of basis from the data set's input indexing to the output
               "change_of_basis": _abc_any(total[ds.index]),
               "matrix": [[float(v) for v in row] for row in total[ds.index]],
               "coordinates": [float(v) for v in result["x"][k, 0, :2]]}
              for k, ds in enumerate(datasets)]
    out = _finish_common(experiments, reflections, params, best, result, ops, R_avg, total, excluded, d_min,
                         placed)
    if matched is not None:
        out[2]["reference"] = matched
    return out


def _finish_common(experiments, reflections, params, best, result, ops, R_avg, total, excluded, d_min,
                   placed=None):
    """Space group by absences, the reindexed output and the summary (cosym and symmetry)."""
    sg_patterson, M_conv = best["_setting"]
    absences = absence_scores(_conventional_reflections(reflections, total), space_groups_of(sg_patterson))
    if params.space_group:
        import gemmi

        space_group = gemmi.find_spacegroup_by_name(params.space_group)
    else:
        space_group = gemmi_sg(absences["chosen"])
    out_e, out_r = _reindexed(experiments, reflections, total, space_group)
    probability = best["likelihood"]
    others = [r["likelihood"] for r in result["subgroups"] if r is not best]
    summary = {
        "lattice_group": _lattice_name(ops, R_avg, params),
        "n_operations": len(ops),
        "d_min": d_min,
        "dimensions": result["dims"],
        "functional": {str(k): v for k, v in result["functional"].items()},
        "operators": [{"operator": operator_name(W, R_avg), "reindex": xyz_string(W),
                       "likelihood": float(p), "z_cc": float(z), "cc": float(c),
                       "in_best": g in best["elements"]}
                      for g, (W, p, z, c) in enumerate(zip(ops, result["p"], result["z"], result["cc"]))],
        "subgroups": [{k: v for k, v in r.items() if not k.startswith("_") and k != "log_likelihood"}
                      for r in result["subgroups"]],
        "best": {"patterson_group": best["patterson_group"], "space_group": space_group.xhm(),
                 "unit_cell": list(cell_from_real_space(M_conv @ R_avg)),
                 "reindex_operator": best["reindex_operator"], "probability": probability,
                 "confidence": max(0.0, probability - max(others, default=0.0)),
                 "user_space_group": params.space_group},
        "space_groups": absences["rows"], "absences_note": absences["note"], "screw_axes": absences["screw_axes"],
        "datasets": placed if placed is not None else [
            {"id": i, "identifier": experiments[i].identifier, "operator": "x,y,z",
             "change_of_basis": _abc_any(T), "matrix": [[float(v) for v in row] for row in T],
             "n_reflections": int(np.sum(reflections["id"] == i)), "coordinates": [0.0, 0.0]}
            for i, T in total.items()],
        "excluded": excluded,
    }
    if params.space_group:
        summary["best"]["analysis_would_choose"] = result["subgroups"][0].get("patterson_group")
    return out_e, out_r, summary


def _lattice_name(ops, R_avg, params) -> str:
    sg, _ = conventional_setting(ops, R_avg, params.lattice_symmetry_max_delta)
    return sg.xhm() if sg is not None else laue_class(ops)


def gemmi_sg(name: str):
    import gemmi

    return gemmi.SpaceGroup(name)


def _conventional_reflections(reflections, total: dict[int, np.ndarray]):
    """(hkl, I/σ) of the placed data sets' integrated reflections in the reference setting."""
    from .data import select_intensities

    keep, intensity, variance, _ = select_intensities(reflections)
    ids = reflections["id"]
    rows_of = rows_by_experiment(ids, max(int(ids.max()) + 1 if len(ids) else 0, max(total, default=-1) + 1))
    hkl_all, ios = [], []
    for i, T in total.items():
        sel = rows_of[i][keep[rows_of[i]]]
        h = reflections["miller_index"][sel].astype(float) @ T.T
        hkl_all.append(np.rint(h).astype(np.int64))
        ios.append(intensity[sel] / np.sqrt(variance[sel]))
    return np.concatenate(hkl_all), np.concatenate(ios)


def rows_by_experiment(ids: np.ndarray, n: int) -> list[np.ndarray]:
    """The row numbers of each experiment id 0 … n-1 (one sort, not n scans)."""
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(n + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n)]


def _reindexed(experiments, reflections, total: dict[int, np.ndarray], space_group):
    """The placed experiments and their reflections, reindexed, ids from 0. The input
    is not modified; when every data set is placed its columns are shared, not copied."""
    out_e = ExperimentList()
    ids = reflections["id"]
    order = sorted(total)
    rows = np.isin(ids, order)
    out_r = reflections.shallow_copy() if rows.all() else reflections.select(rows)
    new_ids = np.searchsorted(np.array(order), out_r["id"])
    hkl = out_r["miller_index"].astype(float)
    rows_of = rows_by_experiment(new_ids, len(order))
    for k, i in enumerate(order):
        e = experiments[i]
        T = total[i]
        R_new = T @ e.crystal.real_space_matrix
        e = copy.copy(e)  # the input experiment is not modified
        e.crystal = Crystal(R_new[0], R_new[1], R_new[2], hall_symbol(space_group))
        out_e.append(e)
        sel = rows_of[k]
        hkl[sel] = hkl[sel] @ T.T
    out_r["miller_index"] = np.rint(hkl).astype(np.int32)
    out_r["id"] = new_ids.astype(np.int32)
    out_r.experiment_identifiers = {k: experiments[i].identifier for k, i in enumerate(order)}
    return out_e, out_r

