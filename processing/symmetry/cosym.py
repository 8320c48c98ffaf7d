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
from .embedding import choose_dimensions, composition_table, embed
from .lattice import average_reduced_basis, lattice_operations, operator_name, reduce_basis, xyz_string
from .laue import SIGMA_CC, likelihood, score_subgroups, subgroups
from .params import CosymParams
from .spacegroup import conventional_setting, laue_class, space_groups_of


#: most data sets used to choose the embedding's dimensions, and most dimensions tried
SEARCH_SETS = 100
MAX_DIMENSIONS = 12


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


def _auto_d_min(datasets, threshold: float) -> float | None:
    """The d where ⟨I⟩/⟨σ⟩ of all data sets' reflections, in 20 shells, first falls below
    ``threshold`` (None: it never does)."""
    d = np.concatenate([ds.d for ds in datasets])
    if len(d) < 40:
        return None
    i = np.concatenate([ds.extra["intensity"] for ds in datasets])
    s = np.concatenate([ds.extra["sigma"] for ds in datasets])
    order = np.argsort(-d)  # low to high resolution
    for chunk in np.array_split(order, 20):
        if np.mean(i[chunk]) / np.mean(s[chunk]) < threshold:
            return float(d[chunk].max())
    return None


def _consensus_ops(x: np.ndarray, n_iter: int = 10) -> np.ndarray:
    """For each data set the operation whose copy lies closest (cosine) to the consensus
    direction of all chosen copies; starts from the data set with the longest vector."""
    unit = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
    start = int(np.argmax(np.linalg.norm(x[:, 0], axis=1)))
    centre = unit[start, 0]
    chosen = np.zeros(len(x), dtype=int)
    for _ in range(n_iter):
        new = np.argmax(unit @ centre, axis=1)
        centre = unit[np.arange(len(x)), new].mean(axis=0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        if np.array_equal(new, chosen):
            break
        chosen = new
    return chosen


def analyse(cc, weights, ops, table, params: CosymParams, dims=None):
    """Embedding, operator scores and subgroup scores of one set of data sets."""
    if dims is None:
        # the functional's elbow, on at most SEARCH_SETS data sets (a seeded sample): the
        # search costs one embedding per dimension, the final run one more on all
        n = cc.shape[1]
        sample = np.sort(np.random.default_rng(params.seed).choice(n, SEARCH_SETS, replace=False)) \
            if n > SEARCH_SETS else np.arange(n)
        sub_cc, sub_w = cc[:, sample][:, :, sample], weights[:, sample][:, :, sample]
        tried = {}
        top = min(MAX_DIMENSIONS, len(ops))
        d = 2
        while True:  # Φ to 1e-6 relative: enough to see where it stops falling
            for k in (d, d + 1):
                if k <= top and k not in tried:
                    tried[k] = embed(sub_cc, sub_w, table, k, params.seed, params.max_iterations, ftol=1e-6)[1]
            if d + 1 > top or choose_dimensions(tried) == d:
                break
            d += 1
        dims = choose_dimensions(tried)
        x, _ = embed(cc, weights, table, dims, params.seed, params.max_iterations)
    else:
        tried = {}
        x, tried[dims] = embed(cc, weights, table, dims, params.seed, params.max_iterations)
    unit = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
    # each data set's copy in the consensus setting, then every operation applied on top:
    # reindexing by W_c then W_g is the copy of W_g W_c (an operation's CC is judged in
    # one common setting, so a Laue group that is not normal in the lattice group, e.g.
    # 4/m in a metrically cubic lattice, is seen whatever setting each data set is in)
    chosen = _consensus_ops(x)
    inv = np.array([int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))])
    n = np.arange(len(x))
    cc_op = np.array([np.mean(np.einsum("nd,nd->n", unit[n, chosen], unit[n, table[inv[g], chosen]]))
                      for g in range(len(table))])
    z = cc_op / SIGMA_CC
    p = np.array([likelihood(float(c)) for c in cc_op])
    groups = score_subgroups(subgroups(table), p, z)
    return {"x": x, "dims": dims, "functional": tried, "cc": cc_op, "z": z, "p": p, "subgroups": groups,
            "chosen": chosen}


def _relabel(chosen: list[int], H: list[int], table: np.ndarray, rep: dict[int, int]) -> list[int]:
    """The same assignment, re-expressed so that the most data sets keep their own
    indexing (identity coset; ties: the first data set's). One operation applied to all
    data sets keeps them consistent; this is done only when H is normal in the lattice
    group, so that the relabelled setting has the same Laue group."""
    inv = {k: int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))}
    Hs = set(H)
    normal = all({int(table[g, int(table[inv[h], g])]) for h in H} <= Hs for g in range(len(table)))  # g⁻¹hg
    if not normal:
        return chosen
    counts = {c: chosen.count(c) for c in chosen}
    target = max(counts, key=lambda c: (counts[c], c == chosen[0]))
    return [rep[int(table[target, c])] for c in chosen]  # W_target⁻¹ · W_c


def _cosets(H: list[int], table: np.ndarray) -> dict[int, int]:
    """Each operation c → the representative (lowest index) of its coset H·c: reindexing
    by W_c or by W_h W_c (h a symmetry of the common setting) is the same."""
    inv = {k: int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))}
    rep = {}
    for g in range(len(table)):
        coset = {int(table[inv[h], g]) for h in H}  # h·g
        rep[g] = min(coset)
    return rep


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
    ids = reflections["id"]
    datasets, excluded = [], []
    for i, e in enumerate(experiments):
        ds = prepare(i, e.identifier, reflections.select(ids == i), Ts[i], params.d_min)
        if len(ds.e2) < params.min_reflections:
            excluded.append({"id": i, "identifier": e.identifier,
                             "reason": f"only {len(ds.e2)} usable reflections (need {params.min_reflections})"})
        else:
            datasets.append(ds)
    tick(0.1, "data prepared")
    if len(datasets) < 2:
        raise XtalError("fewer than two data sets can be placed: " + "; ".join(r["reason"] for r in excluded))
    ops = lattice_operations(bases[datasets[0].index], params.lattice_symmetry_max_delta)
    R_avg = average_reduced_basis([bases[ds.index] for ds in datasets], ops)
    table = composition_table(ops)
    d_min = params.d_min
    if d_min is None:
        d_min = _auto_d_min(datasets, params.min_i_mean_over_sigma_mean)
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
    return out


def stability(cc, weights, ops, table, params: CosymParams, result, datasets, summary) -> dict:
    """Rerun the analysis with seed + 1 and on two random splits into halves; how often
    the Laue group and each data set's operator (up to one relabelling of all) repeat."""
    n = len(datasets)
    if params.stability == "false" or (params.stability == "auto" and n > 200):
        return {"skipped": f"{n} data sets; stability=true runs it" if params.stability == "auto" else "off"}
    if n < 4:
        return {"skipped": f"only {n} data sets"}
    best = next(r for r in result["subgroups"] if r["patterson_group"] == summary["best"]["patterson_group"])
    H = best["elements"]
    rep = _cosets(H, table)
    inv = {k: int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))}
    main = {ds.index: int(result["chosen"][k]) for k, ds in enumerate(datasets)}
    rng = np.random.default_rng(params.seed)
    subsets = [("seed", np.arange(n), params.seed + 1)]
    for split in range(2):
        perm = rng.permutation(n)
        subsets += [(f"half {2 * split + 1}", np.sort(perm[: n // 2]), params.seed),
                    (f"half {2 * split + 2}", np.sort(perm[n // 2:]), params.seed)]
    runs, agree = [], {ds.index: [] for ds in datasets}
    for kind, sel, seed in subsets:
        p2 = type(params)(**{**params.__dict__, "seed": seed})
        sub = analyse(cc[:, sel][:, :, sel], weights[:, sel][:, :, sel], ops, table, p2, result["dims"])
        same_laue = sorted(sub["subgroups"][0]["elements"]) == sorted(H)
        # each data set's operator relative to the main run's: one coset for all = agreement
        rel = {datasets[k].index: rep[int(table[inv[main[datasets[k].index]], int(c)])]
               for k, c in zip(sel, sub["chosen"])}
        values = list(rel.values())
        mode = max(set(values), key=values.count)
        for i, r in rel.items():
            agree[i].append(r == mode)
        label = kind if kind != "seed" else f"seed {seed}"
        runs.append({"run": label, "n_datasets": int(len(sel)), "laue_group_same": bool(same_laue),
                     "operators_agree": float(np.mean([r == mode for r in values]))})
    return {"runs": runs,
            "laue_group_agreement": float(np.mean([r["laue_group_same"] for r in runs])),
            "operator_agreement": {ds.name: float(np.mean(agree[ds.index])) for ds in datasets if agree[ds.index]}}


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
    rep = _cosets(best["elements"], table)
    chosen = _relabel([rep[int(g)] for g in result["chosen"]], best["elements"], table, rep)
    matched = None
    if reference is not None:
        chosen, matched = _match_reference(reference, reflections, Ts, ops, table, best, M_conv,
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


def _laue_keys(hkl: np.ndarray, space_group) -> np.ndarray:
    """One int64 per index, equal for indices equivalent in the space group's Laue group."""
    mats = []
    for op in space_group.operations().sym_ops:
        W = np.rint(np.array(op.rot, dtype=float) / op.DEN).T.astype(np.int64)
        mats += [W, -W]
    h = np.asarray(hkl, dtype=np.int64)
    keys = np.stack([((h @ W.T + 1024) * np.array([1 << 22, 1 << 11, 1])).sum(axis=1) for W in mats])
    return keys.max(axis=0)


def _mean_by_key(keys: np.ndarray, values: np.ndarray) -> dict:
    uniq, inv = np.unique(keys, return_inverse=True)
    return dict(zip(uniq.tolist(), (np.bincount(inv, values) / np.bincount(inv)).tolist()))


def _match_reference(reference, reflections, Ts, ops, table, best, M_conv, placed, chosen, rep):
    """Of the settings the Laue group allows (operations that keep it), the one whose
    merged intensities correlate best with the reference's; the data sets' operations."""
    from .data import select_intensities

    sg = best["_setting"][0]
    if reference.space_group.laue_str() != sg.laue_str() or \
            reference.space_group.centring_type() != sg.centring_type():
        raise XtalError(f"reference {reference.path}: space group {reference.space_group.xhm()} does not have the "
                        f"data's Patterson group {sg.xhm()}", field="reference")
    inv = {k: int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))}
    H = set(best["elements"])
    normaliser = [g for g in range(len(table))
                  if {int(table[g, int(table[inv[h], g])]) for h in H} == H]  # g⁻¹Hg = H
    candidates = sorted({rep[g] for g in normaliser})
    ref = _mean_by_key(_laue_keys(reference.hkl, sg), reference.intensity)
    keep, intensity, _, _ = select_intensities(reflections)
    ids = reflections["id"]
    scores = []
    for g in candidates:
        keys, vals = [], []
        for i, c in zip(placed, chosen):
            sel = keep & (ids == i)
            W = M_conv @ ops[int(table[inv[g], c])] @ Ts[i]
            h = np.rint(reflections["miller_index"][sel].astype(float) @ W.T).astype(np.int64)
            keys.append(_laue_keys(h, sg))
            vals.append(intensity[sel])
        ours = _mean_by_key(np.concatenate(keys), np.concatenate(vals))
        common = [k for k in ours if k in ref]
        cc = float(np.corrcoef([ours[k] for k in common], [ref[k] for k in common])[0, 1]) if len(common) > 2 \
            else float("nan")
        scores.append({"operator": xyz_string(ops[g]), "cc": cc, "n": len(common), "g": g})
    good = [s for s in scores if np.isfinite(s["cc"])]
    if not good:
        raise XtalError(f"reference {reference.path}: no reflections in common with the data", field="reference")
    top = max(good, key=lambda s: s["cc"])
    new = [rep[int(table[inv[top["g"]], c])] for c in chosen]
    return new, {"path": reference.path, "column": reference.column, "chosen": top["operator"],
                 "settings": [{k: v for k, v in s.items() if k != "g"} for s in scores]}


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
        "space_groups": absences["rows"], "absences_note": absences["note"],
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
    hkl_all, ios = [], []
    for i, T in total.items():
        sel = keep & (ids == i)
        h = reflections["miller_index"][sel].astype(float) @ T.T
        hkl_all.append(np.rint(h).astype(np.int64))
        ios.append(intensity[sel] / np.sqrt(variance[sel]))
    return np.concatenate(hkl_all), np.concatenate(ios)


def _reindexed(experiments, reflections, total: dict[int, np.ndarray], space_group):
    """The placed experiments and their reflections, reindexed, ids from 0."""
    out_e = ExperimentList()
    ids = reflections["id"]
    order = sorted(total)
    rows = np.isin(ids, order)
    out_r = reflections.select(rows)
    new_ids = np.searchsorted(np.array(order), out_r["id"])
    hkl = out_r["miller_index"].astype(float)
    for k, i in enumerate(order):
        e = experiments[i]
        T = total[i]
        R_new = T @ e.crystal.real_space_matrix
        e = copy.copy(e)  # the input experiment is not modified
        e.crystal = Crystal(R_new[0], R_new[1], R_new[2], hall_symbol(space_group))
        out_e.append(e)
        sel = new_ids == k
        hkl[sel] = hkl[sel] @ T.T
    out_r["miller_index"] = np.rint(hkl).astype(np.int32)
    out_r["id"] = new_ids.astype(np.int32)
    out_r.experiment_identifiers = {k: experiments[i].identifier for k, i in enumerate(order)}
    return out_e, out_r

