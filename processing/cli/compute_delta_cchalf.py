"""`xtal compute_delta_cchalf scaled.expt scaled.refl [mode=…] [stdcutoff=…] [max_cycles=…]`
(dials.compute_delta_cchalf; iterative as xia2.multiplex).

Prints each cycle's ΔCC½ values sorted from the lowest, as the DIALS many-crystal
tutorial shows them (``Dataset: 15, ΔCC½: -8.617``, ×100), their mean, σ and the
cutoff, what was removed, then the summary of all cycles, the re-estimated resolution
and the merging statistics of the filtered data; writes filtered.expt/.refl.
"""
from __future__ import annotations

from .command import Command, run_command
from .merging_table import format_merging_table


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.3f}"


def _cycle_lines(c: dict, mode: str, n_cycles: int) -> list[str]:
    out = []
    if n_cycles > 1 or c["cycle"] > 1:
        out += [f"Cycle {c['cycle']}: {c['n_datasets']} data sets, {c['n_observations']} observations", ""]
    out.append(f"CC 1/2 mean: {_pct(c['cc_half_before'])}")
    out.append("")
    for row in c["table"]:
        if mode == "image_group":
            lo, hi = row["image_range"]
            out.append(f"Dataset: {row['id']}, images {lo}-{hi}, ΔCC½: {_pct(row['delta_cc_half'])}")
        else:
            out.append(f"Dataset: {row['id']}, ΔCC½: {_pct(row['delta_cc_half'])}")
    out += ["", f"mean delta_cc_half: {_pct(c['mean'])}", f"stddev delta_cc_half: {_pct(c['sd'])}",
            f"cutoff value: {_pct(c['cutoff'])}" + ("  (cutoff=)" if c["cutoff_from"] == "cutoff" else ""), ""]
    for x in c["removed"]:
        if mode == "image_group":
            lo, hi = x["image_range"]
            out.append(f"Removing image range ({lo}, {hi}) from experiment {x['id']}")
        else:
            out.append(f"Removing dataset {x['id']}")
    for x in c["removed_datasets"] if mode == "image_group" else []:
        out.append(f"Removing dataset {x['id']}: no image group left")
    for x in c["not_at_edge"]:
        lo, hi = x["image_range"]
        out.append(f"Image range ({lo}, {hi}) from experiment {x['id']} is below the cutoff, but not at the "
                   f"edge of a sweep.")
    if c["n_below_cutoff"] > c["n_removed"] + len(c["not_at_edge"]):
        out.append(f"{c['n_below_cutoff'] - c['n_removed'] - len(c['not_at_edge'])} more below the cutoff "
                   f"kept: max_percent_removed reached")
    if not c["removed"] and not c["not_at_edge"]:
        out.append("Nothing below the cutoff")
    if c["rescaled_after"]:
        out.append(f"Rescaled the remaining data sets (CC½ {_pct(c.get('cc_half_rescaled'))} overall)"
                   if c.get("cc_half_rescaled") is not None else "Rescaled the remaining data sets")
    out.append("")
    return out


TERMINATION = {"no_more_removed": "no data removed in the last cycle",
               "max_cycles": "reached max_cycles", "max_percent_removed": "reached max_percent_removed",
               "too_few_groups": "fewer than two data sets (groups) left"}


def report(summary: dict, experiments, reflections, params) -> str:
    mode = summary["mode"]
    out = []
    for c in summary["cycles"]:
        out += _cycle_lines(c, mode, len(summary["cycles"]))
    out.append("Summary of data removed:")
    unit = "data sets" if mode == "dataset" else "observations"
    for c in summary["cycles"]:
        out.append(f"Cycle number: {c['cycle']}")
        if mode == "image_group" and c["removed"]:
            out.append("  Removed image ranges: \n    " + "\n    ".join(
                f"({x['image_range'][0]}, {x['image_range'][1]}), dataset {x['id']}" for x in c["removed"]))
        if c["removed_datasets"]:
            out.append(f"  Removed datasets: {[x['id'] for x in c['removed_datasets']]}")
        out.append(f"  CC½ before {_pct(c['cc_half_before'])}, after {_pct(c.get('cc_half_after'))}")
        out.append(f"  cumulative % of {unit} removed: {c.get('percent_removed', 0.0):.3f}")
    out.append(f"Finished: {TERMINATION.get(summary['termination_reason'], summary['termination_reason'])}")
    out.append(f"{summary['n_datasets']} of {summary['n_datasets_in']} data sets and {summary['n_observations']} "
               f"of {summary['n_observations_in']} observations kept"
               + ("" if summary["rescaled"] else "; scales as in the input (rescale with xtal scale)"))
    res = summary.get("resolution") or {}
    if not res.get("available"):
        out.append(f"Resolution not re-estimated: {res.get('reason', 'no estimate')}")
    elif summary.get("d_min_estimate") is not None:
        err = res.get("d_min_error")
        rec = res.get("recommended") or {}
        out.append(f"Resolution limit after filtering: d_min = {summary['d_min_estimate']:.2f}"
                   + (f" ± {err:.2f}" if err is not None else "") + " Å"
                   + (f" ({rec['message']})" if rec.get("message") else ""))
    else:
        rec = res.get("recommended") or {}
        out.append(f"Resolution limit after filtering: {rec.get('message') or 'no estimate'}")
    out.append("")
    out += format_merging_table(summary["merging_statistics"])
    return "\n".join(out)


COMMAND = Command("compute_delta_cchalf",
                  "xtal compute_delta_cchalf scaled.expt scaled.refl [key=value …]", report,
                  ignored=("output.html", "output.log", "output.table", "output.json", "partiality_threshold",
                           "nproc"),
                  notes=("ΔCC½ values are printed ×100 as DIALS prints them; the summary and cutoff= keep "
                         "them as fractions.",))


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
