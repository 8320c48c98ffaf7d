"""``run_compute_delta_cchalf``: ΔCC½ filtering of scaled data sets (dials.compute_delta_cchalf;
iterative as xia2.multiplex).

Each cycle:

1. the usable observations (flag ``scaled``, none of ``bad_for_scaling``; scaled
   I = intensity.scale.value / inverse_scale_factor) are grouped by data set, or by
   image group within each data set (``mode=image_group``);
2. ΔCC½ of every group (``delta_cc_half.py``: σ-τ CC½ averaged over resolution shells,
   leave-one-out from one pass of sums);
3. the cutoff: mean − stdcutoff·σ of the ΔCC½ values (σ the population standard
   deviation, as DIALS), or the absolute ``cutoff``; groups below it are removed,
   the worst first, while the total removed stays within ``max_percent_removed`` of the
   input's data sets (mode=dataset) or observations (mode=image_group). In image-group
   mode only groups at an end of a sweep's remaining range are removed, peeling inward
   (as DIALS: the rest of a sweep stays one contiguous range); a group below the cutoff
   in the middle of a sweep is reported, not removed. Removed image groups are flagged
   ``user_excluded_in_scaling`` (and left out of the scan's ``valid_image_ranges``); a
   data set left with no image group, or removed whole, leaves the output;
4. unless this was the last cycle, the remaining data sets are rescaled (``run_scale``,
   ScaleParams' defaults, ``rescale=True``).

It stops when a cycle removes nothing, after ``max_cycles`` cycles, when the limit
``max_percent_removed`` cut a cycle's removals short, or when fewer than two groups would
be left (removals never go below two). With ``final_rescale`` the data are
rescaled once more after the last removal. Then the merging statistics of the output
and, as xia2.multiplex does after filtering, a new resolution estimate.

The summary (strict JSON) names every data set by its id in the input and its
identifier: its ΔCC½ in each cycle and the cycle that removed it; per cycle the CC½
before and after the removal, the ΔCC½ table, mean, σ and cutoff, and what was removed;
in image-group mode every group (data set, images, ΔCC½).
"""
from __future__ import annotations

import copy
import math

import gemmi
import numpy as np

from ..errors import XtalError
from ..reflections import Flags
from ..summary import json_ready
from .delta_cc_half import cutoff_value, delta_cc_half, image_groups
from .filter_params import DeltaCcHalfParams
from .statistics import merging_statistics

#: the scaled columns xtal scale (and dials.scale) write
SCALED_COLUMNS = ("inverse_scale_factor", "intensity.scale.value", "intensity.scale.variance")
_SCALED = np.uint64(int(Flags.scaled))
_BAD = np.uint64(int(Flags.bad_for_scaling))
_USER_EXCLUDED = np.uint64(int(Flags.user_excluded_in_scaling))


def usable_rows(table) -> np.ndarray:
    """Rows a scaled table's statistics use: flag ``scaled``, no ``bad_for_scaling`` flag, a
    positive inverse scale factor and a finite scaled intensity with positive variance."""
    flags = table["flags"].astype(np.uint64)
    g = table["inverse_scale_factor"]
    v = table["intensity.scale.variance"]
    with np.errstate(invalid="ignore"):
        return (((flags & _SCALED) != 0) & ((flags & _BAD) == 0) & np.isfinite(g) & (g > 0)
                & np.isfinite(table["intensity.scale.value"]) & np.isfinite(v) & (v > 0))


def image_numbers(table, experiments=None) -> np.ndarray:
    """Image number of each row as DIALS: floor(z) + 1 of the observed (else calculated)
    centroid, kept within its experiment's scan (a centroid just outside the first or
    last image belongs to it)."""
    for name in ("xyzobs.px.value", "xyzcal.px"):
        if name in table:
            z = np.asarray(table[name], dtype=np.float64)[:, 2]
            image = np.where(np.isfinite(z), np.floor(z), 0).astype(np.int64) + 1
            if experiments is not None and len(table):
                first = np.array([e.scan.image_range[0] if e.scan else np.iinfo(np.int64).min for e in experiments])
                last = np.array([e.scan.image_range[1] if e.scan else np.iinfo(np.int64).max for e in experiments])
                ids = np.clip(table["id"].astype(np.int64), 0, len(experiments) - 1)
                image = np.clip(image, first[ids], last[ids])
            return image
    raise XtalError("the reflections have no xyzobs.px.value or xyzcal.px column: mode=image_group needs "
                    "each observation's image", field="mode")


def _space_group(experiments) -> gemmi.SpaceGroup:
    from ..scaling.scale import common_space_group

    return common_space_group(experiments, "give data scaled together by xtal scale")


def _mean_cell(experiments) -> tuple[float, ...]:
    """The mean unit cell of the data sets (dials.compute_delta_cchalf's)."""
    return tuple(float(x) for x in np.mean(np.array([e.crystal.unit_cell for e in experiments]), axis=0))


def _median_cell(experiments) -> tuple[float, ...]:
    from ..scaling.scale import median_cell

    return median_cell(experiments)


def check_input(experiments, reflections, params: DeltaCcHalfParams) -> None:
    """One clear XtalError for input ΔCC½ cannot use."""
    if experiments is None or len(experiments) == 0:
        raise XtalError("no experiments: give scaled.expt and scaled.refl")
    if reflections is None or len(reflections) == 0:
        raise XtalError("no reflections: give scaled.expt and scaled.refl")
    for col in ("miller_index", "id", "flags", *SCALED_COLUMNS):
        if col not in reflections:
            raise XtalError(f"the reflections are not scaled (no {col} column): run xtal scale first")
    ids = reflections["id"]
    if len(ids) and (ids.max() >= len(experiments)):
        raise XtalError(f"the reflections name data set {int(ids.max())} but there are only "
                        f"{len(experiments)} experiments: give the .expt and .refl written together")
    if not usable_rows(reflections).any():
        raise XtalError("no scaled observations (none flagged scaled): run xtal scale first")
    _space_group(experiments)
    if params.mode == "dataset" and len(experiments) < 2:
        raise XtalError("ΔCC½ of whole data sets needs at least two data sets; for one sweep use "
                        "mode=image_group", field="mode")


def _groups(table, use, params, experiments):
    """Group of each usable row and the groups' table: (group, n_groups, g_dataset, g_first, g_last)."""
    ids = table["id"][use].astype(np.int64)
    if params.mode == "dataset":
        return ids, len(experiments), np.arange(len(experiments)), None, None
    group, g_ds, g_lo, g_hi = image_groups(ids, image_numbers(table, experiments)[use], params.group_size)
    return group, len(g_ds), g_ds, g_lo, g_hi


def _peel_edges(candidates, g_ds, ranges_left):
    """DIALS's rule for image groups: remove a group only at an end of its sweep's
    remaining groups, peeling inward. ``ranges_left``: per data set the list of its
    remaining group numbers in image order (changed in place). Returns (removed in
    order, below the cutoff but inside a sweep)."""
    todo = list(candidates)
    removed = []
    while True:
        progress, rest = False, []
        for grp in todo:
            left = ranges_left[int(g_ds[grp])]
            if left and (left[0] == grp or left[-1] == grp):
                left.remove(grp)
                removed.append(grp)
                progress = True
            else:
                rest.append(grp)
        todo = rest
        if not progress:
            return removed, todo


def _remaining_ranges(scan, identifier, lo, hi):
    """The scan's valid image ranges of ``identifier`` without images lo…hi."""
    ranges = [list(r) for r in (scan.valid_image_ranges.get(identifier) or [list(scan.image_range)])]
    out = []
    for a, b in ranges:
        if hi < a or lo > b:
            out.append([a, b])
            continue
        if a < lo:
            out.append([a, lo - 1])
        if b > hi:
            out.append([hi + 1, b])
    return out


def _cc_half_of(table, use, space_group, cell, params) -> float | None:
    """CC½ (the ΔCC½ calculation's, all groups) of the usable rows."""
    ids = table["id"][use].astype(np.int64)
    if not use.any():
        return None
    g = table["inverse_scale_factor"][use]
    res = delta_cc_half(table["miller_index"][use], table["intensity.scale.value"][use] / g, np.zeros_like(ids),
                        space_group, cell, n_groups=1, d_min=params.d_min, d_max=params.d_max, n_bins=params.n_bins,
                        anomalous=params.anomalous)
    return res.cc_half if math.isfinite(res.cc_half) else None


def _rescale(experiments, table, params, progress, fraction):
    from ..scaling import ScaleParams, run_scale

    if progress:
        progress(fraction, f"rescaling {len(experiments)} data sets")
    return run_scale(experiments, table, ScaleParams(rescale=True, anomalous=params.anomalous))


def reestimate_resolution(experiments, table, anomalous: bool) -> dict:
    """The resolution estimate of the filtered data (xia2.multiplex re-estimates d_min after
    filtering): ``processing.merging.resolution.estimate_resolution`` with its defaults
    (CC½ 0.3 by a tanh fit, σ-τ) on the usable scaled observations; its dict without the
    per-shell rows, plus ``available`` (False, with a ``reason``, when nothing is usable)."""
    from .resolution import estimate_resolution
    from .resolution_params import EstimateResolutionParams

    use = usable_rows(table)
    if not use.any():
        return {"available": False, "reason": "no usable observations"}
    g = table["inverse_scale_factor"][use]
    result = estimate_resolution(table["miller_index"][use], table["intensity.scale.value"][use] / g,
                                 table["intensity.scale.variance"][use] / g ** 2, _space_group(experiments),
                                 _median_cell(experiments), EstimateResolutionParams(anomalous=anomalous))
    result = {k: v for k, v in result.items() if k != "shells"}
    result["available"] = True
    return result


def run_compute_delta_cchalf(experiments, reflections, params: DeltaCcHalfParams, progress=None):
    """ΔCC½ filtering: ``(filtered experiments, filtered reflections, summary)``.

    experiments, reflections: scaled data (xtal scale's scaled.expt/.refl, DIALS's
    columns). The inputs are not changed. See the module docstring for the cycles.

    Examples
    --------
    >>> out_expts, out_refl, summary = run_compute_delta_cchalf(expts, refl, DeltaCcHalfParams())
    >>> [d["identifier"] for d in summary["removed"]]
    """
    check_input(experiments, reflections, params)
    run = _Filtering(experiments, reflections, params, progress)
    for cycle in range(1, params.max_cycles + 1):
        if run.cycle(cycle):
            break
    run.final_rescale()
    return run.experiments, run.table, json_ready(run.summary())


class _Filtering:
    """The state of one ΔCC½ filtering: the data left, each data set's record, the cycles."""

    def __init__(self, experiments, reflections, params, progress):
        self.params, self.progress = params, progress
        self.space_group = _space_group(experiments)
        self.experiments = type(experiments)(copy.copy(e) for e in experiments)
        self.table = reflections.shallow_copy()
        self.table["flags"] = reflections["flags"].astype(np.uint64).copy()
        self.input_id = {e.identifier: k for k, e in enumerate(experiments)}
        self.datasets = {e.identifier: {"id": k, "identifier": e.identifier, "delta_cc_half": None,
                                        "delta_cc_half_by_cycle": [], "removed_in_cycle": None, "reason": None}
                         for k, e in enumerate(experiments)}
        self.n_sets_in = len(experiments)
        self.n_obs_in = int(usable_rows(self.table).sum())
        self.removed_sets, self.removed_obs = 0, 0
        self.cycles, self.groups_out = [], []
        self.termination = None
        self.rescaled = False

    def _percent_removed(self) -> float:
        if self.params.mode == "dataset":
            return 100.0 * self.removed_sets / self.n_sets_in
        return 100.0 * self.removed_obs / max(self.n_obs_in, 1)

    def _delta(self, use, group, n_groups):
        """ΔCC½ of the groups, and of the data sets (the same in dataset mode)."""
        params, table = self.params, self.table
        hkl = table["miller_index"][use]
        scaled = table["intensity.scale.value"][use] / table["inverse_scale_factor"][use]
        cell = _mean_cell(self.experiments)
        limits = dict(d_min=params.d_min, d_max=params.d_max, n_bins=params.n_bins, anomalous=params.anomalous,
                      common=params.common_reflections)
        res = delta_cc_half(hkl, scaled, group, self.space_group, cell, n_groups=n_groups, **limits)
        res_ds = res if params.mode == "dataset" else delta_cc_half(
            hkl, scaled, table["id"][use].astype(np.int64), self.space_group, cell, n_groups=len(self.experiments),
            **limits)
        if not math.isfinite(res.cc_half):
            raise XtalError("CC½ is undefined: too few reflections measured more than once"
                            + (" within the resolution limits" if params.d_min or params.d_max else ""))
        return res, res_ds

    def cycle(self, cycle: int) -> bool:
        """One cycle: ΔCC½, removals, rescaling. True when filtering stops here."""
        params = self.params
        base = 0.9 * (cycle - 1) / params.max_cycles
        if self.progress:
            self.progress(base + 0.01, f"cycle {cycle}: ΔCC½ of {len(self.experiments)} data sets")
        use = usable_rows(self.table)
        group, n_groups, g_ds, g_lo, g_hi = _groups(self.table, use, params, self.experiments)
        if n_groups < 2:
            if cycle == 1:
                raise XtalError("ΔCC½ needs at least two groups: lower group_size", field="group_size")
            self.termination = "too_few_groups"
            return True
        res, res_ds = self._delta(use, group, n_groups)
        delta = res.delta_cc_half
        present = res.n_observations > 0
        mean, sd, stat_cut = cutoff_value(delta[present], params.stdcutoff)
        cut = params.cutoff if params.cutoff is not None else stat_cut
        order = [int(i) for i in np.argsort(np.where(np.isfinite(delta), delta, np.inf)) if present[i]]
        below = [i for i in order if math.isfinite(delta[i]) and delta[i] < cut]
        if params.mode == "dataset":
            choice = self._choose_datasets(below, present, use)
        else:
            choice = self._choose_image_groups(below, present, res.n_observations, g_ds, n_groups)
        remove_groups, truncated, too_few, n_obs_removed, not_at_edge, ranges_left = choice

        table_rows = self._record(cycle, order, res, res_ds, g_ds, g_lo, g_hi)
        entry = {"cycle": cycle, "n_datasets": len(self.experiments), "n_groups": int(present.sum()),
                 "n_observations": int(use.sum()), "cc_half_before": res.cc_half, "mean": mean, "sd": sd,
                 "cutoff": cut, "cutoff_from": "cutoff" if params.cutoff is not None else "stdcutoff",
                 "n_below_cutoff": len(below), "n_removed": len(remove_groups),
                 "n_observations_removed": n_obs_removed, "table": table_rows, "removed": [],
                 "removed_datasets": [], "not_at_edge": [], "rescaled_after": False}
        if params.mode == "image_group":
            identifiers = [e.identifier for e in self.experiments]
            for grp in not_at_edge:
                k = int(g_ds[grp])
                entry["not_at_edge"].append({"id": self.input_id[identifiers[k]], "identifier": identifiers[k],
                                             "image_range": [int(g_lo[grp]), int(g_hi[grp])],
                                             "delta_cc_half": float(delta[grp])})
            # every group of this cycle, and those removed in earlier cycles
            self.groups_out = [g for g in self.groups_out if g.get("removed_in_cycle")] + [
                dict(row, removed_in_cycle=cycle if row["group"] in remove_groups else None) for row in table_rows]

        if not remove_groups:
            entry["cc_half_after"] = res.cc_half
            entry["percent_removed"] = self._percent_removed()
            self.cycles.append(entry)
            self.termination = ("too_few_groups" if too_few else "max_percent_removed" if truncated
                                else "no_more_removed")
            return True

        self._remove(cycle, entry, remove_groups, delta, g_ds, g_lo, g_hi, ranges_left)
        self.removed_obs += n_obs_removed
        entry["percent_removed"] = self._percent_removed()
        entry["cc_half_after"] = _cc_half_of(self.table, usable_rows(self.table), self.space_group,
                                             _mean_cell(self.experiments), params)
        self.cycles.append(entry)
        if truncated or too_few:
            self.termination = "too_few_groups" if too_few else "max_percent_removed"
            return True
        if cycle == params.max_cycles:
            self.termination = "max_cycles"
            return True
        if len(self.experiments) < 2 and params.mode == "dataset":
            self.termination = "too_few_groups"
            return True
        self._rescale(base + 0.5 / params.max_cycles)
        entry["rescaled_after"] = True
        entry["cc_half_rescaled"] = self._last_scale["merging_statistics"]["overall"].get("cc_half")
        _note_left_out(self.datasets, self._last_scale, cycle)
        return False

    def _choose_datasets(self, below, present, use):
        """Whole data sets to remove this cycle, within max_percent_removed, two left at least."""
        allowed = int(math.floor(self.params.max_percent_removed / 100.0 * self.n_sets_in + 1e-9)) - self.removed_sets
        remove = below[:max(allowed, 0)]
        truncated, too_few = len(remove) < len(below), False
        if int(present.sum()) - len(remove) < 2:
            remove = remove[:max(int(present.sum()) - 2, 0)]
            too_few = True
        n_obs = int(np.isin(self.table["id"][use], remove).sum())
        return remove, truncated, too_few, n_obs, [], None

    def _choose_image_groups(self, below, present, n_observations, g_ds, n_groups):
        """Image groups to remove this cycle: at a sweep's ends only, within the observation budget."""
        ranges_left = {k: [] for k in range(len(self.experiments))}
        for grp in range(n_groups):
            if present[grp]:
                ranges_left[int(g_ds[grp])].append(grp)
        peeled, not_at_edge = _peel_edges(below, g_ds, ranges_left)
        budget = self.params.max_percent_removed / 100.0 * self.n_obs_in - self.removed_obs
        remove, spent, truncated, too_few = [], 0, False, False
        for grp in peeled:
            if int(present.sum()) - len(remove) <= 2:
                too_few = True
                break
            if spent + int(n_observations[grp]) > budget + 1e-9:
                truncated = True
                break
            remove.append(grp)
            spent += int(n_observations[grp])
        for grp in peeled[len(remove):]:  # not removed after all: back into the ranges
            left = ranges_left[int(g_ds[grp])]
            left.append(grp)
            left.sort()
        return remove, truncated, too_few, spent, not_at_edge, ranges_left

    def _record(self, cycle, order, res, res_ds, g_ds, g_lo, g_hi) -> list[dict]:
        """Each data set's ΔCC½ of this cycle, and the cycle's table (worst first)."""
        identifiers = [e.identifier for e in self.experiments]
        for k, ident in enumerate(identifiers):
            v = res_ds.delta_cc_half[k]
            v = float(v) if res_ds.n_observations[k] > 0 and math.isfinite(v) else None
            self.datasets[ident]["delta_cc_half_by_cycle"].append(v)
            self.datasets[ident]["delta_cc_half"] = v
        rows = []
        for grp in order:
            d = res.delta_cc_half[grp]
            row = {"group": grp, "delta_cc_half": float(d) if math.isfinite(d) else None,
                   "n_observations": int(res.n_observations[grp])}
            k = int(g_ds[grp])
            row.update({"id": self.input_id[identifiers[k]], "identifier": identifiers[k]})
            if self.params.mode == "image_group":
                row["image_range"] = [int(g_lo[grp]), int(g_hi[grp])]
            rows.append(row)
        return rows

    def _remove(self, cycle, entry, remove_groups, delta, g_ds, g_lo, g_hi, ranges_left):
        """Remove the chosen groups (data sets, or image groups flagged and cut from the scans)."""
        identifiers = [e.identifier for e in self.experiments]
        if self.params.mode == "dataset":
            gone = set(remove_groups)
            for k in remove_groups:
                entry["removed"].append({"id": self.input_id[identifiers[k]], "identifier": identifiers[k],
                                         "delta_cc_half": float(delta[k])})
        else:
            flags = self.table["flags"]
            ids_all = self.table["id"].astype(np.int64)
            images_all = image_numbers(self.table, self.experiments)
            for grp in remove_groups:
                k, lo, hi = int(g_ds[grp]), int(g_lo[grp]), int(g_hi[grp])
                flags[(ids_all == k) & (images_all >= lo) & (images_all <= hi)] |= _USER_EXCLUDED
                entry["removed"].append({"id": self.input_id[identifiers[k]], "identifier": identifiers[k],
                                         "image_range": [lo, hi], "delta_cc_half": float(delta[grp])})
                e = self.experiments[k]
                if e.scan is not None:  # as DIALS: the scan's valid image ranges leave the group out
                    e.scan = copy.copy(e.scan)
                    ranges = dict(e.scan.valid_image_ranges)
                    ranges[e.identifier] = _remaining_ranges(e.scan, e.identifier, lo, hi)
                    e.scan.valid_image_ranges = ranges
            self.table["flags"] = flags
            gone = {int(g_ds[grp]) for grp in remove_groups if not ranges_left[int(g_ds[grp])]}
        for k in sorted(gone):
            ident = identifiers[k]
            self.datasets[ident]["removed_in_cycle"] = cycle
            self.datasets[ident]["reason"] = ("ΔCC½ below the cutoff" if self.params.mode == "dataset"
                                              else "every image group below the cutoff")
            entry["removed_datasets"].append({"id": self.input_id[ident], "identifier": ident})
        if gone:
            keep_ids = [k for k in range(len(self.experiments)) if k not in gone]
            table = self.table
            table = table.remove_on_experiment_identifiers([identifiers[k] for k in sorted(gone)]) \
                if table.experiment_identifiers else table.select(~np.isin(table["id"], sorted(gone)))
            table.reset_ids()
            self.table = table
            self.experiments = type(self.experiments)(self.experiments[k] for k in keep_ids)
        self.removed_sets += len(gone)

    def _rescale(self, fraction):
        self.experiments, self.table, self._last_scale = _rescale(self.experiments, self.table, self.params,
                                                                  self.progress, fraction)
        self.rescaled = True

    def final_rescale(self):
        """With ``final_rescale``: rescale once more after the last cycle that removed data."""
        if self.params.final_rescale and any(c["n_removed"] for c in self.cycles) \
                and not self.cycles[-1]["rescaled_after"]:
            self._rescale(0.92)
            self.cycles[-1]["rescaled_after"] = True
            _note_left_out(self.datasets, self._last_scale, len(self.cycles))

    def summary(self) -> dict:
        """The filtering's summary: cycles, data sets, merging statistics and resolution of the output."""
        params, table, experiments, cycles, datasets = (self.params, self.table, self.experiments, self.cycles,
                                                        self.datasets)
        if self.progress:
            self.progress(0.95, "merging statistics and resolution of the filtered data")
        use = usable_rows(table)
        g = table["inverse_scale_factor"][use]
        stats = merging_statistics(table["miller_index"][use], table["intensity.scale.value"][use] / g,
                                   table["intensity.scale.variance"][use] / g ** 2, self.space_group,
                                   _median_cell(experiments), anomalous=params.anomalous)
        resolution = reestimate_resolution(experiments, table, params.anomalous)
        summary = {
            "mode": params.mode, "stdcutoff": params.stdcutoff, "cutoff": params.cutoff,
            "max_cycles": params.max_cycles, "max_percent_removed": params.max_percent_removed,
            "termination_reason": self.termination, "rescaled": self.rescaled,
            "n_datasets_in": self.n_sets_in, "n_datasets": len(experiments), "n_observations_in": self.n_obs_in,
            "n_observations": int(use.sum()), "space_group": self.space_group.xhm(),
            "unit_cell": _median_cell(experiments),
            "cc_half_in": cycles[0]["cc_half_before"] if cycles else None,
            "cc_half_out": cycles[-1].get("cc_half_after") if cycles else None,
            "datasets": [datasets[e] for e in sorted(datasets, key=lambda i: datasets[i]["id"])],
            "removed": [{"id": d["id"], "identifier": d["identifier"], "cycle": d["removed_in_cycle"],
                         "delta_cc_half": d["delta_cc_half"], "reason": d["reason"]}
                        for d in sorted(datasets.values(), key=lambda d: d["id"]) if d["removed_in_cycle"]],
            "cycles": cycles, "merging_statistics": stats,
            "resolution": resolution,
            "d_min_estimate": resolution.get("d_min") if resolution.get("available") else None,
        }
        if params.mode == "image_group":
            summary["image_groups"] = self.groups_out
        if self.progress:
            self.progress(1.0, "filtered")
        return summary


def _note_left_out(datasets, scale_summary, cycle):
    """Data sets the rescaling itself left out (too few observations)."""
    for x in scale_summary.get("excluded") or []:
        d = datasets.get(x["identifier"])
        if d is not None and d["removed_in_cycle"] is None:
            d["removed_in_cycle"] = cycle
            d["reason"] = f"left out by the rescaling: {x['reason']}"


__all__ = ["check_input", "image_numbers", "reestimate_resolution", "run_compute_delta_cchalf", "usable_rows"]
