"""Cross-check xtal's DIALS file writers against DIALS itself; prints JSON.

.refl: xtal reads a real DIALS ``.refl`` (shoeboxes included), writes it anew to a
temporary folder, and DIALS's own python (``/usr/bin/python3`` with
``dials.array_family.flex``) loads both the original and xtal's file and compares
every column bit for bit (max |difference| per column, shoebox pixels included).
DIALS also hashes each column of the original as it reads it, and xtal's reading
of the original must give the same bytes (checks the reader independently of
the writer).

Usage: .venv/bin/python benchmarks/crosscheck_dials_files.py [file.refl ...]
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from processing.io.refl import read_reflections, write_reflections

ROOT = Path(__file__).resolve().parents[1]

DIALS_PYTHON = "/usr/bin/python3"
DIALS_MARKER = "/usr/bin/dials.version"
REAL = ROOT.parent / "shared" / "data" / "real" / "l_cysteine_narrow_wedge"
DEFAULT_REFL = [REAL / "11_integrated.refl", REAL / "23_integrated.refl"]

# Runs inside DIALS's python: argv = original.refl xtal.refl; prints one JSON line.
_DIALS_REFL_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
from dials.array_family import flex

def as_numpy(col):
    kind = type(col).__name__
    if kind in ("double", "int", "size_t", "bool", "vec3_double"):
        return col.as_numpy_array()
    if kind == "miller_index":
        return np.array([tuple(h) for h in col], dtype="<i4").reshape(-1, 3)
    if kind == "int6":
        return np.array([tuple(b) for b in col], dtype="<i4").reshape(-1, 6)
    if kind == "vec2_double":
        return np.array([tuple(v) for v in col], dtype="<f8").reshape(-1, 2)
    if kind == "mat3_double":
        return np.array([tuple(m) for m in col], dtype="<f8").reshape(-1, 9)
    if kind == "std_string":
        return np.array(list(col), dtype=object)
    return None

def shoebox_diff(a, b):
    diff, same = 0.0, True
    for sa, sb in zip(a, b):
        if sa.panel != sb.panel or tuple(sa.bbox) != tuple(sb.bbox):
            return float("inf"), False
        for x, y in ((sa.data, sb.data), (sa.mask, sb.mask), (sa.background, sb.background)):
            if x.size() != y.size():
                return float("inf"), False
            if x.size():
                xa, ya = x.as_numpy_array(), y.as_numpy_array()
                same = same and xa.tobytes() == ya.tobytes()
                diff = max(diff, float(np.max(np.abs(xa.astype(float) - ya.astype(float)))))
    return diff, same

orig = flex.reflection_table.from_file(sys.argv[1])
mine = flex.reflection_table.from_file(sys.argv[2])
result = {
    "nrows": [orig.size(), mine.size()],
    "identifiers": [dict(orig.experiment_identifiers()), dict(mine.experiment_identifiers())],
    "columns": {},
}
for key in sorted(orig.keys()):
    a = orig[key]
    entry = {"type": type(a).__name__, "present_in_xtal_file": key in mine}
    if type(a).__name__ == "shoebox":
        if key in mine:
            entry["max_abs_diff"], entry["identical"] = shoebox_diff(a, mine[key])
        result["columns"][key] = entry
        continue
    na = as_numpy(a)
    entry["sha256"] = hashlib.sha256(np.ascontiguousarray(na).tobytes()).hexdigest() if na is not None and na.dtype != object else None
    if key in mine:
        nb = as_numpy(mine[key])
        entry["identical"] = bool(na.dtype == nb.dtype and na.shape == nb.shape and na.tobytes() == nb.tobytes())
        if na.shape == nb.shape and na.size:
            d = np.abs(na.astype(float) - nb.astype(float))
            both_nan = np.isnan(na.astype(float)) & np.isnan(nb.astype(float))
            entry["max_abs_diff"] = float(np.max(np.where(both_nan, 0.0, d)))
        else:
            entry["max_abs_diff"] = 0.0 if na.shape == nb.shape else float("inf")
    result["columns"][key] = entry
print(json.dumps(result))
"""

# Runs inside DIALS's python: argv = file.refl; prints nrows, identifiers, column
# types and a sha256 of each column's little-endian bytes (shoeboxes: of their records).
_DIALS_HASH_SCRIPT = _DIALS_REFL_SCRIPT.split("def shoebox_diff")[0] + r"""
def shoebox_hash(col):
    h = hashlib.sha256()
    for sb in col:
        h.update(np.array([sb.panel], "<u4").tobytes() + np.array(tuple(sb.bbox), "<i4").tobytes())
        for arr in (sb.data, sb.mask, sb.background):
            if arr.size():
                h.update(arr.as_numpy_array().tobytes())
    return h.hexdigest()

t = flex.reflection_table.from_file(sys.argv[1])
out = {"nrows": t.size(), "identifiers": dict(t.experiment_identifiers()), "columns": {}}
for key in sorted(t.keys()):
    col = t[key]
    if type(col).__name__ == "shoebox":
        digest = shoebox_hash(col)
    else:
        digest = hashlib.sha256(np.ascontiguousarray(as_numpy(col)).tobytes()).hexdigest()
    out["columns"][key] = [type(col).__name__, digest]
print(json.dumps(out))
"""


def wait_for_dials(timeout_s: float = 600.0, poll_s: float = 10.0) -> bool:
    """True once DIALS is installed (its dials.version launcher exists)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if os.path.exists(DIALS_MARKER) and os.path.exists(DIALS_PYTHON):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)


def _dials_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    return env


def _run_dials(script: str, *args: str) -> dict:
    proc = subprocess.run(
        [DIALS_PYTHON, "-c", script, *args],
        capture_output=True, text=True, env=_dials_env(), timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"DIALS python failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _dials_version() -> str | None:
    try:
        out = subprocess.run([DIALS_MARKER], capture_output=True, text=True, env=_dials_env(), timeout=120)
        return out.stdout.splitlines()[0].strip() if out.stdout else None
    except (OSError, subprocess.SubprocessError):
        return None


def check_refl(original: str | os.PathLike[str], workdir: str | os.PathLike[str]) -> dict:
    """xtal rewrites ``original`` into ``workdir``; DIALS compares it column by column."""
    original = Path(original)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = read_reflections(original, skip_shoebox=False)
    t_read = time.perf_counter() - t0
    rewritten = Path(workdir) / f"xtal_{original.name}"
    t0 = time.perf_counter()
    write_reflections(rewritten, table)
    t_write = time.perf_counter() - t0

    dials = _run_dials(_DIALS_REFL_SCRIPT, str(original), str(rewritten))
    max_abs_diff: dict[str, float | None] = {}
    identical = dials["nrows"][0] == dials["nrows"][1] == len(table)
    identical &= dials["identifiers"][0] == dials["identifiers"][1]
    reader_matches = True
    for key, entry in dials["columns"].items():
        max_abs_diff[key] = entry.get("max_abs_diff")
        identical &= bool(entry["present_in_xtal_file"] and entry.get("identical", False))
        if entry.get("sha256") is not None:
            mine = hashlib.sha256(np.ascontiguousarray(table[key]).tobytes()).hexdigest()
            reader_matches &= mine == entry["sha256"]
    return {
        "file": str(original),
        "nrows": len(table),
        "columns_compared": len(dials["columns"]),
        "max_abs_diff": max_abs_diff,
        "identifiers_equal": dials["identifiers"][0] == dials["identifiers"][1],
        "xtal_reader_matches_dials_reader": bool(reader_matches),
        "byte_identical_file": rewritten.read_bytes() == original.read_bytes(),
        "identical": bool(identical),
        "xtal_read_s": round(t_read, 4),
        "xtal_write_s": round(t_write, 4),
    }


def _xtal_hash(table, key: str) -> str:
    if table.kind(key) != "Shoebox<>":
        return hashlib.sha256(np.ascontiguousarray(table[key]).tobytes()).hexdigest()
    h = hashlib.sha256()
    for sb in table[key]:
        h.update(np.array([sb.panel], "<u4").tobytes() + np.array(sb.bbox, "<i4").tobytes())
        if sb.data is not None and sb.data.size:
            for arr, dtype in ((sb.data, "<f4"), (sb.mask, "<i4"), (sb.background, "<f4")):
                h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    return h.hexdigest()


def check_refl_synthetic(sources: list[Path], workdir: str | os.PathLike[str]) -> dict:
    """xtal writes a table DIALS never wrote; DIALS must read back every column exactly.

    The table joins the real files with renumbered ids (ReflectionTable.concatenate)
    and adds one column of each kind missing from them (vec2<double>, mat3<double>).
    """
    from processing.reflections import Flags, ReflectionTable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = [read_reflections(p, skip_shoebox=False) for p in sources]
    table = ReflectionTable.concatenate(tables)
    n = len(table)
    rng = np.random.default_rng(0)
    table["xtal.vec2"] = rng.normal(size=(n, 2))
    table["xtal.mat3"] = rng.normal(size=(n, 9))
    table.set_flags(np.arange(0, n, 3), Flags.scaled)
    out = Path(workdir) / "xtal_synthetic.refl"
    write_reflections(out, table)
    dials = _run_dials(_DIALS_HASH_SCRIPT, str(out))
    mismatched = [
        key for key in table.keys()
        if key not in dials["columns"] or dials["columns"][key][1] != _xtal_hash(table, key)
    ]
    return {
        "file": "synthetic: " + " + ".join(p.name for p in sources) + " + vec2/mat3 columns",
        "nrows": n,
        "columns_compared": len(table.keys()),
        "dials_column_types": {k: v[0] for k, v in dials["columns"].items() if k.startswith("xtal.")},
        "mismatched_columns": mismatched,
        "identifiers_equal": {int(k): v for k, v in dials["identifiers"].items()} == table.experiment_identifiers,
        "identical": not mismatched and dials["nrows"] == n and len(dials["columns"]) == len(table.keys()),
    }


# Runs inside DIALS's python: argv = original.expt xtal.expt; compares DIALS's models.
_DIALS_EXPT_SCRIPT = r"""
import json, sys
from dxtbx.model.experiment_list import ExperimentListFactory

def load(path):
    el = ExperimentListFactory.from_json_file(path, check_format=False)
    out = []
    for e in el:
        d = {"identifier": e.identifier,
             "s0": list(e.beam.get_s0()), "wavelength": e.beam.get_wavelength(),
             "panels": [dict(origin=list(p.get_origin()), fast=list(p.get_fast_axis()),
                             slow=list(p.get_slow_axis()), size=list(p.get_image_size()),
                             pixel=list(p.get_pixel_size()), trusted=list(p.get_trusted_range()),
                             mu=p.get_mu(), thickness=p.get_thickness(),
                             bc=list(p.get_beam_centre_px(e.beam.get_s0())),
                             px_mm=list(p.pixel_to_millimeter((100.5, 200.5))))
                        for p in e.detector],
             "axis": list(e.goniometer.get_rotation_axis()),
             "F": list(e.goniometer.get_fixed_rotation()), "S": list(e.goniometer.get_setting_rotation()),
             "image_range": list(e.scan.get_image_range()), "oscillation": list(e.scan.get_oscillation()),
             "exposure": list(e.scan.get_exposure_times()), "epochs": list(e.scan.get_epochs()),
             "A": list(e.crystal.get_A()), "cell": list(e.crystal.get_unit_cell().parameters()),
             "cell_sd": list(e.crystal.get_cell_parameter_sd()),
             "space_group": e.crystal.get_space_group().type().lookup_symbol(),
             "profile": e.profile.to_dict() if e.profile is not None else None}
        out.append(d)
    return out

a, b = load(sys.argv[1]), load(sys.argv[2])

def diff(x, y):
    if isinstance(x, dict):
        return max([diff(x[k], y[k]) for k in x] or [0.0])
    if isinstance(x, list):
        if len(x) != len(y):
            return float("inf")
        return max([diff(u, v) for u, v in zip(x, y)] or [0.0])
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return abs(x - y)
    return 0.0 if x == y else float("inf")

keys = sorted(a[0]) if a else []
print(json.dumps({"n_experiments": [len(a), len(b)],
                  "max_abs_diff": {k: max(diff(u[k], v[k]) for u, v in zip(a, b)) for k in keys},
                  "cell": a[0]["cell"] if a else None, "cell_sd": a[0]["cell_sd"] if a else None}))
"""


def check_expt(original: str | os.PathLike[str], workdir: str | os.PathLike[str]) -> dict:
    """xtal rewrites an .expt; DIALS loads both and compares every model value."""
    from processing.io.expt import read_experiments, write_experiments

    original = Path(original)
    out = Path(workdir) / ("xtal_" + original.name)
    write_experiments(str(out), read_experiments(str(original)))
    result = _run_dials(_DIALS_EXPT_SCRIPT, str(original), str(out))
    result["file"] = str(original)
    result["identical"] = all(v == 0.0 for v in result["max_abs_diff"].values())
    return result


def main(argv: list[str] | None = None) -> int:
    files = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or DEFAULT_REFL
    report: dict = {"dials_python": DIALS_PYTHON}
    if not wait_for_dials():
        report["error"] = f"DIALS not installed ({DIALS_MARKER} missing after waiting)"
        print(json.dumps(report, indent=2))
        return 1
    report["dials_version"] = _dials_version()
    with tempfile.TemporaryDirectory(prefix="xtal_crosscheck_") as tmp:
        present = [f for f in files if f.exists()]
        report["refl"] = [check_refl(f, tmp) for f in present]
        if present:
            report["refl"].append(check_refl_synthetic(present, tmp))
        report["expt"] = [check_expt(f.with_suffix(".expt"), tmp) for f in present
                          if f.with_suffix(".expt").exists()]
    report["all_identical"] = (all(r["identical"] for r in report["refl"] + report["expt"])
                               and bool(report["refl"]))
    print(json.dumps(report, indent=2))
    return 0 if report["all_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
