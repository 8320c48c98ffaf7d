"""Refinement benchmark: the same indexed input through dials.refine and xtal refine.

    python benchmarks/refine_vs_dials.py DIR [--out DIR2] [key=value …]

DIR holds indexed.expt and indexed.refl (and truth.json from ``xtal simulate`` if
the data are simulated). Both programs run as child processes in their own folders
under DIR2 (default DIR/refine_bench); extra key=value words go to both (DIALS
spelling, e.g. scan_varying=false). Prints JSON: per program the wall time, peak
memory (max RSS of the child, MB), the "RMSDs by experiment" rows and the refined
cells, and for simulated data each cell's volume error against the truth (P1 cells
are compared through their volume times the lattice centring multiplicity).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from processing.io.expt import read_experiments

CENTRING = {"P": 1, "I": 2, "C": 2, "A": 2, "B": 2, "F": 4, "R": 3}
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*([-\d.eE+]+)\s*\|\s*([-\d.eE+]+)\s*\|\s*([-\d.eE+]+)\s*\|\s*$")


def _hdf5_plugin_path() -> str:
    try:
        import hdf5plugin
        return hdf5plugin.PLUGIN_PATH
    except ImportError:
        return ""


def _run(cmd, cwd, env=None):
    """Run a child; (seconds, peak RSS MB, stdout, returncode) using /usr/bin/time."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M"] + cmd, cwd=cwd, env=env,
                       capture_output=True, text=True)
    dt = time.perf_counter() - t0
    m = re.search(r"MAXRSS_KB (\d+)", p.stderr)
    rss = int(m.group(1)) / 1024 if m else None
    return dt, rss, p.stdout, p.stderr, p.returncode


def _rmsd_rows(text: str) -> list[dict]:
    part = text.split("RMSDs by experiment:")[-1] if "RMSDs by experiment:" in text else ""
    rows = []
    for line in part.splitlines():
        m = ROW.match(line.strip())
        if m:
            rows.append({"experiment": int(m.group(1)), "nref": int(m.group(2)), "rmsd_x_px": float(m.group(3)),
                         "rmsd_y_px": float(m.group(4)), "rmsd_z_images": float(m.group(5))})
        elif rows and line.startswith("+"):
            break
    return rows


def _cells(path: str, truth: dict | None) -> list[dict]:
    if not os.path.exists(path):
        return []
    out = []
    for i, e in enumerate(read_experiments(path)):
        if e.crystal is None:
            continue
        c = e.crystal
        row = {"experiment": i, "identifier": e.identifier, "unit_cell": [round(v, 5) for v in c.unit_cell],
               "unit_cell_sd": [round(v, 5) for v in (c.cell_parameter_sd() or [])] or None}
        if truth:
            t = truth.get(e.identifier)
            if t is not None:
                mult = CENTRING.get(c.space_group_symbol.strip()[0], 1)
                tmult = CENTRING.get(truth["__sg__"][0], 1)
                v_true = t["volume"] / tmult
                row["volume_rel_error"] = c.volume / mult * 1.0 / v_true - 1.0
                row["true_unit_cell"] = t["unit_cell"]
        out.append(row)
    return out


def _dials_expt(path: str, folder: str) -> str:
    """A copy of the .expt that dxtbx reads: NeXus image sequences need
    ``single_file_indices`` (dxtbx asserts otherwise); added when missing."""
    d = json.load(open(path))
    changed = False
    for k, iset in enumerate(d.get("imageset", [])):
        tpl = iset.get("template", "")
        if iset.get("__id__") == "ImageSequence" and tpl.endswith((".h5", ".nxs")) and "single_file_indices" not in iset:
            scans = [d["scan"][e["scan"]] for e in d["experiment"] if e.get("imageset") == k and "scan" in e]
            if scans:
                a, b = scans[0]["image_range"]
                iset["single_file_indices"] = list(range(a - 1, b))
                changed = True
    if not changed:
        return path
    out = os.path.join(folder, "input_for_dials.expt")
    json.dump(d, open(out, "w"))
    return out


def _truth(folder: str) -> dict | None:
    path = os.path.join(folder, "truth.json")
    if not os.path.exists(path):
        return None
    import gemmi
    d = json.load(open(path))["truth"]
    out = {"__sg__": d["space_group"]}
    for c in d["crystals"]:
        out[c["identifier"]] = {"unit_cell": c["unit_cell"], "volume": gemmi.UnitCell(*c["unit_cell"]).volume}
    return out


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    folder = os.path.abspath(argv[0])
    rest = argv[1:]
    out_dir = os.path.join(folder, "refine_bench")
    if "--out" in rest:
        k = rest.index("--out")
        out_dir = os.path.abspath(rest[k + 1])
        rest = rest[:k] + rest[k + 2:]
    expt, refl = os.path.join(folder, "indexed.expt"), os.path.join(folder, "indexed.refl")
    truth = _truth(folder)
    results = {"input": folder, "extra_parameters": rest}
    env = dict(os.environ)
    env["HDF5_PLUGIN_PATH"] = _hdf5_plugin_path()
    d_dir = os.path.join(out_dir, "dials")
    x_dir = os.path.join(out_dir, "xtal")
    os.makedirs(d_dir, exist_ok=True)
    os.makedirs(x_dir, exist_ok=True)
    dt, rss, out, err, rc = _run(["/usr/bin/dials.refine", _dials_expt(expt, d_dir), refl] + rest, d_dir, env)
    log = open(os.path.join(d_dir, "dials.refine.log")).read() if os.path.exists(os.path.join(d_dir, "dials.refine.log")) else out
    results["dials"] = {"seconds": round(dt, 2), "peak_memory_mb": rss, "returncode": rc,
                        "rmsds_by_experiment": _rmsd_rows(log),
                        "cells": _cells(os.path.join(d_dir, "refined.expt"), truth)}
    if rc:
        results["dials"]["error"] = (err or out).strip().splitlines()[-3:]
    xtal = [sys.executable, "-c", "import sys; from processing.cli.main import main; sys.exit(main(sys.argv[1:]))",
            "refine", expt, refl] + rest
    dt, rss, out, err, rc = _run(xtal, x_dir, env)
    results["xtal"] = {"seconds": round(dt, 2), "peak_memory_mb": rss, "returncode": rc,
                       "rmsds_by_experiment": _rmsd_rows(out),
                       "cells": _cells(os.path.join(x_dir, "refined.expt"), truth),
                       "messages": [l for l in out.splitlines() if l.startswith("Warning")]}
    if rc:
        results["xtal"]["error"] = (err or out).strip().splitlines()[-3:]
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
