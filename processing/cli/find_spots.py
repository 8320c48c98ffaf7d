"""`xtal find_spots imported.expt [key=value…] [output.reflections=strong.refl]`.

Like dials.find_spots: takes an experiment list (or image files, imported on the
fly), finds the strong spots of every sweep and writes ``strong.refl`` — only at
the end, atomically, so a failed run leaves no partial file. DIALS's parameter
paths are accepted as well as the short names (``spotfinder.threshold.dispersion.
gain=2``, ``threshold.algorithm=dispersion``, ``filter.ice_rings.filter=true``,
``mp.nproc=4``, ``nproc=4``).
"""
from __future__ import annotations

import math
import sys

import numpy as np

from ..errors import XtalError
from .command import Command, run_command

RULE = "-" * 80


def ascii_histogram(z: np.ndarray, width: int = 60, height: int = 10) -> str:
    """DIALS's per-image spot-count histogram (dials.util.ascii_art.flex_histogram)."""
    if len(z) == 0:
        return ""
    z = np.asarray(z, dtype=float)
    min_z, max_z = float(z.min()), float(z.max())
    z = z + (np.arange(len(z)) % 2) / 2.0 - 0.25
    xmin, xmax = math.ceil(min_z), math.ceil(max_z)
    image_count = xmax - xmin + 1
    if image_count <= 1:
        return f"{len(z)} spots found on 1 image"
    width = min(image_count, width)
    z_step = (max_z - min_z) / width
    counts, seen = [], 0
    z_bound = min_z
    for i in range(1, width):
        z_bound = min_z + i * z_step
        n = int((z < z_bound).sum())
        counts.append(n - seen)
        seen = n
    counts.append(int((z >= z_bound).sum()))
    max_count = max(counts)
    scaled = [int(round(c * height / max_count)) for c in counts]
    rows = [f"{sum(counts)} spots found on {image_count} images (max {max_count} / bin)"]
    for i in range(height, 0, -1):
        rows.append("".join("*" if c > i - 1 else " " for c in scaled))
    padding = width - len(str(xmin)) - len(str(xmax))
    middle = ((" " if padding < 7 else "image").center(padding)) if padding > 0 else ""
    rows.append(f"{xmin}{middle}{xmax}")
    return "\n".join(rows)


def _load_experiments(files: list[str]):
    from ..io.expt import read_experiments

    expts = [f for f in files if f.endswith(".expt") or f.endswith(".json")]
    images = [f for f in files if f not in expts]
    if expts and images:
        raise XtalError("give either experiment files (.expt) or image files, not both")
    if expts:
        from ..models import ExperimentList

        out = ExperimentList()
        for f in expts:
            out.extend(read_experiments(f))
        return out
    from ..importer import ImportParams, run_import

    experiments, _ = run_import(ImportParams(paths=tuple(images)))
    return experiments


def _read(files: list[str], params) -> tuple:
    if not files:
        raise XtalError("no input: give imported.expt (or image files)")
    experiments = _load_experiments(files)
    if len(experiments) == 0:
        raise XtalError("no experiments in the input")
    return experiments, None


def _imageset_report(k: int, s: dict) -> list[str]:
    out = [RULE, f"Finding strong spots in imageset {k}", RULE,
           f"Setting spotfinder.filter.min_spot_size={s['min_spot_size']}"]
    out += [f"Found {r['n_strong_pixels']} strong pixels on image {r['image']}" for r in s["per_image"]]
    n_size_ok = s["n_extracted"] - s["n_too_small"] - s["n_too_large"]
    out += ["", f"Extracted {s['n_extracted']} spots",
            f"Removed {s['n_too_small']} spots with size < {s['min_spot_size']} pixels",
            f"Removed {s['n_too_large']} spots with size > {s['max_spot_size']} pixels",
            f"Calculated {n_size_ok} spot centroids", f"Calculated {n_size_ok} spot intensities",
            f"Filtered {s['n_spots']} of {n_size_ok} spots by peak-centroid distance"]
    if s["n_hot_pixels"]:
        out.append(f"Found {s['n_hot_pixels']} possible hot pixel(s)")
    return out


def report(summary: dict, experiments, table, params) -> str:
    """dials.find_spots's log: per imageset the counts, per image the strong pixels and
    spots, the per-image histograms, and the time."""
    out = []
    for k, s in enumerate(summary["experiments"]):
        out += _imageset_report(k, s)
    out += ["", f"{'image':>7} {'strong px':>9} {'spots':>6}"]
    for k, s in enumerate(summary["experiments"]):
        if len(summary["experiments"]) > 1:
            out.append(f"imageset {k}:")
        out += [f"{r['image']:>7} {r['n_strong_pixels']:>9} {r['n_spots']:>6}" for r in s["per_image"]]
    ids = table["id"] if len(table) else np.zeros(0, np.int32)
    for k in range(len(experiments)):
        z = table["xyzobs.px.value"][ids == k, 2] if len(table) else np.zeros(0)
        plot = ascii_histogram(z)
        if plot:
            out += [f"\nHistogram of per-image spot count for imageset {k}:", plot]
    out += ["", RULE, f"Time: {summary['time']:.2f} s for {summary['n_images']} images "
                      f"({summary['images_per_second']:.1f} images/s, nproc={params.nproc})"]
    return "\n".join(out)


# accepted for DIALS compatibility; xtal writes no shoeboxes or separate logs
COMMAND = Command("find_spots", "xtal find_spots imported.expt [key=value …] [output.reflections=strong.refl]",
                  report, read=_read, ignored=("output.shoeboxes", "output.log", "per_image_statistics"))


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)


if __name__ == "__main__":  # pragma: no cover - `python -m processing.cli.find_spots …`
    try:
        sys.exit(run(sys.argv[1:]) or 0)
    except XtalError as exc:
        print(f"xtal find_spots: error: {exc}", file=sys.stderr)
        sys.exit(1)
