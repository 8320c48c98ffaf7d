"""xtal integrate vs dials.integrate on the same simulated sweeps: CC to the truth,
wall time, peak memory; and dials.scale on xtal's integrated files. Prints JSON.

usage: python benchmarks/integrate_vs_dials.py [preset=tiny] [nproc=2] [workdir=/tmp/xtal-bench-integrate]

Both programs get the true models and the true positions of strong reflections as
"indexed" input (refined.expt/refined.refl), so only integration is compared.
Peak memory is the maximum resident set size of the child process (/usr/bin/time).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from processing.io.expt import read_experiments, write_experiments  # noqa: E402
from processing.io.refl import read_reflections, write_reflections  # noqa: E402
from processing.reflections import Flags, ReflectionTable  # noqa: E402
from processing.simulate import SimulateParams, run_simulate  # noqa: E402


def timed(cmd, cwd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return p.returncode, wall, (int(m.group(1)) / 1024.0 if m else None), p.stdout, p.stderr


def cc_to_truth(table, truths, column):
    from processing.integration.integrator import _hkl_key
    ccs = []
    flag = Flags.integrated_sum if "sum" in column else Flags.integrated_prf
    for k, t in enumerate(truths):
        sub = table.select(table["id"] == k)
        ok = (sub["flags"] & np.uint64(int(flag))) != 0
        sub = sub.select(ok)
        kt = _hkl_key(t["miller_index"])
        order = np.argsort(kt, kind="stable")
        ks = _hkl_key(sub["miller_index"])
        lo = np.searchsorted(kt[order], ks, "left")
        hi = np.searchsorted(kt[order], ks, "right")
        m = np.full(len(sub), -1)
        for s in range(int((hi - lo).max(initial=0))):
            c = order[np.minimum(lo + s, len(order) - 1)]
            good = (lo + s < hi) & (np.abs(t["xyzcal.px"][c, 2] - sub["xyzcal.px"][:, 2]) < 1.0)
            m[good] = c[good]
        sel = m >= 0
        I = sub[column + ".value"][sel]
        V = sub[column + ".variance"][sel]
        truth = t["intensity.true.value"][m[sel]]
        if "prf" in column:
            truth = truth / t["partiality"][m[sel]]
        strong = (V > 0) & (I / np.sqrt(np.maximum(V, 1e-12)) > 3)
        ccs.append(float(np.corrcoef(I[strong], truth[strong])[0, 1]) if strong.sum() > 2 else None)
    return ccs


def main(argv):
    opts = dict(a.split("=", 1) for a in argv)
    preset = opts.get("preset", "tiny")
    nproc = int(opts.get("nproc", "2"))
    work = os.path.abspath(opts.get("workdir", f"/tmp/xtal-bench-integrate-{preset}"))
    sim = os.path.join(work, "sim")
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(os.path.join(sim, "truth.json")):
        run_simulate(SimulateParams(preset=preset, output_dir=sim, seed=1))
    experiments = read_experiments(os.path.join(sim, "truth.expt"))
    truths = [read_reflections(os.path.join(sim, f"truth_reflections_{k:03d}.refl")) for k in range(len(experiments))]
    rng = np.random.default_rng(0)
    tabs = []
    for k, t in enumerate(truths):
        sel = (t["intensity.true.value"] > 2000) & (t["partiality"] > 0.9)
        n = int(sel.sum())
        s = ReflectionTable()
        s["miller_index"] = t["miller_index"][sel]
        s["id"] = np.full(n, k, dtype=np.int32)
        xyz = t["xyzcal.px"][sel] + rng.normal(0, 0.3, (n, 3))
        s["xyzobs.px.value"] = xyz
        s["xyzobs.px.variance"] = np.full((n, 3), 0.09)
        mm = t["xyzcal.mm"][sel].copy()
        s["xyzobs.mm.value"] = mm
        s["xyzobs.mm.variance"] = np.full((n, 3), 1e-6)
        s["xyzcal.px"] = t["xyzcal.px"][sel]
        s["xyzcal.mm"] = mm
        s["s1"] = t["s1"][sel]
        s["panel"] = t["panel"][sel]
        s["entering"] = t["entering"][sel]
        s["bbox"] = np.column_stack([np.floor(xyz[:, 0] - 4), np.ceil(xyz[:, 0] + 4), np.floor(xyz[:, 1] - 4),
                                     np.ceil(xyz[:, 1] + 4), np.floor(xyz[:, 2] - 1),
                                     np.ceil(xyz[:, 2] + 1)]).astype(np.int32)
        s["flags"] = np.full(n, int(Flags.indexed | Flags.strong | Flags.used_in_refinement), dtype=np.uint64)
        tabs.append(s)
    refl = ReflectionTable.concatenate(tabs)
    refl.experiment_identifiers = {k: e.identifier for k, e in enumerate(experiments)}
    for e in experiments:  # DIALS needs the frame indices of a single NeXus file
        e.imageset.single_file_indices = list(range(e.scan.num_images))
    write_experiments(os.path.join(work, "refined.expt"), experiments)
    write_reflections(os.path.join(work, "refined.refl"), refl)
    env = dict(os.environ)
    import hdf5plugin
    env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    out = {"preset": preset, "nproc": nproc, "n_sweeps": len(experiments)}
    # xtal
    xdir = os.path.join(work, "xtal")
    os.makedirs(xdir, exist_ok=True)
    code = ("import sys; from processing.cli.main import COMMANDS, main; "
            "COMMANDS.setdefault('integrate', ('processing.cli.integrate', 'integrate')); sys.exit(main(sys.argv[1:]))")
    env_x = dict(env, PYTHONPATH=ROOT)
    rc, wall, mem, so, se = timed([sys.executable, "-c", code, "integrate", "../refined.expt", "../refined.refl",
                                   f"nproc={nproc}"], xdir, env_x)
    out["xtal"] = {"returncode": rc, "wall_s": wall, "peak_mb": mem}
    if rc == 0:
        t = read_reflections(os.path.join(xdir, "integrated.refl"))
        out["xtal"]["cc_sum"] = cc_to_truth(t, truths, "intensity.sum")
        out["xtal"]["cc_prf"] = cc_to_truth(t, truths, "intensity.prf")
        out["xtal"]["n_integrated"] = int(np.sum((t["flags"] & np.uint64(int(Flags.integrated))) != 0))
    else:
        out["xtal"]["error"] = se[-2000:]
    # dials
    ddir = os.path.join(work, "dials")
    os.makedirs(ddir, exist_ok=True)
    rc, wall, mem, so, se = timed(["/usr/bin/dials.integrate", "../refined.expt", "../refined.refl",
                                   f"nproc={nproc}"], ddir, env)
    out["dials"] = {"returncode": rc, "wall_s": wall, "peak_mb": mem}
    if rc == 0:
        t = read_reflections(os.path.join(ddir, "integrated.refl"))
        out["dials"]["cc_sum"] = cc_to_truth(t, truths, "intensity.sum")
        out["dials"]["cc_prf"] = cc_to_truth(t, truths, "intensity.prf")
        out["dials"]["n_integrated"] = int(np.sum((t["flags"] & np.uint64(int(Flags.integrated))) != 0))
    else:
        out["dials"]["error"] = (so + se)[-2000:]
    # dials.scale on xtal's files
    if out["xtal"]["returncode"] == 0:
        rc, wall, mem, so, se = timed(["/usr/bin/dials.scale", "../xtal/integrated.expt", "../xtal/integrated.refl"],
                                      ddir, env)
        m = re.search(r"Profile intensities determined|Summation intensities determined|Combined intensities", so)
        out["dials_scale_on_xtal"] = {"returncode": rc, "wall_s": wall,
                                      "intensity_choice": m.group(0) if m else None}
        if rc != 0:
            out["dials_scale_on_xtal"]["error"] = (so + se)[-1500:]
    if out["xtal"].get("wall_s") and out["dials"].get("wall_s") and out["dials"]["returncode"] == 0:
        out["time_ratio_xtal_over_dials"] = out["xtal"]["wall_s"] / out["dials"]["wall_s"]
        if out["xtal"]["peak_mb"] and out["dials"]["peak_mb"]:
            out["memory_ratio_xtal_over_dials"] = out["xtal"]["peak_mb"] / out["dials"]["peak_mb"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
