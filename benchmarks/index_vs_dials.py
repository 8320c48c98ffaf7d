"""Seconds per sweep: xtal's run_index against dials.index on the same strong spots.

Spots: synthetic insulin sweeps (I 21 3, 78.1 Å, 50 × 0.1° on an Eiger-2X-9M-like
panel, predicted positions + 0.3 px / 0.15 image noise) and the two real l-cysteine
1° wedges (spot positions = the observed centroids of the DIALS integrated files).
Both programs read the same imported.expt / strong.refl written here; DIALS runs as
a subprocess (its time includes start-up, reported separately). Prints JSON.

Usage (from the repository root, as a module: it borrows helpers from
tests/processing/indexing/test_indexer.py): .venv/bin/python -m benchmarks.index_vs_dials
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
import warnings

import numpy as np

from processing.indexing import IndexParams, run_index
from processing.io.expt import read_experiments, write_experiments
from processing.io.refl import read_reflections, write_reflections
from processing.models import Experiment, ExperimentList
from processing.models.crystal import b_matrix
from processing.models.goniometer import axis_angle_matrix
from processing.reflections import Flags, ReflectionTable
from tests.processing.indexing.test_indexer import eiger_experiment, spots_of

warnings.simplefilter("ignore")

DIALS = "/usr/bin/dials.index"


def write_inputs(folder, experiments, xyz_list, var_list=None):
    rows = []
    for k, xyz in enumerate(xyz_list):
        n = len(xyz)
        var = var_list[k] if var_list else np.tile([0.09, 0.09, 0.02], (n, 1))
        x0, y0, z0 = np.floor(xyz).astype(int).T
        bbox = np.column_stack([x0 - 2, x0 + 3, y0 - 2, y0 + 3, z0, z0 + 1]).astype(np.int32)
        t = ReflectionTable({"xyzobs.px.value": xyz, "xyzobs.px.variance": var, "panel": np.zeros(n, np.uint64),
                             "id": np.full(n, k, np.int32), "flags": np.full(n, int(Flags.strong), np.uint64),
                             "bbox": bbox, "intensity.sum.value": np.full(n, 100.0),
                             "intensity.sum.variance": np.full(n, 100.0)})
        t.experiment_identifiers = {k: experiments[k].identifier}
        rows.append(t)
    table = ReflectionTable.concatenate(rows)
    write_experiments(os.path.join(folder, "imported.expt"), experiments)
    write_reflections(os.path.join(folder, "strong.refl"), table)
    return table


def run_dials(folder, words):
    t0 = time.perf_counter()
    p = subprocess.run([DIALS, "imported.expt", "strong.refl", *words], cwd=folder, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    pct = [float(x) for x in re.findall(r"\|\s+\d+\s+\|\s+\d+\s+\|\s+\d+\s+\|\s+([\d.]+)%", p.stdout)]
    return dt, p.returncode, pct


def main():
    out = {"dials_available": os.path.exists(DIALS), "cases": []}
    t0 = time.perf_counter()
    subprocess.run([DIALS, "-h"], capture_output=True)
    out["dials_startup_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(7)
    n_sweeps = 4
    experiments, xyzs = ExperimentList(), []
    for k in range(n_sweeps):
        e = eiger_experiment()
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        U = axis_angle_matrix(q[1:], 2 * np.arccos(abs(q[0])))
        xyz, _ = spots_of(e, U @ b_matrix((78.1,) * 3 + (90.0,) * 3), "I 21 3", seed=k)
        experiments.append(e)
        xyzs.append(xyz)
    cases = [("insulin synthetic 5°", experiments, xyzs, None, [], [["joint=false"]]),
             ("insulin synthetic 5°, unit_cell", experiments, xyzs, None,
              ["unit_cell=67.64,67.64,67.64,109.47,109.47,109.47"],
              [["joint=false", "unit_cell=67.64,67.64,67.64,109.47,109.47,109.47", "space_group=P1"]])]
    real = "/work/shared/data/real/l_cysteine_narrow_wedge/"
    if os.path.isdir(real):
        ex, xy, vv = ExperimentList(), [], []
        for n in ("11", "23"):
            e = read_experiments(real + f"{n}_integrated.expt")[0]
            r = read_reflections(real + f"{n}_integrated.refl")
            ex.append(Experiment(beam=e.beam, detector=e.detector, goniometer=e.goniometer, scan=e.scan,
                                 imageset=e.imageset, identifier=e.identifier))
            xy.append(r["xyzobs.px.value"])
            vv.append(r["xyzobs.px.variance"])
        cw = ["unit_cell=5.43,8.14,12.04,90,90,90", "space_group=P212121"]
        cases.append(("l-cysteine 1° wedges, known cell", ex, xy, vv, ["unit_cell=5.43,8.14,12.04,90,90,90",
                                                                       "space_group=P 21 21 21"],
                      [["joint=false", *cw], ["joint=false", *cw, "indexing.method=real_space_grid_search"]]))
    from processing.params import from_strings
    for name, ex, xy, vv, ours_words, dials_runs in cases:
        with tempfile.TemporaryDirectory() as folder:
            table = write_inputs(folder, ex, xy, vv)
            params = from_strings(IndexParams, ["joint=false", *ours_words])
            t0 = time.perf_counter()
            _, _, summary = run_index(read_experiments(os.path.join(folder, "imported.expt")),
                                      read_reflections(os.path.join(folder, "strong.refl")), params)
            ours = time.perf_counter() - t0
            case = {"case": name, "n_sweeps": len(ex), "n_spots": int(len(table)),
                    "xtal_s_per_sweep": ours / len(ex),
                    "xtal_percent_indexed": [round(r.get("percent_indexed", 0.0), 1) for r in summary["sweeps"]],
                    "xtal_cells": [[round(v, 3) for v in r.get("unit_cell", [])] for r in summary["sweeps"]],
                    "dials": []}
            if out["dials_available"]:
                for words in dials_runs:
                    dt, rc, pct = run_dials(folder, words)
                    case["dials"].append({"args": words, "s_per_sweep": dt / len(ex),
                                          "s_per_sweep_without_startup": (dt - out["dials_startup_s"]) / len(ex),
                                          "returncode": rc, "percent_indexed_last_table": pct[-len(ex):]})
            out["cases"].append(case)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
