"""`xtal find_spots imported.expt [key=value…] [output.reflections=strong.refl]`.

Like dials.find_spots: takes an experiment list (or image files, imported on the
fly), finds the strong spots of every sweep and writes ``strong.refl`` — only at
the end, atomically, so a failed run leaves no partial file. DIALS's parameter
paths are accepted as well as the short names (``spotfinder.threshold.dispersion.
gain=2``, ``threshold.algorithm=dispersion``, ``filter.ice_rings.filter=true``,
``mp.nproc=4``, ``nproc=4``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys

import numpy as np

from ..errors import XtalError
from ..params import from_strings
from ..spotfinding import FindSpotsParams, run_find_spots
from .main import pop_outputs, print_help, split_args

RULE = "-" * 80

# DIALS parameter paths whose last word is not the field name
ALIASES = {
    "threshold.algorithm": "threshold_algorithm",
    "ice_rings.filter": "ice_rings",
    "ice_rings.width": "ice_rings_width",
}


def _field_name(key: str) -> str:
    fields = {f.name for f in dataclasses.fields(FindSpotsParams)}
    if key in fields:
        return key
    for path, name in ALIASES.items():
        if key == path or key.endswith("." + path):
            return name
    leaf = key.rsplit(".", 1)[-1]
    return leaf if leaf in fields else key


def _normalise(words: list[str]) -> list[str]:
    out = []
    for w in words:
        key, _, value = w.partition("=")
        name = _field_name(key.strip())
        if name in ("min_spot_size", "max_separation", "gain", "d_min", "d_max",
                    "maximum_trusted_value") and value.strip().lower() == "auto":
            value = "None"
        out.append(f"{name}={value}")
    return out


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
    from ..pipeline import ImportParams, run_import

    experiments, _ = run_import(ImportParams(paths=tuple(images)))
    return experiments


def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_:
        print_help("find_spots", FindSpotsParams)
        print("  output.reflections = strong.refl\n      where to write the strong spots")
        return 0
    outputs, words = pop_outputs(words, reflections="strong.refl")
    output = outputs["reflections"]
    # accepted for DIALS compatibility; xtal writes no shoeboxes or separate logs
    kept = [w for w in words if w.partition("=")[0] not in ("output.shoeboxes", "output.log", "per_image_statistics")]
    if not files:
        raise XtalError("no input: give imported.expt (or image files)")
    params = from_strings(FindSpotsParams, _normalise(kept))
    experiments = _load_experiments(files)
    if len(experiments) == 0:
        raise XtalError("no experiments in the input")
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise XtalError(f"output folder {out_dir} does not exist")

    table, summary = run_find_spots(experiments, params)

    for k, s in enumerate(summary["experiments"]):
        print(RULE)
        print(f"Finding strong spots in imageset {k}")
        print(RULE)
        print(f"Setting spotfinder.filter.min_spot_size={s['min_spot_size']}")
        for r in s["per_image"]:
            print(f"Found {r['n_strong_pixels']} strong pixels on image {r['image']}")
        print()
        print(f"Extracted {s['n_extracted']} spots")
        print(f"Removed {s['n_too_small']} spots with size < {s['min_spot_size']} pixels")
        print(f"Removed {s['n_too_large']} spots with size > {s['max_spot_size']} pixels")
        n_size_ok = s["n_extracted"] - s["n_too_small"] - s["n_too_large"]
        print(f"Calculated {n_size_ok} spot centroids")
        print(f"Calculated {n_size_ok} spot intensities")
        print(f"Filtered {s['n_spots']} of {n_size_ok} spots by peak-centroid distance")
        if s["n_hot_pixels"]:
            print(f"Found {s['n_hot_pixels']} possible hot pixel(s)")
    print()
    print(f"{'image':>7} {'strong px':>9} {'spots':>6}")
    for k, s in enumerate(summary["experiments"]):
        if len(summary["experiments"]) > 1:
            print(f"imageset {k}:")
        for r in s["per_image"]:
            print(f"{r['image']:>7} {r['n_strong_pixels']:>9} {r['n_spots']:>6}")
    ids = table["id"] if len(table) else np.zeros(0, np.int32)
    for k in range(len(experiments)):
        z = table["xyzobs.px.value"][ids == k, 2] if len(table) else np.zeros(0)
        plot = ascii_histogram(z)
        if plot:
            print(f"\nHistogram of per-image spot count for imageset {k}:")
            print(plot)
    print()
    print(RULE)
    from ..io.refl import write_reflections

    write_reflections(output, table)
    t = summary["time"]
    print(f"Saved {len(table)} reflections to {output}")
    print(f"Time: {t:.2f} s for {summary['n_images']} images ({summary['images_per_second']:.1f} images/s, nproc={params.nproc})")
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m processing.cli.find_spots …`
    try:
        sys.exit(run(sys.argv[1:]) or 0)
    except XtalError as exc:
        print(f"xtal find_spots: error: {exc}", file=sys.stderr)
        sys.exit(1)
