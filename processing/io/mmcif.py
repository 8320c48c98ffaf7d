"""Scaled unmerged reflections as mmCIF, written through gemmi.cif, as ``dials.export
format=mmcif`` writes them (its default, PDBx/mmCIF v5 layout).

One data block holding: ``_audit`` / ``_entry`` / ``_software``; ``_exptl_crystal``,
``_diffrn``, ``_diffrn_radiation`` with a ``_diffrn_radiation_wavelength`` loop (one row
per distinct wavelength), ``_diffrn_source``, ``_diffrn_detector`` (collection date from
the scans' epochs when they are set); ``_symmetry`` and ``_space_group``; ``_cell`` (the
per-parameter median over experiments, 4 decimals, as DIALS); a ``_diffrn_scale_group``
loop (one code per experiment) and the ``_diffrn_refln`` loop, one row an observation:

=====================  =====================================================
item                   value
=====================  =====================================================
diffrn_id              1
id                     1 … n
index_h/k/l            ``miller_index`` as in the table (original, not ASU)
pdbx_image_id          image number: floor(z_obs) + 1 within the scan
pdbx_detector_x/y      observed centroid, pixels
pdbx_scale_value       1 / inverse_scale_factor
intensity_net          intensity.scale.value / inverse_scale_factor
intensity_sigma        √intensity.scale.variance / inverse_scale_factor
pdbx_scan_angle        rotation angle of the predicted centroid, degrees
scale_group_code       experiment number (1-based): which sweep
wavelength_id          only when there is more than one wavelength
=====================  =====================================================

Rows are chosen as for the MTZ (flag ``scaled``, not ``bad_for_scaling``, positive
variance and scale, partiality > 0) but with no partiality threshold and no I/σ limit,
as dials.export does for mmCIF. The file is written to a temporary name and renamed.
"""
from __future__ import annotations

import datetime
import os
import time

import gemmi
import numpy as np

from ..errors import XtalError
from ..models import ExperimentList
from .files import atomic_path
from .mtz_export import (_images_of_rows, _position, _rotation_angles, _space_group, image_ranges,
                         median_cell, select_observations)

__all__ = ["write_unmerged_mmcif"]

_SOFTWARE, _VERSION = "xtalweb", "0.1.0"


def _fmt(values, spec: str) -> list[str]:
    return [format(v, spec) for v in np.asarray(values).tolist()]


def _quote(text: str) -> str:
    return gemmi.cif.quote(str(text))


def write_unmerged_mmcif(path, experiments, table, space_group) -> int:
    """Write scaled observations as an mmCIF ``_diffrn_refln`` loop; returns the row count."""
    experiments = ExperimentList(experiments)
    if len(experiments) == 0:
        raise XtalError("no experiments to export")
    sg = _space_group(space_group)
    sel = select_observations(table, experiments, "scale", partiality_threshold=0.0, min_isigi=None)
    rows, expt = sel.rows, sel.expt
    n = len(rows)
    obs = _position(table, rows, ("xyzobs.px.value", "xyzcal.px"))
    images = _images_of_rows(experiments, expt, obs[:, 2], image_ranges(experiments))
    if "xyzcal.mm" in table:
        angle = np.degrees(np.asarray(table["xyzcal.mm"], dtype=float)[rows, 2])
    else:
        angle = _rotation_angles(experiments, expt, _position(table, rows, ("xyzcal.px", "xyzobs.px.value"))[:, 2])
    hkl = np.asarray(table["miller_index"])[rows]
    isf = sel.extra["SCALEUSED"]

    used = sorted(int(k) for k in np.unique(sel.expt_all) if k >= 0)
    wl_of = {k: round(float(experiments[k].beam.wavelength), 5) for k in used}
    wavelengths = sorted(set(wl_of.values()))
    wl_id = {w: i + 1 for i, w in enumerate(wavelengths)}
    a, b, c, al, be, ga = median_cell(experiments)

    doc = gemmi.cif.Document()
    block = doc.add_new_block("xtal")
    block.set_pair("_audit.revision_id", "1")
    block.set_pair("_audit.creation_method", _quote(f"{_SOFTWARE} {_VERSION}"))
    block.set_pair("_audit.creation_date", datetime.date.today().isoformat())
    block.set_pair("_entry.id", "xtal")
    block.set_mmcif_category("_software", {
        "pdbx_ordinal": ["1"], "name": [_SOFTWARE], "version": [_VERSION], "type": ["package"],
        "classification": [_quote("data scaling")],
        "description": [_quote("Scaled unmerged reflections written by xtalweb")]}, raw=True)
    block.set_pair("_exptl_crystal.id", "1")
    block.set_pair("_diffrn.id", "1")
    block.set_pair("_diffrn.crystal_id", "1")
    block.set_pair("_diffrn_radiation.diffrn_id", "1")
    block.set_pair("_diffrn_radiation.wavelength_id", "1")
    block.set_mmcif_category("_diffrn_radiation_wavelength", {
        "id": [str(wl_id[w]) for w in wavelengths], "wavelength": [f"{w:.5f}" for w in wavelengths]}, raw=True)
    block.set_pair("_diffrn_source.diffrn_id", "1")
    block.set_pair("_diffrn_source.pdbx_wavelength_list", _quote(", ".join(f"{w:.5f}" for w in wavelengths)))
    block.set_pair("_diffrn_detector.diffrn_id", "1")
    epochs = [float(experiments[k].scan.epochs[0]) for k in used
              if experiments[k].scan is not None and len(experiments[k].scan.epochs)
              and experiments[k].scan.epochs[0] > 0]
    if epochs:
        block.set_pair("_diffrn_detector.pdbx_collection_date", time.strftime("%Y-%m-%d", time.gmtime(min(epochs))))
    block.set_pair("_symmetry.entry_id", "xtal")
    block.set_pair("_symmetry.space_group_name_H-M", _quote(sg.xhm()))
    block.set_pair("_symmetry.space_group_name_Hall", _quote(sg.hall))
    block.set_pair("_symmetry.Int_Tables_number", str(sg.number))
    block.set_pair("_space_group.id", "1")
    block.set_pair("_space_group.name_H-M_alt", _quote(sg.xhm()))
    block.set_pair("_space_group.name_Hall", _quote(sg.hall))
    block.set_pair("_space_group.IT_number", str(sg.number))
    block.set_pair("_space_group.crystal_system", sg.crystal_system_str())
    block.set_pair("_cell.entry_id", "xtal")
    for name, value in zip(("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma"),
                           (a, b, c, al, be, ga)):
        block.set_pair(f"_cell.{name}", f"{value:.4f}")
    block.set_mmcif_category("_diffrn_scale_group", {"code": [str(k + 1) for k in used]}, raw=True)

    loop = {
        "diffrn_id": ["1"] * n,
        "id": np.arange(1, n + 1).astype(str).tolist(),
        "index_h": hkl[:, 0].astype(str).tolist(),
        "index_k": hkl[:, 1].astype(str).tolist(),
        "index_l": hkl[:, 2].astype(str).tolist(),
        "pdbx_image_id": images.astype(str).tolist(),
        "pdbx_detector_x": _fmt(obs[:, 0], ".2f"),
        "pdbx_detector_y": _fmt(obs[:, 1], ".2f"),
        "pdbx_scale_value": _fmt(1.0 / isf, ".6g"),
        "intensity_net": _fmt(sel.intensity, ".6g"),
        "intensity_sigma": _fmt(sel.sigma, ".6g"),
        "pdbx_scan_angle": _fmt(angle, ".4f"),
        "scale_group_code": (expt + 1).astype(str).tolist(),
    }
    if len(wavelengths) > 1:
        ids = np.array([wl_id[wl_of[k]] if k in wl_of else 1 for k in range(len(experiments))])
        loop["wavelength_id"] = ids[expt].astype(str).tolist()
    block.set_mmcif_category("_diffrn_refln", loop, raw=True)

    name = os.fspath(path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(name))):
        raise XtalError(f"{name}: cannot write mmCIF file (no such folder)")
    try:
        with atomic_path(name) as tmp:
            doc.write_file(tmp)
    except (OSError, RuntimeError) as exc:
        raise XtalError(f"{name}: cannot write mmCIF file ({exc})") from None
    return n
