"""`xtal refine indexed.expt indexed.refl [scan_varying=…] [beam.fix=…] [detector.fix=…] …` (dials.refine).

Writes refined.expt and refined.refl (``output.experiments=``, ``output.reflections=``)
and prints the "RMSDs by experiment" table as dials.refine does. Parameter names may
be written with DIALS's dots (``beam.fix=all``, ``outlier.algorithm=tukey``).
"""
from __future__ import annotations

from ..models import format_with_sd
from .command import Command, run_command
from .tables import rmsd_table

def report(summary: dict, experiments, reflections, params) -> str:
    out = [f"Warning: {f['message']}" for f in summary["failed"]]
    out.append(f"\n{summary['n_used_in_refinement']} reflections used in refinement, "
               f"{summary['n_centroid_outliers']} centroid outliers rejected")
    for c in summary["macrocycles"]:
        kind = "Scan-varying" if c["scan_varying"] else "Static"
        out.append(f"{kind} refinement: {c['n_parameters']} parameters, {c['n_iterations']} iterations "
                   f"({c['reason_for_termination']})")
    out += ["\nRMSDs by experiment:", rmsd_table(summary["rmsds_by_experiment"]), ""]
    for c in summary["crystals"]:
        sd = c["unit_cell_sd"] or [0.0] * 6
        cell = ", ".join(format_with_sd(v, s) for v, s in zip(c["unit_cell"], sd))
        out.append(f"    Experiment {c['experiment']}: Unit cell: {cell}  {c['space_group']}"
                   + ("" if c["refined"] else "  (not refined)"))
    return "\n".join(out) + "\n"


COMMAND = Command("refine", "xtal refine indexed.expt indexed.refl [key=value …]", report)


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
