"""Cross-check the simulator end to end with DIALS 3.12, the way the DIALS multi-crystal
tutorial processes the 24 cubic-insulin wedges (issue 3, "must show").

Simulates the ``insulin-24`` preset (24 crystals, ``--n-images`` images each, default 20)
into a scratch folder under /tmp, then runs

    dials.import  (all sweeps)   dials.find_spots nproc=1
    dials.index joint=false      (no cell first; if a sweep fails or gets another cell,
                                  again with unit_cell=<true primitive cell>, as the
                                  tutorial does; then with the true space group + cell)
    dials.refine   dials.integrate nproc=2   dials.cosym   dials.scale   dials.merge

and compares with the truth. Prints JSON:

* per crystal: indexed yes/no and % of strong spots indexed; the reindexing operator
  cosym printed for it (its minimum-cell setting); the op DIALS applied in total from
  the integrated setting to the symmetrized one (from the orientation matrices); the op
  from the crystal as simulated to DIALS's final setting (``dials_op_from_simulated``:
  DIALS's indexing choice and cosym's reindexing together); the truth's
  ``change_of_basis_op`` (simulated → reference); their composition
  ``dials_op_from_simulated · change_of_basis_op⁻¹`` (reference → DIALS) and whether it
  lies in the true Laue group m-3 or in the twin coset (m-3 · -b,a,c). DIALS may put
  the whole ensemble in the twin-related setting, so agreement is counted for the better
  global choice.
* the Laue group / space group DIALS found; CC(DIALS merged IMEAN, true I) over common
  reflections with the truth in the same setting, and in the twin-related one;
  the wall time of every step.

    .venv/bin/python benchmarks/crosscheck_insulin_dials.py [--workdir DIR] [--n-images 20]
        [--n-crystals 24] [--d-min D] [--nproc-integrate 2]

``--workdir`` keeps the files (and lets a rerun skip the steps whose outputs exist);
without it a temporary folder under /tmp is used and removed at the end.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import gemmi
import hdf5plugin
import numpy as np

from processing.io.refl import read_reflections
from processing.reflections import Flags
from processing.simulate import SimulateParams, run_simulate
from processing.simulate.truth import (ambiguity_ops, canonical_keys, format_abc, parse_abc,
                                       point_group_index_ops)

DIALS = "/usr/bin"
TRUE_SG = "I 21 3"


# --- running DIALS -----------------------------------------------------------------

def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Runner:
    """Runs DIALS programs in ``cwd``; remembers each step's wall time in timings.json."""

    def __init__(self, cwd):
        self.cwd = cwd
        self.path = os.path.join(cwd, "timings.json")
        self.timings = json.load(open(self.path)) if os.path.exists(self.path) else {}

    def run(self, step, cmd, outputs=(), log=None):
        """True if the outputs exist (skipped) or the command succeeded and made them."""
        if outputs and all(os.path.exists(os.path.join(self.cwd, o)) for o in outputs) and step in self.timings:
            _log(f"{step}: outputs exist, skipped")
            return True
        env = dict(os.environ, HDF5_PLUGIN_PATH=hdf5plugin.PLUGIN_PATH)
        shown = [os.path.basename(c) for c in cmd]
        _log(f"{step}: {' '.join(shown if len(shown) < 8 else shown[:3] + ['…'] + shown[-2:])}")
        t0 = time.perf_counter()
        with open(os.path.join(self.cwd, log or f"{step}.stdout"), "w") as f:
            r = subprocess.run(cmd, cwd=self.cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
        dt = round(time.perf_counter() - t0, 1)
        ok = r.returncode == 0 and all(os.path.exists(os.path.join(self.cwd, o)) for o in outputs)
        self.timings[step] = {"seconds": dt, "ok": ok, "command": " ".join(shown[1:] if len(shown) < 8 else
                                                                         [f"<{len(shown) - 1} files>"])}
        with open(self.path, "w") as f:
            json.dump(self.timings, f, indent=1)
        _log(f"{step}: {'ok' if ok else 'FAILED'} in {dt} s")
        return ok


# --- reading DIALS's experiment lists (plain JSON) ----------------------------------

def read_expt(path):
    """[(sweep index, crystal dict or None, identifier)] in experiment order."""
    d = json.load(open(path))
    out = []
    for e in d["experiment"]:
        tmpl = d["imageset"][e["imageset"]].get("template", "")
        m = re.search(r"crystal_(\d+)_master", tmpl)
        cryst = d["crystal"][e["crystal"]] if e.get("crystal") is not None else None
        out.append((int(m.group(1)) if m else None, cryst, e.get("identifier", "")))
    return out


def crystal_A(c):
    """A = UB (columns a*, b*, c*) of a DIALS crystal dict (scan-static)."""
    R = np.array([c["real_space_a"], c["real_space_b"], c["real_space_c"]], dtype=float)
    return np.linalg.inv(R)


def crystal_cell(c):
    R = np.array([c["real_space_a"], c["real_space_b"], c["real_space_c"]], dtype=float)
    a, b, cc = R
    ang = lambda u, v: float(np.degrees(np.arccos(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))))
    return [float(np.linalg.norm(a)), float(np.linalg.norm(b)), float(np.linalg.norm(cc)),
            ang(b, cc), ang(a, cc), ang(a, b)]


def crystal_sg(c):
    return gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(c["space_group_hall_symbol"]))


def niggli(cell):
    gv = gemmi.GruberVector(gemmi.UnitCell(*cell), None)
    gv.niggli_reduce()
    return list(gv.cell_parameters())


def primitive_cell(cell, sg_name):
    """The reduced primitive cell of a centred cell (what dials.index finds in P1)."""
    gv = gemmi.GruberVector(gemmi.UnitCell(*cell), gemmi.SpaceGroup(sg_name).centring_type())
    gv.niggli_reduce()
    return [round(x, 3) for x in gv.cell_parameters()]


def cell_matches(cell, target, len_tol=0.03, ang_tol=3.0):
    a, b = niggli(cell), niggli(target)
    lengths = all(abs(x / y - 1) < len_tol for x, y in zip(sorted(a[:3]), sorted(b[:3])))
    angles = all(abs(x - y) < ang_tol for x, y in zip(sorted(a[3:]), sorted(b[3:])))
    return lengths and angles


def integer_op(M, tol=0.15):
    """Round a near-integer matrix; None if it is not near-integer."""
    R = np.round(M)
    return R.astype(np.int64) if np.max(np.abs(M - R)) < tol else None


# --- the run --------------------------------------------------------------------------

def simulate_step(root, n_crystals, n_images):
    sim = os.path.join(root, "sim")
    tfile = os.path.join(root, "sim_timing.json")
    if os.path.exists(os.path.join(sim, "truth.json")) and os.path.exists(tfile):
        _log("simulate: truth.json exists, skipped")
        return sim, json.load(open(tfile))["simulate_seconds"]
    _log(f"simulate insulin-24: {n_crystals} crystals x {n_images} images -> {sim}")
    t0 = time.perf_counter()
    run_simulate(SimulateParams(preset="insulin-24", n_crystals=n_crystals, n_images=n_images, output_dir=sim))
    dt = round(time.perf_counter() - t0, 1)
    json.dump({"simulate_seconds": dt}, open(tfile, "w"))
    _log(f"simulate: done in {dt} s")
    return sim, dt


def index_step(run, truth, sweeps, max_attempts=3):
    """dials.index joint=false; retry with the true primitive cell, then the true symmetry."""
    cell = truth["truth"]["unit_cell"]
    p_cell = primitive_cell(cell, TRUE_SG)
    attempts = [("no cell, P1", []),
                ("unit_cell=true primitive cell (P1), as in the tutorial",
                 [f"unit_cell={','.join(f'{x:g}' for x in p_cell)}"]),
                ("space_group=I213 unit_cell=true cell",
                 ["space_group=I213", f"unit_cell={','.join(f'{x:g}' for x in cell)}"])]
    history = []
    for i, (label, extra) in enumerate(attempts[:max_attempts]):
        ok = run.run(f"dials.index[{i}]", [f"{DIALS}/dials.index", "imported.expt", "strong.refl", "joint=false",
                                           f"output.experiments=indexed_{i}.expt",
                                           f"output.reflections=indexed_{i}.refl",
                                           f"output.log=dials.index_{i}.log"] + extra,
                     outputs=(f"indexed_{i}.expt", f"indexed_{i}.refl"))
        rec = {"attempt": i, "parameters": label, "ok": ok}
        if ok:
            expts = read_expt(os.path.join(run.cwd, f"indexed_{i}.expt"))
            got = {k: crystal_cell(c) for k, c, _ in expts}
            good = [k for k in sweeps if k in got and cell_matches(got[k], p_cell)]
            rec.update(n_indexed=len(got), n_right_cell=len(good),
                       failed=[k for k in sweeps if k not in got],
                       wrong_cell=[k for k in got if k not in good])
        history.append(rec)
        if ok and rec["n_right_cell"] == len(sweeps):
            break
    best = max((h for h in history if h["ok"]), key=lambda h: (h["n_right_cell"], -h["attempt"]), default=None)
    if best is None:
        return None, history
    i = best["attempt"]
    for ext in ("expt", "refl"):
        shutil.copyfile(os.path.join(run.cwd, f"indexed_{i}.{ext}"), os.path.join(run.cwd, f"indexed.{ext}"))
    return best, history


def parse_cosym_log(path):
    text = open(path).read()
    out = {}
    m = re.search(r"Best solution:\s*(.+)", text)
    out["best_solution"] = m.group(1).strip() if m else None
    m = re.search(r"Laue group probability:\s*([\d.]+)", text)
    out["laue_group_probability"] = float(m.group(1)) if m else None
    m = re.search(r"Laue group confidence:\s*([\d.]+)", text)
    out["laue_group_confidence"] = float(m.group(1)) if m else None
    m = re.search(r"Reindex operator:\s*(\S+)", text)
    out["reindex_operator_to_best"] = m.group(1) if m else None
    ops = {}
    block = text.split("Reindexing operators:", 1)
    if len(block) == 2:
        for line in block[1].splitlines()[1:]:
            mm = re.match(r"^\s*(\S+):\s*\[([\d,\s]*)\]\s*$", line)
            if not mm:
                break
            for d in mm.group(2).split(","):
                if d.strip():
                    ops[int(d)] = mm.group(1)
    out["reindexing_ops"] = ops
    out["removed"] = re.findall(r"Removing dataset (\d+)", text)
    out["rejected"] = re.findall(r"Rejecting .*", text)
    return out


def merged_cc(mtz_path, true_mtz_path, ops):
    """CC(DIALS IMEAN, true I) with DIALS's indices mapped to the reference by each op
    (h_ref = op⁻¹ · h_dials), over the reflections both have."""
    laue = point_group_index_ops(gemmi.SpaceGroup(TRUE_SG))
    t = gemmi.read_mtz_file(true_mtz_path)
    th = np.array(t.make_miller_array(), dtype=np.int64)
    ti = np.array(t.column_with_label("IMEAN"), dtype=float)
    tk = canonical_keys(th, laue)
    order = np.argsort(tk)
    tk, ti = tk[order], ti[order]
    m = gemmi.read_mtz_file(mtz_path)
    mh = np.array(m.make_miller_array(), dtype=np.int64)
    mi = np.array(m.column_with_label("IMEAN"), dtype=float)
    good = np.isfinite(mi)
    mh, mi = mh[good], mi[good]
    d = np.array(m.cell.calculate_d_array(mh))
    out = {"n_merged": int(len(mi)), "d_min": round(float(d.min()), 3), "mtz_space_group": m.spacegroup.xhm()}
    for name, op in ops.items():
        h_ref = mh @ np.linalg.inv(op).T
        h_ref = np.round(h_ref).astype(np.int64)
        k = canonical_keys(h_ref, laue)
        pos = np.clip(np.searchsorted(tk, k), 0, len(tk) - 1)
        found = tk[pos] == k
        x, y = mi[found], ti[pos[found]]
        cc = float(np.corrcoef(x, y)[0, 1]) if found.sum() > 2 else None
        # by resolution: low / high halves of the common reflections
        dd = d[found]
        med = np.median(dd) if found.any() else 0
        lo, hi = dd >= med, dd < med
        out[name] = {"op_reference_to_dials": format_abc(op), "n_common": int(found.sum()),
                     "cc": round(cc, 4) if cc is not None else None,
                     "cc_low_res_half": round(float(np.corrcoef(x[lo], y[lo])[0, 1]), 4) if lo.sum() > 2 else None,
                     "cc_high_res_half": round(float(np.corrcoef(x[hi], y[hi])[0, 1]), 4) if hi.sum() > 2 else None,
                     "d_split": round(float(med), 3)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default=None, help="keep files here (reruns skip finished steps)")
    ap.add_argument("--n-crystals", type=int, default=24)
    ap.add_argument("--n-images", type=int, default=20)
    ap.add_argument("--d-min", type=float, default=None, help="d_min for dials.integrate (default: none)")
    ap.add_argument("--nproc-integrate", type=int, default=2)
    ap.add_argument("--max-index-attempts", type=int, default=3,
                    help="1: no cell only; 2: then the true primitive cell; 3: then the true space group and cell")
    args = ap.parse_args()
    if not os.path.exists(f"{DIALS}/dials.version"):
        print(json.dumps({"error": "DIALS is not installed (/usr/bin/dials.version missing)"}))
        return
    t_start = time.perf_counter()
    root = args.workdir or tempfile.mkdtemp(prefix="xtal_insulin24_", dir="/tmp")
    os.makedirs(root, exist_ok=True)
    try:
        result = crosscheck(root, args)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    result["total_seconds_this_run"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result, indent=1))


def crosscheck(root, args):
    sim, sim_seconds = simulate_step(root, args.n_crystals, args.n_images)
    truth = json.load(open(os.path.join(sim, "truth.json")))
    crystals = truth["truth"]["crystals"]
    sweeps = list(range(len(crystals)))
    work = os.path.join(root, "dials")
    os.makedirs(work, exist_ok=True)
    run = Runner(work)
    version = subprocess.run([f"{DIALS}/dials.version"], capture_output=True, text=True).stdout.split("\n")[0]
    out = {"dials_version": version, "workdir": root, "preset": "insulin-24", "n_crystals": len(crystals),
           "n_images": args.n_images, "true_space_group": truth["truth"]["space_group"],
           "true_unit_cell": truth["truth"]["unit_cell"], "ambiguity_ops": truth["truth"]["ambiguity_ops"],
           "integrate_d_min": args.d_min}
    masters = sorted(glob.glob(os.path.join(sim, "crystal_*_master.h5")))
    steps_ok = (run.run("dials.import", [f"{DIALS}/dials.import"] + masters, outputs=("imported.expt",))
                and run.run("dials.find_spots", [f"{DIALS}/dials.find_spots", "imported.expt", "nproc=1"],
                            outputs=("strong.refl",)))
    best = None
    if steps_ok:
        best, history = index_step(run, truth, sweeps, args.max_index_attempts)
        out["indexing_attempts"] = history
        out["indexing_used"] = best["parameters"] if best else None
        steps_ok = best is not None
    integ = [f"{DIALS}/dials.integrate", "refined.expt", "refined.refl", f"nproc={args.nproc_integrate}"]
    if args.d_min:
        integ.append(f"prediction.d_min={args.d_min}")
    if steps_ok:
        steps_ok = run.run("dials.refine", [f"{DIALS}/dials.refine", "indexed.expt", "indexed.refl"],
                           outputs=("refined.expt", "refined.refl"))
    if steps_ok:
        steps_ok = run.run("dials.integrate", integ, outputs=("integrated.expt", "integrated.refl"))
        if not steps_ok and args.nproc_integrate > 1:
            out["integrate_note"] = f"nproc={args.nproc_integrate} failed; rerun with nproc=1"
            steps_ok = run.run("dials.integrate", integ[:3] + ["nproc=1"] + integ[4:],
                               outputs=("integrated.expt", "integrated.refl"))
    for step, cmd, outputs in (
            ("dials.cosym", ["dials.cosym", "integrated.expt", "integrated.refl"], ("symmetrized.expt", "symmetrized.refl")),
            ("dials.scale", ["dials.scale", "symmetrized.expt", "symmetrized.refl"], ("scaled.expt", "scaled.refl")),
            ("dials.merge", ["dials.merge", "scaled.expt", "scaled.refl"], ("merged.mtz",))):
        if steps_ok:
            steps_ok = run.run(step, [f"{DIALS}/{cmd[0]}"] + cmd[1:], outputs=outputs)
    out["timings_seconds"] = dict({"simulate (xtal, not DIALS)": sim_seconds},
                                  **{k: v["seconds"] for k, v in run.timings.items()})
    out["steps_ok"] = {k: v["ok"] for k, v in run.timings.items()}
    out["dials_seconds_total"] = round(sum(v["seconds"] for v in run.timings.values()), 1)
    out.update(analyse(work, sim, truth, crystals))
    return out


def analyse(work, sim, truth, crystals):
    P = lambda name: os.path.join(work, name)
    have = lambda name: os.path.exists(P(name))
    rows = [{"sweep": os.path.basename(f"crystal_{k:03d}_master.h5"), "flags": c["flags"],
             "truth_change_of_basis_op": c["change_of_basis_op"]} for k, c in enumerate(crystals)]
    res = {}
    laue = point_group_index_ops(gemmi.SpaceGroup(TRUE_SG))
    laue_rot = {tuple(m.ravel()) for m in laue if round(np.linalg.det(m)) == 1}
    twin = ambiguity_ops(tuple(truth["truth"]["unit_cell"]), gemmi.SpaceGroup(TRUE_SG))
    twin = twin[0] if twin else np.eye(3, dtype=np.int64)
    twin_coset = {tuple((g @ twin).ravel()) for g in (np.array(t).reshape(3, 3) for t in laue_rot)}

    if have("strong.refl"):
        strong = read_reflections(P("strong.refl"))
        n_strong = np.bincount(np.asarray(strong["id"]), minlength=len(rows))
        for k, r in enumerate(rows):
            r["n_strong"] = int(n_strong[k])
    if have("indexed.refl"):
        idx = read_reflections(P("indexed.refl"))
        is_idx = ((np.asarray(idx["flags"]) & int(Flags.indexed)) > 0) & (np.asarray(idx["id"]) >= 0)
        # id is the experiment; (DIALS 3.12 joint=false writes imageset_id = the last sweep for all rows)
        per_expt = np.bincount(np.asarray(idx["id"])[is_idx], minlength=len(rows) + 1)
        expts = read_expt(P("indexed.expt"))
        n_idx = np.zeros(len(rows), dtype=int)
        for i, (k, _, _) in enumerate(expts):
            n_idx[k] += per_expt[i]
        indexed = {k: c for k, c, _ in expts}
        for k, r in enumerate(rows):
            r["indexed"] = k in indexed
            r["percent_indexed"] = round(100.0 * float(n_idx[k]) / max(r.get("n_strong", 0), 1), 1)
            if k in indexed:
                r["indexed_cell_niggli"] = [round(x, 2) for x in niggli(crystal_cell(indexed[k]))]
    integrated = {k: c for k, c, _ in read_expt(P("integrated.expt"))} if have("integrated.expt") else {}
    if integrated:
        for k, r in enumerate(rows):
            r["integrated"] = k in integrated
    if have("symmetrized.expt"):
        sym = read_expt(P("symmetrized.expt"))
        cos = parse_cosym_log(P("dials.cosym.log"))
        sgs = sorted({crystal_sg(c).xhm() for _, c, _ in sym})
        res["cosym"] = {"best_solution": cos["best_solution"], "space_group_in_symmetrized_expt": sgs,
                        "laue_group_probability": cos["laue_group_probability"],
                        "laue_group_confidence": cos["laue_group_confidence"],
                        "reindex_operator_to_best": cos["reindex_operator_to_best"],
                        "n_kept": len(sym), "removed": cos["removed"], "rejected": cos["rejected"]}
        best = cos["best_solution"] or ""
        ok_laue = best.replace(" ", "") in ("Im-3", "I23", "I213")
        res["cosym"]["laue_group_ok"] = ok_laue
        # cosym numbers the data sets it kept in order; its printed ops use those numbers
        op_of = {}
        if len(cos["reindexing_ops"]) == len(sym):
            op_of = {sym[i][0]: op for i, op in cos["reindexing_ops"].items() if i < len(sym)}
        kept = {k: c for k, c, _ in sym}
        composed = {}
        for k, r in enumerate(rows):
            r["kept_by_cosym"] = k in kept
            if k not in kept:
                continue
            r["cosym_reindexing_op_min_cell"] = op_of.get(k)
            A_sym = crystal_A(kept[k])
            if k in integrated:
                T = integer_op(np.linalg.inv(A_sym) @ crystal_A(integrated[k]))
                r["dials_op_integrated_to_symmetrized"] = format_abc(T) if T is not None else "not integer"
            A_sim = np.array(crystals[k]["A"])
            D = integer_op(np.linalg.inv(A_sym) @ A_sim)  # h_dials = D · h_simulated
            if D is None:
                r["dials_op_from_simulated"] = "not integer (orientation disagrees with truth)"
                continue
            r["dials_op_from_simulated"] = format_abc(D)
            S = parse_abc(crystals[k]["change_of_basis_op"])  # h_reference = S · h_simulated
            E = np.round(D @ np.linalg.inv(S)).astype(np.int64)  # h_dials = E · h_reference
            composed[k] = E
            r["composed_reference_to_dials"] = format_abc(E)
            r["composed_in_laue_group_m-3"] = tuple(E.ravel()) in laue_rot
            r["composed_in_twin_coset"] = tuple(E.ravel()) in twin_coset
        n_id = sum(1 for k in composed if rows[k]["composed_in_laue_group_m-3"])
        n_tw = sum(1 for k in composed if rows[k]["composed_in_twin_coset"])
        glob_choice = "identity" if n_id >= n_tw else "twin -b,a,c"
        for k in composed:
            rows[k]["agrees_with_truth"] = bool(rows[k]["composed_in_laue_group_m-3"] if n_id >= n_tw
                                                else rows[k]["composed_in_twin_coset"])
        res["reindexing"] = {"global_setting_dials_vs_reference": glob_choice,
                             "n_kept": len(kept), "n_agree": max(n_id, n_tw), "n_compared": len(composed),
                             "n_in_m-3": n_id, "n_in_twin_coset": n_tw,
                             "all_agree": max(n_id, n_tw) == len(kept) and len(kept) > 0}
        if have("scaled.expt"):
            res["n_scaled_datasets"] = len(read_expt(P("scaled.expt")))
        if have("merged.mtz"):
            eye = np.eye(3, dtype=np.int64)
            ops = {"identity": eye, "twin": twin.astype(np.int64)}
            cc = merged_cc(P("merged.mtz"), os.path.join(sim, "true.mtz"), ops)
            correct = "identity" if glob_choice == "identity" else "twin"
            cc["correct_setting"] = correct
            cc["cc_correct_setting"] = cc[correct]["cc"]
            res["merged_vs_truth"] = cc
            res["pass"] = bool(ok_laue and res["reindexing"]["all_agree"] and (cc[correct]["cc"] or 0) >= 0.95)
    res["crystals"] = rows
    return res


if __name__ == "__main__":
    main()
