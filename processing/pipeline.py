"""The stage graph: stage names, their inputs and outputs, and parameter classes.

Each stage function takes its parameter dataclass (and the models/tables it needs)
and returns its outputs plus a JSON-able summary; the CLI and the Celery tasks do
the file reading and writing around it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .io.importer import import_images
from .models import ExperimentList
from .params import param

STAGES = ("import", "find_spots", "index", "refine", "integrate", "cosym", "scale",
          "filter", "resolution", "merge", "multiplex")

OUTPUTS = {
    "import": ("imported.expt",),
    "find_spots": ("strong.refl",),
    "index": ("indexed.expt", "indexed.refl"),
    "refine": ("refined.expt", "refined.refl"),
    "integrate": ("integrated.expt", "integrated.refl"),
    "cosym": ("symmetrized.expt", "symmetrized.refl"),
    "scale": ("scaled.expt", "scaled.refl"),
    "filter": ("filtered.expt", "filtered.refl"),
    "merge": ("merged.mtz", "scaled_unmerged.mtz"),
}


@dataclass(frozen=True)
class ImportParams:
    """Parameters of ``xtal import`` (dials.import)."""

    paths: tuple[str, ...] = param((), "image files or folders holding them")
    image_range: tuple[int, int] | None = param(None, "first,last image (1-based, inclusive) of every sweep")


def run_import(params: ImportParams) -> tuple[ExperimentList, dict]:
    """Read the headers of the images and make one experiment per sweep."""
    experiments, files = import_images(params.paths, params.image_range)
    sweeps, formats = [], []
    n_images = n_stills = 0
    for k, (e, info) in enumerate(zip(experiments, files)):
        group = info["files"]
        panel = e.detector[0]
        n = e.scan.num_images if e.scan is not None else len(group)
        n_images += n
        if e.is_still:
            n_stills += n
        src = e.imageset
        sweeps.append({
            "name": _sweep_name(src.template or group[0], k),
            "template": src.template,
            "files": list(group),
            "image_range": list(e.scan.image_range) if e.scan is not None else [1, n],
            "oscillation": list(e.scan.oscillation) if e.scan is not None else [0.0, 0.0],
            "detector": panel.identifier or panel.name,
            "image_size": list(panel.image_size),
            "wavelength": e.beam.wavelength,
            "beam_centre_px": [float(v) for v in panel.get_beam_centre_px(e.beam.s0)],
            "distance_mm": panel.distance,
            "format": info["format"],
        })
        formats.append(sweeps[-1]["format"])
    summary = {
        "format": ", ".join(sorted(set(formats))),
        "n_images": n_images,
        "n_sweeps": sum(1 for e in experiments if not e.is_still),
        "n_stills": n_stills,
        "sweeps": sweeps,
    }
    return experiments, summary


def _sweep_name(template: str, index: int) -> str:
    base = os.path.basename(template)
    for suffix in ("_master.h5", ".nxs", ".h5"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base.split("#")[0].rstrip("_") or f"sweep_{index}"
