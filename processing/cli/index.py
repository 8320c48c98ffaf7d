"""`xtal index imported.expt strong.refl [joint=false] [unit_cell=…] [space_group=…] [max_lattices=…] [nproc=…]`.

Writes indexed.expt and indexed.refl (``output.experiments=``, ``output.reflections=``)
and prints, as dials.index does, per-sweep results, the Bravais settings of each
lattice and the final tables of % indexed and RMSDs.
"""
from __future__ import annotations

from .command import Command, run_command
from .tables import psql_table, rmsd_table


def min_max_cc(row: dict) -> str:
    """``0.912/0.957`` as DIALS prints it; ``-/-`` without a correlation (aP, too few pairs)."""
    lo, hi = row.get("min_cc"), row.get("max_cc")
    return "-/-" if lo is None or hi is None else f"{lo:.3f}/{hi:.3f}"


def bravais_table(settings: list[dict]) -> str:
    rows = []
    for r in settings:
        rows.append([("*" if r["recommended"] else " ") + f"{r['solution']:7d}", f"{r['metric_fit']:6.4f}",
                     f"{r['rmsd']:5.3f}", min_max_cc(r), str(r["nspots"]), r["bravais"],
                     "%6.2f %6.2f %6.2f %6.2f %6.2f %6.2f" % tuple(r["unit_cell"]), f"{r['volume']:.0f}", r["cb_op"]])
    return psql_table(["Solution", "Metric fit", "rmsd", "min/max cc", "#spots", "lattice", "unit_cell",
                       "volume", "cb_op"], rows) + "\n* = recommended solution"


def format_summary(summary: dict) -> str:
    out = []
    for s in summary["sweeps"]:
        if s["status"] != "indexed":
            out.append(f"Sweep {s['sweep']}: indexing failed: {s['reason']}")
            continue
        cell = ", ".join(f"{x:.3f}" for x in s["unit_cell"])
        out.append(f"Sweep {s['sweep']}: {s['n_indexed']}/{s['n_spots']} spots indexed ({s['percent_indexed']:.1f}%), "
                   f"cell ({cell}) {s['space_group']}, cb_op {s['cb_op']}, RMSD X {s['rmsd_x_px']:.3f} px, "
                   f"Y {s['rmsd_y_px']:.3f} px, Z {s['rmsd_z_images']:.3f} images")
        for k, lat in enumerate(s["lattices"]):
            if len(s["lattices"]) > 1 and "n_indexed" in lat:
                lcell = ", ".join(f"{x:.3f}" for x in lat["unit_cell"])
                out.append(f"  Lattice {k + 1}: {lat['n_indexed']} spots, cell ({lcell}), "
                           f"RMSD_XY {lat['rmsd_xy_px']:.3f} px, Z {lat['rmsd'][2]:.3f} images")
            out.append(f"  Bravais settings of lattice {k + 1}:")
            out.append("  " + bravais_table(lat["bravais_settings"]).replace("\n", "\n  "))
    ok = [s for s in summary["sweeps"] if s["status"] == "indexed"]
    if ok:
        out.append("")
        out.append(psql_table(["Imageset", "# indexed", "# unindexed", "% indexed"],
                              [[s["sweep"], s["n_indexed"], s["n_spots"] - s["n_indexed"],
                                f"{s['percent_indexed']:.1f}%"] for s in ok]))
        out.append("")
        out.append("RMSDs by experiment:")
        out.append(rmsd_table([dict(s, experiment=k, nref=s["n_used_in_refinement"]) for k, s in enumerate(ok)]))
    failed = [s for s in summary["sweeps"] if s["status"] != "indexed"]
    out.append(f"\n{len(ok)} of {summary['n_sweeps']} sweeps indexed"
               + (f"; failed: {', '.join(str(s['sweep']) for s in failed)}" if failed else ""))
    return "\n".join(out)


def report(summary: dict, experiments, reflections, params) -> str:
    return format_summary(summary)


COMMAND = Command("index", "xtal index imported.expt strong.refl [key=value …]", report, progress=True)


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
