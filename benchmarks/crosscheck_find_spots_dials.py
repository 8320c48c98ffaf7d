"""Cross-check ``xtal find_spots`` against ``dials.find_spots`` on the same images; JSON.

For each data set both programs run with default parameters on the same
``imported.expt`` (written by dials.import); xtal's spots are matched to DIALS's
(nearest centroid in x, y, z within 1 px) and the script reports spot counts, the
matched fraction both ways, the largest centroid difference, and how many matched
spots have identical bbox, n_signal, summed intensity and centroid variance.
Finally ``dials.index`` is run on xtal's strong.refl (with DIALS's imported.expt)
to show DIALS reads it.

Data sets: the real Pilatus 6M and Eiger 16M frames (``../shared/data/real/
images``) and, if the simulator is available, the simulated ``tiny`` set
(3 sweeps × 10 images, Eiger 1M NeXus; DIALS reads its bitshuffle data through
hdf5plugin's filters).

Usage: .venv/bin/python benchmarks/crosscheck_find_spots_dials.py [--no-sim] [--no-index]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from dials_env import dials_env  # benchmarks/dials_env.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "images"


def _run(cmd, cwd, env):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    return p.stdout


def _read(path):
    from processing.io.refl import read_reflections
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_reflections(str(path))


def compare(x, d) -> dict:
    from scipy.spatial import cKDTree

    out = {"n_xtal": len(x), "n_dials": len(d)}
    if len(x) == 0 or len(d) == 0:
        return out
    xs = x["xyzobs.px.value"] + 1e6 * x["id"][:, None]  # never match across experiments
    ds = d["xyzobs.px.value"] + 1e6 * d["id"][:, None]
    dist, j = cKDTree(xs).query(ds)
    m = dist < 1.0
    dist_x, _ = cKDTree(ds).query(xs)
    out["fraction_of_dials_matched"] = round(float(m.mean()), 5)
    out["fraction_of_xtal_matched"] = round(float((dist_x < 1.0).mean()), 5)
    out["count_difference_percent"] = round(100.0 * (len(x) - len(d)) / len(d), 3)
    out["max_centroid_difference_px"] = float(dist[m].max()) if m.any() else None
    jm = j[m]
    out["matched_identical"] = {
        "bbox": int(np.all(x["bbox"][jm] == d["bbox"][m], axis=1).sum()),
        "n_signal": int((x["n_signal"][jm] == d["n_signal"][m]).sum()),
        "intensity.sum.value": int((x["intensity.sum.value"][jm] == d["intensity.sum.value"][m]).sum()),
        "xyzobs.px.value": int(np.all(x["xyzobs.px.value"][jm] == d["xyzobs.px.value"][m], axis=1).sum()),
        "xyzobs.px.variance_within_1e-9": int(np.all(np.abs(x["xyzobs.px.variance"][jm] - d["xyzobs.px.variance"][m])
                                                     < 1e-9, axis=1).sum()),
    }
    out["n_matched"] = int(m.sum())
    out["same_order_and_values"] = bool(len(x) == len(d) and all(
        np.array_equal(x[c], d[c]) for c in ("bbox", "n_signal", "intensity.sum.value", "xyzobs.px.value", "panel", "id")))
    return out


def run_dataset(name, import_args, folder: Path, env, index: bool):
    folder.mkdir(parents=True, exist_ok=True)
    _run(["dials.import", *import_args, "output.experiments=imported.expt"], folder, env)
    _run(["dials.find_spots", "imported.expt", "nproc=1", "output.reflections=dials.refl",
          "output.shoeboxes=False"], folder, env)
    _run([sys.executable, "-m", "processing.cli.find_spots", "imported.expt", "nproc=1",
          "output.reflections=xtal.refl"], folder, env)
    res = {"dataset": name, **compare(_read(folder / "xtal.refl"), _read(folder / "dials.refl"))}
    if index:
        p = subprocess.run(["dials.index", "imported.expt", "xtal.refl", "output.experiments=xi.expt",
                            "output.reflections=xi.refl"], cwd=folder, env=env, capture_output=True, text=True)
        info = {"exit_code": p.returncode}
        if p.returncode == 0 and (folder / "xi.refl").exists():
            from processing.reflections import Flags
            xi = _read(folder / "xi.refl")
            info["n_indexed"] = int(xi.get_flags(int(Flags.indexed)).sum())
            info["n_reflections"] = len(xi)
        else:
            info["error"] = (p.stderr.strip().splitlines() or ["?"])[-1]
        res["dials_index_on_xtal_strong_refl"] = info
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--no-index", action="store_true")
    args = ap.parse_args(argv)
    env = dials_env()
    results = []
    with tempfile.TemporaryDirectory(prefix="xtal_fs_cross_") as tmp:
        tmp = Path(tmp)
        for name in ("DLS_I03_smargon_0001", "dlsnxs2cbf_therm_0001"):
            src = REAL / f"{name}.cbf"
            if not src.exists():
                results.append({"dataset": name, "skipped": "absent"})
                continue
            results.append(run_dataset(name, [str(src)], tmp / name, env, index=False))
        if not args.no_sim:
            try:
                from processing.simulate import SimulateParams, run_simulate
                sim = tmp / "tiny"
                run_simulate(SimulateParams(preset="tiny", output_dir=str(sim), seed=1))
                masters = sorted(str(p) for p in sim.glob("crystal_*_master.h5"))
                results.append(run_dataset("simulated tiny (3 x 10 images)", masters, sim, env,
                                           index=not args.no_index))
            except ImportError as exc:
                results.append({"dataset": "simulated tiny", "skipped": str(exc)})
    print(json.dumps({"results": results}, indent=1))


if __name__ == "__main__":
    main()
