"""Group image files into sweeps (experiments), as dials.import does."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import XtalError
from ..models import Experiment, ExperimentList, ImageSource, Scan
from .images import open_image_file

_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+(?:\.gz|\.bz2)?)$")


@dataclass
class _Group:
    template: str
    files: list = field(default_factory=list)  # (image number, ImageFile)


def _template(path: str) -> tuple[str, int] | None:
    m = _NUMBERED.match(os.path.basename(path))
    if not m:
        return None
    prefix, digits, suffix = m.groups()
    return os.path.join(os.path.dirname(path), prefix + "#" * len(digits) + suffix), int(digits)


def _same_geometry(a, b) -> bool:
    (ba, da, _, _), (bb, db, _, _) = a, b
    if abs(ba.wavelength - bb.wavelength) > 1e-6 * ba.wavelength or len(da) != len(db):
        return False
    return all(np.allclose(p.origin, q.origin, atol=1e-3) and p.image_size == q.image_size
               for p, q in zip(da, db))


def import_images(paths, image_range: tuple[int, int] | None = None) -> tuple[ExperimentList, list[dict]]:
    """Read image headers and return one experiment per sweep (or per still).

    ``paths`` are image files or folders (folders are searched, not recursively, for
    ``.cbf``, ``.h5``/``.nxs`` master files). Consecutive numbered CBF files with
    the same geometry whose oscillations join up form one sweep; each NXmx master
    file is one sweep. ``image_range`` (1-based, inclusive) restricts every sweep.
    Returns the experiments and, per experiment, ``{"files": [...], "format": name,
    "detector": the detector's name from the file ("" if none)}``.
    """
    files = _expand(paths)
    if not files:
        raise XtalError("no image files given (expected .cbf, or NeXus *_master.h5 / .nxs)")
    experiments, groups = ExperimentList(), []
    singles: dict[str, _Group] = {}
    for path in files:
        image = open_image_file(path)
        image.check_data_files()
        if image.n_images > 1 or path.endswith((".h5", ".nxs", ".nx5", ".hdf5")):
            beam, detector, gonio, scan = image.models()
            src = ImageSource(kind="ImageSequence" if scan is not None and not scan.is_still else "ImageSet",
                              template=path, paths=[path],
                              single_file_indices=list(range(image.n_images)))
            experiments.append(Experiment(beam=beam, detector=detector, goniometer=gonio,
                                          scan=scan, imageset=src))
            groups.append({"files": [path], "format": image.format_name, "detector": image.detector_name()})
            continue
        t = _template(path)
        key = t[0] if t else path
        singles.setdefault(key, _Group(template=key)).files.append((t[1] if t else 1, image))
    for g in singles.values():
        g.files.sort(key=lambda f: f[0])
        for sweep in _split_sweeps(g.files):
            exp, sweep_files = _sweep_experiment(g.template, sweep)
            experiments.append(exp)
            groups.append({"files": sweep_files, "format": sweep[0][1].format_name,
                           "detector": sweep[0][1].detector_name()})
    if image_range is not None:
        experiments, groups = _restrict(experiments, groups, image_range)
    return experiments, groups


def _expand(paths) -> list[str]:
    out = []
    for p in paths:
        p = os.path.abspath(p)
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                full = os.path.join(p, name)
                if not os.path.isfile(full):
                    continue
                if name.endswith(".cbf") or name.endswith("_master.h5") or name.endswith(".nxs"):
                    out.append(full)
        elif not os.path.exists(p):
            raise XtalError(f"{p}: no such file or folder")
        else:
            out.append(p)
    return out


def _split_sweeps(files):
    """Split numbered single images into runs that continue one another."""
    sweeps, current = [], []
    for number, image in files:
        if current:
            prev_number, prev = current[-1]
            pb, pd, pg, ps = prev.models()
            b, d, g, s = image.models()
            joins = (number == prev_number + 1 and ps is not None and s is not None
                     and not s.is_still and abs(ps.oscillation[1] - s.oscillation[1]) < 1e-6
                     and abs(ps.oscillation[0] + ps.oscillation[1] - s.oscillation[0]) < 1e-3
                     and _same_geometry((pb, pd, pg, ps), (b, d, g, s)))
            if not joins:
                sweeps.append(current)
                current = []
        current.append((number, image))
    if current:
        sweeps.append(current)
    return sweeps


def _sweep_experiment(template: str, sweep):
    first_number, first = sweep[0]
    beam, detector, gonio, scan0 = first.models()
    n = len(sweep)
    exposure = [im.models()[3].exposure_times[0] if im.models()[3] is not None else 0.0 for _, im in sweep]
    if scan0 is None:
        src = ImageSource(kind="ImageSet", paths=[im.path for _, im in sweep])
        scan = None
    else:
        scan = Scan(image_range=(first_number, first_number + n - 1), oscillation=scan0.oscillation,
                    exposure_times=exposure, epochs=np.zeros(n))
        kind = "ImageSet" if scan.is_still else "ImageSequence"
        src = ImageSource(kind=kind, template=template, paths=[im.path for _, im in sweep])
    return (Experiment(beam=beam, detector=detector, goniometer=gonio, scan=scan, imageset=src),
            [im.path for _, im in sweep])


def _restrict(experiments, groups, image_range):
    a, b = image_range
    if a < 1 or b < a:
        raise XtalError(f"image_range={a},{b} is not a valid range (1-based, first ≤ last)")
    out, out_groups = ExperimentList(), []
    for e, group in zip(experiments, groups):
        files = group["files"]
        s = e.scan
        if s is None:
            out.append(e)
            out_groups.append(group)
            continue
        lo, hi = max(a, s.image_range[0]), min(b, s.image_range[1])
        if lo > hi:
            raise XtalError(f"image_range={a},{b} lies outside the images {s.image_range[0]}–{s.image_range[1]} "
                            f"of {e.imageset.template}")
        i0, i1 = lo - s.image_range[0], hi - s.image_range[0] + 1
        e.scan = Scan(image_range=(lo, hi),
                      oscillation=(s.oscillation[0] + i0 * s.oscillation[1], s.oscillation[1]),
                      exposure_times=s.exposure_times[i0:i1], epochs=s.epochs[i0:i1],
                      batch_offset=s.batch_offset)
        src = e.imageset
        if src.single_file_indices is not None:
            src.single_file_indices = src.single_file_indices[i0:i1]
        elif len(src.paths) == s.num_images:
            src.paths = src.paths[i0:i1]
            files = files[i0:i1]
        out.append(e)
        out_groups.append(dict(group, files=files))
    return out, out_groups
