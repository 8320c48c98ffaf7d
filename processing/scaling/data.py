"""The observations scaling works on, taken from integrated (or symmetrized) reflections.

Per observation: its data set, its reflection (symmetry-equivalence class in the
experiments' space group; Friedel mates together unless anomalous), the profile-fitted
and summation intensities corrected for Lorentz-polarisation, detector efficiency and
partiality (I·lp/qe/p), the rotation angle (deg), d (Å), and the beam's directions in
the crystal frame (incoming reversed, −s0, and outgoing, s1, rotated back by the
goniometer at that angle) for the absorption surface.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np

from ..errors import XtalError
from ..reflections import Flags


def equivalence_ops(space_group: gemmi.SpaceGroup, anomalous: bool) -> np.ndarray:
    """Index-space rotations of the point group (and their negatives unless anomalous)."""
    rots = {tuple(np.array(op.rot).T.ravel() // gemmi.Op.DEN) for op in space_group.operations().sym_ops}
    mats = [np.array(r).reshape(3, 3) for r in sorted(rots)]
    if not anomalous:
        mats += [-m for m in mats]
    return np.array(mats, dtype=np.int64)


def reflection_keys(hkl: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """One int64 per symmetry-equivalence class: the largest key among the equivalents."""
    h = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    best = np.full(len(h), np.iinfo(np.int64).min)
    for R in ops:
        e = h @ R.T + 1024
        np.maximum(best, (e[:, 0] << 22) | (e[:, 1] << 11) | e[:, 2], out=best)
    return best


@dataclass
class Observations:
    """Observations that take part in scaling, sorted by data set."""

    #: row of each observation in the input table
    row: np.ndarray
    #: index into the experiment list
    dataset: np.ndarray
    #: reflection (equivalence class) key, and its 0-based group number
    key: np.ndarray
    group: np.ndarray
    #: corrected intensities and variances (profile, summation); NaN where missing
    i_prf: np.ndarray
    v_prf: np.ndarray
    i_sum: np.ndarray
    v_sum: np.ndarray
    phi: np.ndarray
    d: np.ndarray
    #: unit vectors −s0 and s1 in the crystal frame
    s0c: np.ndarray
    s1c: np.ndarray
    #: per data set: (start, stop) of its observations
    slices: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row)


def corrected(table, name: str, keep: np.ndarray):
    """``intensity.<name>`` corrected by lp/qe (and partiality for summation): (I, variance) for
    rows ``keep``. Profile fitting already estimates the full reflection from the part recorded
    (the fitted profile covers the whole spot), so, as in dials.scale, only summation
    intensities are divided by the partiality."""
    value, var = table[f"intensity.{name}.value"][keep], table[f"intensity.{name}.variance"][keep]
    factor = np.ones(int(keep.sum()))
    if "lp" in table:
        factor = factor * table["lp"][keep]
    if "qe" in table:
        factor = factor / table["qe"][keep]
    if name == "sum" and "partiality" in table:
        factor = factor / table["partiality"][keep]
    return value * factor, var * factor ** 2


def select(table, n_experiments: int, partiality_cutoff: float, d_min, d_max, excluded) -> tuple[np.ndarray, dict]:
    """Rows usable for scaling and, per reason, how many rows were left out."""
    n = len(table)
    flags = table["flags"].astype(np.uint64) if "flags" in table else np.zeros(n, np.uint64)
    has = lambda bit: (flags & np.uint64(int(bit))) != 0  # noqa: E731
    ids = table["id"].astype(np.int64)
    keep = np.ones(n, bool)
    reasons = {}

    def drop(mask, why):
        nonlocal keep
        k = int((keep & mask).sum())
        if k:
            reasons[why] = reasons.get(why, 0) + k
        keep &= ~mask

    drop((ids < 0) | (ids >= n_experiments), "no experiment")
    drop(np.isin(ids, list(excluded)), "data set excluded")
    drop(~has(Flags.integrated), "not integrated")
    drop(has(Flags.user_excluded_in_scaling), "excluded by the user")
    var = table["intensity.sum.variance"]
    drop(~(np.isfinite(table["intensity.sum.value"]) & np.isfinite(var) & (var > 0)), "no valid intensity")
    if "partiality" in table:
        p = table["partiality"]
        drop(~(p >= partiality_cutoff), f"partiality below {partiality_cutoff:g}")
    if "d" not in table:
        raise XtalError("the reflections have no d column")
    d = table["d"]
    drop(~np.isfinite(d) | (d <= 0), "no resolution")
    if d_min is not None:
        drop(d < d_min, f"beyond d_min {d_min:g} Å")
    if d_max is not None:
        drop(d > d_max, f"below d_max {d_max:g} Å")
    drop(np.all(table["miller_index"] == 0, axis=1), "index 0,0,0")
    return keep, reasons


def observations(experiments, table, space_group: gemmi.SpaceGroup, keep: np.ndarray,
                 anomalous: bool) -> Observations:
    """The kept rows as :class:`Observations` (sorted by data set)."""
    rows = np.flatnonzero(keep)
    ids = table["id"][rows].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    rows, ids = rows[order], ids[order]
    sel = np.zeros(len(table), bool)
    sel[rows] = True
    # corrected() reads in table order; rows are sorted by id, so index through the order
    i_sum, v_sum = corrected(table, "sum", sel)
    pos = np.searchsorted(np.flatnonzero(sel), rows)
    i_sum, v_sum = i_sum[pos], v_sum[pos]
    if "intensity.prf.value" in table:
        i_prf, v_prf = corrected(table, "prf", sel)
        i_prf, v_prf = i_prf[pos], v_prf[pos]
        flags = table["flags"][rows].astype(np.uint64)
        bad = ((flags & np.uint64(int(Flags.integrated_prf))) == 0) | ~np.isfinite(i_prf) | ~(v_prf > 0)
        i_prf, v_prf = np.where(bad, np.nan, i_prf), np.where(bad, np.nan, v_prf)
    else:
        i_prf = np.full(len(rows), np.nan)
        v_prf = np.full(len(rows), np.nan)
    key = reflection_keys(table["miller_index"][rows], equivalence_ops(space_group, anomalous))
    _, group = np.unique(key, return_inverse=True)
    phi = np.empty(len(rows))
    s0c = np.empty((len(rows), 3))
    s1c = np.empty((len(rows), 3))
    xyz = table["xyzobs.px.value"] if "xyzobs.px.value" in table else table["xyzcal.px"]
    slices = {}
    bounds = np.searchsorted(ids, np.arange(len(experiments) + 1))
    for k, e in enumerate(experiments):
        a, b = int(bounds[k]), int(bounds[k + 1])
        if a == b:
            continue
        slices[k] = (a, b)
        z = xyz[rows[a:b], 2]
        phi_k = e.scan.angle_from_frame(z) if e.scan is not None and not e.scan.is_still else np.zeros(b - a)
        phi[a:b] = phi_k
        R = e.goniometer.rotation_matrix(np.radians(phi_k)) if e.goniometer is not None \
            else np.broadcast_to(np.eye(3), (b - a, 3, 3))
        s0 = -np.asarray(e.beam.s0, float)
        s1 = table["s1"][rows[a:b]]
        # v_crystal = Rᵀ v_lab
        s0c[a:b] = np.einsum("nji,j->ni", R, s0 / np.linalg.norm(s0))
        s1c[a:b] = np.einsum("nji,nj->ni", R, s1 / np.linalg.norm(s1, axis=1, keepdims=True))
    return Observations(rows, ids, key, group.ravel(), i_prf, v_prf, i_sum, v_sum, phi,
                        table["d"][rows].astype(float), s0c, s1c, slices)


__all__ = ["Observations", "equivalence_ops", "observations", "reflection_keys", "select"]
