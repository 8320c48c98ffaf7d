"""Spot finding on simulated insulin-24 sweeps (Eiger 2X 9M) against the truth; prints JSON.

For each sweep: the fraction of true reflections with I/σ > 5 (away from masked
pixels and the scan ends) that xtal finds within 2 px / 2 images, and the median
centroid error of fully recorded ones. Usage:
    .venv/bin/python benchmarks/find_spots_insulin.py [n_crystals=2] [n_images=50]
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import minimum_filter
from scipy.spatial import cKDTree

from processing.io.expt import read_experiments
from processing.io.images import open_imageset
from processing.io.refl import read_reflections
from processing.simulate import SimulateParams, run_simulate
from processing.spotfinding import FindSpotsParams, run_find_spots


def recall(table, k, e, truth):
    reader = open_imageset(e.imageset, e.scan)
    mask = reader.get_mask()[0]
    im = reader.get_raw_data(0)[0]
    bg = float(np.mean(np.clip(im[mask], 0, 50)))
    xyz, inten = truth["xyzcal.px"], truth["intensity.true.value"]
    area = np.pi * (3 * truth["sigma_px"]) ** 2 * np.maximum(1, 6 * truth["sigma_z"])
    i_over_sigma = inten / np.sqrt(inten + bg * area)
    nx, ny = e.detector[0].image_size
    n_img = e.scan.num_images
    xi, yi = np.floor(xyz[:, 0]).astype(int), np.floor(xyz[:, 1]).astype(int)
    inside = (xi >= 3) & (xi < nx - 3) & (yi >= 3) & (yi < ny - 3) & (xyz[:, 2] > 0.5) & (xyz[:, 2] < n_img - 0.5)
    clear = minimum_filter(mask.astype(np.uint8), size=7).astype(bool)
    usable = np.zeros(len(xyz), bool)
    usable[inside] = clear[yi[inside], xi[inside]]
    sel = usable & (i_over_sigma > 5)
    by_cut = {}
    obs = table["xyzobs.px.value"][table["id"] == k]
    dist, j = cKDTree(obs[:, :2]).query(xyz[:, :2])
    found = (dist < 2) & (np.abs(obs[j, 2] - xyz[:, 2]) < 2)
    for cut in (5, 10, 20, 50):
        c = usable & (i_over_sigma > cut)
        by_cut[f"i_sigma_gt_{cut}"] = {"n": int(c.sum()), "found": round(float(found[c].mean()), 4)}
    full = sel & found & (truth["partiality"] > 0.99)
    return {"sweep": k, "n_true_i_sigma_gt_5": int(sel.sum()), "found_fraction": round(float(found[sel].mean()), 4),
            "found_by_i_sigma": by_cut,
            "median_centroid_error_px": round(float(np.median(dist[full])), 4), "n_spots": int((table["id"] == k).sum())}


def main() -> int:
    words = dict(w.split("=", 1) for w in sys.argv[1:])
    n_crystals, n_images = int(words.get("n_crystals", 2)), int(words.get("n_images", 50))
    with tempfile.TemporaryDirectory(prefix="xtal_fs_insulin_") as tmp:
        t0 = time.perf_counter()
        # ordinary crystals only (no weak / non-isomorphous / damaged ones)
        run_simulate(SimulateParams(preset="insulin-24", output_dir=tmp, n_crystals=n_crystals,
                                    n_images=n_images, seed=5, n_weak=0, n_non_isomorphous=0, n_damaged=0))
        t_sim = time.perf_counter() - t0
        experiments = read_experiments(str(Path(tmp) / "truth.expt"))
        t0 = time.perf_counter()
        table, summary = run_find_spots(experiments, FindSpotsParams())
        t_find = time.perf_counter() - t0
        rows = [recall(table, k, e, read_reflections(str(Path(tmp) / f"truth_reflections_{k:03d}.refl")))
                for k, e in enumerate(experiments)]
    n = n_crystals * n_images
    print(json.dumps({"preset": "insulin-24", "n_crystals": n_crystals, "n_images": n_images,
                      "simulate_s": round(t_sim, 1), "find_spots_s": round(t_find, 1),
                      "images_per_s": round(n / t_find, 2),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "sweeps": rows,
                      "all_found_ge_98pct": all(r["found_fraction"] >= 0.98 for r in rows),
                      "all_median_error_lt_0p2": all(r["median_centroid_error_px"] < 0.2 for r in rows)},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
