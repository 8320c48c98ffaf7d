"""Spot-finding speed and memory: ``xtal find_spots`` vs ``dials.find_spots``; prints JSON.

Data sets (built in a temporary folder):

* ``eiger16m_cbf``: the real Eiger 16M frame (``../shared/data/real/images/
  dlsnxs2cbf_therm_0001.cbf``) linked as N images, imported as stills (one
  experiment per image: xtal's nproc does not help there, DIALS's does);
* ``pilatus6m_cbf``: the real Pilatus 6M frame, likewise;
  (identical frames as a sweep would turn every spot into a rod through the sweep)
* ``eiger9m_nexus``: simulated Eiger 2X 9M NeXus images (``xtal simulate
  detector=eiger9m``), if the simulator is available (DIALS reads the bitshuffle
  data through hdf5plugin's filters, HDF5_PLUGIN_PATH).

Both programs run on the same ``imported.expt`` (written by dials.import), with the
same nproc, alternating, in the same session; each figure is the median of
``--repeats`` runs (default 3) of the whole command (start-up included):
wall seconds, images per second and peak RSS (``/usr/bin/time -f %M``, KB →
MB). ``threshold_9m`` times the threshold alone on one 3262 × 3108 (Eiger 2X 9M
size) image cut from the Eiger 16M frame: DIALS's C++
``DispersionExtendedThreshold`` (called from DIALS's python) vs xtal's kernels,
one core each, median of 7 calls.

Usage: .venv/bin/python benchmarks/find_spots_speed.py [--images 20] [--nproc 1,2]
       [--repeats 3] [--no-sim]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dials_env import dials_env  # benchmarks/dials_env.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "images"
XTAL = [sys.executable, "-m", "processing.cli.find_spots"]
TIME = "/usr/bin/time"

_DIALS_THRESHOLD = r"""
import sys, time, json, statistics
from dxtbx.model.experiment_list import ExperimentListFactory
from dials.algorithms.image import threshold
from dials.array_family import flex
el = ExperimentListFactory.from_filenames([sys.argv[1]])
iset = el[0].imageset
im = iset.get_corrected_data(0)[0][0:3262, 0:3108]
mk = iset.get_mask(0)[0][0:3262, 0:3108]
alg = threshold.DispersionExtendedThreshold(im.all(), (3, 3), 6, 3, 0, 2)
res = flex.bool(flex.grid(im.all()))
alg(im, mk, res)
ts = []
for _ in range(7):
    t = time.perf_counter(); alg(im, mk, res); ts.append(time.perf_counter() - t)
print(json.dumps({"seconds": statistics.median(ts), "n_strong": res.count(True)}))
"""


def _timed(cmd, cwd, env):
    """(wall s, peak MB) of one run; raises on failure."""
    t = time.perf_counter()
    p = subprocess.run([TIME, "-f", "%M", *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    peak_kb = int(p.stderr.strip().splitlines()[-1])
    return wall, peak_kb / 1024.0


def _sweep_of_copies(src: Path, n: int, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = src.name.rsplit("_", 1)[0]
    paths = []
    for k in range(1, n + 1):
        p = folder / f"{stem}_{k:04d}.cbf"
        if not p.exists():
            os.symlink(src, p)
        paths.append(str(p))
    return paths


def _dials_import(args, folder: Path, env):
    p = subprocess.run(["dials.import", *args, "output.experiments=imported.expt"], cwd=folder,
                       env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"dials.import failed: {p.stderr[-1500:]}")
    return folder / "imported.expt"


def _count_refl(path: Path) -> int:
    import warnings

    from processing.io.refl import read_reflections
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(read_reflections(str(path)))


def bench_dataset(name, folder: Path, n_images: int, nprocs, repeats, env):
    out = {"n_images": n_images, "runs": []}
    for nproc in nprocs:
        xs, ds = [], []
        for _ in range(repeats):  # alternate so both see the same machine load
            xs.append(_timed([*XTAL, "imported.expt", f"nproc={nproc}", "output.reflections=xtal.refl"],
                             folder, env))
            ds.append(_timed(["dials.find_spots", "imported.expt", f"nproc={nproc}",
                              "output.reflections=dials.refl", "output.shoeboxes=False"], folder, env))
        xw = statistics.median(w for w, _ in xs)
        dw = statistics.median(w for w, _ in ds)
        out["runs"].append({
            "nproc": nproc,
            "xtal": {"wall_s": round(xw, 3), "images_per_s": round(n_images / xw, 2),
                     "peak_mb": round(statistics.median(m for _, m in xs), 1),
                     "walls": [round(w, 3) for w, _ in xs]},
            "dials": {"wall_s": round(dw, 3), "images_per_s": round(n_images / dw, 2),
                      "peak_mb": round(statistics.median(m for _, m in ds), 1),
                      "walls": [round(w, 3) for w, _ in ds]},
            "speed_ratio_xtal_over_dials": round(dw / xw, 2),
            "memory_ratio_xtal_over_dials": round(statistics.median(m for _, m in xs)
                                                  / statistics.median(m for _, m in ds), 2),
            "n_spots": {"xtal": _count_refl(folder / "xtal.refl"), "dials": _count_refl(folder / "dials.refl")},
        })
    return out


def bench_threshold_9m(env):
    import numpy as np

    from processing.io.images import open_image_file
    from processing.spotfinding import DispersionThreshold

    src = REAL / "dlsnxs2cbf_therm_0001.cbf"
    p = subprocess.run(["/usr/bin/python3", "-c", _DIALS_THRESHOLD, str(src)], capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": p.stderr[-1500:]}
    dials = json.loads(p.stdout.strip().splitlines()[-1])
    f = open_image_file(str(src))
    im = np.ascontiguousarray(f.get_raw_data(0)[0][:3262, :3108])
    mk = np.ascontiguousarray(f.get_mask()[0][:3262, :3108])
    tr = f.models()[1][0].trusted_range
    th = DispersionThreshold()
    idx, _ = th.strong_pixels(im, mk, tr)
    ts = []
    for _ in range(7):
        t = time.perf_counter()
        idx, _ = th.strong_pixels(im, mk, tr)
        ts.append(time.perf_counter() - t)
    x = statistics.median(ts)
    return {"image": "3262x3108 cut of the Eiger 16M frame", "dials_s": round(dials["seconds"], 4),
            "xtal_s": round(x, 4), "speed_ratio_xtal_over_dials": round(dials["seconds"] / x, 2),
            "n_strong": {"xtal": int(len(idx)), "dials": dials["n_strong"]}}


def simulate_9m(folder: Path, n_images: int):
    from processing.simulate import SimulateParams, run_simulate
    run_simulate(SimulateParams(preset="insulin-24", n_crystals=1, n_images=n_images, n_weak=0,
                                n_non_isomorphous=0, n_damaged=0, output_dir=str(folder), seed=7))
    return [str(folder / "crystal_000_master.h5")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--nproc", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-sim", action="store_true")
    args = ap.parse_args(argv)
    nprocs = [int(v) for v in args.nproc.split(",")]
    env = dials_env()
    result = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
              "repeats": args.repeats, "datasets": {}}
    result["threshold_9m"] = bench_threshold_9m(env)
    with tempfile.TemporaryDirectory(prefix="xtal_fs_bench_") as tmp:
        tmp = Path(tmp)
        for name, fname in (("eiger16m_cbf", "dlsnxs2cbf_therm_0001.cbf"),
                            ("pilatus6m_cbf", "DLS_I03_smargon_0001.cbf")):
            src = REAL / fname
            if not src.exists():
                result["datasets"][name] = {"skipped": f"{src} absent"}
                continue
            folder = tmp / name
            files = _sweep_of_copies(src, args.images, folder)
            # N copies of one frame imported as stills (2-D spot finding per image):
            # as a sweep, identical frames would make every spot a rod through it
            _dials_import([*files, "convert_sequences_to_stills=True"], folder, env)
            result["datasets"][name] = bench_dataset(name, folder, args.images, nprocs, args.repeats, env)
        if not args.no_sim:
            try:
                folder = tmp / "eiger9m_nexus"
                folder.mkdir()
                files = simulate_9m(folder, args.images)
                _dials_import(files, folder, env)
                result["datasets"]["eiger9m_nexus"] = bench_dataset("eiger9m_nexus", folder, args.images,
                                                                    nprocs, args.repeats, env)
            except Exception as exc:  # noqa: BLE001 - report, keep the other numbers
                result["datasets"]["eiger9m_nexus"] = {"skipped": f"{type(exc).__name__}: {str(exc)[:500]}"}
    result["machine"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
