"""insulin-24 from images to cosym, checked against the truth; prints JSON.

Simulates the ``insulin-24`` preset (24 × 50 images, Eiger 2X 9M, 12 of 24 crystals
in the ambiguous setting), runs ``xtal import → find_spots → index joint=false →
refine → integrate → cosym`` and compares every output crystal's basis with the
truth's reference-setting basis: a data set is consistent when the two differ by a
rotation of I 2 3 relative to the first data set's difference (one setting for all).

    .venv/bin/python benchmarks/cosym_insulin_images.py [--root DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import gemmi
import numpy as np

from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.symmetry import CosymParams, run_cosym

STEPS = [
    ["simulate", "preset=insulin-24", "output_dir=data"],
    ["import", "DATA"],
    ["find_spots", "imported.expt", "nproc=2"],
    ["index", "imported.expt", "strong.refl", "joint=false", "nproc=2"],
    ["refine", "indexed.expt", "indexed.refl"],
    ["integrate", "refined.expt", "refined.refl", "nproc=2"],
]


def consistency(out_experiments, truth) -> tuple[int, float]:
    group = [np.rint(np.array(op.rot) / op.DEN).T for op in gemmi.SpaceGroup("I 2 3").operations().sym_ops]
    Ws = []
    for x in out_experiments:
        k = int(re.search(r"crystal_(\d+)", x.imageset.template or x.imageset.paths[0]).group(1))
        Ws.append(x.crystal.real_space_matrix @ np.array(truth[k]["A_reference"]))
    W0 = np.rint(Ws[0])
    same = sum(any(np.allclose(np.rint(W) @ np.linalg.inv(W0), g) for g in group) for W in Ws)
    return same, max(float(np.abs(W - np.rint(W)).max()) for W in Ws)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=None)
    args = ap.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="insulin24-")
    xtal = [sys.executable, "-m", "processing.cli.main"]
    seconds = {}
    for step in STEPS:
        if step[0] == "simulate" and os.path.isfile(os.path.join(root, "data", "truth.json")):
            continue
        words = step[1:]
        if words == ["DATA"]:
            words = sorted(os.path.join("data", n) for n in os.listdir(os.path.join(root, "data"))
                           if n.endswith("_master.h5"))
        t0 = time.perf_counter()
        subprocess.run(xtal + [step[0], *words], cwd=root, check=True, capture_output=True)
        seconds[step[0]] = round(time.perf_counter() - t0, 1)
    experiments = read_experiments(os.path.join(root, "integrated.expt"))
    reflections = read_reflections(os.path.join(root, "integrated.refl"))
    t0 = time.perf_counter()
    out_e, _, summary = run_cosym(experiments, reflections, CosymParams())
    seconds["cosym"] = round(time.perf_counter() - t0, 1)
    truth = json.load(open(os.path.join(root, "data", "truth.json")))["truth"]["crystals"]
    same, worst = consistency(out_e, truth)
    print(json.dumps({"root": root, "seconds": seconds, "best": summary["best"], "absences": summary["absences_note"],
                      "placed": len(out_e), "excluded": summary["excluded"],
                      "consistent_with_truth": f"{same} of {len(out_e)}", "max_non_integer": worst,
                      "stability": summary["stability"].get("laue_group_agreement")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
