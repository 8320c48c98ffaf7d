"""xtal vs DIALS from the images to integrated intensities, on the same simulated sweeps:
CC of summation and profile-fitted intensities to the truth, wall time, peak memory;
and whether dials.scale accepts xtal's integrated files. Prints JSON.

usage: python benchmarks/integrate_vs_dials.py [preset=tiny] [n_crystals=…] [n_images=…]
           [nproc=2] [repeats=2] [workdir=/tmp/xtal-bench-integrate-<preset>]

Each sweep is processed alone by both programs with the same chain
(import → find_spots → index with the known cell and space group → refine →
integrate), so neither gets truth-derived input. Integrated reflections are mapped to
the simulator's truth (truth_reflections_<k>.refl): first by predicted position
(nearest true reflection within 2 px and 1 image), which gives the integer matrix
between the program's indexing setting and the truth's (the settings of an indexing
ambiguity differ by such an operator), then by Miller index through that matrix and
the nearest image. CCs use reflections with I/σ > 3; summation is compared with the
recorded counts, profile fitting with the full counts (recorded / partiality), as
both programs' prf estimates the full intensity.

Wall time and peak memory are per stage and for the chain; integrate is run
``repeats`` times and the median reported. Peak memory is the largest total resident
set size of the process tree (sampled from /proc every 50 ms, so worker processes
count), with /usr/bin/time's maximum single-process RSS alongside.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.reflections import Flags
from processing.simulate import SimulateParams, run_simulate

DIALS_BIN = "/usr/bin"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024.0


# --------------------------------------------------------------------------- running

def _tree_rss_mb(root: int) -> float:
    """Total RSS (MB) of ``root`` and all its descendants."""
    parent = {}
    rss = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            with open(f"/proc/{d}/statm") as f:
                rss[int(d)] = int(f.read().split()[1]) * PAGE_KB / 1024.0
            parent[int(d)] = ppid
        except (OSError, ValueError, IndexError):
            continue
    total = 0.0
    for pid, r in rss.items():
        p = pid
        while p and p != root:
            p = parent.get(p, 0)
        if p == root:
            total += r
    return total


def timed(cmd, cwd, env, timeout=3600):
    """Run ``cmd``; returns dict(returncode, wall_s, peak_mb (tree), max_rss_mb, stdout, stderr)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-v"] + cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    peak = [0.0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_mb(p.pid))
            done.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        so, se = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", se)
    return {"returncode": p.returncode, "wall_s": round(wall, 2), "peak_mb": round(peak[0], 1),
            "max_rss_mb": round(int(m.group(1)) / 1024.0, 1) if m else None, "stdout": so, "stderr": se}


def chain_commands(program: str, master: str, cell: str, sg: str, nproc: int):
    if program == "xtal":
        xtal = os.path.join(os.path.dirname(sys.executable), "xtal")
        x = [xtal] if os.path.exists(xtal) else [sys.executable, "-m", "processing.cli.main"]
        return [("import", x + ["import", master]),
                ("find_spots", x + ["find_spots", "imported.expt", f"nproc={nproc}"]),
                ("index", x + ["index", "imported.expt", "strong.refl", f"unit_cell={cell}", f"space_group={sg}"]),
                ("refine", x + ["refine", "indexed.expt", "indexed.refl"]),
                ("integrate", x + ["integrate", "refined.expt", "refined.refl", f"nproc={nproc}"])]
    d = DIALS_BIN
    return [("import", [f"{d}/dials.import", master]),
            ("find_spots", [f"{d}/dials.find_spots", "imported.expt", "nproc=1"]),  # nproc=2 crashes here
            ("index", [f"{d}/dials.index", "imported.expt", "strong.refl", f"unit_cell={cell}", f"space_group={sg}"]),
            ("refine", [f"{d}/dials.refine", "indexed.expt", "indexed.refl"]),
            ("integrate", [f"{d}/dials.integrate", "refined.expt", "refined.refl", f"nproc={nproc}"])]


def run_chain(program, master, wd, cell, sg, nproc, env, repeats):
    os.makedirs(wd, exist_ok=True)
    stages = {}
    for name, cmd in chain_commands(program, master, cell, sg, nproc):
        runs = [timed(cmd, wd, env)]
        if name == "integrate" and runs[0]["returncode"] == 0:
            runs += [timed(cmd, wd, env) for _ in range(repeats - 1)]
        r = runs[0]
        stages[name] = {"returncode": r["returncode"],
                        "wall_s": round(statistics.median(x["wall_s"] for x in runs), 2),
                        "peak_mb": round(statistics.median(x["peak_mb"] for x in runs), 1),
                        "max_rss_mb": r["max_rss_mb"]}
        if len(runs) > 1:
            stages[name]["wall_runs_s"] = [x["wall_s"] for x in runs]
        if r["returncode"] != 0:
            stages[name]["error"] = (r["stdout"] + r["stderr"])[-1500:]
            break
    ok = all(s["returncode"] == 0 for s in stages.values()) and "integrate" in stages
    return stages, ok


# --------------------------------------------------------------------------- truth

def _key(h):
    h = np.asarray(h, dtype=np.int64) + 1024
    return (h[:, 0] << 22) | (h[:, 1] << 11) | h[:, 2]


def map_to_truth(table, truth):
    """Index of the true reflection of each row (−1 if none) and the setting matrix."""
    from scipy.spatial import cKDTree
    out = np.full(len(table), -1, dtype=np.int64)
    xyz_t = truth["xyzcal.px"]
    xyz = table["xyzcal.px"]
    tree = cKDTree(xyz_t * np.array([1.0, 1.0, 2.0]))
    dist, nn = tree.query(xyz * np.array([1.0, 1.0, 2.0]), distance_upper_bound=2.0)
    close = np.isfinite(dist)
    if close.sum() < 10:
        return out, None
    h = table["miller_index"][close].astype(float)
    ht = truth["miller_index"][nn[close]].astype(float)
    M, *_ = np.linalg.lstsq(h, ht, rcond=None)  # ht ≈ h @ M
    M = np.rint(M).astype(np.int64)
    if abs(round(np.linalg.det(M))) != 1:
        return out, None
    hm = table["miller_index"].astype(np.int64) @ M
    kt = _key(truth["miller_index"])
    order = np.argsort(kt, kind="stable")
    ks = _key(hm)
    lo = np.searchsorted(kt[order], ks, "left")
    hi = np.searchsorted(kt[order], ks, "right")
    best = np.full(len(table), np.inf)
    for s in range(int((hi - lo).max(initial=0))):
        c = order[np.minimum(lo + s, len(order) - 1)]
        dz = np.abs(xyz_t[c, 2] - xyz[:, 2])
        good = (lo + s < hi) & (dz < 1.5) & (dz < best)
        out[good] = c[good]
        best[good] = dz[good]
    return out, M.T.tolist()


def score(table, truth):
    m, M = map_to_truth(table, truth)
    res = {"n_rows": int(len(table)), "n_matched": int((m >= 0).sum()), "hkl_to_truth": M}
    for kind, flag in (("sum", Flags.integrated_sum), ("prf", Flags.integrated_prf)):
        col = f"intensity.{kind}"
        if col + ".value" not in table:
            continue
        ok = ((table["flags"] & np.uint64(int(flag))) != 0) & (m >= 0)
        I = table[col + ".value"][ok]
        V = table[col + ".variance"][ok]
        t = truth["intensity.true.value"][m[ok]]
        if kind == "prf":
            t = t / truth["partiality"][m[ok]]
        strong = (V > 0) & (I > 3 * np.sqrt(np.maximum(V, 0)))
        res[f"n_{kind}"] = int(ok.sum())
        res[f"n_{kind}_ios_gt_3"] = int(strong.sum())
        res[f"cc_{kind}"] = round(float(np.corrcoef(I[strong], t[strong])[0, 1]), 5) if strong.sum() > 2 else None
        sel = (V > 0) & (t < 20 * np.sqrt(np.maximum(V, 1e-12)))
        if sel.sum() > 10:
            res[f"sd_norm_dev_{kind}"] = round(float(np.std((I - t)[sel] / np.sqrt(V[sel]))), 3)
    if "intensity.prf.value" in table:
        both = (((table["flags"] & np.uint64(int(Flags.integrated_sum))) != 0)
                & ((table["flags"] & np.uint64(int(Flags.integrated_prf))) != 0) & (table["intensity.sum.variance"] > 0)
                & (table["intensity.prf.variance"] > 0))
        ios_s = table["intensity.sum.value"][both] / np.sqrt(table["intensity.sum.variance"][both])
        ios_p = table["intensity.prf.value"][both] / np.sqrt(table["intensity.prf.variance"][both])
        weak = ios_s < 5
        if weak.sum():
            res["weak_mean_ios_sum"] = round(float(ios_s[weak].mean()), 3)
            res["weak_mean_ios_prf"] = round(float(ios_p[weak].mean()), 3)
    return res


# --------------------------------------------------------------------------- main

def main(argv):
    opts = dict(a.split("=", 1) for a in argv)
    preset = opts.get("preset", "tiny")
    nproc = int(opts.get("nproc", "2"))
    repeats = int(opts.get("repeats", "2"))
    sim_kw = {k: int(opts[k]) for k in ("n_crystals", "n_images") if k in opts}
    tag = preset + "".join(f"-{k}{v}" for k, v in sim_kw.items())
    work = os.path.abspath(opts.get("workdir", f"/tmp/xtal-bench-integrate-{tag}"))
    sim = os.path.join(work, "sim")
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(os.path.join(sim, "truth.json")):
        run_simulate(SimulateParams(preset=preset, output_dir=sim, seed=1, **sim_kw))
    with open(os.path.join(sim, "truth.json")) as f:
        tj = json.load(f)["truth"]
    cell = ",".join(f"{v:g}" for v in tj["unit_cell"])
    sg = tj["space_group"].replace(" ", "")
    n_sweeps = len(read_experiments(os.path.join(sim, "truth.expt")))
    env = dict(os.environ)
    import hdf5plugin
    env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    out = {"preset": preset, **sim_kw, "nproc": nproc, "integrate_repeats": repeats, "n_sweeps": n_sweeps,
           "unit_cell": cell, "space_group": sg, "sweeps": []}
    totals = {p: {"chain_wall_s": 0.0, "integrate_wall_s": 0.0, "chain_peak_mb": 0.0, "integrate_peak_mb": 0.0}
              for p in ("xtal", "dials")}
    xtal_ok_dirs = []
    for k in range(n_sweeps):
        master = os.path.join(sim, f"crystal_{k:03d}_master.h5")
        truth = read_reflections(os.path.join(sim, f"truth_reflections_{k:03d}.refl"))
        entry = {"sweep": k}
        for program in ("xtal", "dials"):
            wd = os.path.join(work, f"{program}_{k:03d}")
            shutil.rmtree(wd, ignore_errors=True)
            stages, ok = run_chain(program, master, wd, cell, sg, nproc, env, repeats)
            e = {"ok": ok, "stages": stages}
            if ok:
                table = read_reflections(os.path.join(wd, "integrated.refl"))
                e.update(score(table, truth))
                t = totals[program]
                t["chain_wall_s"] += sum(s["wall_s"] for s in stages.values())
                t["integrate_wall_s"] += stages["integrate"]["wall_s"]
                t["chain_peak_mb"] = max(t["chain_peak_mb"], max(s["peak_mb"] for s in stages.values()))
                t["integrate_peak_mb"] = max(t["integrate_peak_mb"], stages["integrate"]["peak_mb"])
                if program == "xtal":
                    xtal_ok_dirs.append(wd)
            entry[program] = e
        out["sweeps"].append(entry)
    out["totals"] = {p: {k: round(v, 2) for k, v in t.items()} for p, t in totals.items()}
    # dials.scale on xtal's integrated files (all sweeps together)
    if xtal_ok_dirs:
        sd = os.path.join(work, "dials_scale_on_xtal")
        shutil.rmtree(sd, ignore_errors=True)
        os.makedirs(sd)
        files = []
        for d in xtal_ok_dirs:
            files += [os.path.join(d, "integrated.expt"), os.path.join(d, "integrated.refl")]
        r = timed([f"{DIALS_BIN}/dials.scale"] + files, sd, env)
        so = r["stdout"]
        m = re.search(r"(Profile|Summation|Combined) intensities[^\n]*", so)
        cc = re.findall(r"CC half[^\n]*", so)
        s = {"returncode": r["returncode"], "wall_s": r["wall_s"], "intensity_choice": m.group(0) if m else None}
        if cc:
            s["cc_half_line"] = cc[-1].strip()
        if r["returncode"] != 0:
            s["error"] = (so + r["stderr"])[-1500:]
        out["dials_scale_on_xtal"] = s
    # ratios and targets
    tx, td = out["totals"]["xtal"], out["totals"]["dials"]
    if td["integrate_wall_s"] > 0 and tx["integrate_wall_s"] > 0:
        out["ratios_xtal_over_dials"] = {
            "integrate_wall": round(tx["integrate_wall_s"] / td["integrate_wall_s"], 3),
            "chain_wall": round(tx["chain_wall_s"] / td["chain_wall_s"], 3),
            "integrate_peak_mb": round(tx["integrate_peak_mb"] / td["integrate_peak_mb"], 3),
            "chain_peak_mb": round(tx["chain_peak_mb"] / td["chain_peak_mb"], 3)}

    def cc_ok(kind):
        vals = []
        for s in out["sweeps"]:
            a, b = s["xtal"].get(f"cc_{kind}"), s["dials"].get(f"cc_{kind}")
            if a is None or b is None:
                return None
            vals.append(a >= b - 1e-4)
        return all(vals) if vals else None

    r = out.get("ratios_xtal_over_dials", {})
    out["targets"] = {
        "cc_sum_xtal_ge_dials": cc_ok("sum"), "cc_prf_xtal_ge_dials": cc_ok("prf"),
        "integrate_wall_le_half_dials": (r["integrate_wall"] <= 0.5) if r else None,
        "integrate_peak_mem_le_dials": (r["integrate_peak_mb"] <= 1.0) if r else None,
        "dials_scale_accepts_xtal": out.get("dials_scale_on_xtal", {}).get("returncode") == 0}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
