"""`xtal run IMAGES… [unit_cell=…] [space_group=…] [d_min=…] [nproc=2] [output_dir=.]`:
images to merged intensities in one command, as a user of the DIALS many-crystal tutorial
would run it by hand.

import → find_spots → index (joint=false: each sweep on its own) → refine → integrate,
the sweeps in parallel where a stage allows (nproc); a sweep that fails is reported with
its reason and left out; then the ensemble: cosym → scale → ΔCC½ filtering (xia2.multiplex's
iterative way, rescaled) → merge and export, and the clusters of the filtered data sets
(xtal cluster: unit-cell and intensity dendrograms, candidate clusters with their statistics). Every stage writes its DIALS-named files in
``output_dir`` (so any step can be rerun by hand), and one summary is printed at the end:
per sweep (spots, % indexed, RMSDs, integrated), then the symmetry, the merging
statistics, the resolution estimate, the clusters and the files written.
"""
from __future__ import annotations

import os
import time

from ..errors import XtalError
from ..params import from_strings
from .command import split_args
from .cluster import report as cluster_report
from .merging_table import format_merging_table
from .tables import num, psql_table

#: which of the user's words each stage takes (the rest get their defaults)
PASSED = {
    "find_spots": ("nproc",),
    "index": ("unit_cell", "space_group", "nproc"),
    "integrate": ("nproc",),
    "cosym": ("space_group",),
    "scale": ("d_min", "anomalous"),
    "compute_delta_cchalf": ("d_min",),
    "merge": ("d_min", "anomalous"),
}
OWN = ("output_dir", "unit_cell", "space_group", "d_min", "nproc", "anomalous")
USAGE = "xtal run IMAGES… [unit_cell=a,b,c,α,β,γ] [space_group=…] [d_min=…] [nproc=2] [output_dir=.]"


def _params(stage, values: dict, **fixed):
    from ..stages import STAGES

    words = [f"{k}={values[k]}" for k in PASSED.get(stage, ()) if k in values]
    return from_strings(STAGES[stage].params, words, **fixed)


def _write(stage, out_dir: str, experiments, result, params) -> list[str]:
    from ..io.outputs import write_output
    from ..stages import STAGES

    return [write_output(os.path.join(out_dir, name), experiments, result, params=params)
            for name in STAGES[stage].outputs]


def _sweep_table(names: list[str], spots: dict, index: dict, refine: dict, integrate: dict) -> str:
    """One row per sweep: spots, % indexed, RMSDs, integrated — or why it was left out."""
    by_sweep = {int(s.get("sweep", -1)): s for s in index.get("sweeps", [])}
    rmsd = {k: r for k, r in enumerate(refine.get("rmsds_by_experiment") or [])}
    integ = {k: e for k, e in enumerate(integrate.get("sweeps") or [])}
    rows, placed = [], 0
    for k, name in enumerate(names):
        s = by_sweep.get(k, {})
        n_spots = (spots.get("experiments") or [{}] * len(names))[k].get("n_spots")
        if s.get("status") == "indexed":
            r, e = rmsd.get(placed, {}), integ.get(placed, {})
            placed += 1
            rows.append([name, n_spots, num(s.get("percent_indexed"), ".1f"), num(r.get("rmsd_x_px"), ".3f"),
                         num(r.get("rmsd_y_px"), ".3f"), num(r.get("rmsd_z_images"), ".3f"),
                         e.get("n_integrated_prf", e.get("n_integrated_sum")), ""])
        else:
            rows.append([name, n_spots, "—", "—", "—", "—", "—", s.get("reason") or "not indexed"])
    return psql_table(["Sweep", "Spots", "% indexed", "RMSD X (px)", "RMSD Y (px)", "RMSD Z (images)",
                       "Integrated", "Left out because"], rows, align="left")


def run(argv: list[str]) -> int:
    from ..stages import STAGES

    files, words, help_ = split_args(argv)
    if help_:
        print(f"usage: {USAGE}\n\n{__doc__.split(chr(10) + chr(10), 1)[1]}")
        return 0
    values = {}
    for w in words:
        key, _, value = w.partition("=")
        if key.strip() not in OWN:
            raise XtalError(f"{key.strip()}: not a parameter of xtal run (give {', '.join(OWN)}; run the stages "
                            "one by one for the others)")
        values[key.strip()] = value.strip()
    if not files:
        raise XtalError(f"give the images: {USAGE}")
    out_dir = values.pop("output_dir", ".")
    if not os.path.isdir(out_dir):
        raise XtalError(f"output folder {out_dir} does not exist")
    values.setdefault("nproc", "2")
    seconds, written = {}, []
    summaries = {}

    def step(stage, experiments, reflections, params):
        t0 = time.perf_counter()
        print(f"{STAGES[stage].title} …", flush=True)
        out = STAGES[stage].execute(experiments, reflections, params)
        seconds[stage] = round(time.perf_counter() - t0, 1)
        summaries[stage] = out[2]
        written.extend(_write(stage, out_dir, out[0], out[1], params))
        return out

    experiments, _, _ = step("import", None, None, _params("import", values, paths=tuple(files)))
    names = [os.path.basename(e.imageset.template or e.imageset.paths[0]) if e.imageset else f"sweep_{k}"
             for k, e in enumerate(experiments)]
    name_of = {e.identifier: name for e, name in zip(experiments, names)}
    _, spots, _ = step("find_spots", experiments, None, _params("find_spots", values))
    indexed_e, indexed_r, index_s = step("index", experiments, spots, _params("index", values, joint=False))
    failed = [s for s in index_s.get("sweeps", []) if s.get("status") != "indexed"]
    for s in failed:
        print(f"  sweep {names[int(s.get('sweep', 0))]} left out: {s.get('reason') or 'not indexed'}")
    if len(indexed_e) < 2:
        raise XtalError(f"only {len(indexed_e)} sweep(s) indexed: an ensemble needs two or more")
    refined_e, refined_r, _ = step("refine", indexed_e, indexed_r, _params("refine", values))
    integ_e, integ_r, _ = step("integrate", refined_e, refined_r, _params("integrate", values))
    sym_e, sym_r, cosym_s = step("cosym", integ_e, integ_r, _params("cosym", values))
    scaled_e, scaled_r, _ = step("scale", sym_e, sym_r, _params("scale", values))
    filt_e, filt_r, filt_s = step("compute_delta_cchalf", scaled_e, scaled_r,
                                  _params("compute_delta_cchalf", values, max_cycles=6, final_rescale=True))
    _, _, merge_s = step("merge", filt_e, filt_r, _params("merge", values))
    step("export", filt_e, filt_r, _params("export", values))
    cluster_params = _params("cluster", values)
    _, _, cluster_s = step("cluster", filt_e, filt_r, cluster_params)

    best = cosym_s["best"]
    print("\n" + "=" * 80 + "\nSummary\n")
    print(_sweep_table(names, summaries["find_spots"], index_s, summaries["refine"], summaries["integrate"]))
    print(f"\nLaue group {best['patterson_group']} (probability {best['probability']:.3f}), space group "
          f"{best['space_group']}; {len(sym_e)} of {len(integ_e)} data sets placed"
          + (f"; {cosym_s.get('absences_note')}" if cosym_s.get("absences_note") else ""))
    removed = filt_s.get("removed") or []
    print(f"ΔCC½ filtering: {len(removed)} data set(s) removed"
          + (": " + ", ".join(f"{name_of.get(x.get('identifier'), x.get('identifier'))} "
                             f"(ΔCC½ {num(x.get('delta_cc_half'), '.4f')})" for x in removed)
             if removed else ""))
    est = (summaries["scale"].get("resolution_estimate") or {})
    if est.get("d_min") is not None:
        print(f"Resolution estimate (CC½ = 0.3): {est['d_min']:.2f} Å")
    print()
    print("\n".join(format_merging_table(merge_s["merging_statistics"])))
    print("\nClusters of the filtered data sets (xtal cluster; the ten largest):")
    print(cluster_report(dict(cluster_s, clusters=cluster_s["clusters"][:10]), None, None, cluster_params))
    print("\nTime (s): " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    print("Files: " + ", ".join(sorted({os.path.basename(w.rsplit(' to ', 1)[-1]) for w in written})))
    return 0
