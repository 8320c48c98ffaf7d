"""``run_scale``: scale an ensemble of consistently indexed data sets (dials.scale).

1. Observations: integrated reflections with partiality ≥ ``partiality_cutoff`` and a
   valid variance, corrected (I·lp/qe/p), grouped by reflection in the space group
   (``data.py``); a data set with too few observations is left out by name.
2. Each data set gets a physical model (``model.py``) — or keeps the one it was scaled
   with before (incremental scaling) — refined against the merged intensities, or a
   reference's, by block Levenberg–Marquardt (``minimiser.py``).
3. In dials.scale's order: scaling weighted with the error model's starting values
   (a = 1, b = 0.02) after outliers within each data set; outliers (``outliers.py``);
   intensity choice (``combine``: profile, summation, or their Imid mix, whichever scaled
   data have the best CC½), outliers; scaling, outliers; the error model
   (``error_model.py``) on the observations that are not outliers; scaling with its
   weights, outliers with its σ; the error model again, for the output σ.
4. Scaled intensities (I/g, with the model's uncertainty added to σ²), DIALS's columns
   and flags, and the merging statistics (``processing.merging``).

Time and memory grow linearly with the observations (each cycle is a few passes over
them, and a data set's normal matrix is its own parameters squared).
"""
from __future__ import annotations

import copy

import gemmi
import numpy as np

from ..errors import XtalError
from ..merging.statistics import cc_half_sigma_tau, merging_statistics
from ..reflections import Flags
from ..summary import json_ready
from . import error_model, outliers
from .data import equivalence_ops, observations, reflection_keys, select
from .minimiser import Fit, covariance, merged_estimate, step
from .model import PhysicalModel
from .params import ScaleParams

MIN_OBSERVATIONS = 10
#: Imid candidates of ``combine``, as quantiles of the summation intensities
IMID_QUANTILES = (0.5, 0.8, 0.9, 0.95, 0.99)


def common_space_group(experiments, advice: str = "run xtal cosym (or symmetry) first") -> gemmi.SpaceGroup:
    """The one space group of all the experiments' crystals; else a user error with ``advice``."""
    groups = {}
    for e in experiments:
        if e.crystal is None:
            raise XtalError(f"experiment {e.identifier} has no crystal model")
        sg = gemmi.find_spacegroup_by_ops(e.crystal.space_group)
        groups.setdefault(sg.xhm() if sg else "?", sg)
    if len(groups) != 1 or None in groups.values():
        raise XtalError("the data sets are not all in one space group (" + ", ".join(sorted(groups))
                        + f"): {advice}")
    return next(iter(groups.values()))


def median_cell(experiments) -> tuple[float, ...]:
    """The median unit cell across the experiments, obeying their (one) space group."""
    from ..models.crystal import median_cell as median

    return median(experiments, common_space_group(experiments))


def combine(i_prf, v_prf, i_sum, v_sum, imid: float | None):
    """DIALS's profile/summation mix: w = 1/(1 + (I_sum/Imid)³), I = w·I_prf + (1 − w)·I_sum;
    ``imid`` None: summation only; 0: profile where there is one."""
    has_prf = np.isfinite(i_prf)
    if imid is None:
        return i_sum.copy(), v_sum.copy()
    if imid == 0:
        w = has_prf.astype(float)
    else:
        w = np.where(has_prf, 1.0 / (1.0 + (np.maximum(i_sum, 0) / imid) ** 3), 0.0)
    ip, vp = np.where(has_prf, i_prf, 0.0), np.where(has_prf, v_prf, 0.0)
    return w * ip + (1 - w) * i_sum, w * w * vp + (1 - w) ** 2 * v_sum


class _Scaler:
    """The state of one scaling job."""

    def __init__(self, obs, models, params, reference_target=None, fixed_g=None):
        self.obs = obs
        self.params = params
        self.models = models
        self.n_groups = int(obs.group.max()) + 1 if len(obs) else 0
        self.reference = reference_target  # per group, NaN where the reference has none
        self.fixed_g = fixed_g or {}
        self.group_order = None  # outliers.group_order(obs.group), made on first use
        self.fits = {k: Fit(m, m.basis(obs.phi[a:b], obs.d[a:b], obs.s0c[a:b], obs.s1c[a:b]),
                            np.arange(b - a))
                     for k, m in models.items() if not m.fixed for a, b in [obs.slices[k]]}
        self.g = np.ones(len(obs))
        self.update_g()

    def update_g(self):
        for k, (a, b) in self.obs.slices.items():
            if k in self.fixed_g:
                self.g[a:b] = self.fixed_g[k]
            elif k in self.fits:
                self.g[a:b] = self.models[k].value(self.fits[k].basis)

    def restraint(self, fit):
        """The restraints' weights of one data set: decay_restraint and surface_weight per
        parameter, as dials.scale adds them to Σ w(I − gĨ)². (Scaled by the number of
        observations, the decay restraint held a damaged crystal's B near zero: its Rmerge
        was twice DIALS's on insulin-24 images.)"""
        return fit.model.restraint(self.params.decay_restraint, self.params.surface_weight)

    def target(self, intensity, variance, active):
        """Ĩ per group from the active observations (or the reference), NaN for groups
        that cannot constrain the fit (one observation)."""
        if self.reference is not None:
            return self.reference
        w = np.where(active, 1.0 / variance, 0.0)
        est, _ = merged_estimate(self.obs.group, self.n_groups, self.g, intensity, w)
        counts = np.bincount(self.obs.group, active.astype(np.int64), self.n_groups)
        est[counts < 2] = np.nan
        return est

    def refine(self, intensity, variance, active, progress=None, label=""):
        """Cycles of (merge, one LM step per data set) until the target stops falling."""
        last = np.inf
        n_cycles = 0
        for cycle in range(self.params.max_iterations):
            target = self.target(intensity, variance, active)
            total = 0.0
            for k, fit in self.fits.items():
                a, b = self.obs.slices[k]
                t = target[self.obs.group[a:b]]
                use = np.flatnonzero(active[a:b] & np.isfinite(t))
                if len(use) < MIN_OBSERVATIONS:
                    continue
                fit.use = use
                total += step(fit, intensity[a:b][use], 1.0 / variance[a:b][use], t[use],
                              self.restraint(fit))
            self.normalise()
            self.update_g()
            n_cycles = cycle + 1
            if progress:
                progress(min(0.95, 0.1 + 0.8 * cycle / self.params.max_iterations),
                         f"{label} cycle {n_cycles}: target {total:.6g}")
            if np.isfinite(last) and abs(last - total) <= 1e-6 * max(abs(last), 1e-300):
                break
            last = total
        return n_cycles

    def normalise(self):
        """Mean scale 1 and mean B 0 over the observations, unless something fixes them."""
        if self.reference is not None or self.fixed_g or not self.fits:
            return
        c_sum = n = b_sum = 0.0
        for k, fit in self.fits.items():
            c, _, _ = fit.model.components(fit.basis)
            c_sum += c.sum()
            n += len(c)
            if len(fit.model.decay):
                b_sum += (fit.basis.wd @ fit.model.decay).sum()
        if n == 0 or c_sum <= 0:
            return
        for fit in self.fits.values():
            fit.model.scale = fit.model.scale * (n / c_sum)
            if len(fit.model.decay):
                fit.model.decay = fit.model.decay - b_sum / n

    def g_variance(self, intensity, variance, active):
        """Variance of each observation's g from its data set's parameter covariance."""
        out = np.zeros(len(self.obs))
        target = self.target(intensity, variance, active)
        for k, fit in self.fits.items():
            a, b = self.obs.slices[k]
            t = target[self.obs.group[a:b]]
            use = np.flatnonzero(active[a:b] & np.isfinite(t))
            if len(use) < MIN_OBSERVATIONS:
                continue
            fit.use = use
            cov = covariance(fit, intensity[a:b][use], 1.0 / variance[a:b][use], t[use], self.restraint(fit))
            fit.model.sigmas = np.sqrt(np.maximum(np.diag(cov), 0))
            _, J = fit.model.jacobian(fit.basis)
            out[a:b] = np.einsum("ij,jk,ik->i", J, cov, J)
        return out


def _reference_target(reference, obs, table, space_group, anomalous):
    """The reference's intensity per observation group (NaN where it has none)."""
    from .data import equivalence_ops, reflection_keys

    ops = equivalence_ops(space_group, anomalous)
    ref_keys = reflection_keys(reference.hkl, ops)
    order = np.argsort(ref_keys)
    ref_keys, ref_i = ref_keys[order], reference.intensity[order]
    group_key = np.zeros(int(obs.group.max()) + 1, np.int64)
    group_key[obs.group] = obs.key
    pos = np.clip(np.searchsorted(ref_keys, group_key), 0, max(len(ref_keys) - 1, 0))
    found = ref_keys[pos] == group_key if len(ref_keys) else np.zeros(len(group_key), bool)
    out = np.full(len(group_key), np.nan)
    out[found] = ref_i[pos[found]]
    if found.sum() < MIN_OBSERVATIONS:
        raise XtalError(f"{reference.path}: only {int(found.sum())} of the data's reflections are in the reference "
                        "(same space group and setting?)", field="reference")
    return out


def run_scale(experiments, reflections, params: ScaleParams, progress=None, reference=None):
    """Scale the data sets as dials.scale (physical model, error model, outliers).

    Parameters
    ----------
    experiments : ExperimentList
        Data sets in one space group (cosym's symmetrized.expt); those with a scaling
        model from an earlier run stay fixed when new ones join them (incremental).
    reflections : ReflectionTable
        Their integrated reflections (intensity.sum/prf columns, ``id`` per data set).
    params : ScaleParams
    progress : callable, optional
        ``progress(fraction, message)``.
    reference : dict, optional
        Reference intensities (``processing.io.mtz.read_reference_intensities``) to
        scale against instead of the data's own merged intensities.

    Returns
    -------
    (experiments, reflections, summary)
        As dials.scale writes scaled.expt/.refl: excluded data sets removed, DIALS's
        scaled columns (intensity.scale.value unscaled, inverse_scale_factor) and flags;
        the summary holds the merging statistics, error model and per-data-set curves.

    Examples
    --------
    >>> expts, scaled, summary = run_scale(symmetrized_expts, symmetrized, ScaleParams(d_min=1.6))
    >>> summary["merging_statistics"]["overall"]["cc_half"]
    """
    _check_input(experiments, reflections, params)
    space_group = common_space_group(experiments)
    table = reflections
    keep, excluded, dropped = _selected(experiments, table, params)
    if progress:
        progress(0.02, f"{int(keep.sum())} observations of {len(experiments) - len(excluded)} data sets")
    obs = observations(experiments, table, space_group, keep, params.anomalous)
    models, fixed_g = _models(experiments, table, obs, params, reference)
    ref_target = _reference_target(reference, obs, table, space_group, params.anomalous) if reference else None
    scaler = _Scaler(obs, models, params, ref_target, fixed_g)

    # 1. initial scaling on profile intensities (summation where there are none), weighted with
    #    the error model's starting values (b on each observation's own intensity: no scales yet),
    #    outliers first rejected within each data set alone; then outliers across them (σ as given)
    imid = None if params.intensity_choice == "sum" else 0.0
    intensity, variance = combine(obs.i_prf, obs.v_prf, obs.i_sum, obs.v_sum, imid)
    start = error_model.START if params.error_model == "basic" else (1.0, 0.0)
    valid = np.isfinite(intensity) & (variance > 0)
    var_start = error_model.apply(variance, intensity, *start)
    outlier = _outliers(scaler, params, intensity, var_start, valid, _per_dataset_groups(obs))
    cycles = scaler.refine(intensity, var_start, valid & ~outlier, progress, "scaling")
    outlier = _outliers(scaler, params, intensity, variance, valid)

    # 2. intensity combination: the candidate whose scaled data have the best CC½, outliers again;
    #    the models refined, outliers again (σ with the starting error model)
    combination = []
    if params.intensity_choice == "combine" and np.isfinite(obs.i_prf).any():
        combination, imid = _choose_combination(obs, scaler.g, valid & ~outlier)
        intensity, variance = combine(obs.i_prf, obs.v_prf, obs.i_sum, obs.v_sum, imid)
        valid = np.isfinite(intensity) & (variance > 0)
        outlier = _outliers(scaler, params, intensity, _model_variance(scaler, intensity, variance, valid & ~outlier,
                                                                        start), valid)
    cycles += scaler.refine(intensity, _model_variance(scaler, intensity, variance, valid & ~outlier, start),
                            valid & ~outlier, progress, "scaling")
    outlier = _outliers(scaler, params, intensity, _model_variance(scaler, intensity, variance, valid & ~outlier,
                                                                    start), valid)

    # 3. error model, the models refined with its weights, outliers with it, the error model again
    groups = _anomalous_groups(obs, table, space_group, params.anomalous)
    em, var_model, outlier, more = _refine_with_error_model(scaler, params, groups, intensity, variance, valid,
                                                            outlier, start, progress)
    active = valid & ~outlier
    cycles += more

    # 4. scaled intensities, their σ with the model's uncertainty
    g = scaler.g
    var_g = scaler.g_variance(intensity, var_model, active)
    # as DIALS: intensity.scale.* is the unscaled intensity and its variance (error model and
    # the model's uncertainty included); the scaled intensity is intensity.scale.value / g
    scale_v = var_model + intensity ** 2 * var_g / g ** 2
    return _outputs(experiments, table, obs, params, space_group, models, excluded, dropped, outlier, active,
                    g, var_g, intensity, scale_v, em, combination, imid, cycles, reference, progress, groups)


def _check_input(experiments, reflections, params):
    if experiments is None or len(experiments) == 0:
        raise XtalError("no experiments to scale")
    if reflections is None or len(reflections) == 0:
        raise XtalError("no reflections to scale")
    for col in ("miller_index", "id", "intensity.sum.value", "intensity.sum.variance"):
        if col not in reflections:
            raise XtalError(f"the reflections have no {col} column: give integrated reflections")
    n_exp = len(experiments)
    bad = [k for k in params.exclude_datasets if not 0 <= k < n_exp]
    if bad:
        raise XtalError(f"exclude_datasets: no data set {bad[0]} (ids run 0 … {n_exp - 1})", field="exclude_datasets")


def _selected(experiments, table, params):
    """Rows to scale, data sets left out {id: reason}, and rows dropped {reason: count}."""
    n_exp = len(experiments)
    keep, dropped = select(table, n_exp, params.partiality_cutoff, params.d_min, params.d_max,
                           set(params.exclude_datasets))
    excluded = {k: "excluded by the user (exclude_datasets)" for k in params.exclude_datasets}
    counts = np.bincount(table["id"][keep].astype(np.int64), minlength=n_exp)[:n_exp]
    for k in range(n_exp):
        if k not in excluded and counts[k] < MIN_OBSERVATIONS:
            excluded[k] = f"too few observations to scale ({int(counts[k])} < {MIN_OBSERVATIONS})"
    keep &= ~np.isin(table["id"], list(excluded))
    if not keep.any():
        raise XtalError("no observations left to scale: " + "; ".join(f"{n} {why}" for why, n in dropped.items()))
    return keep, excluded, dropped


def _models(experiments, table, obs, params, reference):
    """Each data set's model, and the fixed scales of data sets scaled before.

    Models stay fixed for data sets scaled before when new ones join them (incremental)
    and are new for the others; when every data set was scaled before (e.g. filtered.*
    after ΔCC½), all are scaled again, as dials.scale does, each starting from its model
    (unless ``overwrite_existing_models``)."""
    models, fixed_g = {}, {}
    previously = (table["flags"].astype(np.uint64) & np.uint64(int(Flags.scaled))) != 0 \
        if "flags" in table else np.zeros(len(table), bool)
    scaled_before = {k for k, (a, b) in obs.slices.items()
                     if experiments[k].scaling_model and previously[obs.row[a:b]].any()}
    incremental = not params.rescale and reference is None and 0 < len(scaled_before) < len(obs.slices)
    for k, (a, b) in obs.slices.items():
        e = experiments[k]
        if incremental and k in scaled_before:
            m = models[k] = PhysicalModel.from_dict(e.scaling_model)
            fixed_g[k] = m.value(m.basis(obs.phi[a:b], obs.d[a:b], obs.s0c[a:b], obs.s1c[a:b]))
        else:
            models[k] = PhysicalModel.new(e.scan.oscillation_range if e.scan else (0.0, 0.0), params, b - a)
            if k in scaled_before and not params.overwrite_existing_models:
                models[k].starting_from(PhysicalModel.from_dict(e.scaling_model))
    return models, fixed_g


def _choose_combination(obs, g, usable):
    """Profile, summation and Imid combinations, each with the CC½ of its scaled data;
    returns (the table, the best one's Imid)."""
    cands = [("profile", 0.0), ("summation", None)]
    pos = obs.i_sum[np.isfinite(obs.i_sum) & (obs.i_sum > 0)]
    if len(pos):
        cands += [(f"Imid {q:g}", float(q)) for q in np.unique(np.round(np.quantile(pos, IMID_QUANTILES), 1))]
    combination = []
    for name, value in cands:
        i_c, v_c = combine(obs.i_prf, obs.v_prf, obs.i_sum, obs.v_sum, value)
        ok = usable & np.isfinite(i_c) & (v_c > 0)
        cc = cc_half_sigma_tau(obs.key[ok], i_c[ok] / g[ok], v_c[ok] / g[ok] ** 2)
        combination.append({"choice": name, "imid": value, "cc_half": cc})
    best = max(combination, key=lambda r: -np.inf if r["cc_half"] is None else r["cc_half"])
    return combination, best["imid"]


def _per_dataset_groups(obs):
    """Reflection groups within each data set (for the first outlier rejection, data sets alone)."""
    _, group = np.unique(obs.group.astype(np.int64) * (int(obs.dataset.max()) + 1) + obs.dataset,
                         return_inverse=True)
    return group.ravel()


def _outliers(scaler, params, intensity, variance, valid, group=None):
    """Outlier mask among the ``valid`` observations (standard rejection, zmax), weights 1/``variance``."""
    if params.outlier_rejection != "standard":
        return np.zeros(len(intensity), bool)
    order = None
    if group is None:  # the reflections' grouping: sorted once per scaler
        group = scaler.obs.group
        if scaler.group_order is None:
            scaler.group_order = outliers.group_order(group, int(group.max()) + 1)
        order = scaler.group_order
    return outliers.reject(group, int(group.max()) + 1, scaler.g, intensity, variance, valid, params.outlier_zmax,
                           order=order)


def _model_variance(scaler, intensity, variance, active, model):
    """σ'² of the error model ``(a, b)`` with each observation's expected intensity g·Ĩ_h in the b
    term (Ĩ_h from the ``active`` observations, weights 1/σ², or the reference's; the observation's
    own intensity where its reflection has no mean)."""
    expected = scaler.g * scaler.target(intensity, variance, active)[scaler.obs.group]
    return error_model.apply(variance, np.where(np.isfinite(expected), expected, intensity), *model)


def _anomalous_groups(obs, table, space_group, anomalous):
    """Reflection groups with Friedel mates apart (DIALS fits the error model on those)."""
    if anomalous:
        return obs.group
    keys = reflection_keys(table["miller_index"][obs.row], equivalence_ops(space_group, True))
    return np.unique(keys, return_inverse=True)[1].ravel()


def _refine_with_error_model(scaler, params, group, intensity, variance, valid, outlier, start, progress):
    """As dials.scale after the intensity choice: the error model fitted on the observations
    that are not outliers, the models refined with its weights, outliers rejected with them,
    the error model fitted again (it sets the output σ). Returns (error model, variances with
    it, outlier mask, number of refinement cycles)."""
    em = {"a": start[0], "b": start[1], "refined": False, "reason": "error_model=none"}
    basic = params.error_model == "basic"
    n_groups = int(group.max()) + 1

    def fit(use, first):
        return error_model.refine_error_model(group[use], n_groups, intensity[use], variance[use], scaler.g[use],
                                              start=first)

    if basic:
        em = fit(valid & ~outlier, start)
    model = (em["a"], em["b"])
    cycles = scaler.refine(intensity, _model_variance(scaler, intensity, variance, valid & ~outlier, model),
                           valid & ~outlier, progress, "scaling with the error model")
    outlier = _outliers(scaler, params, intensity, _model_variance(scaler, intensity, variance, valid & ~outlier,
                                                                    model), valid)
    if basic:
        em = fit(valid & ~outlier, model)
    return em, _model_variance(scaler, intensity, variance, valid & ~outlier, (em["a"], em["b"])), outlier, cycles


def _outputs(experiments, table, obs, params, space_group, models, excluded, dropped, outlier, active,
             g, var_g, intensity, variance, em, combination, imid, cycles, reference, progress, groups):
    scaled_i, scaled_v = intensity / g, variance / g ** 2
    n = len(table)
    out = table.shallow_copy()
    col = lambda fill: np.full(n, fill, dtype=float)  # noqa: E731
    isf, isf_v, i_val, i_var = col(0.0), col(0.0), col(0.0), col(0.0)
    isf[obs.row], isf_v[obs.row], i_val[obs.row], i_var[obs.row] = g, var_g, intensity, variance
    good = np.isfinite(scaled_i) & np.isfinite(scaled_v) & (scaled_v > 0) & (g > 0)
    flags = table["flags"].astype(np.uint64).copy() if "flags" in table else np.zeros(n, np.uint64)
    flags &= ~np.uint64(int(Flags.scaled | Flags.outlier_in_scaling | Flags.excluded_for_scaling))
    flags[:] |= np.uint64(int(Flags.excluded_for_scaling))
    used = obs.row[active & good]
    flags[used] &= ~np.uint64(int(Flags.excluded_for_scaling))
    flags[used] |= np.uint64(int(Flags.scaled))
    flags[obs.row[outlier]] &= ~np.uint64(int(Flags.excluded_for_scaling))
    flags[obs.row[outlier]] |= np.uint64(int(Flags.outlier_in_scaling))
    out["inverse_scale_factor"] = isf
    out["inverse_scale_factor_variance"] = isf_v
    out["intensity.scale.value"] = i_val
    out["intensity.scale.variance"] = i_var
    out["flags"] = flags

    # excluded data sets leave the output, as in dials.scale
    kept = [k for k in range(len(experiments)) if k not in excluded]
    out_expts = type(experiments)(copy.copy(experiments[k]) for k in kept)
    for e, k in zip(out_expts, kept):
        if k in models:
            e.scaling_model = models[k].to_dict()
    if excluded:
        out = out.remove_on_experiment_identifiers([experiments[k].identifier for k in excluded]) \
            if out.experiment_identifiers else out.select(~np.isin(out["id"], list(excluded)))
        out.reset_ids()

    sel = np.flatnonzero(active & good)
    cell = median_cell([experiments[k] for k in kept])
    if progress:
        progress(0.97, "merging statistics")
    stats = merging_statistics(table["miller_index"][obs.row[sel]], scaled_i[sel], scaled_v[sel], space_group, cell,
                               anomalous=params.anomalous, d_min=params.d_min, d_max=params.d_max,
                               n_bins=params.n_resolution_bins, seed=params.seed)
    datasets = []
    for k, e in enumerate(experiments):
        row = {"id": k, "identifier": e.identifier}
        if k in excluded:
            row["excluded"] = excluded[k]
        elif k in obs.slices:
            a, b = obs.slices[k]
            m = models[k]
            lo, hi = e.scan.oscillation_range if e.scan else (0.0, 0.0)
            row.update({"n_observations": int((active[a:b] & good[a:b]).sum()), "n_outliers": int(outlier[a:b].sum()),
                        "fixed": m.fixed, "n_parameters": int(len(m.parameters)),
                        "mean_inverse_scale": float(np.mean(g[a:b])),
                        "curves": _curves(m, obs, a, b, lo, hi), "lmax": m.lmax,
                        "absorption_range": [float(np.min(g[a:b] / _no_absorption(m, obs, a, b))),
                                             float(np.max(g[a:b] / _no_absorption(m, obs, a, b)))]
                        if len(m.absorption) else None})
        datasets.append(row)
    # the CC½ resolution estimate of the scaled data (dials.estimate_resolution), shells left out
    from ..merging.resolution import estimate_resolution

    estimate = estimate_resolution(table["miller_index"][obs.row[sel]], scaled_i[sel], scaled_v[sel], space_group, cell)
    estimate.pop("shells", None)
    # as DIALS's plot: the error model's deviations on the data it was fitted on; without a refined
    # model, those of the scaled observations (Friedel mates apart: anomalous differences are no error)
    npp = em.pop("normal_probability", None)
    if npp is None:
        _, grp = np.unique(groups[sel], return_inverse=True)
        npp = error_model.normal_probability(error_model.deviations(grp.ravel(), int(grp.max()) + 1 if len(grp) else 0,
                                                                    scaled_i[sel], scaled_v[sel])[0])
    summary = {
        "n_datasets": len(kept), "n_observations": int(len(sel)), "n_outliers": int(outlier.sum()),
        "space_group": space_group.xhm(), "unit_cell": cell, "anomalous": params.anomalous,
        "intensity_choice": params.intensity_choice,
        "intensities_used": "summation" if imid is None else ("profile" if imid == 0 else f"combined, Imid {imid:g}"),
        "combination": combination, "error_model": em, "cycles": cycles,
        "minimiser": "Levenberg–Marquardt, full normal matrix per data set",
        "reference": reference.path if reference is not None else None,
        "n_fixed": sum(1 for m in models.values() if m.fixed),
        "rows_left_out": dropped, "excluded": [{"id": k, "identifier": experiments[k].identifier, "reason": r}
                                               for k, r in sorted(excluded.items())],
        "datasets": datasets, "normal_probability": npp, "merging_statistics": stats,
        "d_min": stats.get("d_min"), "d_max": stats.get("d_max"), "resolution_estimate": estimate,
    }
    if progress:
        progress(1.0, "scaled")
    return out_expts, out, json_ready(summary)


def _curves(model, obs, a, b, lo, hi, n=50):
    """Scale term and relative B against rotation and, with an absorption surface, the mean
    absorption factor of the observations at each angle (NaN where none)."""
    out = model.curves(lo, hi, n)
    if len(model.absorption):
        basis = model.basis(obs.phi[a:b], obs.d[a:b], obs.s0c[a:b], obs.s1c[a:b])
        _, _, absorption = model.components(basis)
        k = np.clip(((obs.phi[a:b] - lo) / max(hi - lo, 1e-9) * n).astype(int), 0, n - 1)
        counts = np.bincount(k, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["absorption"] = np.where(counts > 0, np.bincount(k, absorption, n) / counts, np.nan)
    return out


def _no_absorption(model, obs, a, b):
    """g without its absorption factor (for the absorption range)."""
    basis = model.basis(obs.phi[a:b], obs.d[a:b], obs.s0c[a:b], obs.s1c[a:b])
    c, decay, _ = model.components(basis)
    return c * decay


__all__ = ["ScaleParams", "combine", "median_cell", "run_scale"]
