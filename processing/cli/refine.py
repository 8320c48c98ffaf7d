"""`xtal refine indexed.expt indexed.refl [scan_varying=…] [beam.fix=…] [detector.fix=…] …` (dials.refine).

Writes refined.expt and refined.refl (``output.experiments=``, ``output.reflections=``)
and prints the "RMSDs by experiment" table as dials.refine does. Parameter names may
be written with DIALS's dots (``beam.fix=all``, ``outlier.algorithm=tukey``).
"""
from __future__ import annotations

import os
import re

from ..errors import XtalError
from ..io.expt import read_experiments, write_experiments
from ..io.refl import read_reflections, write_reflections
from ..models import format_with_sd
from ..params import from_strings
from ..refinement import RefineParams, run_refine
from .main import print_help, split_args

ALIASES = {  # DIALS spellings → RefineParams fields
    "beam.fix": "beam_fix", "detector.fix": "detector_fix", "crystal.fix": "crystal_fix",
    "detector.panels": "detector_panels", "smoother.interval_width_degrees": "interval_width_degrees",
    "smoother.absolute_num_intervals": "absolute_num_intervals", "outlier.algorithm": "outlier_algorithm",
    "outlier.block_width": "outlier_block_width", "outlier.separate_panels": "separate_panels",
    "outlier.minimum_number_of_reflections": "minimum_number_of_reflections",
    "outlier.tukey.iqr_multiplier": "iqr_multiplier", "outlier.mcd.threshold_probability": "threshold_probability",
    "reflections.reflections_per_degree": "reflections_per_degree",
    "reflections.minimum_sample_size": "minimum_sample_size",
    "reflections.maximum_sample_size": "maximum_sample_size", "reflections.random_seed": "random_seed",
    "reflections.close_to_spindle_cutoff": "close_to_spindle_cutoff",
    "auto_reduction.min_nref_per_parameter": "min_nref_per_parameter",
    "refinery.max_iterations": "max_iterations",
}
_NUM = re.compile(r"^-?\d+(\.\d*)?$")


def _decimal_column(cells: list[str]) -> list[str]:
    """Pad numbers so their decimal points line up (tabulate's numalign='decimal')."""
    if not all(_NUM.match(c) for c in cells):
        return cells
    frac = [len(c.split(".")[1]) + 1 if "." in c else 0 for c in cells]
    width = max(frac)
    return [c + " " * (width - f) for c, f in zip(cells, frac)]


def psql_table(headers: list[str], rows: list[list[str]]) -> str:
    """A table in tabulate's ``psql`` format, as dials.util.tabulate prints it."""
    cols = [_decimal_column([r[k] for r in rows]) for k in range(len(headers))]
    head = [h.split("\n") for h in headers]
    nlines = max(len(h) for h in head)
    head = [h + [""] * (nlines - len(h)) for h in head]
    widths = [max([len(x) + 2 for x in h] + [len(c) for c in col]) for h, col in zip(head, cols)]
    rule = lambda l, m, r: l + m.join("-" * (w + 2) for w in widths) + r
    lines = [rule("+", "+", "+")]
    for i in range(nlines):
        lines.append("| " + " | ".join(h[i].rjust(w) for h, w in zip(head, widths)) + " |")
    lines.append(rule("|", "+", "|"))
    for j in range(len(rows)):
        lines.append("| " + " | ".join(col[j].rjust(w) for col, w in zip(cols, widths)) + " |")
    lines.append(rule("+", "+", "+"))
    return "\n".join(lines)


def rmsd_table(rows: list[dict]) -> str:
    """dials.refine's "RMSDs by experiment" table from the summary rows."""
    headers = ["Exp\nid", "Nref", "RMSD_X\n(px)", "RMSD_Y\n(px)", "RMSD_Z\n(images)"]
    body = [[str(r["experiment"]), str(r["nref"]), f"{r['rmsd_x_px']:.5g}", f"{r['rmsd_y_px']:.5g}",
             f"{r['rmsd_z_images']:.5g}"] for r in rows]
    return psql_table(headers, body)


def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_:
        print_help("refine", RefineParams)
        print("  output.experiments = refined.expt\n  output.reflections = refined.refl")
        print("\nDIALS spellings accepted: " + ", ".join(sorted(ALIASES)))
        return 0
    out_expt, out_refl = "refined.expt", "refined.refl"
    kept = []
    for w in words:
        key, _, value = w.partition("=")
        key = key.strip()
        if key == "output.experiments":
            out_expt = value
        elif key == "output.reflections":
            out_refl = value
        else:
            kept.append(f"{ALIASES.get(key, key)}={value}")
    expts = [f for f in files if f.endswith(".expt") or f.endswith(".json")]
    refls = [f for f in files if f.endswith(".refl") or f.endswith(".pickle")]
    other = [f for f in files if f not in expts and f not in refls]
    if other:
        raise XtalError(f"{other[0]}: not an .expt or .refl file")
    if len(expts) != 1 or len(refls) != 1:
        raise XtalError("give one experiment list (.expt) and one reflection file (.refl)")
    params = from_strings(RefineParams, kept)
    experiments = read_experiments(expts[0])
    reflections = read_reflections(refls[0])
    refined, table, summary = run_refine(experiments, reflections, params)
    for f in summary["failed"]:
        print(f"Warning: {f['message']}")
    print(f"\n{summary['n_used_in_refinement']} reflections used in refinement, "
          f"{summary['n_centroid_outliers']} centroid outliers rejected")
    for c in summary["macrocycles"]:
        kind = "Scan-varying" if c["scan_varying"] else "Static"
        print(f"{kind} refinement: {c['n_parameters']} parameters, {c['n_iterations']} iterations "
              f"({c['reason_for_termination']})")
    print("\nRMSDs by experiment:")
    print(rmsd_table(summary["rmsds_by_experiment"]))
    print()
    for c in summary["crystals"]:
        sd = c["unit_cell_sd"] or [0.0] * 6
        cell = ", ".join(format_with_sd(v, s) for v, s in zip(c["unit_cell"], sd))
        print(f"    Experiment {c['experiment']}: Unit cell: {cell}  {c['space_group']}"
              + ("" if c["refined"] else "  (not refined)"))
    for path in (out_expt, out_refl):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    print(f"\nSaving refined experiments to {out_expt}")
    write_experiments(out_expt, refined)
    print(f"Saving reflections with updated predictions to {out_refl}")
    write_reflections(out_refl, table)
    return 0
