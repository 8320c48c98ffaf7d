"""xtal cosym against dials.cosym on the same simulated ensembles; prints JSON.

For each case a reflection-level ensemble is simulated (``xtal simulate
mode=reflections``: 5° wedges, half the crystals in the ambiguous setting), then
``xtal cosym`` and (if installed and asked) ``dials.cosym`` run on the same
integrated.expt/.refl — DIALS reads xtal's files. Reported per program: wall time,
peak memory (max RSS of the process tree, from /usr/bin/time), the Laue group, and
the fraction of data sets whose operator agrees with the truth (up to one relabelling).

    .venv/bin/python benchmarks/cosym_vs_dials.py --cases I23:100 P41:100 --dials
    .venv/bin/python benchmarks/cosym_vs_dials.py --cases I23:1000 --d-min 3.0
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

CASES = {
    "I23": dict(space_group="I 2 3", unit_cell="78.1,78.1,78.1,90,90,90"),
    "P41": dict(space_group="P 41", unit_cell="60,60,100,90,90,90"),
}


def _timed(cmd: list[str], cwd: str, timeout: float) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: seconds, peak MB, return code, stdout."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": round(time.perf_counter() - t0, 1), "timeout": True}
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_mb": round(int(peak.group(1)) / 1024) if peak else None,
            "returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-2000:]}


def _agreement(truth_ops: list[str], ours: dict[int, str]) -> float:
    """Fraction of data sets whose operator matches the truth's setting, up to one
    relabelling (the most common truth→operator pairing of each setting)."""
    pairs: dict[str, dict[str, int]] = {}
    for k, op in ours.items():
        pairs.setdefault(truth_ops[k], {}).setdefault(op, 0)
        pairs[truth_ops[k]][op] += 1
    good = sum(max(v.values()) for v in pairs.values())
    distinct = len({max(v, key=v.get) for v in pairs.values()}) == len(pairs)
    return good / max(len(ours), 1) if distinct else 0.0


def _dials_ops(stdout: str) -> dict[int, str]:
    out = {}
    block = stdout.split("Reindexing operators:")[-1]
    for line in block.splitlines():
        m = re.match(r"\s*([^:]+): \[([\d, ]+)\]", line)
        if m:
            for k in m.group(2).split(","):
                out[int(k)] = m.group(1).strip()
    return out


def run_case(name: str, n: int, args, root: str) -> dict:
    folder = os.path.join(root, f"{name}_{n}")
    os.makedirs(folder, exist_ok=True)
    c = CASES[name]
    sim = [sys.executable, "-m", "processing.cli.main", "simulate", "preset=insulin-24", "mode=reflections",
           f"output_dir={folder}/data", f"n_crystals={n}", f"space_group={c['space_group']}",
           f"unit_cell={c['unit_cell']}", "n_weak=0", "n_non_isomorphous=0", "n_damaged=0", f"d_edge={args.d_min}"]
    if not os.path.isfile(f"{folder}/data/truth.json"):
        s = _timed(sim, folder, 3600)
        if s.get("returncode"):
            return {"case": name, "n": n, "error": s["stderr"]}
    truth = json.load(open(f"{folder}/data/truth.json"))["truth"]
    truth_ops = [x["change_of_basis_op"] for x in truth["crystals"]]
    out = {"case": f"{c['space_group']} × {n}", "n_reflections": truth.get("n_reflections")}
    xt = _timed([sys.executable, "-m", "processing.cli.main", "cosym", "data/integrated.expt", "data/integrated.refl",
                 "output.experiments=xtal.expt", "output.reflections=xtal.refl", "stability=false"],
                folder, args.timeout)
    entry = {k: xt.get(k) for k in ("seconds", "peak_mb", "returncode", "timeout")}
    if xt.get("stdout"):
        m = re.search(r"Best solution: (.+)", xt["stdout"])
        entry["laue_group"] = m.group(1).strip() if m else None
        entry["operators_consistent"] = _agreement(truth_ops, _dials_ops(xt["stdout"]))
    out["xtal"] = entry
    if args.dials:
        d = _timed(["/usr/bin/dials.cosym", "data/integrated.expt", "data/integrated.refl",
                    "output.experiments=dials.expt", "output.reflections=dials.refl"], folder, args.timeout)
        entry = {k: d.get(k) for k in ("seconds", "peak_mb", "returncode", "timeout")}
        if d.get("stdout"):
            m = re.search(r"Best solution: (.+)", d["stdout"])
            entry["laue_group"] = m.group(1).strip() if m else None
            entry["operators_consistent"] = _agreement(truth_ops, _dials_ops(d["stdout"]))
            if d.get("returncode"):
                entry["error"] = d["stderr"][-500:]
        out["dials"] = entry
        if out["xtal"].get("seconds") and entry.get("seconds") and not entry.get("timeout"):
            out["speedup"] = round(entry["seconds"] / out["xtal"]["seconds"], 2)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=["I23:100", "P41:100"])
    ap.add_argument("--dials", action="store_true", help="also run /usr/bin/dials.cosym")
    ap.add_argument("--d-min", type=float, default=2.5, help="resolution of the simulated data (Å)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--root", default=None)
    args = ap.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="cosym-bench-")
    results = []
    for case in args.cases:
        name, n = case.split(":")
        results.append(run_case(name, int(n), args, root))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"root": root, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
