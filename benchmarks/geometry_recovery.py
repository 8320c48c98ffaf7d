"""Geometry recovery benchmark: a simulated sweep imported with a wrong header
(detector distance, beam centre, tilt) through find_spots → index → refine.

    python benchmarks/geometry_recovery.py [OUT_DIR] [--no-dials]

One crystal of the ``tiny`` preset (20 images × 0.5°) is simulated once; for each
perturbation the true detector is moved (distance along the normal, beam centre in
px, a tilt about the lab x axis through the beam centre) and the sweep goes through
xtal's stages from that header. If DIALS is installed (/usr/bin/dials.refine) the
same header (written as a DIALS .expt) goes through dials.find_spots, dials.index
and dials.refine. Prints JSON: per perturbation and program the true, header and
refined distance (mm), beam centre (px) and tilt (deg, detector normal to the lab
z), the errors, RMSD X, Y (px) and Z (images) and the fraction of indexed
reflections kept by outlier rejection.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np

from processing.indexing import IndexParams, run_index
from processing.io.expt import read_experiments, write_experiments
from processing.io.refl import read_reflections
from processing.models import ExperimentList
from processing.models.goniometer import axis_angle_matrix
from processing.refinement import RefineParams, run_refine
from processing.reflections import Flags
from processing.simulate import SimulateParams, run_simulate
from processing.spotfinding import FindSpotsParams, run_find_spots

sys.path.insert(0, os.path.dirname(__file__))
from dials_env import dials_env

PERTURBATIONS = [
    {"distance_mm": 0.5, "beam_centre_px": [2.0, -1.0], "tilt_deg": 0.2},
    {"distance_mm": 1.0, "beam_centre_px": [3.0, -2.0], "tilt_deg": 0.5},
    {"distance_mm": -1.0, "beam_centre_px": [-3.0, 3.0], "tilt_deg": -0.5},
    {"distance_mm": 2.0, "beam_centre_px": [5.0, -4.0], "tilt_deg": 0.5},
]


def perturb(expt, distance_mm, beam_centre_px, tilt_deg):
    """A copy of ``expt`` whose detector is the wrong header's."""
    e = copy.deepcopy(expt)
    p = e.detector[0]
    bc = p.get_lab_coord(p.get_beam_centre(e.beam.s0)[None])[0]
    R = axis_angle_matrix([1.0, 0.0, 0.0], np.radians(tilt_deg))
    p.fast_axis, p.slow_axis = R @ p.fast_axis, R @ p.slow_axis
    p.origin = bc + R @ (p.origin - bc) + np.array([0.0, 0.0, -distance_mm])
    px = p.pixel_size
    p.origin = p.origin - beam_centre_px[0] * px[0] * p.fast_axis - beam_centre_px[1] * px[1] * p.slow_axis
    return e


def geometry(e) -> dict:
    p = e.detector[0]
    n = p.normal
    return {"distance": float(p.distance), "beam_centre_px": [float(v) for v in p.get_beam_centre_px(e.beam.s0)],
            "tilt_deg": float(np.degrees(np.arccos(min(abs(n[2]), 1.0)))), "normal": [float(v) for v in n]}


def errors(g, t) -> dict:
    return {"distance_mm": abs(g["distance"] - t["distance"]),
            "beam_centre_px": float(np.abs(np.subtract(g["beam_centre_px"], t["beam_centre_px"])).max()),
            "tilt_deg": float(np.degrees(np.arccos(min(abs(np.dot(g["normal"], t["normal"])), 1.0))))}


def run_xtal(header) -> dict:
    t0 = time.perf_counter()
    experiments = ExperimentList([header])
    strong, _ = run_find_spots(experiments, FindSpotsParams())
    ie, ir, _ = run_index(experiments, strong, IndexParams(joint=False, n_points=128))
    re_, rr, rs = run_refine(ie, ir, RefineParams())
    row = rs["rmsds_by_experiment"][0]
    n_idx = int(np.any(rr["miller_index"] != 0, axis=1).sum())
    return {"refined": geometry(re_[0]), "rmsd": [row["rmsd_x_px"], row["rmsd_y_px"], row["rmsd_z_images"]],
            "n_indexed": n_idx, "fraction_kept": 1.0 - int(rr.get_flags(Flags.centroid_outlier).sum()) / max(n_idx, 1),
            "seconds": time.perf_counter() - t0}


def run_dials(header, folder) -> dict:
    os.makedirs(folder, exist_ok=True)
    write_experiments(os.path.join(folder, "header.expt"), ExperimentList([header]))
    env = dials_env()
    t0 = time.perf_counter()
    for cmd in (["dials.find_spots", "header.expt", "nproc=2"],
                ["dials.index", "header.expt", "strong.refl"],
                ["dials.refine", "indexed.expt", "indexed.refl"]):
        p = subprocess.run(cmd, check=False, cwd=folder, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            return {"error": f"{cmd[0]} failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"}
    e = read_experiments(os.path.join(folder, "refined.expt"))[0]
    rr = read_reflections(os.path.join(folder, "refined.refl"))
    used = rr.get_flags(Flags.used_in_refinement)
    res = (rr["xyzcal.mm"] - rr["xyzobs.mm.value"])[used]
    px = e.detector[0].pixel_size
    rmsd = np.sqrt(np.mean(res ** 2, axis=0)) / [px[0], px[1], np.radians(e.scan.oscillation[1])]
    n_idx = int(np.any(rr["miller_index"] != 0, axis=1).sum())
    return {"refined": geometry(e), "rmsd": [float(v) for v in rmsd], "n_indexed": n_idx,
            "fraction_kept": 1.0 - int(rr.get_flags(Flags.centroid_outlier).sum()) / max(n_idx, 1),
            "seconds": time.perf_counter() - t0}


def main(argv):
    out = os.path.abspath(next((a for a in argv if not a.startswith("--")), "geometry_recovery"))
    with_dials = "--no-dials" not in argv and os.path.exists("/usr/bin/dials.refine")
    sim = os.path.join(out, "sim")
    if not os.path.exists(os.path.join(sim, "truth.expt")):
        run_simulate(SimulateParams(preset="tiny", output_dir=sim, n_crystals=1, n_images=20, oscillation_width=0.5,
                                    seed=3))
    truth = read_experiments(os.path.join(sim, "truth.expt"))[0]
    base = copy.deepcopy(truth)
    base.crystal = None
    t = geometry(truth)
    header_fields = [f.name for f in dataclasses.fields(SimulateParams) if f.name.startswith("header_")]
    rows = []
    for k, pert in enumerate(PERTURBATIONS):
        header = perturb(base, **pert)
        h = geometry(header)
        row = {"perturbation": pert, "truth": t, "header": h, "header_error": errors(h, t)}
        programs = [("xtal", run_xtal, (header,))]
        if with_dials:
            programs.append(("dials", run_dials, (header, os.path.join(out, f"dials_{k}"))))
        for name, fn, args in programs:
            try:
                r = fn(*args)
            except Exception as err:  # noqa: BLE001 - a failed run is a result
                r = {"error": f"{type(err).__name__}: {err}"}
            if "refined" in r:
                r["error_vs_truth"] = errors(r["refined"], t)
            row[name] = r
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps({"simulator_header_fields": header_fields, "rows": rows}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
