"""The indexing stage (dials.index): ``run_index`` (its parameters, IndexParams, in params.py).

Per sweep (``joint=false``) or for all sweeps as one crystal (``joint=true``,
DIALS's default): spot centroids → rlps; max_cell from spot spacing (or 1.3 × the
longest primitive length of ``unit_cell=``); candidate basis vectors (fft3d, fft1d,
or the real-space grid search of a known cell); candidate lattices ranked as DIALS
ranks them; then ``n_macro_cycles`` of index assignment and static P1 refinement
(X, Y, φ; Tukey outliers; the detector's beam-centre shifts, and its distance on
wide wedges, with the spots re-mapped from the refined geometry each cycle) with
the resolution limit widened from the search's d_min to all spots; a lattice is accepted only within the RMSD and spot-count limits
(lattice_search.py); more lattices from the leftover spots up to ``max_lattices``; Bravais
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
from .bravais import LOWEST_SPACE_GROUP, bravais_settings, lattice_of_space_group, settings_min_max_cc
from .known_cell import TargetSymmetry, _sorted_if_needed
from .lattice import cells_similar
from .lattice_search import find_lattices, rejection, search_beam_position
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
        self.sigma_phi_deg = sigma_phi_deg
        self.tables = tables
        for e in experiments:
            if e.scan is None or e.goniometer is None or e.scan.is_still:
                raise XtalError("not a rotation sweep (stills are not supported by xtal index)")
        self.set_experiments(list(experiments))

    def set_experiments(self, experiments: list[Experiment]):
        """(Re-)map the spots to mm, s1, rlp and entering with this geometry (one experiment per sweep)."""
        self.experiments = list(experiments)
        parts = []
        for k, (e, t) in enumerate(zip(experiments, self.tables)):
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


def _drop_refused_settings(lattices: list[dict], hkl: np.ndarray, cid: np.ndarray, params: IndexParams):
    """The lattices whose crystal in the chosen setting (constrained refinement) still
    meets the acceptance limits, with their spots renumbered; the others' spots become
    unindexed. XtalError if none does."""
    why = [rejection({"n_indexed": L["quality"]["n_indexed"], "rmsd_xy_px": math.hypot(*L["rmsd"][:2]),
                      "rmsd_z_images": L["rmsd"][2]}, params) for L in lattices]
    keep = [k for k, w in enumerate(why) if w is None]
    if not keep:
        raise XtalError(f"no lattice meets the acceptance limits in the {lattices[0]['lattice']} setting "
                        f"(it does in P1: are the beam centre and distance right?): {why[0]}")
    new_cid = np.full(len(cid), -1, dtype=cid.dtype)
    for new_k, k in enumerate(keep):
        new_cid[cid == k] = new_k
    hkl = hkl.copy()
    hkl[new_cid < 0] = 0
    return [lattices[k] for k in keep], hkl, new_cid


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
    pixel = float(experiments[0].detector[0].pixel_size[0])

    def index():
        A_list, results, qualities, hkl, cid = find_lattices(spots, params, target, max_cell)
        lattices = [_lattice_setting(spots, A, res, hkl, cid == k, params, target, pixel)
                    for k, (A, res) in enumerate(zip(A_list, results))]
        for lat, q in zip(lattices, qualities):
            lat["quality"] = q
        return _drop_refused_settings(lattices, hkl, cid, params)

    lattices, hkl, cid = search_beam_position(spots, params, index)
    xyzcal_mm, xyzcal_px, entering = _predictions(spots, spots.experiments, lattices, hkl, cid)
    s1 = spots.cols["s1"].copy()
    flags_add = np.where(cid >= 0, int(Flags.indexed), 0).astype(np.uint64)
    rows = []
    for j, e in enumerate(experiments):
        s = spots.imageset == j
        ni = int(np.sum(cid[s] >= 0))
        rows.append({"n_spots": int(s.sum()), "n_indexed": ni,
                     "percent_indexed": 100.0 * ni / max(int(s.sum()), 1),
                     **_geometry_change(e, spots.experiments[j])})
    return {"lattices": lattices, "experiments": spots.experiments, "miller_index": hkl.astype(np.int32), "lattice_id": cid.astype(np.int32),
            "columns": {"xyzobs.mm.value": spots.cols["xyzobs.mm.value"],
                        "xyzobs.mm.variance": spots.cols["xyzobs.mm.variance"], "s1": s1,
                        "rlp": spots.rlp, "entering": entering, "xyzcal.mm": xyzcal_mm, "xyzcal.px": xyzcal_px},
            "flags_add": flags_add, "imageset": spots.imageset, "per_sweep": rows,
            "max_cell": max_cell, "seconds": time.time() - t0}


def _geometry_change(before: Experiment, after: Experiment) -> dict:
    """How far indexing moved the detector: beam centre shift (px, fast and slow) and
    distance change (mm) on the first panel."""
    p0, p1 = before.detector[0], after.detector[0]
    bc0, bc1 = p0.get_beam_centre_px(before.beam.s0), p1.get_beam_centre_px(after.beam.s0)
    return {"beam_centre_shift_px": [float(v) for v in np.subtract(bc1, bc0)],
            "distance_change_mm": float(p1.distance - p0.distance)}


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
                          "rmsd": list(L["rmsd"]), "n_indexed": L["quality"]["n_indexed"],
                          "rmsd_xy_px": L["quality"]["rmsd_xy_px"], "bravais_settings": L["bravais"]}
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
                new = Experiment(beam=e.beam, detector=res["experiments"][j].detector, goniometer=e.goniometer,
                                 scan=e.scan,
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
        DIALS lab frame, Å⁻¹) in P1 or the chosen Bravais setting and the
        detector as refined with the lattices (``refine_detector``).
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
