"""insulin-24 (I 21 3, 78.1 Å, 24 crystals × 50 × 0.1°, Eiger 2X 9M) indexed per sweep.

Spots, two sources:

* ``--spots true`` (default): the simulator's true reflection centroids (partiality
  > 0.5, the strongest 60 %), with 0.3 px / 0.1 image Gaussian noise;
* ``--spots find --sweeps 19,0,1,…``: the simulated images of those sweeps are
  rendered one at a time in memory (no files) and searched with ``run_find_spots``
  (FindSpotsParams defaults, nproc=1) — about 1–2 min per sweep on one core.
  ``--cache DIR`` keeps each sweep's strong spots as ``strong_<k>.npz`` so a
  later run reuses them.

Three runs with joint=false: no prior; unit_cell=67,67,67,109,109,109 (the
tutorial's); and 1° wedges (the first 10 images of each sweep) with unit_cell +
space_group=I213. Per sweep: % indexed, cell error vs the true cell (reduced P1
cell, or the cubic cell), orientation error vs the true U (after the change of
basis, i.e. modulo the lattice symmetry and the indexing ambiguity). Prints JSON.

Usage (from the repository root, as a module: it borrows helpers from
tests/processing/indexing/test_indexer.py):
    .venv/bin/python -m benchmarks.index_insulin [--spots true|find]
       [--sweeps 19,0,1] [--cache DIR] [--nproc N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from processing.indexing import IndexParams, run_index
from processing.indexing.lattice import niggli_reduce
from processing.models import Experiment, ExperimentList, Scan
from processing.models.crystal import cell_from_real_space
from processing.simulate import simulate
from processing.simulate.params import SimulateParams
from tests.processing.indexing.test_indexer import I_TO_P, misorientation_deg, table_for

warnings.simplefilter("ignore")


def evaluate(out, summary, crystals, cubic, names=None):
    rows = []
    by_id = {e.identifier: e for e in out}
    for r, c in zip(summary["sweeps"], crystals):
        row = {"sweep": r["sweep"] if names is None else names[r["sweep"]], "status": r["status"], "percent_indexed": round(r.get("percent_indexed", 0), 1)}
        if r["status"] == "indexed":
            e = by_id[r["identifier"]]
            A_true = np.asarray(c.A)
            if cubic:
                true_cell = np.asarray(c.cell)
                cell = np.asarray(e.crystal.unit_cell)
                cen = np.eye(3)
            else:
                true_cell = np.asarray(cell_from_real_space(niggli_reduce(I_TO_P @ np.linalg.inv(A_true))[0]))
                cell = np.asarray(cell_from_real_space(niggli_reduce(np.linalg.inv(e.crystal.A))[0]))
                cen = I_TO_P
            row["cell"] = [round(x, 3) for x in cell]
            row["max_length_error_pct"] = round(float(np.max(np.abs(np.sort(cell[:3]) - np.sort(true_cell[:3])) / true_cell[:3]) * 100), 3)
            try:
                row["orientation_error_deg"] = round(misorientation_deg(e.crystal.A, A_true, cen), 4)
            except AssertionError:
                row["orientation_error_deg"] = None
            row["rmsd_xy_z"] = [round(r["rmsd_x_px"], 3), round(r["rmsd_y_px"], 3), round(r["rmsd_z_images"], 3)]
        else:
            row["reason"] = r["reason"]
        rows.append(row)
    ok = [x for x in rows if x["status"] == "indexed"]
    return {"n_indexed_sweeps": len(ok), "n_sweeps": len(rows),
            "median_percent_indexed": float(np.median([x["percent_indexed"] for x in rows])),
            "min_percent_indexed": float(min(x["percent_indexed"] for x in rows)),
            "max_cell_error_pct": max((x["max_length_error_pct"] for x in ok), default=None),
            "max_orientation_error_deg": max((99.0 if x["orientation_error_deg"] is None else x["orientation_error_deg"]
                                          for x in ok), default=None),
            "sweeps": rows}


class _RenderReader:
    """Image reader over a simulated sweep: image i rendered on demand (sequential)."""

    def __init__(self, sweep, pixel_mask):
        self.sweep, self.n = sweep, sweep.n_images
        self.mask = None if pixel_mask is None else (np.asarray(pixel_mask) == 0,)
        self._gen, self._next = None, 0

    def __len__(self):
        return self.n

    def get_mask(self, i=0):
        return self.mask

    def get_raw_data(self, i):
        if self._gen is None or i < self._next:
            self._gen, self._next = self.sweep.images(), 0
        while True:
            img = next(self._gen)
            self._next += 1
            if self._next - 1 == i:
                return (img,)


def found_spots(sim, sweeps, cache):
    """{sweep k: strong-spot xyzobs.px.value} from spot finding on the rendered images."""
    from processing.spotfinding.finder import FindSpotsParams, run_find_spots
    out, seconds = {}, {}
    for k in sweeps:
        path = os.path.join(cache, f"strong_{k}.npz") if cache else None
        if path and os.path.exists(path):
            out[k] = np.load(path)["xyz"]
            continue
        e = sim.experiments[k]
        t0 = time.perf_counter()
        table, _ = run_find_spots(ExperimentList([e]), FindSpotsParams(nproc=1),
                                  readers=[_RenderReader(sim.sweeps[k], sim.pixel_mask)])
        seconds[k] = time.perf_counter() - t0
        out[k] = np.asarray(table["xyzobs.px.value"])
        if path:
            os.makedirs(cache, exist_ok=True)
            np.savez(path + ".tmp.npz", xyz=out[k])
            os.replace(path + ".tmp.npz", path)
        print(f"sweep {k}: {len(out[k])} spots in {seconds[k]:.0f} s", file=sys.stderr, flush=True)
    return out, seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spots", choices=("true", "find"), default="true")
    ap.add_argument("--sweeps", default=None, help="comma-separated sweep numbers (default all)")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--nproc", type=int, default=max(1, min(os.cpu_count() or 1, 4)))
    args = ap.parse_args()
    t0 = time.perf_counter()
    sim = simulate(SimulateParams(preset="insulin-24", mode="images"))
    t_sim = time.perf_counter() - t0
    order = list(range(len(sim.sweeps))) if args.sweeps is None else [int(x) for x in args.sweeps.split(",")]
    pick = sorted(order)
    rng = np.random.default_rng(3)
    experiments, xyzs, crystals = ExperimentList(), [], []
    found, find_s = found_spots(sim, order, args.cache) if args.spots == "find" else ({}, {})
    for k, (s, e) in enumerate(zip(sim.sweeps, sim.experiments)):
        tb = s.table
        strong = (tb["partiality"] > 0.5) & (tb["intensity.true.value"] > np.percentile(tb["intensity.true.value"], 40))
        xyz = tb["xyzcal.px"][strong].copy()
        xyz[:, :2] += rng.normal(0, 0.3, (len(xyz), 2))
        xyz[:, 2] += rng.normal(0, 0.1, len(xyz))
        if k not in pick:
            continue
        if args.spots == "find":
            xyz = found[k]
        xyzs.append(xyz)
        crystals.append(sim.crystals[k])
        experiments.append(Experiment(beam=e.beam, detector=e.detector, goniometer=e.goniometer, scan=e.scan,
                                      imageset=e.imageset, identifier=e.identifier))
    nproc = args.nproc
    out = {"spots": ("run_find_spots on the rendered images" if args.spots == "find"
                     else "simulator true centroids + noise (no spot finding)"),
           "sweeps": pick, "find_spots_s": {k: round(v, 1) for k, v in find_s.items()},
           "simulate_s": round(t_sim, 1),
           "nproc": nproc, "n_spots_per_sweep_median": int(np.median([len(x) for x in xyzs])), "runs": {}}
    runs = {
        "no_prior": (experiments, xyzs, IndexParams(joint=False, nproc=nproc), False),
        "unit_cell_67_109": (experiments, xyzs, IndexParams(joint=False, nproc=nproc,
                                                             unit_cell=(67, 67, 67, 109, 109, 109)), False),
    }
    wedge_expts, wedge_xyz = ExperimentList(), []
    for e, xyz in zip(experiments, xyzs):
        sc = e.scan
        wedge_expts.append(Experiment(beam=e.beam, detector=e.detector, goniometer=e.goniometer,
                                      scan=Scan(image_range=(1, 10), oscillation=sc.oscillation,
                                                exposure_times=sc.exposure_times[:10], epochs=sc.epochs[:10]),
                                      imageset=e.imageset, identifier=e.identifier))
        wedge_xyz.append(xyz[xyz[:, 2] < 10.0])
    runs["wedge_1deg_known_cell"] = (wedge_expts, wedge_xyz,
                                     IndexParams(joint=False, nproc=nproc, unit_cell=(78.1, 78.1, 78.1, 90, 90, 90),
                                                 space_group="I 21 3"), True)
    for name, (ex, xy, params, cubic) in runs.items():
        t = table_for(xy, ex)
        t0 = time.perf_counter()
        res, _, summary = run_index(ex, t, params)
        dt = time.perf_counter() - t0
        r = evaluate(res, summary, crystals, cubic, pick)
        r["seconds"] = round(dt, 1)
        r["seconds_per_sweep_wall"] = round(dt / len(ex), 2)
        out["runs"][name] = r
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
