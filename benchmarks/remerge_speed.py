"""Fast re-merge (issue 13): merging + statistics at a new d_min for insulin-24 reflection-level
data without rescaling; prints JSON.

The chain (``xtal simulate preset=insulin-24 mode=reflections``, ``xtal cosym stability=false``,
``xtal scale``) runs once in ``--work`` (reused when scaled.expt/.refl are there). Then, for
5 new d_min values, each re-merge is timed three ways:

* ``from_files``: read scaled.expt/.refl, take the scaled observations, merge (IMEAN, I±,
  French–Wilson F) and the merging statistics — what a re-merge costs with nothing cached;
* ``from_cache``: load the observations' arrays from an .npz (``ScaledObservations.to_arrays``,
  written once) and re-merge — what the web pays when it keeps that cache file;
* ``in_memory``: re-merge the observations already in memory (statistics only too).

The target is a median ≤ 2 s for 24 data sets.

    .venv/bin/python benchmarks/remerge_speed.py [--work /tmp/insulin24_remerge]
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

import numpy as np

from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.merging.remerge import ScaledObservations, remerge, remerge_observations

XTAL = [sys.executable, "-m", "processing.cli.main"]
D_MINS = (1.9, 1.7, 1.5, 1.4, 1.3)


def scaled_chain(work: str, preset: str = "insulin-24") -> dict:
    """simulate → cosym → scale in ``work`` (skipped when scaled.* exist); the seconds each took."""
    os.makedirs(work, exist_ok=True)
    if os.path.exists(os.path.join(work, "scaled.refl")) and os.path.exists(os.path.join(work, "scaled.expt")):
        return {"reused": True}
    seconds = {}
    for name, args in (("simulate", ["simulate", f"preset={preset}", "mode=reflections", f"output_dir={work}"]),
                       ("cosym", ["cosym", "integrated.expt", "integrated.refl", "stability=false"]),
                       ("scale", ["scale", "symmetrized.expt", "symmetrized.refl"])):
        t0 = time.perf_counter()
        p = subprocess.run(XTAL + args, cwd=work, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"xtal {name} failed:\n{p.stderr[-2000:]}")
        seconds[name] = round(time.perf_counter() - t0, 1)
    return {"reused": False, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="folder of the chain (default: a new temporary folder)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="remerge_speed_")
    chain = scaled_chain(work)
    expt, refl = os.path.join(work, "scaled.expt"), os.path.join(work, "scaled.refl")
    cache = os.path.join(work, "scaled_observations.npz")

    # warm-up (imports, first gemmi calls) not timed
    e, r = read_experiments(expt), read_reflections(refl)
    obs = ScaledObservations.from_reflections(e, r)
    remerge_observations(obs, d_min=2.0)
    t0 = time.perf_counter()
    np.savez(cache, **obs.to_arrays())
    save_s = time.perf_counter() - t0

    d_mins = [D_MINS[k % len(D_MINS)] for k in range(args.repeats)]
    rows = []
    for d_min in d_mins:
        t0 = time.perf_counter()
        e, r = read_experiments(expt), read_reflections(refl)
        t_read = time.perf_counter()
        obs = ScaledObservations.from_reflections(e, r)
        t_obs = time.perf_counter()
        merged, summary = remerge_observations(obs, d_min=d_min)
        t_merge = time.perf_counter()

        with np.load(cache) as z:
            cached = ScaledObservations.from_arrays(dict(z))
        t_load = time.perf_counter()
        remerge_observations(cached, d_min=d_min)
        t_cached = time.perf_counter()
        remerge_observations(cached, d_min=d_min, merge=False)
        t_stats = time.perf_counter()
        remerge(e, r, d_min=d_min)  # the one-call form, from the tables in memory
        t_call = time.perf_counter()
        rows.append({"d_min": d_min, "n_observations": summary["n_observations"], "n_unique": len(merged),
                     "last_shell_d_min": summary["merging_statistics"]["shells"][-1]["d_min"],
                     "read_files_s": t_read - t0, "extract_observations_s": t_obs - t_read,
                     "merge_and_statistics_s": t_merge - t_obs, "from_files_s": t_merge - t0,
                     "load_cache_s": t_load - t_merge, "from_cache_s": t_cached - t_merge,
                     "statistics_only_in_memory_s": t_stats - t_cached, "remerge_call_in_memory_s": t_call - t_stats})

    def median(key):
        return round(statistics.median(r[key] for r in rows), 3)

    keys = ("read_files_s", "extract_observations_s", "merge_and_statistics_s", "from_files_s", "load_cache_s",
            "from_cache_s", "statistics_only_in_memory_s", "remerge_call_in_memory_s")
    out = {
        "work": work, "chain": chain, "n_datasets": len(e), "n_scaled_observations": len(obs),
        "repeats": args.repeats, "d_mins": d_mins,
        "median_s": {k: median(k) for k in keys},
        "target_s": 2.0, "meets_target_from_files": median("from_files_s") <= 2.0,
        "cache": {"path": cache, "mb": round(os.path.getsize(cache) / 1e6, 2), "save_s": round(save_s, 3),
                  "columns": sorted(obs.to_arrays())},
        "refl_mb": round(os.path.getsize(refl) / 1e6, 1),
        "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
