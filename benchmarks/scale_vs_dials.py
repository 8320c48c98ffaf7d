"""xtal scale against dials.scale on the same symmetrized input; prints JSON.

Reflection-level cases (``--cases 24 200``): ``xtal simulate mode=reflections`` makes
an insulin-24-like ensemble of N crystals (5° wedges, I 2 3, half in the ambiguous
setting), ``xtal cosym`` makes symmetrized.expt/.refl, then ``xtal scale`` and
``dials.scale`` both read that file pair. From images (``--integrated DIR``): a folder
where the xtal chain wrote integrated.expt/.refl (and data/true.mtz, e.g. the root of
``benchmarks/cosym_insulin_images.py``); there each program runs its own cosym then
its own scale on the same integrated input.

Reported per program: wall time and peak memory (max RSS, /usr/bin/time) of each
command, overall CC½, Rpim, completeness and multiplicity from its own table, and the
correlation of its merged intensities with the simulation's true intensities (merged
here, the same way for both, from each program's scaled.refl: intensity.scale.value /
inverse_scale_factor of rows flagged scaled and not bad_for_scaling).

    .venv/bin/python benchmarks/scale_vs_dials.py --cases 24 200 --dials
    .venv/bin/python benchmarks/scale_vs_dials.py --integrated /tmp/insulin24 --dials --filter

With ``--filter`` each program then continues as the tutorial does on its own scaled
data: compute_delta_cchalf, then scale of filtered.expt/.refl (``tutorial_chain``: data
sets removed, times, statistics and CC to the truth of the rescaled data).
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
from processing.merging.merge import merge_intensities
from processing.reflections import Flags
from processing.simulate.truth import canonical_keys, point_group_index_ops

XTAL = [sys.executable, "-m", "processing.cli.main"]
#: the indexing ambiguity of I 2 3 in its cubic lattice: a program's setting is the truth's or this
TWIN = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]])


def timed(cmd: list[str], cwd: str, timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": round(time.perf_counter() - t0, 1), "timeout": True}
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_mb": round(int(peak.group(1)) / 1024) if peak else None,
            "returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-1500:]}


def summary_numbers(stdout: str) -> dict:
    """Overall column of the 'Summary of merging statistics' table (both programs print it)."""
    out = {}
    for label, key in (("Completeness", "completeness"), ("Multiplicity", "multiplicity"), ("Rpim(I)", "rpim"),
                       ("CC half", "cc_half"), ("I/sigma", "i_over_sigma"), ("High resolution limit", "d_min")):
        m = re.search(rf"^{re.escape(label)}\s+(-?[\d.]+)", stdout, re.M)
        out[key] = float(m.group(1)) if m else None
    return out


def cc_to_truth(expt_path: str, refl_path: str, truth_mtz: str, d_min: float | None = None) -> dict:
    """CC of the merged scaled intensities with the truth (in the better of the two settings),
    optionally only to ``d_min`` (Å)."""
    experiments, table = read_experiments(expt_path), read_reflections(refl_path)
    flags = table["flags"].astype(np.uint64)
    ok = ((flags & np.uint64(int(Flags.scaled))) != 0) & ((flags & np.uint64(int(Flags.bad_for_scaling))) == 0)
    g = table["inverse_scale_factor"]
    ok &= g > 0
    if d_min is not None:
        cell = gemmi.UnitCell(*experiments[0].crystal.unit_cell)
        ok &= np.asarray(cell.calculate_d_array(np.asarray(table["miller_index"]).astype(np.int32))) >= d_min
    sg = gemmi.SpaceGroup(experiments[0].crystal.space_group_symbol)
    merged = merge_intensities(table["miller_index"][ok], table["intensity.scale.value"][ok] / g[ok],
                               table["intensity.scale.variance"][ok] / g[ok] ** 2, sg,
                               experiments[0].crystal.unit_cell, 1.0)
    data = np.array(gemmi.read_mtz_file(truth_mtz))
    ops = point_group_index_ops(sg)
    tk = canonical_keys(data[:, :3].astype(int), ops)
    order = np.argsort(tk)
    best = None
    for M in (np.eye(3, dtype=int), TWIN):
        mk = canonical_keys(merged.hkl @ M.T, ops)
        pos = np.clip(np.searchsorted(tk[order], mk), 0, len(tk) - 1)
        found = tk[order][pos] == mk
        cc = float(np.corrcoef(merged.imean[found], data[order[pos[found]], 3])[0, 1])
        if best is None or cc > best["cc_to_truth"]:
            best = {"cc_to_truth": round(cc, 5), "n_unique": int(found.sum()), "n_datasets": len(experiments),
                    "n_observations": int(ok.sum())}
            if d_min is not None:
                best["d_min"] = d_min
    return best


def common_statistics(expt_path: str, refl_path: str) -> dict:
    """Rmerge and Rpim of a program's scaled.refl computed here, by one code for both
    programs (so that only the scales differ): the rows flagged scaled and not
    bad_for_scaling, intensity.scale.value / inverse_scale_factor, reflections seen
    more than once; Rmerge also per data set (input order)."""
    experiments, table = read_experiments(expt_path), read_reflections(refl_path)
    flags = table["flags"].astype(np.uint64)
    g = table["inverse_scale_factor"]
    ok = ((flags & np.uint64(int(Flags.scaled))) != 0) & ((flags & np.uint64(int(Flags.bad_for_scaling))) == 0) \
        & (g > 0)
    sg = gemmi.SpaceGroup(experiments[0].crystal.space_group_symbol)
    intensity = table["intensity.scale.value"][ok] / g[ok]
    key = canonical_keys(np.asarray(table["miller_index"][ok]).astype(np.int64), point_group_index_ops(sg))
    _, inv = np.unique(key, return_inverse=True)
    n = np.bincount(inv)
    dev = np.abs(intensity - (np.bincount(inv, intensity) / n)[inv])
    multi = n[inv] > 1
    dataset = np.asarray(table["id"][ok])
    per = [round(float(dev[multi & (dataset == k)].sum() / intensity[multi & (dataset == k)].sum()), 4)
           for k in range(len(experiments)) if np.any(multi & (dataset == k))]
    return {"n_observations": int(ok.sum()),
            "rmerge": round(float(dev[multi].sum() / intensity[multi].sum()), 5),
            "rpim": round(float((dev * np.sqrt(1.0 / np.maximum(n[inv] - 1, 1)))[multi].sum()
                                / intensity[multi].sum()), 5),
            "rmerge_per_dataset": per}


def entry(run: dict) -> dict:
    return {k: run.get(k) for k in ("seconds", "peak_mb", "returncode", "timeout") if run.get(k) is not None}


def compare(folder: str, symmetrized: tuple[str, str] | None, integrated: tuple[str, str] | None, truth: str,
            args) -> dict:
    """Both programs on one input; DIALS reads xtal's files."""
    out = {}
    programs = {"xtal": (XTAL + ["cosym"], XTAL + ["scale"]),
                "dials": (["/usr/bin/dials.cosym"], ["/usr/bin/dials.scale", "output.html=None"])}
    for name, (cosym, scale) in programs.items():
        if name == "dials" and not args.dials:
            continue
        res = {}
        if integrated:
            c = timed(cosym + list(integrated) + [f"output.experiments={name}_symmetrized.expt",
                                                  f"output.reflections={name}_symmetrized.refl"], folder, args.timeout)
            res["cosym"] = entry(c)
            inputs = [f"{name}_symmetrized.expt", f"{name}_symmetrized.refl"]
        else:
            inputs = list(symmetrized)
        times = []
        for _ in range(args.repeats):
            s = timed(scale + inputs + [f"output.experiments={name}_scaled.expt",
                                        f"output.reflections={name}_scaled.refl"], folder, args.timeout)
            times.append(s)
            if s.get("returncode") or s.get("timeout"):
                break
        last = times[-1]
        res["scale"] = entry(last)
        res["scale"]["seconds_median"] = float(np.median([t["seconds"] for t in times]))
        res["scale"]["runs"] = len(times)
        if last.get("returncode") == 0:
            res.update(summary_numbers(last["stdout"]))
            res.update(cc_to_truth(os.path.join(folder, f"{name}_scaled.expt"),
                                   os.path.join(folder, f"{name}_scaled.refl"), truth))
            res["same_code"] = common_statistics(os.path.join(folder, f"{name}_scaled.expt"),
                                                 os.path.join(folder, f"{name}_scaled.refl"))
        else:
            res["error"] = (last.get("stderr") or "")[-500:]
        if args.filter and last.get("returncode") == 0:
            res["tutorial_chain"] = filter_and_rescale(name, folder, scale, args)
        out[name] = res
    if "dials" in out and out["xtal"]["scale"].get("seconds_median") and out["dials"]["scale"].get("seconds_median"):
        out["time_ratio_xtal_over_dials"] = round(out["xtal"]["scale"]["seconds_median"]
                                                  / out["dials"]["scale"]["seconds_median"], 3)
        if out["xtal"]["scale"].get("peak_mb") and out["dials"]["scale"].get("peak_mb"):
            out["memory_ratio_xtal_over_dials"] = round(out["xtal"]["scale"]["peak_mb"]
                                                        / out["dials"]["scale"]["peak_mb"], 3)
    return out


FILTER = {"xtal": XTAL + ["compute_delta_cchalf"], "dials": ["/usr/bin/dials.compute_delta_cchalf"]}


def filter_and_rescale(name: str, folder: str, scale: list[str], args) -> dict:
    """The tutorial's next steps on a program's own scaled data: ΔCC½ filtering
    (compute_delta_cchalf, defaults), then scale the filtered data again."""
    f = timed(FILTER[name] + [f"{name}_scaled.expt", f"{name}_scaled.refl",
                              f"output.experiments={name}_filtered.expt", f"output.reflections={name}_filtered.refl"],
              folder, args.timeout)
    out = {"compute_delta_cchalf": entry(f)}
    if f.get("returncode"):
        out["error"] = (f.get("stderr") or "")[-500:]
        return out
    with open(os.path.join(folder, f"{name}_scaled.expt")) as a, \
            open(os.path.join(folder, f"{name}_filtered.expt")) as b:
        out["datasets_removed"] = len(json.load(a)["experiment"]) - len(json.load(b)["experiment"])
    s = timed(scale + [f"{name}_filtered.expt", f"{name}_filtered.refl", f"output.experiments={name}_rescaled.expt",
                       f"output.reflections={name}_rescaled.refl"], folder, args.timeout)
    out["scale"] = entry(s)
    if s.get("returncode"):
        out["error"] = (s.get("stderr") or "")[-500:]
        return out
    out.update(summary_numbers(s["stdout"]))
    out.update(cc_to_truth(os.path.join(folder, f"{name}_rescaled.expt"), os.path.join(folder, f"{name}_rescaled.refl"),
                           os.path.join(folder, "data", "true.mtz")))
    return out


def reflections_case(n: int, args, root: str) -> dict:
    folder = os.path.join(root, f"insulin_{n}")
    os.makedirs(folder, exist_ok=True)
    if not os.path.isfile(f"{folder}/data/truth.json"):
        subprocess.run(XTAL + ["simulate", "preset=insulin-24", "mode=reflections", f"n_crystals={n}",
                               "output_dir=data"], cwd=folder, check=True, capture_output=True)
    if not os.path.isfile(f"{folder}/symmetrized.refl"):
        subprocess.run(XTAL + ["cosym", "data/integrated.expt", "data/integrated.refl", "stability=false"],
                       cwd=folder, check=True, capture_output=True)
    result = {"case": f"insulin, reflection level, {n} data sets"}
    result.update(compare(folder, ("symmetrized.expt", "symmetrized.refl"), None, f"{folder}/data/true.mtz", args))
    return result


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="*", type=int, default=[24])
    ap.add_argument("--integrated", default=None, help="a folder with integrated.expt/.refl and data/true.mtz")
    ap.add_argument("--dials", action="store_true", help="also run /usr/bin/dials.cosym and dials.scale")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each scale command (median reported)")
    ap.add_argument("--filter", action="store_true",
                    help="then the tutorial's chain: compute_delta_cchalf and scale the filtered data again")
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--root", default=None)
    args = ap.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="scale-bench-")
    results = []
    for n in args.cases:
        results.append(reflections_case(n, args, root))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if args.integrated:
        r = {"case": f"from images: {args.integrated}"}
        r.update(compare(args.integrated, None, ("integrated.expt", "integrated.refl"),
                         os.path.join(args.integrated, "data", "true.mtz"), args))
        results.append(r)
    print(json.dumps({"root": root, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
