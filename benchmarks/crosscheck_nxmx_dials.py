"""Cross-check our image readers and NXmx writer against DIALS 3.12.

Writes small synthetic NXmx sweeps with ``write_nxmx`` (single-axis and multi-axis
goniometer, several data files), runs ``dials.import`` on them and on the real CBF
images (and on the real Eiger master with a dummy data file, since DIALS needs one),
compares DIALS's imported.expt models with ours, and compares pixel values read by
dxtbx with ours. Prints JSON.

DIALS's Debian h5py has no bitshuffle filter: the DIALS subprocesses get
HDF5_PLUGIN_PATH = hdf5plugin.PLUGIN_PATH.

Usage: .venv/bin/python benchmarks/crosscheck_nxmx_dials.py
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time

import h5py
import hdf5plugin
import numpy as np

from processing.io.attenuation import mu_at_angstrom
from processing.io.expt import read_experiments
from processing.io.images import open_image_file
from processing.io.nxmx import write_nxmx
from processing.models import Beam, Detector, Goniometer, Panel, Scan
from processing.models.detector import PARALLAX

DIALS_IMPORT = "/usr/bin/dials.import"
DIALS_PYTHON = "/usr/bin/python3"
REAL = os.path.abspath("../shared/data/real")

DXTBX_PIXELS = r"""
import hashlib, json, sys
import numpy as np
from dxtbx.model.experiment_list import ExperimentListFactory
el = ExperimentListFactory.from_json_file(sys.argv[1])
iset = el[0].imageset
out = []
for i in [int(x) for x in sys.argv[2].split(",")]:
    d = iset.get_raw_data(i)[0].as_numpy_array().astype(np.int32)
    m = iset.get_mask(i)[0].as_numpy_array()
    out.append({"index": i, "sum": int(d.sum(dtype=np.int64)), "sha1": hashlib.sha1(d.tobytes()).hexdigest(),
                "masked": int((~m).sum()), "shape": list(d.shape)})
print(json.dumps({"format": iset.get_format_class().__name__, "images": out}))
"""


def wait_for_dials(timeout=600):
    t0 = time.time()
    while not os.path.exists(DIALS_IMPORT):
        if time.time() - t0 > timeout:
            raise SystemExit(json.dumps({"error": "dials.import not found after waiting"}))
        time.sleep(15)


def dials_env():
    env = dict(os.environ)
    env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    return env


def dials_import(path, workdir, name):
    out = os.path.join(workdir, name + ".expt")
    r = subprocess.run([DIALS_IMPORT, path, f"output.experiments={out}", f"output.log={name}.log"],
                       cwd=workdir, capture_output=True, text=True, env=dials_env(), timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"dials.import failed on {path}: {r.stderr[-2000:] or r.stdout[-2000:]}")
    return out


def dxtbx_pixels(expt, indices):
    r = subprocess.run([DIALS_PYTHON, "-c", DXTBX_PIXELS, expt, ",".join(map(str, indices))],
                       capture_output=True, text=True, env=dials_env(), timeout=600)
    if r.returncode != 0:
        return {"error": r.stderr[-1500:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def model_diffs(ours, theirs):
    """Largest differences between our (beam, detector, goniometer, scan) and DIALS's."""
    (b1, d1, g1, s1), (b2, d2, g2, s2) = ours, theirs
    p1, p2 = d1[0], d2[0]
    out = {
        "wavelength": abs(b1.wavelength - b2.wavelength),
        "beam_direction": float(np.abs(b1.direction - b2.direction).max()),
        "distance_mm": abs(p1.distance - p2.distance),
        "beam_centre_px": float(np.abs(p1.get_beam_centre_px(b1.s0) - p2.get_beam_centre_px(b2.s0)).max()),
        "origin_mm": float(np.abs(p1.origin - p2.origin).max()),
        "fast_axis": float(np.abs(p1.fast_axis - p2.fast_axis).max()),
        "slow_axis": float(np.abs(p1.slow_axis - p2.slow_axis).max()),
        "pixel_size_mm": float(np.abs(np.subtract(p1.pixel_size, p2.pixel_size)).max()),
        "image_size_equal": p1.image_size == p2.image_size,
        "trusted_range_equal": p1.trusted_range == p2.trusted_range,
        "mu_rel": abs(p1.mu - p2.mu) / max(p2.mu, 1e-12),
        "thickness_mm": abs(p1.thickness - p2.thickness),
        "material_equal": p1.material == p2.material,
        "mask_rectangles_equal": [list(r) for r in p1.mask] == [list(r) for r in p2.mask],
        "strategy_equal": p1.px_mm_strategy == p2.px_mm_strategy,
    }
    if s1 is not None and s2 is not None:
        out["image_range_equal"] = s1.image_range == s2.image_range
        out["oscillation"] = float(np.abs(np.subtract(s1.oscillation, s2.oscillation)).max())
        out["exposure_s"] = float(np.abs(s1.exposure_times - s2.exposure_times).max())
    if g1 is not None and g2 is not None:
        out["rotation_axis"] = float(np.abs(g1.rotation_axis - g2.rotation_axis).max())
        out["goniometer_R(0.3rad)"] = float(np.abs(g1.rotation_matrix(0.3) - g2.rotation_matrix(0.3)).max())
        out["goniometer_names_equal"] = (g1.names or []) == (g2.names or [])
    return out


TOLERANCE = {"distance_mm": 1e-5, "origin_mm": 1e-5, "pixel_size_mm": 1e-8, "beam_centre_px": 1e-4,
             "mu_rel": 1e-6, "thickness_mm": 1e-8}  # others: 1e-9


def ok(diffs):
    """True when every difference is within tolerance (float32 fields in DIALS's
    Eiger-master fix-up give ~1e-7 mm)."""
    for k, v in diffs.items():
        if isinstance(v, bool):
            if not v:
                return False
        elif v > TOLERANCE.get(k, 1e-9):
            return False
    return True


def our_pixels(f, indices, lo_hi=None):
    out = []
    for i in indices:
        d = f.get_raw_data(i)[0].astype(np.int32)
        m = f.get_mask()[0]
        lo, hi = f.models()[1][0].trusted_range
        usable = m & (d > lo) & (d < hi)
        out.append({"index": i, "sum": int(d.sum(dtype=np.int64)), "sha1": hashlib.sha1(d.tobytes()).hexdigest(),
                    "masked": int((~usable).sum()), "shape": list(d.shape)})
    return out


def synthetic(workdir, name, multi_axis):
    nx, ny, n = 200, 180, 6
    wavelength = 0.9763
    panel = Panel(name="/entry/instrument/detector/module", fast_axis=[1, 0, 0], slow_axis=[0, -1, 0],
                  origin=[-7.31, 6.52, -150.0], image_size=(nx, ny), pixel_size=(0.075, 0.075),
                  trusted_range=(-1, 60000), thickness=0.75, material="CdTe",
                  mu=mu_at_angstrom("CdTe", wavelength), px_mm_strategy=PARALLAX)
    panel.mask = [[96, 0, 104, ny]]
    if multi_axis:
        gonio = Goniometer.multi_axis([[1, 0, 0], [0.0, 0.6428, -0.766], [1, 0, 0]], [15.0, 30.0, 5.0],
                                      ["phi", "kappa", "omega"], 2)
    else:
        gonio = Goniometer()
    scan = Scan(image_range=(1, n), oscillation=(5.0, 0.1), exposure_times=[0.01] * n)
    rng = np.random.default_rng(7)
    bad = np.zeros((ny, nx), bool)
    bad[rng.integers(0, ny, 20), rng.integers(0, nx, 20)] = True

    def images():
        for i in range(n):
            img = rng.poisson(5.0, (ny, nx)).astype(np.uint32)
            img[90 + i, 100] = 50000  # a bright pixel per image
            yield img

    t0 = time.time()
    paths = write_nxmx(os.path.join(workdir, f"{name}_master.h5"), Beam(wavelength=wavelength),
                       Detector([panel]), gonio, scan, images(), pixel_mask=bad, images_per_file=4)
    t_write = time.time() - t0
    ours_f = open_image_file(paths[0])
    expt = dials_import(paths[0], workdir, name)
    e = read_experiments(expt)[0]
    theirs = (e.beam, e.detector, e.goniometer, e.scan)
    diffs = model_diffs(ours_f.models(), theirs)
    idx = [0, 3, 4, n - 1]
    dials_px = dxtbx_pixels(expt, idx)
    ours_px = our_pixels(ours_f, idx)
    pixels_equal = "images" in dials_px and all(
        a["sha1"] == b["sha1"] and a["masked"] == b["masked"] for a, b in zip(ours_px, dials_px["images"]))
    return {"files": [os.path.basename(p) for p in paths], "write_s": round(t_write, 3),
            "our_format": ours_f.format_name, "dials_format": dials_px.get("format"),
            "models_agree": ok(diffs), "model_diffs": diffs,
            "pixels_equal": pixels_equal, "ours": ours_px, "dials": dials_px.get("images", dials_px)}


def real_cbf(workdir, fname):
    path = os.path.join(REAL, "images", fname)
    if not os.path.exists(path):
        return {"skipped": "file absent"}
    name = fname.split(".")[0]
    f = open_image_file(path)
    expt = dials_import(path, workdir, name)
    e = read_experiments(expt)[0]
    diffs = model_diffs(f.models(), (e.beam, e.detector, e.goniometer, e.scan))
    dials_px = dxtbx_pixels(expt, [0])
    ours_px = our_pixels(f, [0])
    d0 = dials_px.get("images", [{}])[0]
    return {"our_format": f.format_name, "dials_format": dials_px.get("format"),
            "models_agree": ok(diffs), "model_diffs": diffs,
            "pixels_equal": ours_px[0]["sha1"] == d0.get("sha1"),
            "ours": ours_px, "dials": dials_px.get("images", dials_px),
            "note": "DIALS's get_mask also applies dynamic goniometer-shadow masking (SmarGon) when the "
                    "format supports it; ours is static mask + trusted range"}


def real_eiger(workdir):
    src = os.path.join(REAL, "eiger_master", "dectris_eiger_master.h5")
    if not os.path.exists(src):
        return {"skipped": "file absent"}
    d = os.path.join(workdir, "eiger")
    os.makedirs(d)
    master = os.path.join(d, "dectris_eiger_master.h5")
    shutil.copy(src, master)
    f = open_image_file(master)
    nx, ny = f.models()[1][0].image_size
    with h5py.File(os.path.join(d, "dectris_eiger_data_000001.h5"), "w") as h:  # dummy data for DIALS
        h.create_dataset("entry/data/data", shape=(1, ny, nx), dtype="uint16", chunks=(1, ny, nx),
                         **hdf5plugin.Bitshuffle(cname="lz4"))
    expt = dials_import(master, d, "eiger")
    e = read_experiments(expt)[0]
    diffs = model_diffs(f.models(), (e.beam, e.detector, e.goniometer, e.scan))
    f2 = open_image_file(master)
    dials_px = dxtbx_pixels(expt, [0])
    ours_px = our_pixels(f2, [0])
    return {"our_format": f.format_name, "dials_format": dials_px.get("format"),
            "models_agree": ok(diffs), "model_diffs": diffs,
            "mask_equal": ours_px[0]["masked"] == dials_px.get("images", [{}])[0].get("masked"),
            "ours_masked": ours_px[0]["masked"], "dials_masked": dials_px.get("images", [{}])[0].get("masked")}


def main():
    wait_for_dials()
    version = subprocess.run(["/usr/bin/dials.version"], capture_output=True, text=True).stdout.split("\n")[0]
    result = {"dials": version}
    with tempfile.TemporaryDirectory(prefix="xcheck_") as work:
        result["synthetic_single_axis"] = synthetic(work, "syn1", multi_axis=False)
        result["synthetic_multi_axis"] = synthetic(work, "syn3", multi_axis=True)
        for fname in ("DLS_I03_smargon_0001.cbf", "dlsnxs2cbf_therm_0001.cbf"):
            result[fname] = real_cbf(work, fname)
        result["dectris_eiger_master.h5"] = real_eiger(work)
    result["all_models_agree"] = all(v.get("models_agree", True) for v in result.values() if isinstance(v, dict))
    result["all_synthetic_pixels_equal"] = all(result[k]["pixels_equal"] for k in
                                               ("synthetic_single_axis", "synthetic_multi_axis"))
    conv = lambda o: o.item() if hasattr(o, "item") else str(o)  # noqa: E731
    print("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, default=conv)}" for k, v in result.items()) + "\n}")


if __name__ == "__main__":
    main()
