"""The import stage: image headers → one experiment per sweep (dials.import)."""
from __future__ import annotations

import os

from ..io.importer import import_images
from ..models import ExperimentList
from .params import ImportParams


def run_import(params: ImportParams) -> tuple[ExperimentList, dict]:
    """Read the headers of the images and make one experiment per sweep (``xtal import``).

    Parameters
    ----------
    params : ImportParams
        ``paths``: image files (NXmx masters, CBF) or folders holding them;
        ``image_range``: first, last image (1-based, inclusive) kept of every sweep.

    Returns
    -------
    experiments : ExperimentList
        One experiment per sweep (or still): beam, detector, goniometer and scan
        in the DIALS lab frame (mm, Å, deg at the interface), and the image source.
    summary : dict
        JSON-able: ``format``, ``n_images``, ``n_sweeps``, ``n_stills`` and one row
        per sweep (name, template, files, image range, oscillation start and width
        in deg, detector (its name in the file header, else the panel's), image size
        in px, wavelength in Å, beam centre in px (fast, slow), distance in mm, format).

    Examples
    --------
    >>> experiments, summary = run_import(ImportParams(paths=("data/insulin_1_master.h5",), image_range=(1, 20)))
    >>> summary["sweeps"][0]["beam_centre_px"]
    """
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
            "detector": info.get("detector") or panel.identifier or panel.name,
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
    """A sweep's name: its file template without the folder, the HDF5 suffix or the ``#`` image numbers."""
    base = os.path.basename(template)
    for suffix in ("_master.h5", ".nxs", ".h5"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base.split("#")[0].rstrip("_") or f"sweep_{index}"
