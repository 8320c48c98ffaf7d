"""Cross-check the simulator with DIALS 3.12: import → find_spots → index (true cell and
space group) → refine, per sweep, and compare with the truth.

Prints JSON per sweep: % of strong spots indexed, refined cell vs truth (max relative
error of a, b, c in %), orientation error vs truth (deg, minimised over the lattice's
rotations, so over the space group's and the reindexing), RMSD X/Y (px) and Z (images)
of the refined reflections (computed from refined.refl).

    .venv/bin/python benchmarks/crosscheck_simulate_dials.py [tiny] [insulin:N_CRYSTALS:N_IMAGES]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import gemmi
import hdf5plugin
import numpy as np

from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.reflections import Flags
from processing.simulate import SimulateParams, run_simulate
from processing.simulate.truth import format_abc, lattice_index_ops

DIALS = "/usr/bin"


def _run(cmd, cwd, log):
    env = dict(os.environ, HDF5_PLUGIN_PATH=hdf5plugin.PLUGIN_PATH)
    with open(os.path.join(cwd, log), "w") as f:
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
    return r.returncode == 0


def _rotation_angle(M):
    u, _, vt = np.linalg.svd(M)
    R = u @ vt
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def check_sweep(master, truth_crystal, sg_name, cell, work):
    os.makedirs(work, exist_ok=True)
    out = {"sweep": os.path.basename(master), "flags": truth_crystal["flags"],
           "true_change_of_basis_op": truth_crystal["change_of_basis_op"]}
    t0 = time.perf_counter()
    if not _run([f"{DIALS}/dials.import", master], work, "import.log"):
        return dict(out, error="dials.import failed")
    if not _run([f"{DIALS}/dials.find_spots", "imported.expt", "nproc=1"], work, "find_spots.log"):
        return dict(out, error="dials.find_spots failed")
    ucell = ",".join(f"{x:g}" for x in cell)
    if not _run([f"{DIALS}/dials.index", "imported.expt", "strong.refl", f"space_group={sg_name.replace(' ', '')}",
                 f"unit_cell={ucell}"], work, "index.log"):
        return dict(out, error="dials.index failed")
    if not _run([f"{DIALS}/dials.refine", "indexed.expt", "indexed.refl"], work, "refine.log"):
        return dict(out, error="dials.refine failed")
    strong = read_reflections(os.path.join(work, "strong.refl"))
    indexed = read_reflections(os.path.join(work, "indexed.refl"))
    n_idx = int(np.sum((indexed["flags"] & int(Flags.indexed)) > 0))
    out["n_strong"] = len(strong)
    out["percent_indexed"] = round(100.0 * n_idx / max(len(strong), 1), 2)
    refined = read_experiments(os.path.join(work, "refined.expt"))[0].crystal
    true_cell = np.array(truth_crystal["unit_cell"])
    rc = np.array(refined.unit_cell)
    out["refined_cell"] = [round(float(x), 4) for x in rc]
    out["true_cell"] = [round(float(x), 4) for x in true_cell]
    out["cell_error_percent"] = round(float(np.max(np.abs(rc[:3] / true_cell[:3] - 1)) * 100), 4)
    A_t = np.array(truth_crystal["A"])
    A_d = refined.A
    best = (1e9, None)
    for G in lattice_index_ops(tuple(true_cell), gemmi.SpaceGroup(sg_name)):
        ang = _rotation_angle(A_d @ np.linalg.inv(A_t @ G))
        if ang < best[0]:
            best = (ang, G)
    out["orientation_error_deg"] = round(best[0], 5)
    out["dials_to_truth_op"] = format_abc(best[1]) if best[1] is not None else None
    ref = read_reflections(os.path.join(work, "refined.refl"))
    used = (ref["flags"] & int(Flags.used_in_refinement)) > 0
    d = ref["xyzcal.px"][used] - ref["xyzobs.px.value"][used]
    out["n_refined"] = int(used.sum())
    out["rmsd_x_px"], out["rmsd_y_px"], out["rmsd_z_images"] = (round(float(np.sqrt(np.mean(d[:, i] ** 2))), 4)
                                                               for i in range(3))
    out["seconds_dials"] = round(time.perf_counter() - t0, 1)
    out["pass"] = bool(out["percent_indexed"] >= 85 and out["cell_error_percent"] <= 0.3
                       and out["orientation_error_deg"] <= 0.1 and out["rmsd_x_px"] < 0.4
                       and out["rmsd_y_px"] < 0.4 and out["rmsd_z_images"] < 0.3)
    return out


def run_set(name, params, root):
    t0 = time.perf_counter()
    files, summary = run_simulate(params)
    sim_seconds = time.perf_counter() - t0
    results = []
    for k, written in enumerate(files["images"]):
        results.append(check_sweep(written[0], summary["crystals"][k], summary["space_group"],
                                   summary["unit_cell"], os.path.join(root, f"{name}_{k:03d}")))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return {"set": name, "simulate_seconds": round(sim_seconds, 1), "sweeps": results,
            "all_pass": all(r.get("pass", False) for r in results)}


def main():
    args = sys.argv[1:] or ["tiny", "insulin:4:50"]
    if not os.path.exists(f"{DIALS}/dials.version"):
        print(json.dumps({"error": "DIALS is not installed (/usr/bin/dials.version missing)"}))
        return
    out = []
    with tempfile.TemporaryDirectory() as root:
        for a in args:
            if a == "tiny":
                out.append(run_set("tiny", SimulateParams(preset="tiny", output_dir=os.path.join(root, "tiny")), root))
            elif a.startswith("insulin"):
                parts = a.split(":")
                n_c = int(parts[1]) if len(parts) > 1 else 4
                n_i = int(parts[2]) if len(parts) > 2 else 50
                out.append(run_set("insulin-24", SimulateParams(preset="insulin-24", n_crystals=n_c, n_images=n_i,
                                                                output_dir=os.path.join(root, "insulin")), root))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
