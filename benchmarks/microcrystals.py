"""Multi-lattice narrow wedges: xtal index (and dials.index) on the `microcrystals` preset.

Each wedge of the preset (1° in 10 × 0.1° images, 2–5 tetragonal lysozyme crystals in
the beam at once) goes through import → find_spots → index with the true cell and
space group and max_lattices=5. Found lattices are matched to the true ones (truth.json,
one entry per lattice) by the smallest misorientation over the lattice's symmetry;
a found lattice more than 1° from every true one is a false lattice. Strong spots are
matched to the true reflections (truth_reflections_<k>.refl, nearest xyzcal.px within
2 px and 2 images) to know their lattice: "% right" is the share of those spots whose
assigned lattice is the found lattice matching their true lattice (unindexed = wrong).
With /usr/bin/dials.index present, the same wedges also go through dials.import /
find_spots / index max_lattices=5 unit_cell=… space_group=… for comparison.

Prints one JSON document and a table. Usage (repository root):
    .venv/bin/python -m benchmarks.microcrystals [n_wedges] [--ideal] [--no-dials] [key=value … for xtal simulate]
--ideal: no header geometry errors (default: the realistic presets' distance, beam
centre, tilt and wavelength errors); --no-dials: xtal only.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import gemmi
import numpy as np
from scipy.spatial import cKDTree

from processing.errors import XtalError
from processing.importer import ImportParams, run_import
from processing.indexing import IndexParams, run_index
from processing.io.expt import read_experiments, write_experiments
from processing.io.refl import read_reflections, write_reflections
from processing.params import from_strings
from processing.simulate import SimulateParams, run_simulate
from processing.simulate.truth import lattice_index_ops
from processing.spotfinding import FindSpotsParams, run_find_spots

warnings.simplefilter("ignore")
WORK = "/tmp/xtal_bench_microcrystals"
DIALS = "/usr/bin"
FALSE_DEG = 1.0


def _angle(M: np.ndarray) -> float:
    u, _, vt = np.linalg.svd(M)
    R = u @ vt
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def misorientation(A_found, A_true, ops) -> float:
    """Rotation (deg) between a found and a true A over the lattice's index symmetry."""
    return min(_angle(A_found @ np.linalg.inv(A_true @ G)) for G in ops)


def score(crystals, ids, xyz, truth_lattices, truth_refl, ops) -> dict:
    """Lattices found/true, false lattices, % spots on the right lattice, per-lattice errors."""
    n_true = len(truth_lattices)
    A_true = [np.array(t["A"]) for t in truth_lattices]
    match, per = [], []
    for c in crystals:
        angs = [misorientation(c.A, A, ops) for A in A_true]
        j = int(np.argmin(angs))
        ok = angs[j] < FALSE_DEG
        match.append(j if ok else -1)
        tc = np.array(truth_lattices[j]["unit_cell"])
        per.append({"true_lattice": j if ok else None, "misorientation_deg": round(angs[j], 4),
                    "cell_error_percent": round(float(np.max(np.abs(np.array(c.unit_cell[:3]) / tc[:3] - 1))) * 100, 3)})
    tree = cKDTree(truth_refl["xyzcal.px"] * np.array([1.0, 1.0, 1.0]))
    d, i = tree.query(xyz, distance_upper_bound=2.0)
    found = np.isfinite(d)
    true_lat = np.full(len(xyz), -2)
    true_lat[found] = truth_refl["lattice"][i[found]]
    assigned_true = np.array([match[k] if k >= 0 else -3 for k in ids])
    right = found & (assigned_true == true_lat)
    matched = sorted(j for j in match if j >= 0)
    return {"lattices_true": n_true, "lattices_found": len(crystals),
            "true_lattices_found": len(set(matched)), "false_lattices": int(sum(1 for j in match if j < 0)),
            "duplicate_lattices": len(matched) - len(set(matched)),
            "n_strong": len(xyz), "n_strong_in_truth": int(found.sum()),
            "percent_indexed": round(100.0 * float(np.mean(ids >= 0)), 1) if len(ids) else 0.0,
            "percent_right_lattice": round(100.0 * right.sum() / max(found.sum(), 1), 1),
            "lattices": per}


def run_dials(master: str, work: str, cell, sg: str):
    """dials.import/find_spots/index; (crystals, ids, xyzobs.px, seconds) or an error string."""
    from benchmarks.dials_env import dials_env
    os.makedirs(work, exist_ok=True)
    t0 = time.perf_counter()
    ucell = ",".join(f"{x:g}" for x in cell)
    steps = [["dials.import", master], ["dials.find_spots", "imported.expt", "nproc=1"],
             ["dials.index", "imported.expt", "strong.refl", "max_lattices=5", f"unit_cell={ucell}",
              f"space_group={sg.replace(' ', '')}"]]
    for cmd in steps:
        r = subprocess.run([f"{DIALS}/{cmd[0]}", *cmd[1:]], cwd=work, capture_output=True, text=True, env=dials_env(),
                           check=False)
        if r.returncode != 0:
            tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or ["?"]
            return f"{cmd[0]} failed: {tail[0]}"
    expts = read_experiments(os.path.join(work, "indexed.expt"))
    refl = read_reflections(os.path.join(work, "indexed.refl"))
    return [e.crystal for e in expts], np.asarray(refl["id"]), np.asarray(refl["xyzobs.px.value"]), \
        time.perf_counter() - t0


def run_xtal(master: str, work: str, cell, sg: str):
    """xtal import/find_spots/index; (crystals, ids, xyzobs.px, seconds, index seconds, summary) or an error."""
    os.makedirs(work, exist_ok=True)
    t0 = time.perf_counter()
    expts, _ = run_import(ImportParams(paths=(master,)))
    strong, _ = run_find_spots(expts, FindSpotsParams())
    write_experiments(os.path.join(work, "imported.expt"), expts)
    write_reflections(os.path.join(work, "strong.refl"), strong)
    t1 = time.perf_counter()
    params = from_strings(IndexParams, ["max_lattices=5", "unit_cell=" + ",".join(f"{x:g}" for x in cell),
                                        f"space_group={sg}"])
    try:
        out, refl, summary = run_index(expts, strong, params)
    except XtalError as e:
        return f"refused: {e}"
    t2 = time.perf_counter()
    return [e.crystal for e in out], np.asarray(refl["id"]), np.asarray(refl["xyzobs.px.value"]), t2 - t0, t2 - t1, \
        summary


def main(argv):
    n_wedges = int(argv[0]) if argv and argv[0].isdigit() else None
    extra = [a for a in argv if "=" in a]
    header_errors = "--ideal" not in argv
    if header_errors:  # the header geometry errors of the simulator's realistic presets
        extra = ["header_distance_error=1.5", "header_beam_centre_error=2.5,-1.8", "header_tilt_error=0.3",
                 "header_wavelength_error=0.002", *extra]
    sim_dir = os.path.join(WORK, "sim")
    sp = from_strings(SimulateParams, ["preset=microcrystals", f"output_dir={sim_dir}", *extra])
    t0 = time.perf_counter()
    files, summ = run_simulate(sp)
    t_sim = time.perf_counter() - t0
    sg = summ["space_group"]
    cell = summ["unit_cell"]
    ops = lattice_index_ops(tuple(cell), gemmi.SpaceGroup(sg))
    have_dials = os.path.exists(f"{DIALS}/dials.index") and "--no-dials" not in argv
    rows = []
    for k, master in enumerate(files["images"][:n_wedges]):
        master = master if isinstance(master, str) else master[0]
        truth_lattices = summ["crystals"][k].get("lattices") or [summ["crystals"][k]]
        truth_refl = read_reflections(files["truth_reflections"][k])
        row = {"wedge": k, "n_lattices_true": len(truth_lattices)}
        res = run_xtal(master, os.path.join(WORK, f"xtal_{k:03d}"), cell, sg)
        if isinstance(res, str):
            row["xtal"] = {"error": res, "lattices_true": len(truth_lattices), "lattices_found": 0,
                           "false_lattices": 0}
        else:
            crystals, ids, xyz, secs, secs_index, _ = res
            row["xtal"] = dict(score(crystals, ids, xyz, truth_lattices, truth_refl, ops),
                               seconds=round(secs, 2), seconds_index=round(secs_index, 2))
        if have_dials:
            res = run_dials(master, os.path.join(WORK, f"dials_{k:03d}"), cell, sg)
            if isinstance(res, str):
                row["dials"] = {"error": res}
            else:
                crystals, ids, xyz, secs = res
                row["dials"] = dict(score(crystals, ids, xyz, truth_lattices, truth_refl, ops), seconds=round(secs, 2))
        rows.append(row)
    doc = {"preset": "microcrystals", "header_errors": header_errors, "simulate": {k: v for k, v in summ["parameters"].items()
                                                   if k in ("n_crystals", "n_images", "oscillation_width", "d_min",
                                                            "lattices_per_sweep", "seed")},
           "space_group": sg, "unit_cell": cell, "seconds_simulate": round(t_sim, 1), "wedges": rows,
           "totals": totals(rows)}
    print(json.dumps(doc, indent=1, default=str))
    print_table(rows)


def totals(rows) -> dict:
    out = {}
    for prog in ("xtal", "dials"):
        rr = [r[prog] for r in rows if prog in r]
        if not rr:
            continue
        ok = [r for r in rr if "error" not in r]
        mis = [L["misorientation_deg"] for r in ok for L in r["lattices"] if L["true_lattice"] is not None]
        cel = [L["cell_error_percent"] for r in ok for L in r["lattices"] if L["true_lattice"] is not None]
        out[prog] = {"wedges": len(rr), "failed": len(rr) - len(ok),
                     "true_lattices": sum(r.get("lattices_true", 0) for r in rr),
                     "true_lattices_found": sum(r.get("true_lattices_found", 0) for r in ok),
                     "false_lattices": sum(r.get("false_lattices", 0) for r in ok),
                     "median_percent_right_lattice": float(np.median([r["percent_right_lattice"] for r in ok])) if ok else None,
                     "median_misorientation_deg": float(np.median(mis)) if mis else None,
                     "max_misorientation_deg": float(np.max(mis)) if mis else None,
                     "median_cell_error_percent": float(np.median(cel)) if cel else None,
                     "median_seconds": float(np.median([r["seconds"] for r in ok])) if ok else None}
    return out


def print_table(rows) -> None:
    print(f"\n{'wedge':>5} {'prog':>5} {'found/true':>10} {'false':>5} {'%right':>6} {'%idx':>5} "
          f"{'misorient (deg)':>24} {'cell err (%)':>22} {'s':>6} {'s index':>7}")
    for r in rows:
        for prog in ("xtal", "dials"):
            x = r.get(prog)
            if x is None:
                continue
            if "error" in x:
                print(f"{r['wedge']:>5} {prog:>5} {'0/' + str(r['n_lattices_true']):>10}  {x['error'][:90]}")
                continue
            mis = ",".join(f"{L['misorientation_deg']:.3f}" for L in x["lattices"])
            cel = ",".join(f"{L['cell_error_percent']:.2f}" for L in x["lattices"])
            print(f"{r['wedge']:>5} {prog:>5} {str(x['true_lattices_found']) + '/' + str(x['lattices_true']):>10} "
                  f"{x['false_lattices']:>5} {x['percent_right_lattice']:>6.1f} {x['percent_indexed']:>5.1f} "
                  f"{mis:>24} {cel:>22} {x['seconds']:>6.1f} {x.get('seconds_index', float('nan')):>7.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
