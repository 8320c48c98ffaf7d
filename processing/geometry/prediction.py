"""Rotation-scan reflection prediction (DIALS's ScanStaticRayPredictor), vectorised.

A reciprocal-lattice point of index h sits at ``r(φ) = S · R(e, φ) · F · A · h`` in the
laboratory frame (S setting rotation, R the scan rotation about the unit axis e, F the
fixed rotation, A = U·B). It diffracts when it lies on the Ewald sphere,
``|s0 + r(φ)| = |s0|``. Writing ``r0 = F·A·h`` and ``s0' = Sᵀ·s0`` (the beam seen from
the scan-axis frame) and expanding R by Rodrigues,

    R r0 = r∥ + cos φ · r⊥ + sin φ · (e × r0),

the condition ``2 s0'·R r0 + |r0|² = 0`` becomes ``a cos φ + b sin φ = c`` with
``a = s0'·r⊥``, ``b = s0'·(e × r0)``, ``c = −(|r0|²/2 + s0'·r∥)``: two crossings
``φ = atan2(b, a) ± acos(c / √(a² + b²))`` when ``|c| ≤ √(a² + b²)``.

A crossing is *entering* when the point moves into the sphere, which DIALS writes as
``s1 · (s0 × m2) < 0`` (m2 the rotation axis in the lab frame).
"""
from __future__ import annotations

import math

import gemmi
from typing import NamedTuple

import numpy as np

from ..models import Beam, Detector, Goniometer, Scan
from ..models.crystal import b_matrix

__all__ = ["ewald_crossings", "generate_indices", "predict_rotation"]


def _group_ops(space_group) -> gemmi.GroupOps | None:
    if space_group is None:
        return None
    if isinstance(space_group, gemmi.GroupOps):
        return space_group
    if isinstance(space_group, gemmi.SpaceGroup):
        return space_group.operations()
    if isinstance(space_group, str):
        sg = gemmi.find_spacegroup_by_name(space_group)
        if sg is None:  # a Hall symbol
            return gemmi.symops_from_hall(space_group.strip())
        return sg.operations()
    raise TypeError(f"cannot use {space_group!r} as a space group")


def generate_indices(cell, d_min: float, space_group=None, d_max: float | None = None) -> np.ndarray:
    """All Miller indices (N×3 int) with d_min ≤ d (≤ d_max), without (0,0,0).

    With a space group (gemmi SpaceGroup / GroupOps / symbol) the systematically
    absent indices are left out. The full sphere is returned, not an asymmetric unit.
    """
    if not d_min > 0:
        raise ValueError(f"d_min must be positive, got {d_min}")
    B = b_matrix(cell)
    real = np.linalg.inv(B)  # rows are a, b, c (as the rows of A⁻¹ for U = I)
    lengths = np.linalg.norm(real, axis=1)  # |h| ≤ |a|/d_min
    hmax = np.floor(lengths / d_min).astype(int)
    ranges = [np.arange(-m, m + 1) for m in hmax]
    h = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    r2 = np.einsum("ij,nj->ni", B, h)
    inv_d2 = np.einsum("ni,ni->n", r2, r2)
    keep = (inv_d2 > 0) & (inv_d2 <= 1.0 / d_min**2 * (1 + 1e-12))
    if d_max is not None:
        keep &= inv_d2 >= 1.0 / d_max**2
    h = h[keep]
    ops = _group_ops(space_group)
    if ops is not None and len(h):
        h = h[~np.asarray(ops.systematic_absences(h.astype(np.int32)), dtype=bool)]
    return h.astype(np.int32)


class EwaldCrossings(NamedTuple):
    """Where reciprocal-lattice points A·h meet the Ewald sphere under rotation.

    φ = base ± delta (rad) are the two crossing angles of each point (``valid`` where
    it crosses at all); r(φ) = r_par + cos φ · r_perp + sin φ · e_x_r is the point at
    φ in the frame of the setting rotation S, and s1 = S · (s0p + r(φ)).
    """

    base: np.ndarray
    delta: np.ndarray
    valid: np.ndarray
    r_par: np.ndarray
    r_perp: np.ndarray
    e_x_r: np.ndarray
    s0p: np.ndarray
    S: np.ndarray
    e: np.ndarray


def ewald_crossings(A, h, s0, goniometer) -> EwaldCrossings:
    """Closed-form rotation angles at which A·h (N×3 indices) is in diffraction;
    ``A`` is 3×3 or one matrix per index (N×3×3)."""
    S = goniometer.setting_rotation
    F = goniometer.fixed_rotation
    e = goniometer.rotation_axis / np.linalg.norm(goniometer.rotation_axis)
    s0p = S.T @ np.asarray(s0, dtype=float)
    A = np.asarray(A, dtype=float)
    h = np.asarray(h, dtype=float)
    r0 = h @ (F @ A).T if A.ndim == 2 else np.einsum("ij,njk,nk->ni", F, A, h)
    r_par = (r0 @ e)[:, None] * e
    r_perp = r0 - r_par
    e_x_r = np.cross(e, r0)
    a = r_perp @ s0p
    b = e_x_r @ s0p
    c = -(0.5 * np.einsum("ij,ij->i", r0, r0) + r_par @ s0p)
    rho = np.hypot(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = c / rho
    valid = (rho > 0) & (np.abs(ratio) <= 1.0)
    delta = np.arccos(np.clip(np.nan_to_num(ratio), -1.0, 1.0))
    return EwaldCrossings(np.arctan2(b, a), delta, valid, r_par, r_perp, e_x_r, s0p, S, e)


def A_at_frames(A_at_scan_points, scan: Scan, z) -> np.ndarray:
    """Scan-varying A (N×3×3) at frames z: linear between the scan points, which sit at
    the image boundaries (point k at frame array_range[0] + k, as DIALS), held at the ends."""
    A_sp = np.asarray(A_at_scan_points, dtype=float).reshape(-1, 3, 3)
    t = np.clip(np.asarray(z, dtype=float) - scan.array_range[0], 0.0, len(A_sp) - 1.0)
    k = np.minimum(np.floor(t).astype(np.int64), len(A_sp) - 2) if len(A_sp) > 1 else np.zeros(len(t), np.int64)
    f = (t - k)[:, None, None]
    return A_sp[k] if len(A_sp) == 1 else (1.0 - f) * A_sp[k] + f * A_sp[k + 1]


def predict_rotation(A, beam: Beam, detector: Detector, goniometer: Goniometer, scan: Scan, *,
                     d_min: float | None = None, space_group=None, miller_indices=None,
                     margin_deg: float = 0.0, keep_off_detector: bool = False,
                     A_at_scan_points=None) -> dict:
    """Predict the reflections of one rotation sweep.

    ``A`` (3×3, 1/Å) is the crystal's U·B at φ = 0. With ``A_at_scan_points``
    (num_images + 1 matrices at the image boundaries, a scan-varying crystal as
    dials.refine writes it) each reflection is predicted with A interpolated at its
    own crossing angle, as DIALS's scan-varying predictor does: the static crossings
    of ``A`` are moved to the fixed point φ = crossing(A(φ)) by iteration (A changes
    little over a scan), and the ones that leave the scan are dropped.
    Indices are ``miller_indices`` if
    given, else all indices to ``d_min`` (default: the detector's corner resolution)
    minus the space group's systematic absences. Reflections are kept whose crossing
    angle lies in the scan's oscillation range widened by ``margin_deg`` on each side,
    and (unless ``keep_off_detector``) that hit a panel.

    Returns a dict of arrays with DIALS's column names: ``miller_index`` (N×3 int32),
    ``s1`` (N×3, 1/Å), ``xyzcal.mm`` (x, y mm on the panel and φ in rad),
    ``xyzcal.px`` (x, y px including parallax and z the frame), ``panel`` (uint64; for
    rays off the detector −1 as int64 when ``keep_off_detector``), ``entering``
    (bool), ``d`` (Å), and ``zeta`` (m2·ê1 as DIALS, ê1 = unit(s1 × s0); a rocking width σ_m spans σ_m/|ζ| in φ).
    """
    A = np.asarray(A, dtype=float)
    s0 = np.asarray(beam.s0, dtype=float)
    if miller_indices is None:
        if d_min is None:
            d_min = detector.get_max_resolution(s0)
        real = np.linalg.inv(A)
        cell = _cell_of(real)
        miller_indices = generate_indices(cell, d_min, space_group)
    h = np.asarray(miller_indices, dtype=np.int32).reshape(-1, 3)
    if d_min is not None:
        rr = h @ A.T
        h = h[np.einsum("ij,ij->i", rr, rr) <= 1.0 / d_min**2 * (1 + 1e-12)]

    sv = A_at_scan_points is not None
    x = ewald_crossings(A, h, s0, goniometer)
    S, e, s0p = x.S, x.e, x.s0p
    r_par, r_perp, e_x_r = x.r_par, x.r_perp, x.e_x_r
    idx = np.nonzero(x.valid)[0]
    base, delta = x.base[idx], x.delta[idx]
    phi_all = np.concatenate([base + delta, base - delta])
    which = np.concatenate([idx, idx])

    # place the crossings in the (widened) oscillation range, repeating every 2π;
    # scan-varying: 1° wider, the crossings move a little once A follows φ
    lo_deg, hi_deg = scan.oscillation_range
    lo = math.radians(lo_deg - margin_deg - (1.0 if sv else 0.0))
    hi = math.radians(hi_deg + margin_deg + (1.0 if sv else 0.0))
    phi0 = lo + np.mod(phi_all - lo, 2 * math.pi)
    phis, rows = [], []
    k = 0
    while lo + 2 * math.pi * k <= hi:
        p = phi0 + 2 * math.pi * k
        sel = p <= hi
        phis.append(p[sel])
        rows.append(which[sel])
        k += 1
    phi = np.concatenate(phis) if phis else np.zeros(0)
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=int)
    order = np.lexsort((phi, rows))
    phi, rows = phi[order], rows[order]

    r_phi = (r_par[rows] + np.cos(phi)[:, None] * r_perp[rows]
             + np.sin(phi)[:, None] * e_x_r[rows])  # r0 rotated by φ about e
    s1 = (s0p + r_phi) @ S.T
    m2 = S @ e
    entering = s1 @ np.cross(s0, m2) < 0.0
    A_rows = None
    if sv:
        h_rows, phi, s1, A_rows, ok = _scan_varying_crossings(A_at_scan_points, h[rows], phi, entering, s0,
                                                              goniometer, scan)
        lo_keep, hi_keep = math.radians(lo_deg - margin_deg), math.radians(hi_deg + margin_deg)
        ok &= (phi >= lo_keep) & (phi <= hi_keep)
        if d_min is not None:
            rr = np.einsum("nij,nj->ni", A_rows, h_rows)
            ok &= np.einsum("ij,ij->i", rr, rr) <= 1.0 / d_min**2 * (1 + 1e-12)
        rows, phi, s1, entering, A_rows = rows[ok], phi[ok], s1[ok], entering[ok], A_rows[ok]
    e1 = np.cross(s1, s0)
    with np.errstate(divide="ignore", invalid="ignore"):
        zeta = (e1 @ m2) / np.linalg.norm(e1, axis=1)  # DIALS: m2 · ê1, ê1 = unit(s1 × s0)

    panel, mm = detector.get_ray_intersection(s1)
    if not keep_off_detector:
        on = panel >= 0
        rows, phi, s1, entering, zeta, panel, mm = (x[on] for x in (rows, phi, s1, entering, zeta, panel, mm))
        A_rows = None if A_rows is None else A_rows[on]
    px = np.full_like(mm, np.nan)
    for i, p in enumerate(detector.panels):
        sel = panel == i
        if np.any(sel):
            px[sel] = p.millimeter_to_pixel(mm[sel])
    z = scan.frame_from_angle(np.degrees(phi))
    hk = h[rows]
    rr = hk @ A.T if A_rows is None else np.einsum("nij,nj->ni", A_rows, hk)
    d = 1.0 / np.sqrt(np.einsum("ij,ij->i", rr, rr))
    return {
        "miller_index": hk.astype(np.int32),
        "s1": s1,
        "xyzcal.mm": np.column_stack([mm, phi]),
        "xyzcal.px": np.column_stack([px, z]),
        "panel": panel.astype(np.uint64) if not keep_off_detector else panel,
        "entering": entering,
        "d": d,
        "zeta": zeta,
    }


def _scan_varying_crossings(A_sp, h, phi, entering, s0, goniometer, scan, max_iter: int = 20, tol: float = 1e-8):
    """Crossings of indices h with A interpolated at their own φ (rad), starting from
    the static crossings ``phi`` and keeping each one's ``entering`` side. The fixed
    point converges fast except near the spindle (small ζ), hence up to ``max_iter``.

    Returns (h, φ, s1, A per row, ok): ok is False where a point no longer crosses."""
    h = np.asarray(h, dtype=float)
    ok = np.ones(len(h), bool)
    for _ in range(max_iter):
        A_n = A_at_frames(A_sp, scan, scan.frame_from_angle(np.degrees(phi)))
        x = ewald_crossings(A_n, h, s0, goniometer)
        ok &= x.valid
        phi1, phi2 = x.base + x.delta, x.base - x.delta
        r1 = x.r_par + np.cos(phi1)[:, None] * x.r_perp + np.sin(phi1)[:, None] * x.e_x_r
        ent1 = ((x.s0p + r1) @ x.S.T) @ np.cross(s0, x.S @ x.e) < 0.0
        new = np.where(ent1 == entering, phi1, phi2)
        step = (new - phi + math.pi) % (2 * math.pi) - math.pi  # to the crossing nearest the last φ
        phi = phi + step
        if not np.any(np.abs(step[ok]) > tol):
            break
    r_phi = x.r_par + np.cos(phi)[:, None] * x.r_perp + np.sin(phi)[:, None] * x.e_x_r
    s1 = (x.s0p + r_phi) @ x.S.T
    return h.astype(np.int32), phi, s1, A_n, ok


def _cell_of(real: np.ndarray) -> tuple[float, ...]:
    from ..models.crystal import cell_from_real_space
    return cell_from_real_space(real)
