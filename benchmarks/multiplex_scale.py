"""`xtal multiplex` on a thousand reflection-level data sets: time, memory, forms, clusters; prints JSON.

Issue 14's scale point. ``xtal simulate preset=insulin-24 mode=reflections n_crystals=N``
makes an insulin-24-like ensemble of N 5° wedges (I 2 3, half in the ambiguous setting),
``--non-isomorphous K`` of them non-isomorphous (cell +2 %, perturbed atoms: a second
population in intensity, the same crystal form by unit cell; as tests/processing/multiplex),
no weak or damaged crystals. It is written once into ``ROOT/data`` (reruns reuse it).
Then ``xtal multiplex data/integrated.expt data/integrated.refl output_dir=out`` with the
DIALS tutorial's ``min_completeness=0.9`` and ``max_clusters=10`` (xia2.multiplex merges
at most 10 clusters by default; without a cap every node of a 1000-leaf tree would be
scaled and merged) runs under ``/usr/bin/time -v``.

Reported: wall time and peak memory (max RSS) of the simulation and of multiplex; the
crystal forms (unit-cell clusters) and outliers; per form the Laue group, the data sets
ΔCC½ removed (how many of them non-isomorphous), the merged statistics; the intensity
clusters (candidates, selected, rejected) and, for the selected ones, size, number of
non-isomorphous members, completeness, multiplicity, CC½; how well the best selected
cluster matches the isomorphous population (precision, recall). ``xtal multiplex``
prints no step times, so the steps' times are read from the modification times of the
files each stage writes (the stage's time plus its file writing; the first interval also
holds start-up, reading the input and the unit-cell clustering).

    .venv/bin/python benchmarks/multiplex_scale.py [--n 1000] [--non-isomorphous 200] [--root DIR]
        [--simulate-only] [-- extra multiplex words, e.g. cluster_method=correlation]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time

from scale_vs_dials import timed  # benchmarks/, beside this script

XTAL = [sys.executable, "-m", "processing.cli.main"]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _cpu_seconds(stderr: str) -> float | None:
    """User + system CPU seconds from /usr/bin/time -v's report (robust to a loaded machine)."""
    t = [re.search(rf"{k} time \(seconds\): ([\d.]+)", stderr or "") for k in ("User", "System")]
    return round(float(t[0].group(1)) + float(t[1].group(1)), 1) if all(t) else None


def _entry(r: dict) -> dict:
    out = {k: r.get(k) for k in ("seconds", "peak_mb", "returncode", "timeout") if r.get(k) is not None}
    if _cpu_seconds(r.get("stderr")) is not None:
        out["cpu_seconds"] = _cpu_seconds(r.get("stderr"))
    if r.get("returncode"):
        out["stderr_tail"] = (r.get("stderr") or "")[-1500:]
    return out


def step_times(out_dir: str, t_start: float, report: dict) -> list[dict]:
    """Intervals between the files the stages write, in the order multiplex writes them."""
    marks = []
    for k, form in enumerate(report.get("forms", [])):
        folder = os.path.join(out_dir, f"form_{k}")
        for stage, name in (("cosym", "symmetrized.refl"), ("scale", "scaled.refl"),
                            ("compute_delta_cchalf", "filtered.refl"), ("merge", "merged.mtz")):
            marks.append((f"form_{k} {stage}", os.path.join(folder, name)))
        sel = form.get("clusters", {}).get("selected", [])
        if sel:
            marks.append((f"form_{k} intensity clustering + selection (to the first cluster's scale)",
                          os.path.join(folder, sel[0]["name"], "scaled.refl")))
            marks.append((f"form_{k} {sel[0]['name']} merge", os.path.join(folder, sel[0]["name"], "merged.mtz")))
        for c in sel[1:]:
            marks.append((f"form_{k} {c['name']} scale", os.path.join(folder, c["name"], "scaled.refl")))
            marks.append((f"form_{k} {c['name']} merge", os.path.join(folder, c["name"], "merged.mtz")))
    marks.append(("report", os.path.join(out_dir, "xtal.multiplex.json")))
    rows, previous = [], t_start
    for label, path in marks:
        if not os.path.isfile(path):
            continue
        t = os.path.getmtime(path)
        rows.append({"step": label, "seconds": round(t - previous, 1)})
        previous = t
    if rows:
        rows[0]["step"] = "start-up, read input, unit-cell clustering, " + rows[0]["step"]
    return rows


def summarise(report: dict, truth: list[dict]) -> dict:
    bad = {c["identifier"] for c in truth if "non_isomorphous" in (c.get("flags") or [])}
    uc = report["unit_cell_clustering"]
    out = {"n_crystal_forms": len(uc["clusters"]), "crystal_form_sizes": [c["size"] for c in uc["clusters"]],
           "n_unit_cell_outliers": len(uc.get("outliers") or []), "forms": []}
    for form in report["forms"]:
        clusters = form["clusters"]
        method = next(iter(c.get("method") for c in clusters["selected"] + clusters["rejected"]), None)
        # the selected clusters' members index the form's filtered data sets, in the dendrogram's labels
        dendro = form["clustering"][method]["dendrogram"] if method else {"leaves": [], "labels": []}
        label_of = dict(zip(dendro["leaves"], dendro["labels"]))
        good = (set(form["members"]) - bad) & set(label_of.values())
        removed = [x.get("identifier") for x in (form.get("removed") or [])]
        f = {"n_data_sets": len(form["members"]), "n_non_isomorphous": len(set(form["members"]) & bad),
             "laue_group": form["best"].get("patterson_group"), "space_group": form["best"].get("space_group"),
             "removed_by_delta_cc_half": len(removed),
             "removed_non_isomorphous": sum(1 for x in removed if x in bad),
             "n_after_filtering": len(label_of),
             "merged": {k: form["merged"].get(k) for k in ("completeness", "multiplicity", "cc_half", "rpim",
                                                           "i_over_sigma", "n_obs", "n_unique")},
             "intensity_clustering_method": method,
             "n_candidate_clusters": sum(len(clusters[k]) for k in ("selected", "rejected", "duplicates")),
             "n_selected": len(clusters["selected"]), "n_rejected": len(clusters["rejected"]),
             "n_duplicates": len(clusters["duplicates"]), "selected": []}
        best = None
        for c in clusters["selected"]:
            names = {label_of[i] for i in c["members"]}
            row = {"name": c["name"], "size": c["size"], "n_non_isomorphous": len(names & bad),
                   "completeness": c.get("completeness"), "multiplicity": c.get("multiplicity"),
                   "cc_half_selection": c.get("cc_half")}
            merged = (c.get("merged") or {}).get("overall") or {}
            row["merged_cc_half"], row["merged_completeness"] = merged.get("cc_half"), merged.get("completeness")
            f["selected"].append(row)
            tp = len(names & good)
            score = 2 * tp / (len(names) + len(good)) if good else 0.0
            if best is None or score > best["f1"]:
                best = {"name": c["name"], "f1": round(score, 4), "precision": round(tp / len(names), 4),
                        "recall": round(tp / len(good), 4) if good else None, "size": len(names),
                        "n_isomorphous_in_form_after_filtering": len(good)}
        f["best_match_to_isomorphous_population"] = best
        out["forms"].append(f)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="/tmp/multiplex_scale")
    ap.add_argument("--n", type=int, default=1000, help="data sets")
    ap.add_argument("--non-isomorphous", type=int, default=None, help="non-isomorphous data sets (default n/5)")
    ap.add_argument("--timeout", type=float, default=6 * 3600)
    ap.add_argument("--simulate-only", action="store_true", help="make (or reuse) the data and stop")
    ap.add_argument("words", nargs="*", default=["min_completeness=0.9", "max_clusters=10"],
                    help="xtal multiplex parameters (default: min_completeness=0.9 max_clusters=10)")
    args = ap.parse_args(argv)
    k_bad = args.n // 5 if args.non_isomorphous is None else args.non_isomorphous
    root = os.path.abspath(os.path.join(args.root, f"n{args.n}_bad{k_bad}"))
    os.makedirs(root, exist_ok=True)
    result = {"benchmark": "xtal multiplex on reflection-level insulin data sets", "root": root,
              "n_data_sets": args.n, "n_non_isomorphous": k_bad,
              "load_average_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    sim = ["simulate", "preset=insulin-24", "mode=reflections", f"n_crystals={args.n}", f"n_non_isomorphous={k_bad}",
           "n_weak=0", "n_damaged=0", "output_dir=data"]
    result["simulate_command"] = "xtal " + " ".join(sim)
    if os.path.isfile(os.path.join(root, "data", "truth.json")) and os.path.isfile(os.path.join(root, "simulate.json")):
        result["simulate"] = dict(json.load(open(os.path.join(root, "simulate.json"))), reused=True)
    else:
        _log(result["simulate_command"])
        r = timed(XTAL + sim, root, args.timeout)
        result["simulate"] = _entry(r)
        json.dump(result["simulate"], open(os.path.join(root, "simulate.json"), "w"))
        if r.get("returncode") != 0:
            print(json.dumps(result, indent=1))
            return 1
        _log(f"simulate: {r['seconds']} s, peak {r['peak_mb']} MB")
    if args.simulate_only:
        print(json.dumps(result, indent=1))
        return 0
    out_dir = os.path.join(root, "out")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    words = ["data/integrated.expt", "data/integrated.refl", "output_dir=out", *args.words]
    result["multiplex_command"] = "xtal multiplex " + " ".join(words)
    _log(result["multiplex_command"])
    t_start = time.time()
    r = timed(XTAL + ["multiplex", *words], root, args.timeout)
    with open(os.path.join(root, "multiplex.stdout"), "w") as fh:
        fh.write(r.get("stdout") or "")
    result["multiplex"] = _entry(r)
    _log(f"multiplex: {r['seconds']} s, peak {r.get('peak_mb')} MB, returncode {r.get('returncode')}")
    report_path = os.path.join(out_dir, "xtal.multiplex.json")
    if os.path.isfile(report_path):
        report = json.load(open(report_path))
        truth = json.load(open(os.path.join(root, "data", "truth.json")))["truth"]["crystals"]
        result["step_seconds_from_file_times"] = step_times(out_dir, t_start, report)
        result.update(summarise(report, truth))
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))
    return 0 if r.get("returncode") == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
