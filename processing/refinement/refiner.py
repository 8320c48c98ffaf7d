"""The refinement stage (dials.refine): ``run_refine`` (its parameters, ``RefineParams``, in params.py).

Refines beam, detector and crystal models of rotation sweeps against the indexed
reflections' centroids (X, Y in mm, φ in rad, weighted by the inverse centroid
variances) with Levenberg–Marquardt and analytic derivatives. As dials.refine:
reflections too close to the spindle or outside the scan are left out, outliers are
rejected (MCD by default), large scans are subsampled (``reflections_per_degree``),
the default ``scan_varying=auto`` runs a static macrocycle then a scan-varying one
(crystal U and B smoothed across the scan, beam and detector static), and the
crystal ``B_covariance`` comes from the final static normal matrix.

A sweep that cannot be refined (too few reflections, a failed or diverging fit) is
set aside with one message naming it; the other sweeps are refined without it and
its models are returned unchanged.
"""
from __future__ import annotations

import copy
import math
import os

import numpy as np

from ..errors import SweepError, XtalError
from ..models import ExperimentList
from ..params import to_json
from ..reflections import Flags, ReflectionTable
from . import outliers as outl
from .engine import levenberg_marquardt
from .parameterisation import (BeamParameterisation, CrystalOrientationParameterisation,
                               CrystalUnitCellParameterisation, DetectorParameterisation,
                               GaussianSmoother, ScanVaryingCrystalOrientation,
                               ScanVaryingCrystalUnitCell, n_intervals)
from .params import BEAM_FIX, CRYSTAL_FIX, DETECTOR_FIX, RefineParams  # noqa: F401 - re-exported
from .residuals import ExperimentModels, Observations, ParameterSet, predict_experiment, residuals_and_jacobian


class _SweepFailure(Exception):
    def __init__(self, failures: dict[int, str]):
        super().__init__("; ".join(failures.values()))
        self.failures = failures


def sweep_name(experiment, index: int) -> str:
    src = experiment.imageset
    text = ""
    if src is not None:
        text = src.template or (src.paths[0] if src.paths else "")
    base = os.path.basename(text)
    for suffix in ("_master.h5", ".nxs", ".h5"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return f"sweep {index}" + (f" ({base})" if base else "")


# ------------------------------------------------------------------ input handling
def _experiment_index(reflections: ReflectionTable, experiments) -> np.ndarray:
    ids = np.asarray(reflections["id"], dtype=np.int64)
    ident = reflections.experiment_identifiers
    if ident:
        pos = {e.identifier: i for i, e in enumerate(experiments)}
        lookup = {k: pos.get(v, -1) for k, v in ident.items()}
        return _map_ids(ids, lookup)
    out = ids.copy()
    out[(out < 0) | (out >= len(experiments))] = -1
    return out


def _map_ids(ids, lookup):
    keys = np.array(sorted(lookup), dtype=np.int64)
    vals = np.array([lookup[k] for k in keys], dtype=np.int64)
    pos = np.clip(np.searchsorted(keys, ids), 0, len(keys) - 1)
    return np.where(keys[pos] == ids, vals[pos], -1)


def _observed_s1(e, xy_mm, panel):
    s1 = np.zeros((len(xy_mm), 3))
    for j, p in enumerate(e.detector.panels):
        sel = panel == j
        if np.any(sel):
            s1[sel] = p.get_lab_coord(xy_mm[sel])
    return s1 / (np.linalg.norm(s1, axis=1)[:, None] * e.beam.wavelength)


def _equal_beam(a, b):
    return abs(a.wavelength - b.wavelength) < 1e-6 * a.wavelength and np.allclose(a.direction, b.direction, atol=1e-6)


def _equal_detector(a, b):
    if len(a) != len(b):
        return False
    return all(np.allclose(p.fast_axis, q.fast_axis, atol=1e-6) and np.allclose(p.slow_axis, q.slow_axis, atol=1e-6)
               and np.allclose(p.origin, q.origin, atol=1e-3) and p.image_size == q.image_size
               and np.allclose(p.pixel_size, q.pixel_size) for p, q in zip(a, b))


def _share(experiments, how: str):
    if how == "input":
        return
    for name, equal in (("beam", _equal_beam), ("detector", _equal_detector)):
        kept = []
        for e in experiments:
            m = getattr(e, name)
            for k in kept:
                if k is m or how == "all" or equal(k, m):
                    setattr(e, name, k)
                    break
            else:
                kept.append(m)


# ------------------------------------------------------------- parameterisations
def _build(experiments, active, params: RefineParams, scan_varying: bool) -> ParameterSet:
    models = [ExperimentModels() for _ in experiments]
    seen = {}
    for i in active:
        e = experiments[i]
        m = models[i]
        key = ("beam", id(e.beam))
        if key not in seen:
            ids = [j for j in active if experiments[j].beam is e.beam]
            bp = BeamParameterisation(e.beam, e.goniometer, ids)
            fix = set(params.beam_fix)
            if "all" in fix:
                bp.free[:] = False
            if "in_spindle_plane" in fix:
                bp.fix(["Mu1"])
            if "out_spindle_plane" in fix:
                bp.fix(["Mu2"])
            if "wavelength" in fix:
                bp.fix(["nu"])
            if scan_varying and params.sv_fix_beam:
                bp.free[:] = False
            seen[key] = bp
        m.beam = seen[key]
        key = ("detector", id(e.detector))
        if key not in seen:
            ids = [j for j in active if experiments[j].detector is e.detector]
            groups = [[j] for j in range(len(e.detector))] if params.detector_panels == "per_panel" else [None]
            dps = [DetectorParameterisation(e.detector, ids, panels=g, s0=e.beam.s0) for g in groups]
            for dp in dps:
                fx = params.detector_fix
                if fx == "all":
                    dp.free[:] = False
                elif fx == "position":
                    dp.fix(["Dist", "Shift1", "Shift2"])
                elif fx == "orientation":
                    dp.fix(["Tau1", "Tau2", "Tau3"])
                elif fx == "distance":
                    dp.fix(["Dist"])
            seen[key] = dps
        m.detectors = seen[key]
        key = ("crystal", id(e.crystal))
        if key not in seen:
            ids = [j for j in active if experiments[j].crystal is e.crystal]
            static_cell = CrystalUnitCellParameterisation(e.crystal, ids)
            if scan_varying:
                smoother = GaussianSmoother(e.scan.array_range,
                                            n_intervals(e.scan, params.interval_width_degrees,
                                                        params.absolute_num_intervals))
                op = ScanVaryingCrystalOrientation(e.crystal, smoother, ids)
                cp = ScanVaryingCrystalUnitCell(e.crystal, static_cell, smoother, ids)
            else:
                op = CrystalOrientationParameterisation(e.crystal, ids)
                cp = static_cell
            if params.crystal_fix in ("all", "orientation"):
                op.free[:] = False
            if params.crystal_fix in ("all", "cell"):
                cp.free[:] = False
            seen[key] = (op, cp)
        m.orientation, m.cell = seen[key]
    return ParameterSet(experiments, models)


def _model_z(e, phi, block_width_deg):
    """Frame at which a scan-varying model is evaluated: the centre of the φ block."""
    scan = e.scan
    z = scan.frame_from_angle(np.degrees(phi))
    z0, z1 = scan.array_range
    wb = max(block_width_deg / abs(scan.oscillation[1]), 1.0)
    zc = z0 + (np.floor((z - z0) / wb) + 0.5) * wb
    return np.clip(zc, z0, z1)


# --------------------------------------------------------------------- the stage
class _Run:
    def __init__(self, experiments, reflections, params: RefineParams, progress):
        self.experiments = experiments
        self.refl = reflections
        self.params = params
        self.progress = progress
        self.failures: dict[int, str] = {}
        n = len(reflections)
        self.eidx = _experiment_index(reflections, experiments)
        self.obs = np.asarray(reflections["xyzobs.mm.value"], float)
        var = np.asarray(reflections["xyzobs.mm.variance"], float)
        self.hkl = np.asarray(reflections["miller_index"], np.int64)
        self.panel = (np.asarray(reflections["panel"], np.int64) if "panel" in reflections
                      else np.zeros(n, np.int64))
        self.entering = np.asarray(reflections["entering"], bool) if "entering" in reflections else None
        flags = np.asarray(reflections["flags"], np.uint64) if "flags" in reflections else np.zeros(n, np.uint64)
        ok = (self.eidx >= 0) & np.any(self.hkl != 0, axis=1)
        ok &= (flags & np.uint64(int(Flags.overloaded))) == 0
        ok &= np.all(np.isfinite(self.obs), axis=1) & np.all(var > 0, axis=1) & np.all(np.isfinite(var), axis=1)
        self.weights = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)
        # close to the spindle and outside the scan (DIALS's ReflectionManager)
        accepted = np.zeros(n, bool)
        for i, e in enumerate(experiments):
            rows = np.nonzero(ok & (self.eidx == i))[0]
            if len(rows) == 0:
                continue
            s1 = _observed_s1(e, self.obs[rows, :2], self.panel[rows])
            axis = e.goniometer.rotation_axis_lab
            vol = np.abs(np.cross(s1, e.beam.s0) @ axis)
            lo, hi = sorted(np.radians(e.scan.oscillation_range))
            phi = self.obs[rows, 2]
            accepted[rows[(vol > params.close_to_spindle_cutoff) & (phi >= lo) & (phi <= hi)]] = True
        self.accepted = accepted
        self.outlier = np.zeros(n, bool)
        self.used = np.zeros(n, bool)
        self.rng_seed = params.random_seed

    # ---------------------------------------------------------------- helpers
    def _nparam(self, pset, i):
        m = pset.models[i]
        return sum(p.n_free for p in (m.orientation, m.cell) if p is not None)

    def _observations(self, i, rows, sv):
        e = self.experiments[i]
        z = _model_z(e, self.obs[rows, 2], self.params.block_width) if sv else np.zeros(len(rows))
        return Observations(i, rows, self.hkl[rows], self.obs[rows], self.weights[rows], self.panel[rows],
                            None if self.entering is None else self.entering[rows], z)

    def _check_counts(self, pset, active, rows_of, stage):
        fails = {}
        for i in active:
            k = self._nparam(pset, i)
            need = max(k * self.params.min_nref_per_parameter, 1)
            if len(rows_of[i]) < need:
                fails[i] = (f"{sweep_name(self.experiments[i], i)}: only {len(rows_of[i])} reflections {stage} "
                            f"for {k} crystal parameters (need {need}); not refined")
        if fails:
            raise _SweepFailure(fails)

    def _rmsds(self, data, preds):
        out = {}
        for o, p in zip(data, preds):
            d = (p["xyz"] - o.obs)[p["valid"]]
            out[o.experiment] = (np.sqrt(np.mean(d ** 2, axis=0)) if len(d) else np.full(3, np.nan), int(len(d)))
        return out

    def _px_image(self, o):
        """Per row (N×3) the size of a pixel (mm) and of an image (rad) of observations ``o``."""
        e = self.experiments[o.experiment]
        px = np.array([p.pixel_size for p in e.detector.panels], float)[o.panel]
        width = math.radians(abs(e.scan.oscillation[1])) or 1.0
        return np.column_stack([px, np.full(len(o), width)])

    def _to_units(self, i, rmsd):
        e = self.experiments[i]
        px = e.detector[0].pixel_size
        width = math.radians(abs(e.scan.oscillation[1])) or 1.0
        return float(rmsd[0] / px[0]), float(rmsd[1] / px[1]), float(rmsd[2] / width)

    # --------------------------------------------------------------- macrocycle
    def macrocycle(self, active, sv: bool):
        p = self.params
        pset = _build(self.experiments, active, p, sv)
        rows_of = {i: np.nonzero(self.accepted & (self.eidx == i))[0] for i in active}
        self._check_counts(pset, active, rows_of, "pass the inclusion criteria")
        # initial prediction: drop reflections without a prediction
        data = [self._observations(i, rows_of[i], sv) for i in active]
        try:
            _, _, preds = residuals_and_jacobian(pset, data, jacobian=False)
        except np.linalg.LinAlgError as err:
            raise XtalError(f"cannot predict reflections with the input models: {err}") from None
        for o, pr in zip(data, preds):
            rows_of[o.experiment] = o.rows[pr["valid"]]
        outliers = np.zeros(len(self.refl), bool)
        rounds = 3 if p.outlier_recheck else 1
        result = None
        for round_ in range(rounds):
            every = [self._observations(i, rows_of[i], sv) for i in active]
            _, _, preds = residuals_and_jacobian(pset, every, jacobian=False)
            res = np.concatenate([(pr["xyz"] - o.obs) / self._px_image(o) for o, pr in zip(every, preds)])
            rows = np.concatenate([o.rows for o in every])
            flag, jobs = outl.detect_outliers(res, self.eidx[rows], self.obs[rows, 2], self.panel[rows],
                                              p.outlier_algorithm, p.outlier_block_width,
                                              p.minimum_number_of_reflections, p.separate_panels,
                                              p.iqr_multiplier, p.threshold_probability,
                                              min_scatter=p.outlier_min_scatter)
            new_out = np.zeros(len(self.refl), bool)
            new_out[rows[flag]] = True
            if result is not None and np.array_equal(new_out, outliers):
                break
            outliers = new_out
            working = {}
            for i in active:
                r = rows_of[i][~outliers[rows_of[i]]]
                working[i] = self._subset(i, r)
            self._check_counts(pset, active, working, "remain after outlier rejection")
            data = [self._observations(i, working[i], sv) for i in active]
            result = self._minimise(pset, data)
        rm = self._rmsds(data, result["preds"])
        diverged = {}
        for i in active:
            x, y, z = self._to_units(i, rm[i][0])
            if not all(np.isfinite([x, y, z])) or max(x, y, z) > p.max_rmsd_px:
                diverged[i] = (f"{sweep_name(self.experiments[i], i)}: refinement diverged "
                               f"(RMSD {x:.3g}, {y:.3g} px, {z:.3g} images); not refined")
        if diverged and len(diverged) < len(active):
            raise _SweepFailure(diverged)
        if diverged:
            raise XtalError("; ".join(diverged.values()))
        return {"pset": pset, "data": data, "lm": result["lm"], "rmsds": rm, "outliers": outliers,
                "jobs": jobs, "working": working, "initial_rmsds": result["initial"]}

    def _subset(self, i, rows):
        p = self.params
        e = self.experiments[i]
        n = len(rows)
        width = abs(e.scan.oscillation_range[1] - e.scan.oscillation_range[0])
        size = n
        if p.reflections_per_degree is None:
            turns = width / 360.0
            if turns > 1:
                size = int(max(math.ceil(n / turns), 100.0 * width))
        else:
            size = int(p.reflections_per_degree * width)
        size = max(size, p.minimum_sample_size)
        if p.maximum_sample_size:
            size = min(size, p.maximum_sample_size)
        if size < n:
            rng = np.random.default_rng(self.rng_seed + i)
            rows = np.sort(rng.choice(rows, size=size, replace=False))
        return rows

    def _minimise(self, pset, data):
        n_obs = sum(len(o) for o in data)

        def fun(x, jac):
            pset.set_x(x)
            try:
                r, J, _ = residuals_and_jacobian(pset, data, jac)
            except np.linalg.LinAlgError:
                return np.full(3 * n_obs, np.inf), None
            return r, J

        def rmsds(x):
            pset.set_x(x)
            _, _, preds = residuals_and_jacobian(pset, data, False)
            d = np.concatenate([(pr["xyz"] - o.obs)[pr["valid"]] for o, pr in zip(data, preds)])
            return np.sqrt(np.mean(d ** 2, axis=0))

        x0 = pset.get_x()
        pset.set_x(x0)
        _, _, preds0 = residuals_and_jacobian(pset, data, False)
        initial = self._rmsds(data, preds0)
        try:
            lm = levenberg_marquardt(fun, x0, rmsds, max_iterations=self.params.max_iterations)
        except np.linalg.LinAlgError as err:
            # which experiments own the indeterminate columns?
            pset.set_x(x0)
            _, J, _ = residuals_and_jacobian(pset, data, True)
            zero = np.nonzero(np.asarray(abs(J).sum(axis=0)).ravel() == 0)[0]
            bad = {}
            for p in pset.params:
                cols = pset.columns[id(p)]
                if np.isin(cols[cols >= 0], zero).any() and len(p.experiment_ids) == 1:
                    i = p.experiment_ids[0]
                    bad[i] = f"{sweep_name(self.experiments[i], i)}: indeterminate parameters; not refined"
            if bad:
                raise _SweepFailure(bad) from None
            raise XtalError(f"refinement failed: {err}") from None
        pset.set_x(lm.x)
        _, _, preds = residuals_and_jacobian(pset, data, False)
        return {"lm": lm, "preds": preds, "initial": initial}

    def run_with_failures(self, sv: bool):
        active = [i for i in range(len(self.experiments)) if i not in self.failures]
        while True:
            if not active:
                raise SweepError("no sweep could be refined: " + "; ".join(self.failures.values()),
                                 {i: m.removeprefix(sweep_name(self.experiments[i], i) + ": ")
                                  for i, m in self.failures.items()})
            try:
                return self.macrocycle(active, sv)
            except _SweepFailure as f:
                self.failures.update(f.failures)
                active = [i for i in active if i not in f.failures]


def _apply(experiments, pset: ParameterSet):
    """Write the refined parameters into the (copied) models."""
    done = set()
    for i, m in enumerate(pset.models):
        e = experiments[i]
        if m.beam is not None and id(m.beam) not in done:
            m.beam.apply(e.beam)
            done.add(id(m.beam))
        for dp in m.detectors:
            if id(dp) not in done:
                dp.apply(e.detector)
                done.add(id(dp))


def _crystal_update(e, m: ExperimentModels):
    """New static A (and A_at_scan_points for scan-varying models) of a crystal."""
    o, c = m.orientation, m.cell
    if not (o.scan_varying or c.scan_varying):
        U, _ = o.state()
        B, _ = c.state()
        return U @ B, None
    z0, z1 = e.scan.array_range
    z = np.arange(z0, z1 + 1, dtype=float)
    U, _ = o.state_at(z)
    B, _ = c.state_at(z)
    A = U @ B
    Um, _ = o.state_at(np.array([0.5 * (z0 + z1)]))
    Bm, _ = c.state_at(np.array([0.5 * (z0 + z1)]))
    return (Um @ Bm)[0], A


def _split_shared_crystals(expts) -> None:
    """A scan-varying crystal needs one scan: copy crystals shared between sweeps."""
    owner = {}
    for e in expts:
        if e.crystal is None:
            continue
        if id(e.crystal) in owner and owner[id(e.crystal)] is not e.scan:
            e.crystal = copy.deepcopy(e.crystal)
        owner.setdefault(id(e.crystal), e.scan)


def _update_crystals(expts, pset: ParameterSet, cov, k: int, sv: bool) -> None:
    """Write macrocycle ``k``'s refined crystals (A, A at scan points and, after a
    static cycle, the B covariance from the normal matrix) into the experiments."""
    for i in sorted({i for p in pset.params for i in p.experiment_ids}):
        e = expts[i]
        m = pset.models[i]
        A, A_sp = _crystal_update(e, m)
        c = e.crystal
        if getattr(c, "_refined_pass", None) == k:
            continue
        new = type(c).from_A(A, c.space_group_hall_symbol, B_covariance=c.B_covariance,
                             A_at_scan_points=A_sp, extra=dict(c.extra))
        c.real_space_a, c.real_space_b, c.real_space_c = new.real_space_a, new.real_space_b, new.real_space_c
        c.A_at_scan_points = A_sp
        if not sv and cov is not None and m.cell is not None:
            cols = pset.columns[id(m.cell)]
            free = cols >= 0
            if np.any(free):
                _, dB = m.cell.state()
                Jb = dB.reshape(len(dB), 9).T[:, free]
                C = cov[np.ix_(cols[free], cols[free])]
                c.B_covariance = Jb @ C @ Jb.T
            else:
                c.B_covariance = None
        c._refined_pass = k


def _set_flags(refl: ReflectionTable, final: dict) -> np.ndarray:
    """Set used_in_refinement and centroid_outlier from the final macrocycle; the used rows."""
    flags = np.asarray(refl["flags"], np.uint64).copy() if "flags" in refl else np.zeros(len(refl), np.uint64)
    flags &= ~np.uint64(int(Flags.used_in_refinement) | int(Flags.centroid_outlier))
    used = np.concatenate([o.rows for o in final["data"]])
    flags[used] |= np.uint64(int(Flags.used_in_refinement))
    flags[final["outliers"]] |= np.uint64(int(Flags.centroid_outlier))
    refl["flags"] = flags
    return used


def _refine_summary(expts, run: _Run, final: dict, params: RefineParams, cycles: list, used: np.ndarray) -> dict:
    """The JSON-able summary of :func:`run_refine`."""
    rows = []
    for i in range(len(expts)):
        if i in run.failures or i not in final["rmsds"]:
            continue
        rmsd, nref = final["rmsds"][i]
        x, y, z = run._to_units(i, rmsd)
        rows.append({"experiment": i, "nref": nref, "rmsd_x_px": x, "rmsd_y_px": y, "rmsd_z_images": z})
    crystals = []
    for i, e in enumerate(expts):
        if e.crystal is None:
            continue
        sd = e.crystal.cell_parameter_sd()
        crystals.append({"experiment": i, "refined": i not in run.failures,
                         "unit_cell": [float(v) for v in e.crystal.unit_cell],
                         "unit_cell_sd": [float(v) for v in sd] if sd else None,
                         "space_group": e.crystal.space_group_symbol})
    init = final["initial_rmsds"]
    return {
        "parameters": to_json(params),
        "n_experiments": len(expts),
        "n_refined": len(expts) - len(run.failures),
        "rmsds_by_experiment": rows,
        "initial_rmsds_by_experiment": [
            {"experiment": i, "nref": init[i][1], **dict(zip(("rmsd_x_px", "rmsd_y_px", "rmsd_z_images"),
                                                         run._to_units(i, init[i][0])))}
            for i in sorted(init)],
        "crystals": crystals,
        "failed": [{"experiment": i, "identifier": expts[i].identifier, "message": msg}
                   for i, msg in sorted(run.failures.items())],
        "macrocycles": cycles,
        "n_used_in_refinement": int(len(used)),
        "n_centroid_outliers": int(final["outliers"].sum()),
    }


def run_refine(experiments: ExperimentList, reflections: ReflectionTable, params: RefineParams,
               progress=None) -> tuple[ExperimentList, ReflectionTable, dict]:
    """Refine the beam, detector and crystal models of indexed rotation sweeps (dials.refine).

    Parameters
    ----------
    experiments : ExperimentList
        Indexed sweeps (``indexed.expt``): models in the DIALS lab frame, crystal
        A = U·B (Å⁻¹). Not modified.
    reflections : ReflectionTable
        Indexed reflections (``indexed.refl``) with ``miller_index``, ``id``,
        ``xyzobs.mm.value`` (mm, mm, rad) and ``xyzobs.mm.variance``. Not modified.
    params : RefineParams
        What to refine and how (``scan_varying``, fixes, outlier rejection).
    progress : callable, optional
        ``progress(fraction, message)`` before each macrocycle.

    Returns
    -------
    experiments : ExperimentList
        Copies with the refined models (scan-varying crystals carry A at every
        scan point); a sweep that could not be refined keeps its models.
    reflections : ReflectionTable
        With ``xyzcal.mm`` (mm, mm, rad), ``xyzcal.px`` (px fast, slow, frame) and
        ``s1`` (Å⁻¹) recomputed, and the used_in_refinement / centroid_outlier
        flags set.
    summary : dict
        ``rmsds_by_experiment`` (DIALS's "RMSDs by experiment" rows, px and
        images), ``crystals`` (cells in Å and deg with e.s.d.s), ``failed`` (one
        message per sweep set aside) and the fit history of each macrocycle.

    Examples
    --------
    >>> refined_expts, refined, summary = run_refine(indexed_expts, indexed, RefineParams(scan_varying="false"))
    >>> summary["rmsds_by_experiment"][0]["rmsd_x_px"]
    """
    if len(experiments) == 0:
        raise XtalError("no experiments to refine")
    if len(reflections) == 0:
        raise XtalError("no reflections to refine against")
    for col in ("xyzobs.mm.value", "xyzobs.mm.variance", "miller_index", "id"):
        if col not in reflections:
            raise XtalError(f"the reflection table has no {col} column (are these indexed reflections?)")
    expts = ExperimentList(copy.deepcopy(list(experiments)))
    _share(expts, params.share_models)
    refl = reflections.copy()
    if progress:
        progress(0.0, "preparing")
    run = _Run(expts, refl, params, progress)
    for i, e in enumerate(expts):
        if e.crystal is None:
            run.failures[i] = f"{sweep_name(e, i)}: no crystal model (not indexed); not refined"
        elif e.is_still:
            run.failures[i] = f"{sweep_name(e, i)}: not a rotation sweep (stills are not supported); not refined"
    if params.scan_varying != "false":
        _split_shared_crystals(expts)
    cycles = []
    static = None
    plan = []
    if params.scan_varying in ("false", "auto"):
        plan += [False] * params.n_static_macrocycles
    if params.scan_varying in ("true", "auto"):
        plan.append(True)
    for k, sv in enumerate(plan):
        if progress:
            progress(k / len(plan), f"{'scan-varying' if sv else 'static'} macrocycle {k + 1}/{len(plan)}")
        result = run.run_with_failures(sv)
        pset = result["pset"]
        _apply(expts, pset)
        cov = result["lm"].covariance
        _update_crystals(expts, pset, cov, k, sv)
        for p in pset.params:
            cols = pset.columns[id(p)]
            if cov is not None:
                p.esd[cols >= 0] = np.sqrt(np.clip(np.diag(cov)[cols[cols >= 0]], 0, None))
        cycles.append({"scan_varying": sv, "n_parameters": pset.n, "n_iterations": result["lm"].n_iterations,
                       "reason_for_termination": result["lm"].reason,
                       "n_reflections": int(sum(len(o) for o in result["data"])),
                       "n_outliers": int(result["outliers"].sum()), "outlier_jobs": result["jobs"],
                       "history": result["lm"].history})
        static = result
    for e in expts:
        if e.crystal is not None and hasattr(e.crystal, "_refined_pass"):
            del e.crystal._refined_pass
    final = static
    used = _set_flags(refl, final)
    _update_predictions(expts, refl, run, final["pset"], params)
    summary = _refine_summary(expts, run, final, params, cycles, used)
    if progress:
        progress(1.0, "refined")
    return expts, refl, summary


def _update_predictions(expts, refl, run: _Run, pset: ParameterSet, params: RefineParams):
    """xyzcal.mm/px and s1 of every indexed reflection of the refined sweeps."""
    xyz_mm = (np.asarray(refl["xyzcal.mm"], float).copy() if "xyzcal.mm" in refl
              else np.full((len(refl), 3), np.nan))
    xyz_px = (np.asarray(refl["xyzcal.px"], float).copy() if "xyzcal.px" in refl
              else np.full((len(refl), 3), np.nan))
    s1 = np.asarray(refl["s1"], float).copy() if "s1" in refl else np.full((len(refl), 3), np.nan)
    base_ok = (run.eidx >= 0) & np.any(run.hkl != 0, axis=1) & np.all(np.isfinite(run.obs), axis=1)
    for i, e in enumerate(expts):
        if i in run.failures or pset.models[i].orientation is None:
            continue
        rows = np.nonzero(base_ok & (run.eidx == i))[0]
        if len(rows) == 0:
            continue
        m = pset.models[i]
        sv = m.orientation.scan_varying or m.cell.scan_varying
        obs = run._observations(i, rows, sv)
        pred, _ = predict_experiment(pset, i, obs, gradients=False)
        ok = pred["valid"]
        r = rows[ok]
        xyz_mm[r] = pred["xyz"][ok]
        s1[r] = pred["s1"][ok]
        px = np.full((len(r), 2), np.nan)
        for j, pnl in enumerate(e.detector.panels):
            sel = run.panel[r] == j
            if np.any(sel):
                px[sel] = pnl.millimeter_to_pixel(pred["xyz"][ok][sel, :2])
        xyz_px[r] = np.column_stack([px, e.scan.frame_from_angle(np.degrees(pred["xyz"][ok][:, 2]))])
    refl["xyzcal.mm"] = xyz_mm
    refl["xyzcal.px"] = xyz_px
    refl["s1"] = s1
