"""`xtal run` against the DIALS many-crystal tutorial on simulated insulin-24 images; prints JSON.

Issue 14's benchmark. ``xtal simulate preset=insulin-24`` (24 crystals × 50 images of
cubic insulin on an Eiger 2X 9M, one non-isomorphous crystal, half of them in the
ambiguous setting) writes the images once into ``ROOT/data`` (reruns reuse them); then,
in one run of this script, on the same images:

* xtal: ``xtal run IMAGES… unit_cell=67,67,67,109,109,109 nproc=2`` in ``ROOT/xtal``;
* DIALS 3.12: the tutorial's commands in ``ROOT/dials``: dials.import, dials.find_spots,
  dials.index joint=false unit_cell=67,67,67,109,109,109, dials.refine, dials.integrate,
  dials.cosym, dials.scale, dials.compute_delta_cchalf, dials.scale filtered.* (which
  suggests a resolution limit from the CC½ fit) and dials.scale filtered.* d_min=<that limit>
  (when dials.scale suggests none — CC½ above 0.3 to the edge of the data — xtal's
  estimate from the xtal run, so that both are compared at one d_min).
  nproc=2 where a program takes it (find_spots, index, integrate). The scale runs write
  scaled.*, scaled_filtered.* and scaled_final.* so that every step's files are kept.

Every command runs under ``/usr/bin/time -v`` (wall time, user + system CPU time,
peak RSS of its largest process). Reported per program: total and per-step wall time,
peak memory (max over the steps), sweeps indexed / integrated / placed by cosym / in the
final data, the Laue
group, whether the reindexing is consistent with the simulation's truth (every data set's
basis against the truth's reference basis, up to a rotation of I 2 3, one setting for all
— as ``cosym_insulin_images.py``), whether the non-isomorphous crystal is left out of
the final data, CC½ / Rpim / completeness / multiplicity / d_min from the program's own
printed "Summary of merging statistics", and CC(merged, truth) from its final scaled
reflections (``scale_vs_dials.cc_to_truth``, the same code for both), also at one common
d_min. As xtal run merges to the edge of the data unless given d_min, ``xtal merge`` of
its filtered data at DIALS's d_min is run as an extra (timed apart, not in xtal's total)
so that the merging statistics can be compared at the same resolution. The load average
is recorded at the start and end of the run and of every step (the machine may be shared).

    .venv/bin/python benchmarks/run_vs_dials.py --root /tmp/run_vs_dials > /tmp/run_vs_dials.json
    .venv/bin/python benchmarks/run_vs_dials.py --root /tmp/run_vs_dials --analyse-only

``--analyse-only`` reruns no program: it reads the logs and files of the last run.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

import gemmi
import numpy as np

from dials_env import dials_env  # benchmarks/, beside this script
from scale_vs_dials import cc_to_truth, summary_numbers, timed

XTAL = [sys.executable, "-m", "processing.cli.main"]
DIALS = "/usr/bin"
TUTORIAL_CELL = "67,67,67,109,109,109"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------- running

def _short(cmd: list[str]) -> str:
    """The command as a user would type it: xtal / dials.x, the image files as one word."""
    words = ["xtal"] + cmd[3:] if cmd[:3] == XTAL else [os.path.basename(cmd[0])] + cmd[1:]
    images = [w for w in words if w.endswith("_master.h5")]
    if images:
        at = words.index(images[0])
        words = [w for w in words if not w.endswith("_master.h5")]
        words.insert(at, f"data/crystal_*_master.h5 ({len(images)} files)")
    return " ".join(os.path.basename(w) if w.startswith("/") and os.path.isfile(w) else w for w in words)


def run_step(folder: str, name: str, cmd: list[str], timeout: float) -> dict:
    """One command under /usr/bin/time -v in ``folder``; stdout to ``<name>.stdout``."""
    _log(f"{name}: {_short(cmd)}")
    load0 = _load()
    r = timed(cmd, folder, timeout)
    with open(os.path.join(folder, f"{name}.stdout"), "w") as fh:
        fh.write(r.get("stdout") or "")
    rec = {"step": name, "seconds": r["seconds"], "peak_mb": r.get("peak_mb"), "returncode": r.get("returncode"),
           "timeout": r.get("timeout", False), "load_start": load0, "load_end": _load(),
           "command": _short(cmd)}
    cpu = [re.search(rf"{k} time \(seconds\): ([\d.]+)", r.get("stderr") or "") for k in ("User", "System")]
    rec["cpu_seconds"] = round(sum(float(m.group(1)) for m in cpu), 1) if all(cpu) else None
    if r.get("returncode") != 0:
        rec["stderr_tail"] = (r.get("stderr") or "")[-1500:]
    _log(f"{name}: {'ok' if rec['returncode'] == 0 else 'FAILED'} in {rec['seconds']} s, "
         f"peak {rec['peak_mb']} MB, load {rec['load_end']}")
    return rec


def simulate(root: str, timeout: float) -> dict:
    data = os.path.join(root, "data")
    if os.path.isfile(os.path.join(data, "truth.json")):
        rec = {"reused": True}
        log = os.path.join(root, "simulate.log")
        if os.path.isfile(log):  # the first run's /usr/bin/time -v
            text = open(log).read()
            m = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", text)
            if m:
                rec["seconds"] = round(int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3)), 1)
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
            if m:
                rec["peak_mb"] = round(int(m.group(1)) / 1024)
        return rec
    os.makedirs(root, exist_ok=True)
    rec = run_step(root, "simulate", XTAL + ["simulate", "preset=insulin-24", "output_dir=data"], timeout)
    if rec["returncode"] != 0:
        raise SystemExit(f"xtal simulate failed: {rec.get('stderr_tail')}")
    return rec


def run_xtal(root: str, images: list[str], args) -> list[dict]:
    folder = os.path.join(root, "xtal")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    steps = [run_step(folder, "xtal.run", XTAL + ["run", *images, f"unit_cell={TUTORIAL_CELL}",
                                                 f"nproc={args.nproc}", "output_dir=."], args.timeout)]
    json.dump(steps, open(os.path.join(folder, "steps.json"), "w"), indent=1)
    return steps


def suggested_d_min(stdout: str) -> float | None:
    m = re.search(r"Resolution limit suggested from CC½ fit \(limit CC½=0\.3\): ([\d.]+)", stdout)
    return float(m.group(1)) if m else None


def run_dials(root: str, images: list[str], args) -> list[dict]:
    folder = os.path.join(root, "dials")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    n = f"nproc={args.nproc}"
    plan = [
        ("dials.import", ["dials.import", *images]),
        ("dials.find_spots", ["dials.find_spots", "imported.expt", n]),
        ("dials.index", ["dials.index", "imported.expt", "strong.refl", "joint=false", f"unit_cell={TUTORIAL_CELL}",
                         f"indexing.{n}"]),
        ("dials.refine", ["dials.refine", "indexed.refl", "indexed.expt"]),
        ("dials.integrate", ["dials.integrate", "refined.refl", "refined.expt", n]),
        ("dials.cosym", ["dials.cosym", "integrated.refl", "integrated.expt"]),
        ("dials.scale", ["dials.scale", "symmetrized.refl", "symmetrized.expt"]),
        ("dials.compute_delta_cchalf", ["dials.compute_delta_cchalf", "scaled.refl", "scaled.expt"]),
        ("dials.scale_filtered", ["dials.scale", "filtered.refl", "filtered.expt",
                                  "output.experiments=scaled_filtered.expt", "output.reflections=scaled_filtered.refl",
                                  "output.log=dials.scale_filtered.log", "output.html=dials.scale_filtered.html"]),
    ]
    steps = []
    for name, cmd in plan:
        rec = run_step(folder, name, [f"{DIALS}/{cmd[0]}", *cmd[1:]], args.timeout)
        steps.append(rec)
        json.dump(steps, open(os.path.join(folder, "steps.json"), "w"), indent=1)
        if rec["returncode"] != 0:
            return steps
    # the tutorial: "the program will also recommend a resolution limit, so let's apply that"
    d_min = suggested_d_min(open(os.path.join(folder, "dials.scale_filtered.stdout")).read())
    source = "dials.scale's suggestion (CC½ fit, 0.3)"
    if d_min is None:
        d_min, source = xtal_d_min_estimate(root), "no DIALS suggestion: xtal's estimate"
    if d_min is not None:
        rec = run_step(folder, "dials.scale_d_min",
                       [f"{DIALS}/dials.scale", "filtered.refl", "filtered.expt", f"d_min={d_min}",
                        "output.experiments=scaled_final.expt", "output.reflections=scaled_final.refl",
                        "output.log=dials.scale_final.log", "output.html=dials.scale_final.html"], args.timeout)
        rec["d_min"], rec["d_min_source"] = d_min, source
        steps.append(rec)
    json.dump(steps, open(os.path.join(folder, "steps.json"), "w"), indent=1)
    return steps


def xtal_d_min_estimate(root: str) -> float | None:
    path = os.path.join(root, "xtal", "xtal.run.stdout")
    if not os.path.isfile(path):
        return None
    m = re.search(r"Resolution estimate \(CC½ = 0\.3\): ([\d.]+)", open(path).read())
    return float(m.group(1)) if m else None


# --------------------------------------------------------------------------- analysis

def crystals_of(expt_path: str) -> list[int]:
    """The simulated crystal (crystal_NNN in the image file names) of every experiment."""
    d = json.load(open(expt_path))
    out = []
    for e in d["experiment"]:
        iset = d["imageset"][e["imageset"]] if e.get("imageset") is not None else {}
        m = re.search(r"crystal_(\d+)", json.dumps(iset))
        out.append(int(m.group(1)) if m else -1)
    return out


def real_space(expt_path: str) -> list[np.ndarray]:
    d = json.load(open(expt_path))
    return [np.array([d["crystal"][e["crystal"]][k] for k in ("real_space_a", "real_space_b", "real_space_c")],
                     dtype=float) for e in d["experiment"]]


def consistency(expt_path: str, truth_crystals: list[dict]) -> dict:
    """Do all data sets share one indexing setting of the truth's reference basis?

    W_k = R_k · A_reference,k is the integer change of basis from the truth's reference
    setting to the program's (as benchmarks/cosym_insulin_images.py); two data sets are in
    the same setting when W_j · W_i⁻¹ is a rotation of I 2 3. Counted against the largest
    class (so a first data set in the minority setting does not decide).
    """
    group = [np.rint(np.array(op.rot) / op.DEN).T for op in gemmi.SpaceGroup("I 2 3").operations().sym_ops]
    ks, Rs = crystals_of(expt_path), real_space(expt_path)
    Ws = [R @ np.array(truth_crystals[k]["A_reference"]) for k, R in zip(ks, Rs)]
    Wi = [np.rint(W) for W in Ws]
    same = lambda i, j: any(np.allclose(Wi[j] @ np.linalg.inv(Wi[i]), g, atol=1e-6) for g in group)
    best, members = -1, []
    for i in range(len(Wi)):
        m = [j for j in range(len(Wi)) if same(i, j)]
        if len(m) > best:
            best, members = len(m), m
    odd = sorted(ks[j] for j in range(len(Wi)) if j not in members)
    return {"n_consistent": best, "n_data_sets": len(Wi), "all_consistent": best == len(Wi) and best > 0,
            "inconsistent_crystals": odd,
            "max_non_integer": round(max(float(np.abs(W - np.rint(W)).max()) for W in Ws), 3) if Ws else None}


def cc_to_truth_within(expt_path: str, refl_path: str, truth_mtz: str, d_min: float) -> dict:
    """scale_vs_dials.cc_to_truth restricted to d ≥ d_min (one resolution for both programs)."""
    return cc_to_truth(expt_path, refl_path, truth_mtz, d_min=d_min)


def ensemble(folder: str, files: dict, truth: dict) -> dict:
    """Sweeps at each stage, consistency, what was left out, the non-isomorphous crystal."""
    crystals = truth["crystals"]
    flagged = {k: c["flags"] for k, c in enumerate(crystals) if c.get("flags")}
    non_iso = [k for k, f in flagged.items() if "non_isomorphous" in f]
    have = {stage: os.path.join(folder, f) for stage, f in files.items() if os.path.isfile(os.path.join(folder, f))}
    sets = {stage: crystals_of(p) for stage, p in have.items()}
    n = len(crystals)
    out = {"n_sweeps": n, **{f"n_{stage}": len(v) for stage, v in sets.items()},
           "sweeps_processed": f"{len(sets.get('integrated', []))}/{n}"}
    if "indexed" in sets:
        out["not_indexed"] = sorted(set(range(n)) - set(sets["indexed"]))
    if "integrated" in sets and "symmetrized" in sets:
        out["left_out_by_cosym"] = sorted(set(sets["integrated"]) - set(sets["symmetrized"]))
    if "scaled" in sets and "filtered" in sets:
        out["removed_by_delta_cc_half"] = [{"crystal": k, "flags": flagged.get(k, [])}
                                           for k in sorted(set(sets["scaled"]) - set(sets["filtered"]))]
    if "final" in sets:
        final = set(sets["final"])
        out["non_isomorphous_crystals"] = non_iso
        out["non_isomorphous_excluded"] = bool(non_iso) and not (set(non_iso) & final)
        out["flagged_crystals_in_final"] = {str(k): f for k, f in flagged.items() if k in final}
    if "symmetrized" in have:
        out["reindexing_after_cosym"] = consistency(have["symmetrized"], crystals)
    if "final" in have:
        out["reindexing_final"] = consistency(have["final"], crystals)
    return out


def step_table(steps: list[dict]) -> dict:
    return {s["step"]: s["seconds"] for s in steps}


def analyse_xtal(root: str, truth: dict, dials_d_min: float | None, args) -> dict:
    folder = os.path.join(root, "xtal")
    steps = json.load(open(os.path.join(folder, "steps.json")))
    run = steps[0]
    stdout = open(os.path.join(folder, "xtal.run.stdout")).read()
    res = {"command": run["command"], "returncode": run["returncode"], "wall_seconds": run["seconds"],
           "cpu_seconds": run.get("cpu_seconds"), "peak_mb": run["peak_mb"], "load_start": run["load_start"],
           "load_end": run["load_end"]}
    m = re.search(r"^Time \(s\): (.+)$", stdout, re.M)
    if m:
        res["step_seconds"] = {k: float(v) for k, v in (w.rsplit(" ", 1) for w in m.group(1).split(", "))}
    if run["returncode"] != 0:
        res["error"] = run.get("stderr_tail")
    m = re.search(r"^Laue group (.+?) \(probability ([\d.]+)\), space group (.+?); (\d+) of (\d+) data sets placed",
                  stdout, re.M)
    if m:
        res.update(laue_group=m.group(1), laue_group_probability=float(m.group(2)), space_group=m.group(3))
    m = re.search(r"^ΔCC½ filtering: (.+)$", stdout, re.M)
    res["delta_cc_half"] = m.group(1) if m else None
    res["resolution_estimate"] = xtal_d_min_estimate(root)
    res["merging_statistics"] = summary_numbers(stdout)
    files = {"indexed": "indexed.expt", "integrated": "integrated.expt", "symmetrized": "symmetrized.expt",
             "scaled": "scaled.expt", "filtered": "filtered.expt", "final": "filtered.expt"}
    res.update(ensemble(folder, files, truth))
    final = (os.path.join(folder, "filtered.expt"), os.path.join(folder, "filtered.refl"))
    if all(os.path.isfile(p) for p in final):
        res["final_files"] = [os.path.basename(p) for p in final]
        res["truth"] = cc_to_truth(*final, args.truth_mtz)
    # merged at DIALS's d_min too (an extra command, not part of xtal run's time)
    if dials_d_min is not None and all(os.path.isfile(p) for p in final):
        sub = os.path.join(folder, "at_dials_d_min")
        os.makedirs(sub, exist_ok=True)
        if args.analyse_only and os.path.isfile(os.path.join(sub, "steps.json")):
            extra = json.load(open(os.path.join(sub, "steps.json")))[0]
        else:
            extra = run_step(sub, "xtal.merge", XTAL + ["merge", *final, f"d_min={dials_d_min}"], args.timeout)
            json.dump([extra], open(os.path.join(sub, "steps.json"), "w"), indent=1)
        text = open(os.path.join(sub, "xtal.merge.stdout")).read()
        res["at_dials_d_min"] = {"command": f"xtal merge filtered.expt filtered.refl d_min={dials_d_min}",
                                 "seconds": extra["seconds"], "peak_mb": extra["peak_mb"],
                                 "merging_statistics": summary_numbers(text),
                                 "truth": cc_to_truth_within(*final, args.truth_mtz, dials_d_min)}
    return res


def analyse_dials(root: str, truth: dict, args) -> dict:
    folder = os.path.join(root, "dials")
    steps = json.load(open(os.path.join(folder, "steps.json")))
    ok = all(s["returncode"] == 0 for s in steps)
    res = {"version": subprocess.run([f"{DIALS}/dials.version"], capture_output=True, text=True).stdout.split("\n")[0],
           "commands": [s["command"] for s in steps], "all_steps_ok": ok,
           "wall_seconds": round(sum(s["seconds"] for s in steps), 1),
           "cpu_seconds": round(sum(s.get("cpu_seconds") or 0 for s in steps), 1),
           "step_cpu_seconds": {s["step"]: s.get("cpu_seconds") for s in steps},
           "peak_mb": max((s["peak_mb"] or 0) for s in steps), "step_seconds": step_table(steps),
           "step_peak_mb": {s["step"]: s["peak_mb"] for s in steps},
           "load_start": steps[0]["load_start"], "load_end": steps[-1]["load_end"]}
    res["failed_steps"] = [{k: s.get(k) for k in ("step", "returncode", "timeout", "stderr_tail")}
                           for s in steps if s["returncode"] != 0]
    last = steps[-1]
    if last["step"] == "dials.scale_d_min":
        res["d_min_used"], res["d_min_source"] = last["d_min"], last["d_min_source"]
    cosym_log = os.path.join(folder, "dials.cosym.log")
    if os.path.isfile(cosym_log):
        text = open(cosym_log).read()
        m = re.search(r"Best solution:\s*(.+)", text)
        res["laue_group"] = m.group(1).strip() if m else None
        m = re.search(r"Laue group probability:\s*([\d.]+)", text)
        res["laue_group_probability"] = float(m.group(1)) if m else None
    sym = os.path.join(folder, "symmetrized.expt")
    if os.path.isfile(sym):
        sgs = {c["space_group_hall_symbol"] for c in json.load(open(sym))["crystal"]}
        res["space_group"] = sorted(gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(h)).xhm() for h in sgs)
    final_name = "scaled_final" if last["step"] == "dials.scale_d_min" else "scaled_filtered"
    final_stdout = {"scaled_final": "dials.scale_d_min.stdout", "scaled_filtered": "dials.scale_filtered.stdout"}
    if os.path.isfile(os.path.join(folder, final_stdout[final_name])):
        text = open(os.path.join(folder, final_stdout[final_name])).read()
        res["merging_statistics"] = summary_numbers(text)
    p = os.path.join(folder, "dials.scale_filtered.stdout")
    if os.path.isfile(p):
        text = open(p).read()
        res["resolution_suggested_by_dials_scale"] = suggested_d_min(text)
        res["merging_statistics_before_d_min"] = summary_numbers(text)
    files = {"indexed": "indexed.expt", "integrated": "integrated.expt", "symmetrized": "symmetrized.expt",
             "scaled": "scaled.expt", "filtered": "filtered.expt", "final": f"{final_name}.expt"}
    res.update(ensemble(folder, files, truth))
    final = (os.path.join(folder, f"{final_name}.expt"), os.path.join(folder, f"{final_name}.refl"))
    if all(os.path.isfile(x) for x in final):
        res["final_files"] = [os.path.basename(x) for x in final]
        res["truth"] = cc_to_truth(*final, args.truth_mtz)
    return res


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="/tmp/run_vs_dials", help="data/ (simulated once), xtal/ and dials/ go here")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="per command (s)")
    ap.add_argument("--skip-dials", action="store_true")
    ap.add_argument("--skip-xtal", action="store_true")
    ap.add_argument("--analyse-only", action="store_true", help="run nothing; analyse the last run's files")
    args = ap.parse_args(argv)
    os.environ.update(dials_env())  # Debian's DIALS reads bitshuffle-LZ4 NeXus through hdf5plugin
    root = os.path.abspath(args.root)
    args.truth_mtz = os.path.join(root, "data", "true.mtz")
    t0, load0 = time.perf_counter(), _load()
    out = {"benchmark": "xtal run vs the DIALS many-crystal tutorial, simulated insulin-24 images",
           "root": root, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_start": load0,
           "cpus": os.cpu_count(), "nproc": args.nproc, "machine": platform.processor() or platform.machine(),
           "xtal_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                         cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()}
    if not args.analyse_only:
        out["simulate"] = simulate(root, args.timeout)
    truth_all = json.load(open(os.path.join(root, "data", "truth.json")))
    truth = truth_all["truth"]
    out["truth"] = {"space_group": truth["space_group"], "unit_cell": truth["unit_cell"],
                    "n_crystals": len(truth["crystals"]),
                    "flagged": {str(k): c["flags"] for k, c in enumerate(truth["crystals"]) if c.get("flags")},
                    "n_alternative_setting": sum(c["change_of_basis_op"] != "a,b,c" for c in truth["crystals"])}
    images = sorted(glob.glob(os.path.join(root, "data", "crystal_*_master.h5")))
    out["n_images_files"] = len(images)
    if not args.analyse_only:
        if not args.skip_xtal:
            run_xtal(root, images, args)
        if not args.skip_dials and os.path.exists(f"{DIALS}/dials.scale"):
            run_dials(root, images, args)
    dials = None
    if os.path.isfile(os.path.join(root, "dials", "steps.json")):
        dials = analyse_dials(root, truth, args)
    d_min = (dials or {}).get("d_min_used")
    xtal = analyse_xtal(root, truth, d_min, args) if os.path.isfile(os.path.join(root, "xtal", "steps.json")) else None
    out["xtal"], out["dials"] = xtal, dials
    if xtal and dials and dials.get("truth") and xtal.get("truth"):
        out["dials"]["truth_at_common_d_min"] = cc_to_truth_within(
            os.path.join(root, "dials", dials["final_files"][0]), os.path.join(root, "dials", dials["final_files"][1]),
            args.truth_mtz, d_min) if d_min else None
    if xtal and dials and xtal.get("wall_seconds") and dials.get("wall_seconds"):
        ratio = xtal["wall_seconds"] / dials["wall_seconds"]
        out["time_ratio_xtal_over_dials"] = round(ratio, 3)
        out["time_ratio_target"] = 0.2
        out["time_ratio_meets_target"] = ratio <= 0.2
        if xtal.get("cpu_seconds") and dials.get("cpu_seconds"):
            out["cpu_time_ratio_xtal_over_dials"] = round(xtal["cpu_seconds"] / dials["cpu_seconds"], 3)
        if xtal.get("peak_mb") and dials.get("peak_mb"):
            out["memory_ratio_xtal_over_dials"] = round(xtal["peak_mb"] / dials["peak_mb"], 3)
    out["load_average_end"] = _load()
    out["seconds_this_run"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
