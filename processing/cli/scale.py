"""`xtal scale symmetrized.expt symmetrized.refl [d_min=…] [anomalous=…] [exclude_datasets=…]` (dials.scale).

Prints what dials.scale prints — the intensity choice, the error model, the merging
statistics by resolution shell and their summary — and writes scaled.expt/.refl.
More than one .expt/.refl pair (earlier scaled.* first, then new integrated data in the
same setting) scales the new data sets against the earlier ones (incremental).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import XtalError
from .command import Command, run_command
from .merging_table import format_merging_table
from .tables import num, psql_table

SCALED_COLUMNS = {"inverse_scale_factor": 1.0, "inverse_scale_factor_variance": 0.0,
                  "intensity.scale.value": 0.0, "intensity.scale.variance": 0.0}


def read_pairs(files: list[str], params):
    """One or more .expt/.refl pairs (in the order given) → one experiment list and table."""
    from ..io.expt import read_experiments
    from ..io.refl import read_reflections
    from ..models import ExperimentList
    from ..reflections import ReflectionTable

    expts = [f for f in files if f.endswith((".expt", ".json"))]
    refls = [f for f in files if f.endswith(".refl")]
    other = [f for f in files if f not in expts and f not in refls]
    if other:
        raise XtalError(f"{other[0]}: not an .expt or .refl file")
    if not expts or len(expts) != len(refls):
        raise XtalError(f"give .expt and .refl files in pairs: {COMMAND.usage}")
    for path in expts + refls:
        if not os.path.exists(path):
            raise XtalError(f"{path}: no such file")
    if len(expts) == 1:
        return read_experiments(expts[0]), read_reflections(refls[0])
    experiments, tables = ExperimentList(), []
    for e_path, r_path in zip(expts, refls):
        experiments.extend(read_experiments(e_path))
        tables.append(read_reflections(r_path))
    common = set.intersection(*(set(t.keys()) | set(SCALED_COLUMNS) for t in tables))
    for t in tables:
        for name, fill in SCALED_COLUMNS.items():
            if name not in t:
                t[name] = np.full(len(t), fill)
        for name in [k for k in t.keys() if k not in common]:
            del t[name]
    return experiments, ReflectionTable.concatenate(tables)


def report(summary: dict, experiments, reflections, params) -> str:
    out = []
    for x in summary["excluded"]:
        out.append(f"Left out: data set {x['id']} ({x['identifier']}): {x['reason']}")
    for why, n in (summary.get("rows_left_out") or {}).items():
        out.append(f"{n} reflections left out: {why}")
    if summary.get("combination"):
        out += ["", "Combining profile and summation intensities (CC½ of the scaled data):",
                psql_table(["Choice", "CC½"], [[r["choice"], num(r["cc_half"], ".5f")] for r in summary["combination"]])]
    out.append(f"Intensities used: {summary['intensities_used']}")
    em = summary["error_model"]
    out.append(f"Error model: a = {em['a']:.5f}, b = {em['b']:.5f}" if em.get("refined")
               else f"Error model not refined: {em.get('reason', '')}")
    npp = summary.get("normal_probability") or {}
    if npp.get("sd") is not None:
        out.append(f"Normalised deviations: SD {npp['sd']:.3f} over {npp['n']} observations")
    out.append(f"{summary['n_observations']} observations of {summary['n_datasets']} data sets scaled in "
               f"{summary['cycles']} cycles; {summary['n_outliers']} outliers rejected"
               + (f"; {summary['n_fixed']} data sets kept as scaled before" if summary.get("n_fixed") else ""))
    cell = ", ".join(f"{x:.4f}".rstrip("0").rstrip(".") for x in summary["unit_cell"])
    out.append(f"Using median unit cell across experiments : ({cell}); space group {summary['space_group']}")
    out.append("")
    out += format_merging_table(summary["merging_statistics"])
    out.append(resolution_suggestion(summary.get("resolution_estimate")))
    return "\n".join(out)


def resolution_suggestion(estimate: dict | None) -> str:
    """"Resolution limit suggested from CC½ fit (limit CC½=0.3): 1.52 ± 0.03 Å"."""
    cc = (estimate or {}).get("criteria", {}).get("cc_half") or {}
    head = f"Resolution limit suggested from CC½ fit (limit CC½={cc.get('limit', 0.3):g}): "
    if cc.get("d_min") is None:
        edge = (estimate or {}).get("data_d_min")
        why = (f"none, CC½ stays above the limit to the data's edge ({edge:.2f} Å)"
               if cc.get("status") == "never_reached" and edge is not None else f"none ({cc.get('message', 'no fit')})")
        return head + why
    err = cc.get("d_min_error")
    pm = "" if err is None else (f" ± {err:.2f}" if err >= 0.005 else f" ± {err:.3f}")
    return head + f"{cc['d_min']:.2f}{pm} Å"


COMMAND = Command("scale", "xtal scale symmetrized.expt symmetrized.refl [more .expt .refl …] [key=value …]",
                  report, read=read_pairs, progress=False, ignored=("output.html", "output.log", "json"))


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
