"""The indexing stage (dials.index): ``run_index`` (its parameters, IndexParams, in params.py).

Per sweep (``joint=false``) or for all sweeps as one crystal (``joint=true``,
DIALS's default): spot centroids → rlps; max_cell from spot spacing (or 1.3 × the
longest primitive length of ``unit_cell=``); candidate basis vectors (fft3d, fft1d,
or the real-space grid search of a known cell); candidate lattices ranked as DIALS
ranks them; then ``n_macro_cycles`` of index assignment and static P1 refinement
(X, Y, φ; Tukey outliers) with the resolution limit widened from the search's d_min
to all spots; more lattices from the leftover spots up to ``max_lattices``; Bravais
settings (Le Page δ, constrained refinement rmsd, DIALS's recommendation) and the
crystal written in P1, the recommended setting (``choose_bravais=true``) or the
lattice of ``space_group=``. A sweep that fails is reported in the summary with a
one-line reason and left out of the outputs.
"""
from __future__ import annotations

import math
import multiprocessing
import time
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from ..errors import SweepError, XtalError
from ..models import Crystal, Experiment, ExperimentList
from ..models.crystal import hall_symbol
from ..reflections import Flags, ReflectionTable
from .assign import assign_indices
from .bravais import LOWEST_SPACE_GROUP, bravais_settings, lattice_of_space_group, settings_min_max_cc
from .candidates import candidate_lattices, evaluate, expand_to_superlattice, rank
from .fft1d import fft1d_basis_vectors
from .fft3d import fft3d_basis_vectors
from .known_cell import TargetSymmetry, real_space_grid_search, _sorted_if_needed
from .lattice import cells_similar, closest_rotation, rotation_angle_deg
from .max_cell import find_max_cell
from .params import METHODS, IndexParams  # noqa: F401 - METHODS re-exported for old imports
from .refine_static import Block, predict, refine_crystal
from .spots import centroids_to_reciprocal_space


# --------------------------------------------------------------------------- helpers
def _i_over_sigma(t, n: int) -> np.ndarray:
    """intensity.sum.value / √variance of the spots (NaN without a positive variance),
    the values DIALS correlates between symmetry-related spots in the Bravais table."""
    i, v = t.get("intensity.sum.value"), t.get("intensity.sum.variance")
    if i is None or v is None:
        return np.full(n, np.nan)
    i, v = np.asarray(i, float), np.asarray(v, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(v > 0, i / np.sqrt(np.where(v > 0, v, 1.0)), np.nan)


class _Spots:
    """Spots of one or more sweeps with their reciprocal-space positions."""

    def __init__(self, experiments: list[Experiment], tables: list[dict], sigma_phi_deg: float | None = None):
        self.experiments = experiments
        self.sigma_phi_deg = sigma_phi_deg
        parts = []
        for k, (e, t) in enumerate(zip(experiments, tables)):
            if e.scan is None or e.goniometer is None or e.scan.is_still:
                raise XtalError("not a rotation sweep (stills are not supported by xtal index)")
            var = t.get("xyzobs.px.variance")
            panel = t.get("panel", np.zeros(len(t["xyzobs.px.value"]), np.int64))
            d = centroids_to_reciprocal_space(e, t["xyzobs.px.value"], var, panel)
            d["imageset"] = np.full(len(t["xyzobs.px.value"]), k, np.int64)
            d["panel"] = np.asarray(panel, np.int64)
            d["i_over_sigma"] = _i_over_sigma(t, len(t["xyzobs.px.value"]))
            parts.append(d)
        self.cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        self.rlp = self.cols["rlp"]
        self.phi = self.cols["xyzobs.mm.value"][:, 2]
        self.entering = self.cols["entering"]
        self.imageset = self.cols["imageset"]
        with np.errstate(divide="ignore"):
            self.d = 1.0 / np.linalg.norm(self.rlp, axis=1)

    def __len__(self):
        return len(self.rlp)

    def blocks(self, sel: np.ndarray, hkl: np.ndarray) -> list[Block]:
        out = []
        for k, e in enumerate(self.experiments):
            s = sel & (self.imageset == k)
            if s.any():
                out.append(Block(e, hkl[s], self.cols["xyzobs.mm.value"][s], self.cols["xyzobs.mm.variance"][s],
                                 self.cols["panel"][s], self.sigma_phi_deg))
        return out


def _search(spots: _Spots, sel: np.ndarray, params: IndexParams, target: TargetSymmetry, max_cell: float,
            found: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Best new lattice (reduced rows) among the spots ``sel``; and the d_min used."""
    rlp = spots.rlp[sel]
    ent, iset = spots.entering[sel], spots.imageset[sel]

    def exclude(R):
        return any(_misorientation(R, F) < params.minimum_angular_separation for F in found)

    accept = target.matches if target.active else None
    d_min = None
    methods = [params.method]
    if target.unit_cell is not None and params.method != "real_space_grid_search":
        methods.append("real_space_grid_search")
    last_error = None
    for method in methods:
        try:
            if method == "fft3d":
                vectors, d_min = fft3d_basis_vectors(rlp, max_cell, params.min_cell, params.n_points, params.d_min)
            elif method == "fft1d":
                vectors = fft1d_basis_vectors(rlp, max_cell, params.min_cell)
            else:
                vectors = real_space_grid_search(rlp, target.reduced_cell)
        except XtalError as e:
            last_error = e
            continue
        dm = d_min if d_min is not None else float(spots.d[sel].min())
        use = spots.d[sel] >= dm
        lattices = candidate_lattices(vectors, params.min_cell_volume, params.max_refine, accept,
                                      exclude=exclude if found else None)
        cands = []
        for R in lattices:
            c = evaluate(R, rlp[use], ent[use], iset[use], params.hkl_tolerance,
                         min_cell_volume=params.min_cell_volume, check_primitive=not target.active)
            if c is not None and (accept is None or accept(c.R)):
                cands.append(c)
        if cands:
            best = rank(cands)[0]
            # misindexing check: many spots on a half/third-integer coset -> the cell m× larger
            for _ in range(2):
                R_big = expand_to_superlattice(best.R, rlp[use], params.hkl_tolerance)
                if R_big is None or (accept is not None and not accept(R_big)):
                    break
                c = evaluate(R_big, rlp[use], ent[use], iset[use], params.hkl_tolerance,
                             min_cell_volume=params.min_cell_volume, check_primitive=False)
                if c is None or c.n_indexed < 1.1 * best.n_indexed:
                    break
                best = c
            return best.R, dm
    if last_error is not None and not found:
        raise last_error
    raise XtalError("no suitable lattice could be found" + (" matching the known symmetry" if target.active else ""))


def _misorientation(R1: np.ndarray, R2: np.ndarray) -> float:
    """Smallest rotation (deg) taking lattice 2 onto lattice 1 over the cubic-like
    equivalent bases (sign permutations of the reduced axes)."""
    best = 180.0
    import itertools
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            R = (np.array(signs)[:, None] * R2[list(perm)])
            if np.linalg.det(R) < 0:
                continue
            U = closest_rotation(np.linalg.inv(R) @ R1)
            best = min(best, rotation_angle_deg(U))
    return best


def _refine_all(spots: _Spots, A_list: list[np.ndarray], sel_limit: np.ndarray, params: IndexParams):
    hkl, cid, _ = assign_indices(spots.rlp, A_list, params.hkl_tolerance, spots.entering, spots.imageset,
                                 allowed=np.repeat(sel_limit[:, None], len(A_list), axis=1))
    results = []
    new_A = []
    for k, A in enumerate(A_list):
        sel = cid == k
        if sel.sum() < 10:
            raise XtalError(f"too few indexed reflections ({int(sel.sum())}) to refine lattice {k + 1}")
        res = refine_crystal(A, spots.blocks(sel, hkl), "a")
        v0, v1 = abs(np.linalg.det(np.linalg.inv(A))), abs(np.linalg.det(np.linalg.inv(res.A)))
        if abs(v1 - v0) / v0 > 0.5:
            raise XtalError(f"unrealistic unit cell volume change during refinement ({100 * (v1 - v0) / v0:.0f}%)")
        new_A.append(res.A)
        results.append(res)
    return new_A, results, hkl, cid


def _bravais_table(spots: _Spots, A: np.ndarray, hkl: np.ndarray, sel: np.ndarray, p1_rmsd_mm: float,
                   params: IndexParams, pixel: float, max_spots: int = 1500):
    R = np.linalg.inv(A)
    rows = []
    settings = bravais_settings(R, params.lepage_max_delta)
    n_total = len(settings)
    ios = spots.cols["i_over_sigma"]
    use = sel & np.isfinite(ios) & np.any(hkl != 0, axis=1)
    ccs = settings_min_max_cc(settings, hkl[use], ios[use])
    sel = sel.copy()
    idx = np.nonzero(sel)[0]
    if len(idx) > max_spots:  # a deterministic subset keeps the table quick
        keep = idx[np.linspace(0, len(idx) - 1, max_spots).astype(int)]
        sel[:] = False
        sel[keep] = True
    for k, s in enumerate(settings):
        Mi = np.linalg.inv(s.M)
        A_conv = A @ Mi
        h_conv = hkl[sel] @ s.M.T
        fam = "h" if s.bravais == "hR" else s.family
        sub = np.zeros(len(hkl), bool)
        sub[sel] = True
        hh = np.zeros_like(hkl)
        hh[sel] = h_conv
        try:
            res = refine_crystal(A_conv, spots.blocks(sub, hh), fam, n_rounds=1, max_nfev=10)
        except Exception:  # noqa: BLE001 - a setting that cannot refine is just not listed
            continue
        rmsd_mm = math.hypot(res.rmsd_px_img[0], res.rmsd_px_img[1]) * pixel
        rows.append({"solution": n_total - k, "bravais": s.bravais, "metric_fit": s.max_angular_difference,
                     "rmsd": rmsd_mm, "min_cc": ccs[k][0], "max_cc": ccs[k][1],
                     "nspots": res.n_used, "unit_cell": list(res.cell),
                     "volume": float(abs(np.linalg.det(np.linalg.inv(res.A)))), "cb_op": s.cb_op,
                     "M": s.M.tolist(), "_result": res})
    p1 = next((r for r in rows if r["bravais"] == "aP"), None)
    rmsd_p1 = p1["rmsd"] if p1 else p1_rmsd_mm
    for r in rows:  # DIALS's heuristics (identify_likely_solutions)
        low_cc = r["min_cc"] is None
        rec = True
        if r["metric_fit"] < 0.5:
            if (low_cc or r["min_cc"] < 0.5) and r["rmsd"] > 1.5 * rmsd_p1:
                rec = False
        elif (low_cc or r["min_cc"] < 0.7) and r["rmsd"] > 2.0 * rmsd_p1:
            rec = False
        elif r["rmsd"] > 3.0 * rmsd_p1:
            rec = False
        r["recommended"] = rec
    return rows


def _max_cell(spots: _Spots, params: IndexParams, target: TargetSymmetry) -> float:
    """Longest basis vector searched (Å): given, 1.3 × the known cell's longest primitive
    length, or from the spot spacing."""
    if params.max_cell is not None:
        return params.max_cell
    if target.reduced_cell is not None:
        return 1.3 * target.max_primitive_length
    return find_max_cell(spots.rlp, spots.phi, spots.entering, spots.imageset)


def _find_lattices(spots: _Spots, params: IndexParams, target: TargetSymmetry, max_cell: float):
    """Search, assign and refine lattices until ``max_lattices`` or the unindexed spots
    run out. Returns the refined A matrices and their refinement results.

    Each lattice gets ``n_macro_cycles`` of assignment and refinement with the
    resolution limit widened from the search's d_min to all spots.
    """
    d_all = float(spots.d.min())
    A_list: list[np.ndarray] = []
    results = []
    cid = None
    d_start = None
    while len(A_list) < params.max_lattices:
        if A_list:
            indexed_d = spots.d[cid >= 0]
            d_idx = float(indexed_d.min()) if len(indexed_d) else d_all
            pool = spots.d > d_idx
            if np.sum(pool & (cid < 0)) < params.recycle_unindexed_reflections_cutoff * np.sum(pool):
                break
            if np.sum(cid < 0) < params.min_spots:
                break
            try:
                R_new, _ = _search(spots, cid < 0, params, target, max_cell, [np.linalg.inv(A) for A in A_list])
            except XtalError:
                break
        else:
            R_new, d_start = _search(spots, np.ones(len(spots), bool), params, target, max_cell, [])
        A_list.append(np.linalg.inv(R_new))
        n_cycles = params.n_macro_cycles
        step = (d_start - d_all) / (n_cycles - 1) if n_cycles > 1 and d_start > d_all else 0.0
        for i in range(n_cycles):
            d_cut = max(d_start - i * step, 0.0) if i < n_cycles - 1 else 0.0
            try:
                A_try, results_try, _, cid = _refine_all(spots, A_list, spots.d >= d_cut - 1e-9, params)
            except XtalError:
                if len(A_list) == 1:
                    raise
                A_list.pop()
                A_try = None
                break
            A_list, results = A_try, results_try
        if A_try is None:
            break
    return A_list, results


def _lattice_setting(spots: _Spots, A: np.ndarray, res, hkl: np.ndarray, sel: np.ndarray, params: IndexParams,
                     target: TargetSymmetry, pixel: float) -> dict:
    """The Bravais table of one lattice and its crystal in the chosen setting: P1, the
    ``space_group=`` lattice or (``choose_bravais``) the recommended one.

    ``hkl[sel]`` is reindexed in place into the chosen setting.
    """
    bravais_rows = _bravais_table(spots, A, hkl, sel, math.hypot(*res.rmsd_px_img[:2]) * pixel, params, pixel)
    chosen = next(r for r in bravais_rows if r["bravais"] == "aP") if any(r["bravais"] == "aP" for r in bravais_rows) else None
    want = None
    if params.space_group:
        want = lattice_of_space_group(target.space_group)
        pool = [r for r in bravais_rows if r["bravais"] == want and r["metric_fit"] <= params.max_delta]
        if params.unit_cell is not None and pool:
            match = [r for r in pool if cells_similar(_sorted_if_needed(r["unit_cell"], want),
                                                      _sorted_if_needed(params.unit_cell, want),
                                                      params.relative_length_tolerance,
                                                      params.absolute_angle_tolerance)]
            pool = match or pool
        if not pool:
            raise XtalError(f"the lattice has no {want} setting within δ ≤ {params.max_delta:g}° "
                            f"(space_group={params.space_group})")
        chosen = min(pool, key=lambda r: r["metric_fit"])
    elif params.choose_bravais:
        rec = [r for r in bravais_rows if r["recommended"]]
        if rec:
            chosen = rec[0]
    if chosen is None or chosen["bravais"] == "aP":
        M = np.eye(3, dtype=int)
        A_out, cov, sg_hall, rr = A, res.B_covariance, " P 1", res
        cb = "a,b,c"
    else:
        M = np.array(chosen["M"], dtype=int)
        rr = chosen["_result"]
        A_out, cov = rr.A, rr.B_covariance
        sg_hall = hall_symbol(target.space_group) if params.space_group else hall_symbol(LOWEST_SPACE_GROUP[chosen["bravais"]])
        cb = chosen["cb_op"]
        hkl[sel] = hkl[sel] @ M.T
    crystal = Crystal.from_A(A_out, sg_hall)
    if cov is not None and np.all(np.isfinite(cov)):
        crystal.B_covariance = cov
    for r in bravais_rows:
        r.pop("_result", None)
    return {"crystal": crystal, "cb_op": cb, "bravais": bravais_rows,
            "lattice": chosen["bravais"] if chosen else "aP", "rmsd": rr.rmsd_px_img,
            "used": rr.used, "n_used": rr.n_used}


def _predictions(spots: _Spots, experiments: list[Experiment], lattices: list[dict], hkl: np.ndarray,
                 cid: np.ndarray):
    """xyzcal.mm (mm, mm, rad), xyzcal.px (px fast, slow, frame) and entering of the
    indexed spots from their lattice's crystal; zeros (and the observed entering) elsewhere."""
    n = len(spots)
    xyzcal_mm = np.zeros((n, 3))
    xyzcal_px = np.zeros((n, 3))
    entering = spots.entering.copy()
    for k, lat in enumerate(lattices):
        A = lat["crystal"].A
        for j, e in enumerate(experiments):
            sel = (cid == k) & (spots.imageset == j)
            if not sel.any():
                continue
            cal, s1c, ent, valid = predict(A, e, hkl[sel].astype(float), spots.phi[sel], spots.cols["panel"][sel])
            xyzcal_mm[sel] = cal
            px = np.zeros((sel.sum(), 2))
            pan = spots.cols["panel"][sel]
            for ip, p in enumerate(e.detector.panels):
                ps = pan == ip
                if ps.any():
                    px[ps] = p.millimeter_to_pixel(cal[ps, :2])
            xyzcal_px[sel] = np.column_stack([px, e.scan.frame_from_angle(np.degrees(cal[:, 2]))])
            entering[sel] = ent
    return xyzcal_mm, xyzcal_px, entering


def _index_group(experiments: list[Experiment], tables: list[dict], params: IndexParams) -> dict:
    """Index one sweep (or all sweeps jointly). Returns crystals, columns and rows."""
    t0 = time.time()
    n_in = sum(len(t["xyzobs.px.value"]) for t in tables)
    if n_in == 0:
        raise XtalError("no spots to index")
    if n_in < params.min_spots:
        raise XtalError(f"too few spots to index ({n_in}; need at least {params.min_spots})")
    spots = _Spots(experiments, tables, params.sigma_phi_deg)
    target = TargetSymmetry.make(params.unit_cell, params.space_group,
                                 relative_length_tolerance=params.relative_length_tolerance,
                                 absolute_angle_tolerance=params.absolute_angle_tolerance,
                                 max_delta=params.max_delta)
    max_cell = _max_cell(spots, params, target)
    A_list, results = _find_lattices(spots, params, target, max_cell)
    # final assignment over all spots with the refined models
    hkl, cid, _ = assign_indices(spots.rlp, A_list, params.hkl_tolerance, spots.entering, spots.imageset)
    pixel = float(experiments[0].detector[0].pixel_size[0])
    lattices = [_lattice_setting(spots, A, res, hkl, cid == k, params, target, pixel)
                for k, (A, res) in enumerate(zip(A_list, results))]
    xyzcal_mm, xyzcal_px, entering = _predictions(spots, experiments, lattices, hkl, cid)
    s1 = spots.cols["s1"].copy()
    flags_add = np.where(cid >= 0, int(Flags.indexed), 0).astype(np.uint64)
    rows = []
    for j, e in enumerate(experiments):
        s = spots.imageset == j
        ni = int(np.sum(cid[s] >= 0))
        rows.append({"n_spots": int(s.sum()), "n_indexed": ni,
                     "percent_indexed": 100.0 * ni / max(int(s.sum()), 1)})
    return {"lattices": lattices, "miller_index": hkl.astype(np.int32), "lattice_id": cid.astype(np.int32),
            "columns": {"xyzobs.mm.value": spots.cols["xyzobs.mm.value"],
                        "xyzobs.mm.variance": spots.cols["xyzobs.mm.variance"], "s1": s1,
                        "rlp": spots.rlp, "entering": entering, "xyzcal.mm": xyzcal_mm, "xyzcal.px": xyzcal_px},
            "flags_add": flags_add, "imageset": spots.imageset, "per_sweep": rows,
            "max_cell": max_cell, "seconds": time.time() - t0}


def _safe_index_group(args):
    experiments, tables, params = args
    try:
        return {"ok": True, **_index_group(experiments, tables, params)}
    except XtalError as e:
        return {"ok": False, "reason": str(e)}
    except Exception as e:  # noqa: BLE001 - one sweep's internal error must not end the run
        return {"ok": False, "reason": f"internal error: {type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}


# --------------------------------------------------------------------------- stage
def _split(experiments: ExperimentList, reflections: ReflectionTable) -> list[np.ndarray]:
    """Row indices of each experiment's spots (strong spots when flagged)."""
    n = len(reflections)
    keep = np.ones(n, bool)
    if "flags" in reflections:
        strong = (reflections["flags"].astype(np.uint64) & np.uint64(int(Flags.strong))) != 0
        if strong.any():
            keep = strong
    if "xyzobs.px.value" not in reflections:
        raise XtalError("the reflection table has no xyzobs.px.value column (is it a spot list?)")
    if "id" not in reflections:
        ids = np.zeros(n, np.int64)
    else:
        ids = reflections["id"].astype(np.int64)
    emap = {}
    ident = reflections.experiment_identifiers
    if ident:
        pos = {e.identifier: i for i, e in enumerate(experiments)}
        for k, v in ident.items():
            if v in pos:
                emap[k] = pos[v]
    out = []
    for i in range(len(experiments)):
        ks = [k for k, v in emap.items() if v == i] if emap else [i]
        out.append(np.nonzero(keep & np.isin(ids, ks))[0])
    return out


def _run_jobs(jobs: list, params: IndexParams, progress) -> list[dict]:
    """``_safe_index_group`` of every job, in parallel processes when ``nproc > 1``."""
    results = [None] * len(jobs)
    done = 0
    if params.nproc > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=params.nproc, mp_context=ctx) as pool:
            futures = {pool.submit(_safe_index_group, job): k for k, job in enumerate(jobs)}
            for f in as_completed(futures):
                k = futures[f]
                results[k] = f.result()
                done += 1
                if progress:
                    progress(done / len(jobs), f"indexed {done}/{len(jobs)}")
    else:
        for k, job in enumerate(jobs):
            results[k] = _safe_index_group(job)
            done += 1
            if progress:
                progress(done / len(jobs), f"indexed {done}/{len(jobs)}")
    return results


def _failed_rows(group: list[int], res: dict, experiments, rows_of) -> list[dict]:
    """Summary rows of the sweeps of a group that could not be indexed."""
    out = []
    for i in group:
        row = {"sweep": i, "identifier": experiments[i].identifier, "status": "failed",
               "reason": res["reason"], "n_spots": int(len(rows_of[i]))}
        if "traceback" in res:
            row["traceback"] = res["traceback"]
        out.append(row)
    return out


def _indexed_row(i: int, experiment: Experiment, res: dict, per: dict) -> dict:
    """Summary row of sweep ``i`` indexed in the group result ``res`` (first lattice's numbers)."""
    lat0 = res["lattices"][0]
    c = lat0["crystal"]
    sd = c.cell_parameter_sd()
    return {"sweep": i, "identifier": experiment.identifier, "status": "indexed", "reason": "",
            **per, "n_lattices": len(res["lattices"]),
            "unit_cell": [float(x) for x in c.unit_cell],
            "unit_cell_sd": [float(x) for x in sd] if sd else None,
            "space_group": c.space_group_symbol, "lattice": lat0["lattice"], "cb_op": lat0["cb_op"],
            "rmsd_x_px": lat0["rmsd"][0], "rmsd_y_px": lat0["rmsd"][1],
            "rmsd_z_images": lat0["rmsd"][2], "n_used_in_refinement": lat0["n_used"],
            "max_cell": res["max_cell"], "seconds": res["seconds"],
            "lattices": [{"unit_cell": [float(x) for x in L["crystal"].unit_cell],
                          "space_group": L["crystal"].space_group_symbol, "cb_op": L["cb_op"],
                          "rmsd": list(L["rmsd"]), "bravais_settings": L["bravais"]}
                         for L in res["lattices"]]}


def _indexed_table(reflections: ReflectionTable, rows: np.ndarray, res: dict, j: int, expt_ids: dict,
                   out_expts: ExperimentList, imageset_id: int) -> ReflectionTable:
    """The input rows of local sweep ``j`` with the group result's indices, columns and flags."""
    s = res["imageset"] == j
    t = reflections.select(rows)
    lid = res["lattice_id"][s]
    ids = np.full(len(rows), -1, np.int32)
    for k in range(len(res["lattices"])):
        ids[lid == k] = expt_ids[(k, j)]
    t["id"] = ids
    t["miller_index"] = res["miller_index"][s]
    for name, arr in res["columns"].items():
        t[name] = arr[s]
    flags = t["flags"].astype(np.uint64) if "flags" in t else np.zeros(len(t), np.uint64)
    flags = flags & ~np.uint64(int(Flags.indexed) | int(Flags.used_in_refinement))
    flags |= res["flags_add"][s]
    t["flags"] = flags
    t["imageset_id"] = np.full(len(t), imageset_id, np.int32)
    t.experiment_identifiers = {expt_ids[(k, j)]: out_expts[expt_ids[(k, j)]].identifier
                                for k in range(len(res["lattices"]))}
    return t


def _collect(groups, results, experiments, reflections, rows_of):
    """Indexed experiments (one per lattice and sweep), their tables and the sweep rows."""
    out_expts = ExperimentList()
    tables = []
    sweeps = []
    for g, res in zip(groups, results):
        if not res["ok"]:
            sweeps += _failed_rows(g, res, experiments, rows_of)
            continue
        expt_ids = {}  # (lattice k, local sweep j) -> output id
        for k, lat in enumerate(res["lattices"]):
            for j, i in enumerate(g):
                e = experiments[i]
                new = Experiment(beam=e.beam, detector=e.detector, goniometer=e.goniometer, scan=e.scan,
                                 crystal=lat["crystal"], imageset=e.imageset, profile=e.profile,
                                 identifier=e.identifier if k == 0 else str(uuid.uuid4()))
                expt_ids[(k, j)] = len(out_expts)
                out_expts.append(new)
        for j, i in enumerate(g):
            tables.append(_indexed_table(reflections, rows_of[i], res, j, expt_ids, out_expts, len(tables)))
            sweeps.append(_indexed_row(i, experiments[i], res, res["per_sweep"][j]))
    sweeps.sort(key=lambda r: r["sweep"])
    return out_expts, tables, sweeps


def run_index(experiments: ExperimentList, reflections: ReflectionTable, params: IndexParams,
              progress=None) -> tuple[ExperimentList, ReflectionTable, dict]:
    """Index rotation sweeps (the stage ``xtal index``, dials.index).

    Parameters
    ----------
    experiments : ExperimentList
        Imported sweeps (beam, detector, goniometer, scan; DIALS lab frame).
    reflections : ReflectionTable
        Their spots (``strong.refl``): ``xyzobs.px.value`` in pixels (x fast,
        y slow, z frame) with its variance, ``panel`` and ``id`` (= experiment);
        only spots flagged strong are used when any are.
    params : IndexParams
        ``joint=true`` indexes all sweeps as one crystal, ``false`` each alone
        (in ``nproc`` processes); ``unit_cell`` (Å, deg) and ``space_group`` are
        the known symmetry.
    progress : callable, optional
        ``progress(fraction, message)`` as groups of sweeps finish.

    Returns
    -------
    experiments : ExperimentList
        One experiment per sweep and lattice, with the crystal (A = U·B in the
        DIALS lab frame, Å⁻¹) in P1 or the chosen Bravais setting.
    reflections : ReflectionTable
        The input spots with ``miller_index`` (in that setting), ``id`` (−1 if
        unindexed), ``xyzobs.mm.value`` (mm, mm, rad), ``xyzcal.mm``,
        ``xyzcal.px``, ``s1``, ``rlp`` (Å⁻¹), ``entering`` and the indexed flag.
    summary : dict
        One row per input sweep (``status`` indexed/failed and ``reason``; cell
        in Å and deg, RMSDs in px and images, the Bravais table of each lattice)
        and the overall counts.

    Raises
    ------
    XtalError
        If there is nothing to index, the symmetry priors are impossible, or no
        sweep could be indexed.

    Examples
    --------
    >>> params = IndexParams(joint=False, unit_cell=(78.1, 78.1, 78.1, 90, 90, 90), space_group="I 21 3")
    >>> indexed_expts, indexed, summary = run_index(experiments, strong, params)
    >>> [s["percent_indexed"] for s in summary["sweeps"]]
    """
    if len(experiments) == 0:
        raise XtalError("no experiments to index")
    TargetSymmetry.make(params.unit_cell, params.space_group)  # bad priors: one clear error
    rows_of = _split(experiments, reflections)
    cols = ["xyzobs.px.value", "xyzobs.px.variance", "panel", "intensity.sum.value", "intensity.sum.variance"]

    def table_of(i):
        return {c: np.asarray(reflections[c])[rows_of[i]] for c in cols if c in reflections}

    if params.joint:
        groups = [list(range(len(experiments)))]
    else:
        groups = [[i] for i in range(len(experiments))]
    jobs = [([experiments[i] for i in g], [table_of(i) for i in g], params) for g in groups]
    results = _run_jobs(jobs, params, progress)
    out_expts, tables, sweeps = _collect(groups, results, experiments, reflections, rows_of)
    if tables:
        table = ReflectionTable.concatenate(tables) if len(tables) > 1 else tables[0]
    else:
        table = ReflectionTable()
    n_ok = sum(1 for s in sweeps if s["status"] == "indexed")
    summary = {"n_sweeps": len(experiments), "n_indexed_sweeps": n_ok, "n_failed": len(sweeps) - n_ok,
               "n_experiments": len(out_expts), "joint": params.joint, "sweeps": sweeps,
               "n_spots": int(sum(s.get("n_spots", 0) for s in sweeps)),
               "n_indexed": int(sum(s.get("n_indexed", 0) for s in sweeps))}
    if n_ok == 0:
        reasons = "; ".join(f"sweep {s['sweep']}: {s['reason']}" for s in sweeps)
        raise SweepError(f"no sweep could be indexed ({reasons})", {int(s["sweep"]): s["reason"] for s in sweeps})
    return out_expts, table, summary
