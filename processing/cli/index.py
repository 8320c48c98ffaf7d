"""`xtal index imported.expt strong.refl [joint=false] [unit_cell=…] [space_group=…] [max_lattices=…] [nproc=…]`.

Writes indexed.expt and indexed.refl (``output.experiments=``, ``output.reflections=``)
and prints, as dials.index does, per-sweep results, the Bravais settings of each
lattice and the final tables of % indexed and RMSDs.
"""
from __future__ import annotations

import os

from ..errors import XtalError
from ..indexing.indexer import IndexParams, run_index
from ..io.expt import read_experiments, write_experiments
from ..params import from_strings
from .main import print_help, split_args


def tabulate(rows: list[list], header: list[str], align_right: bool = True) -> str:
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    fmt = lambda r: "| " + " | ".join((c.rjust(w) if align_right else c.ljust(w)) for c, w in zip(r, widths)) + " |"
    return "\n".join([line, fmt(header), line.replace("-", "-")] + [fmt(r) for r in cols[1:]] + [line])


def bravais_table(settings: list[dict]) -> str:
    rows = []
    for r in settings:
        rows.append([("*" if r["recommended"] else " ") + f"{r['solution']:7d}", f"{r['metric_fit']:6.4f}",
                     f"{r['rmsd']:5.3f}", "-/-", str(r["nspots"]), r["bravais"],
                     "%6.2f %6.2f %6.2f %6.2f %6.2f %6.2f" % tuple(r["unit_cell"]), f"{r['volume']:.0f}", r["cb_op"]])
    return tabulate(rows, ["Solution", "Metric fit", "rmsd", "min/max cc", "#spots", "lattice", "unit_cell",
                           "volume", "cb_op"]) + "\n* = recommended solution"


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
            out.append(f"  Bravais settings of lattice {k + 1}:")
            out.append("  " + bravais_table(lat["bravais_settings"]).replace("\n", "\n  "))
    ok = [s for s in summary["sweeps"] if s["status"] == "indexed"]
    if ok:
        out.append("")
        out.append(tabulate([[str(s["sweep"]), str(s["n_indexed"]), str(s["n_spots"] - s["n_indexed"]),
                              f"{s['percent_indexed']:.1f}%"] for s in ok],
                            ["Imageset", "# indexed", "# unindexed", "% indexed"]))
        out.append("")
        out.append("RMSDs by experiment:")
        out.append(tabulate([[str(k), str(s["n_used_in_refinement"]), f"{s['rmsd_x_px']:.5g}", f"{s['rmsd_y_px']:.5g}",
                              f"{s['rmsd_z_images']:.5g}"] for k, s in enumerate(ok)],
                            ["Exp id", "Nref", "RMSD_X (px)", "RMSD_Y (px)", "RMSD_Z (images)"]))
    failed = [s for s in summary["sweeps"] if s["status"] != "indexed"]
    out.append(f"\n{len(ok)} of {summary['n_sweeps']} sweeps indexed"
               + (f"; failed: {', '.join(str(s['sweep']) for s in failed)}" if failed else ""))
    return "\n".join(out)


def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_:
        print_help("index", IndexParams)
        print("  output.experiments = indexed.expt\n  output.reflections = indexed.refl")
        return 0
    out_expt, out_refl, kept = "indexed.expt", "indexed.refl", []
    for w in words:
        key, _, value = w.partition("=")
        if key == "output.experiments":
            out_expt = value
        elif key == "output.reflections":
            out_refl = value
        else:
            kept.append(w)
    expts = [f for f in files if f.endswith(".expt") or f.endswith(".json")]
    refls = [f for f in files if f.endswith(".refl")]
    if len(expts) != 1 or len(refls) != 1:
        raise XtalError("usage: xtal index imported.expt strong.refl [key=value …]")
    params = from_strings(IndexParams, kept)
    from ..io.refl import read_reflections
    experiments = read_experiments(expts[0])
    reflections = read_reflections(refls[0])
    progress = lambda f, msg: print(f"  {msg}", flush=True)
    experiments_out, table, summary = run_index(experiments, reflections, params, progress=progress)
    print(format_summary(summary))
    for path in (out_expt, out_refl):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    from ..io.refl import write_reflections
    write_experiments(out_expt, experiments_out)
    write_reflections(out_refl, table)
    print(f"Saving refined experiments to {out_expt}\nSaving refined reflections to {out_refl}")
    return 0
