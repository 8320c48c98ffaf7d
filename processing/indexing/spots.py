"""Spot centroids → millimetres, s1, reciprocal-lattice points and entering flags.

DIALS's ``centroid_px_to_mm``, ``map_centroids_to_reciprocal_space`` and
``calculate_entering_flags`` for one rotation sweep, vectorised.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import XtalError
from ..geometry.frames import lab_to_s1, reciprocal_lattice_points
from ..models import Experiment


def centroids_to_reciprocal_space(experiment: Experiment, xyz_px: np.ndarray, var_px: np.ndarray | None,
                                  panel: np.ndarray) -> dict[str, np.ndarray]:
    """``xyzobs.mm.value``/``variance``, ``s1``, ``rlp`` and ``entering`` for one sweep.

    ``xyz_px`` (N×3: x, y px and z frame), ``var_px`` (N×3 or None), ``panel`` (N ints).
    φ (rad) is the scan angle at frame z; the rlp is rotated back to the datum φ = 0.
    """
    xyz_px = np.asarray(xyz_px, dtype=float).reshape(-1, 3)
    n = len(xyz_px)
    panel = np.asarray(panel, dtype=np.int64).reshape(-1) if n else np.zeros(0, np.int64)
    det, beam, scan, gonio = experiment.detector, experiment.beam, experiment.scan, experiment.goniometer
    if det is None or beam is None:
        raise XtalError("the experiment has no detector or beam model")
    if n and (panel.min() < 0 or panel.max() >= len(det)):
        raise XtalError(f"reflections on panel {int(panel.max())}, but the detector has {len(det)} panels")
    mm = np.zeros((n, 3))
    lab = np.zeros((n, 3))
    var_mm = np.zeros((n, 3))
    if var_px is None:
        var_px = np.full((n, 3), 0.25)
    var_px = np.asarray(var_px, dtype=float).reshape(-1, 3)
    for i, p in enumerate(det.panels):
        sel = panel == i
        if not sel.any():
            continue
        xy = p.pixel_to_millimeter(xyz_px[sel, :2])
        mm[sel, :2] = xy
        lab[sel] = p.get_lab_coord(xy)
        var_mm[sel, 0] = var_px[sel, 0] * p.pixel_size[0] ** 2
        var_mm[sel, 1] = var_px[sel, 1] * p.pixel_size[1] ** 2
    if scan is not None and gonio is not None and not scan.is_still:
        phi_deg = scan.angle_from_frame(xyz_px[:, 2])
        mm[:, 2] = np.radians(phi_deg)
        var_mm[:, 2] = var_px[:, 2] * math.radians(scan.oscillation[1]) ** 2
    s1 = lab_to_s1(lab, beam.wavelength) if n else np.zeros((0, 3))
    s0 = beam.s0
    rlp = reciprocal_lattice_points(s1, s0, gonio, mm[:, 2]) if n else np.zeros((0, 3))
    if gonio is not None:
        m2 = gonio.rotation_axis_lab
        entering = (s1 @ np.cross(s0, m2)) < 0.0 if n else np.zeros(0, bool)
    else:
        entering = np.zeros(n, bool)
    return {"xyzobs.mm.value": mm, "xyzobs.mm.variance": var_mm, "s1": s1, "rlp": rlp,
            "entering": entering}
