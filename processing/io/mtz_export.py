"""Writing MTZ files through gemmi: merged intensities as ``dials.merge`` writes them and
scaled unmerged observations as ``dials.export`` writes them.

Merged (:func:`write_merged_mtz`)
    Columns in dials.merge's order (DIALS 3.x, gemmi writer): ``H K L`` (H), ``IMEAN``
    (J) ``SIGIMEAN`` (Q), ``N`` (I), ``F`` (F) ``SIGF`` (Q), and for anomalous data
    ``I(+)`` ``I(-)`` (K) with ``SIGI(±)`` (M), ``N(+)`` ``N(-)`` (I), ``F(+)`` ``F(-)``
    (G) with ``SIGF(±)`` (L), ``DANO`` (D) ``SIGDANO`` (Q). H K L sit in the base
    dataset ``HKL_base``, the rest in one dataset carrying project, crystal, dataset
    names and the wavelength. NaN is MTZ's missing-number flag (``VALM NAN``).

Unmerged (:func:`write_unmerged_mtz`)
    One row an observation: ``H K L`` (the reciprocal-ASU index) ``M/ISYM`` (Y) ``BATCH``
    (B) ``I`` (J) ``SIGI`` (Q), then ``SCALEUSED SIGSCALEUSED`` for scaled data (or
    ``IPR SIGIPR`` before ``I SIGI`` for profile+summation data), ``BG SIGBG``
    (from ``background.sum.*``), ``FRACTIONCALC XDET YDET ROT``, ``LP`` when present and
    ``QE`` (``qe``, else ``dqe``, else 1), all type R. One batch header per image.

    Frames. DIALS/imgCIF lab frame (rotation axis usually +x, beam along −z). The MTZ
    batch header wants the "Cambridge" frame: x along the beam (direction of travel),
    z along the rotation axis. The writer builds the rotation R whose rows are
    ``e_x = beam ⟂ axis`` (unit s0 with its component along the axis removed),
    ``e_y = e_z × e_x`` and ``e_z = axis`` (the goniometer's datum axis, +x when there
    is no goniometer); for the usual geometry (axis +x, beam −z) that is
    x_cam = −z_lab, y_cam = y_lab, z_cam = x_lab, as dials.export's rotation. Umat is then
    Mosflm's U: ``U = R · S · F · A · B_BL⁻¹``, with S, F the goniometer's setting and
    fixed rotations, A = U·B of the crystal (at the image centre for a scan-varying
    crystal) and B_BL Busing & Levy's B (a* along x, c along z) of that image's cell;
    it is stored column by column (Fortran order), as CCP4 reads it. The scan axis
    (``scanax``, ``e1``) and the sample-to-source vector are written in the same frame.

    Batches. Image ``i`` of experiment ``k`` is batch ``i + offset_k``. Offsets follow
    dials.export: when the scans already carry different ``batch_offset`` values they
    are kept; otherwise each experiment keeps its own image numbers unless they overlap
    (or run straight into) a range already taken, in which case it moves to the next
    free "epoch", the first number ending in 01 above the highest batch so far and not
    next to it (1–50, 1–50, 1–50 → 1–50, 101–150, 201–250). An observation's image is
    ``floor(z_obs) + 1`` clipped to its scan's image range.

    Cell. The dataset cell is the per-parameter median of the experiments' cells (as
    DIALS's ``determine_best_unit_cell``), unless ``unit_cell`` is given; each batch
    header carries its own experiment's cell (per image for scan-varying crystals).

    Datasets. One dataset per wavelength (experiments within ``wavelength_tolerance`` Å
    share one, its wavelength the row-weighted mean), batches point to their dataset and
    the columns live in the last one — what dials.export writes and AIMLESS reads.

Both writers write to a temporary name in the target folder and rename it into place.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Sequence

import gemmi
import numpy as np

from ..errors import XtalError
from ..merging.data import MergedIntensities
from ..models import ExperimentList
from ..models.crystal import b_matrix, cell_from_real_space
from ..reflections import Flags, ReflectionTable
from .files import atomic_path

__all__ = [
    "UnmergedExport",
    "batch_offsets",
    "cambridge_frame",
    "image_ranges",
    "median_cell",
    "mosflm_u",
    "select_observations",
    "to_asu_with_isym",
    "write_merged_mtz",
    "write_unmerged_mtz",
]

_SOFTWARE = "xtalweb 0.1.0"
INTENSITY_CHOICES = ("scale", "profile", "sum", "profile+sum")


# --------------------------------------------------------------------------- common
def _history(history: Sequence[str]) -> list[str]:
    date = time.strftime("%Y-%m-%d at %H:%M:%S %Z")
    lines = [f"From {_SOFTWARE}, run on {date}"] + [str(h) for h in history]
    return [line[:80] for line in lines]


def _space_group(space_group) -> gemmi.SpaceGroup:
    if isinstance(space_group, gemmi.SpaceGroup):
        return space_group
    if isinstance(space_group, str):
        found = gemmi.find_spacegroup_by_name(space_group)
        if found is not None:
            return found
    if isinstance(space_group, gemmi.GroupOps):
        found = gemmi.find_spacegroup_by_ops(space_group)
        if found is not None:
            return found
    raise XtalError(f"not a space group gemmi knows: {space_group!r}", field="space_group")


def _write_mtz(mtz: gemmi.Mtz, path: str | os.PathLike[str]) -> None:
    name = os.fspath(path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(name))):
        raise XtalError(f"{name}: cannot write MTZ file (no such folder)")
    try:
        with atomic_path(name) as tmp:
            mtz.write_to_file(tmp)
    except (OSError, RuntimeError) as exc:
        raise XtalError(f"{name}: cannot write MTZ file ({exc})") from None


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).astype(np.float32)


# --------------------------------------------------------------------------- merged
def write_merged_mtz(path, merged: MergedIntensities, *, project: str = "xtal", crystal: str = "crystal",
                     dataset: str = "dataset", history: Sequence[str] = ()) -> None:
    """Write merged intensities (and amplitudes) as dials.merge's ``merged.mtz``.

    Columns and order are dials.merge's (see the module docstring); F columns are left
    out when ``merged.f`` holds no value (no French–Wilson step); the anomalous columns
    appear when ``merged.anomalous``. Rows are sorted by H, K, L.
    """
    n = len(merged)
    if n == 0:
        raise XtalError("no merged reflections to write")
    hkl = np.asarray(merged.hkl)
    if hkl.shape != (n, 3):
        raise XtalError(f"merged Miller indices have shape {hkl.shape}, expected ({n}, 3)")
    sg = _space_group(merged.space_group)
    cell = tuple(float(x) for x in merged.cell)
    if len(cell) != 6 or not all(math.isfinite(x) and x > 0 for x in cell):
        raise XtalError(f"invalid unit cell {merged.cell}")

    columns = merged.columns()

    data = np.empty((n, 3 + len(columns)), dtype=np.float32)
    data[:, :3] = hkl
    for j, (label, _, values) in enumerate(columns):
        values = np.asarray(values)
        if values.shape != (n,):
            raise XtalError(f"merged column {label} has shape {values.shape}, expected ({n},)")
        data[:, 3 + j] = _f32(values)

    mtz = gemmi.Mtz(with_base=True)
    mtz.title = "From xtal merge"
    mtz.history = _history(history)
    mtz.spacegroup = sg
    ds = mtz.add_dataset(dataset)
    ds.project_name = project
    ds.crystal_name = crystal
    ds.wavelength = float(merged.wavelength)
    for label, kind, _ in columns:
        mtz.add_column(label, kind)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.set_data(data)
    mtz.sort(3)
    _write_mtz(mtz, path)


# --------------------------------------------------------------------------- geometry
def cambridge_frame(rotation_axis, unit_s0) -> np.ndarray:
    """Rotation R (3×3) taking lab vectors to the Cambridge frame: R·axis = z, R·s0 ∥ x (as
    near as the axis allows). For axis +x and beam −z: (x, y, z)_lab → (−z, y, x)."""
    ez = np.asarray(rotation_axis, dtype=float)
    ez = ez / np.linalg.norm(ez)
    s = np.asarray(unit_s0, dtype=float)
    s = s / np.linalg.norm(s)
    ex = s - (s @ ez) * ez
    norm = np.linalg.norm(ex)
    if norm < 1e-6:
        raise XtalError("the beam is parallel to the rotation axis: no MTZ (Cambridge) frame")
    ex = ex / norm
    ey = np.cross(ez, ex)
    return np.vstack([ex, ey, ez])


def _metric_cells(cells: np.ndarray) -> np.ndarray:
    """Busing & Levy B (N×3×3) for cells (N×6: Å, deg)."""
    cells = np.atleast_2d(np.asarray(cells, dtype=float))
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    al, be, ga = (np.radians(cells[:, k]) for k in (3, 4, 5))
    G = np.empty((len(cells), 3, 3))
    G[:, 0, 0], G[:, 1, 1], G[:, 2, 2] = a * a, b * b, c * c
    G[:, 0, 1] = G[:, 1, 0] = a * b * np.cos(ga)
    G[:, 0, 2] = G[:, 2, 0] = a * c * np.cos(be)
    G[:, 1, 2] = G[:, 2, 1] = b * c * np.cos(al)
    Gs = np.linalg.inv(G)  # reciprocal metric
    ast, bst, cst = np.sqrt(Gs[:, 0, 0]), np.sqrt(Gs[:, 1, 1]), np.sqrt(Gs[:, 2, 2])
    cos_bs = Gs[:, 0, 2] / (ast * cst)
    cos_gs = Gs[:, 0, 1] / (ast * bst)
    sin_bs, sin_gs = np.sqrt(1 - cos_bs ** 2), np.sqrt(1 - cos_gs ** 2)
    B = np.zeros((len(cells), 3, 3))
    B[:, 0, 0] = ast
    B[:, 0, 1] = bst * cos_gs
    B[:, 0, 2] = cst * cos_bs
    B[:, 1, 1] = bst * sin_gs
    B[:, 1, 2] = -cst * sin_bs * np.cos(al)
    B[:, 2, 2] = 1.0 / c
    return B


def mosflm_u(UB, cells) -> np.ndarray:
    """Mosflm's U (N×3×3) from lab-frame UB matrices (N×3×3, 1/Å) and their cells (N×6)."""
    UB = np.asarray(UB, dtype=float).reshape(-1, 3, 3)
    return UB @ np.linalg.inv(_metric_cells(cells))


def _image_centre_A(crystal, n_images: int) -> np.ndarray | None:
    """A at the centre of each image of a scan-varying crystal (N×3×3), or None."""
    A_pts = crystal.A_at_scan_points
    if A_pts is None or len(A_pts) != n_images + 1:
        return None
    from scipy.spatial.transform import Rotation

    cells = [cell_from_real_space(np.linalg.inv(A)) for A in A_pts]
    Bs = np.array([b_matrix(c) for c in cells])
    Us = A_pts @ np.linalg.inv(Bs)
    # nearest rotation (A may carry rounding): polar decomposition via SVD
    u, _, vt = np.linalg.svd(Us)
    Us = u @ vt
    step = Rotation.from_matrix(Us[1:] @ np.transpose(Us[:-1], (0, 2, 1)))
    half = Rotation.from_rotvec(step.as_rotvec() / 2).as_matrix()
    Uc = half @ Us[:-1]
    Bc = (Bs[:-1] + Bs[1:]) / 2
    return Uc @ Bc


# --------------------------------------------------------------------------- batches
def image_ranges(experiments) -> list[tuple[int, int]]:
    """Image range of each experiment; (0, 0) for a still or a scan-less experiment (as DIALS)."""
    out = []
    for e in experiments:
        if e.scan is not None and e.scan.oscillation[1] != 0.0:
            out.append(tuple(int(v) for v in e.scan.image_range))
        else:
            out.append((0, 0))
    return out


def _next_epoch(value: int) -> int:
    """The first number ending in 01 above ``value + 1``."""
    return (value // 100 + 1) * 100 + 1


def _calculated_offsets(ranges: Sequence[tuple[int, int]]) -> list[int]:
    taken: list[tuple[int, int]] = []
    offsets = [0] * len(ranges)
    to_shift = []
    highest = 0
    for i, (lo0, hi0) in enumerate(ranges):
        if lo0 > hi0 or lo0 < 0:
            raise XtalError(f"experiment {i}: invalid image range ({lo0}, {hi0})")
        lo, hi = (lo0 + 1, hi0 + 1) if lo0 == 0 else (lo0, hi0)  # batch 0 is not allowed
        if any(lo <= t_hi and hi >= t_lo - 1 for t_lo, t_hi in taken):
            to_shift.append(i)
            continue
        offsets[i] = lo - lo0
        taken.append((lo, hi))
        highest = max(highest, hi)
    for i in to_shift:
        lo0, hi0 = ranges[i]
        start = _next_epoch(highest)
        offsets[i] = start - lo0
        highest = start + (hi0 - lo0)
    return offsets


def batch_offsets(experiments) -> list[int]:
    """Per-experiment batch offsets (batch = image number + offset), chosen as dials.export does."""
    ranges = image_ranges(experiments)
    existing = [e.scan.batch_offset for e in experiments if e.scan is not None]
    if len(set(existing)) > 1:
        offsets = [int(e.scan.batch_offset) if e.scan is not None else 0 for e in experiments]
        spans = sorted((lo + o, hi + o, i) for i, ((lo, hi), o) in enumerate(zip(ranges, offsets)))
        for (lo1, hi1, i1), (lo2, hi2, i2) in zip(spans, spans[1:]):
            if lo2 <= hi1:
                raise XtalError(f"experiments {i1} and {i2} have overlapping batch ranges "
                                f"({lo1}-{hi1} and {lo2}-{hi2}) from their scans' batch offsets")
        return offsets
    return _calculated_offsets(ranges)


# --------------------------------------------------------------------------- symmetry
def to_asu_with_isym(hkl, space_group: gemmi.SpaceGroup) -> tuple[np.ndarray, np.ndarray]:
    """ASU indices (N×3 int32) and CCP4 ISYM (N int32) for original indices ``hkl``.

    ISYM = 2k+1 when h_asu = h·R_k, 2k+2 when h_asu = −h·R_k (k = index of the symmetry
    operation in gemmi's list, the order gemmi writes the SYMM records); the first match
    wins, as gemmi's ``ReciprocalAsu.to_asu`` does.
    """
    hkl = np.ascontiguousarray(np.asarray(hkl), dtype=np.int32).reshape(-1, 3)
    asu = hkl.copy()
    space_group.switch_to_asu(asu)
    shift = 1 << 20

    def key(a):
        a = a.astype(np.int64) + (shift >> 1)
        return (a[:, 0] * shift + a[:, 1]) * shift + a[:, 2]

    target = key(asu)
    target_minus = key(-asu)
    isym = np.zeros(len(hkl), dtype=np.int32)
    hkl64 = hkl.astype(np.int64)
    eye = np.eye(3, dtype=int).tolist()
    for k, op in enumerate(space_group.operations().sym_ops):
        M = np.array([op.apply_to_hkl(e) for e in eye], dtype=np.int64)
        todo = np.flatnonzero(isym == 0)
        if len(todo) == 0:
            break
        kk = key(hkl64[todo] @ M)
        plus = kk == target[todo]
        isym[todo[plus]] = 2 * k + 1
        minus = ~plus & (kk == target_minus[todo])
        isym[todo[minus]] = 2 * k + 2
    if (isym == 0).any():  # cannot happen for a valid group; keep the failure loud
        raise XtalError("could not map some Miller indices to the asymmetric unit")
    return asu, isym


def median_cell(experiments) -> tuple[float, ...]:
    """Per-parameter median of the experiments' unit cells, obeying their space group."""
    from ..models.crystal import median_cell as median

    if not any(e.crystal is not None for e in experiments):
        raise XtalError("no experiment has a crystal model: no unit cell to write")
    sg = next((gemmi.find_spacegroup_by_ops(e.crystal.space_group) for e in experiments if e.crystal), None)
    return median(experiments, sg)


# --------------------------------------------------------------------------- rows
@dataclass
class _Rows:
    """Selected observations: row indices into the table, their experiment and intensities."""

    rows: np.ndarray
    expt: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    extra: dict  # column label -> float array (e.g. SCALEUSED, IPR)
    n_input: int
    expt_all: np.ndarray  # experiment position of every input row (−1: none)


def _experiment_index(table: ReflectionTable, experiments) -> np.ndarray:
    """Position in ``experiments`` of each row's experiment (−1 when none)."""
    if "id" not in table:
        raise XtalError("reflection table has no 'id' column")
    ids = np.asarray(table["id"], dtype=np.int64)
    idents = table.experiment_identifiers
    if idents:
        where = {e.identifier: i for i, e in enumerate(experiments)}
        lut = {int(k): where.get(v, -1) for k, v in idents.items()}
    else:
        lut = {i: i for i in range(len(experiments))}
    uniq, inverse = np.unique(ids, return_inverse=True)
    mapped = np.array([lut.get(int(u), -1) for u in uniq], dtype=np.int64)
    return mapped[inverse.reshape(-1)] if len(ids) else np.zeros(0, dtype=np.int64)


def _require(table: ReflectionTable, names, why: str) -> None:
    missing = [n for n in names if n not in table]
    if missing:
        raise XtalError(f"cannot export {why}: the reflection table lacks {', '.join(missing)}")


def _lp_qe(table: ReflectionTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(conversion lp/qe, ok) for the given rows (qe, else dqe; rows with qe ≤ 0 not ok)."""
    conv = np.ones(len(rows))
    ok = np.ones(len(rows), dtype=bool)
    for name in ("qe", "dqe"):
        if name in table:
            qe = np.asarray(table[name], dtype=float)[rows]
            ok &= qe > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                conv = conv / qe
            break
    if "lp" in table:
        conv = conv * np.asarray(table["lp"], dtype=float)[rows]
    return conv, ok


def select_observations(table: ReflectionTable, experiments, intensity: str = "scale", *,
                        partiality_threshold: float = 0.4, min_isigi: float | None = -5.0) -> _Rows:
    """Observations to export and their corrected intensities, as dials.export filters them.

    ``scale``: rows flagged ``scaled`` and not ``bad_for_scaling``, inverse scale factor
    > 0, finite positive variance; I = intensity.scale.value / inverse_scale_factor,
    σ = √variance / inverse_scale_factor. ``profile`` / ``sum``: rows flagged
    integrated_prf / integrated_sum, corrected by lp / qe (and 1/partiality for sums).
    In all cases partiality must be > 0 and ≥ ``partiality_threshold`` and, after the
    corrections, I/σ ≥ ``min_isigi`` (None: no limit). Rows of no experiment are dropped.
    """
    if intensity not in INTENSITY_CHOICES:
        raise XtalError(f"intensity must be one of {', '.join(INTENSITY_CHOICES)}, not {intensity!r}",
                        field="intensity")
    _require(table, ("miller_index", "flags", "id"), "reflections")
    n = len(table)
    expt = _experiment_index(table, experiments)
    flags = np.asarray(table["flags"], dtype=np.uint64)
    ok = expt >= 0
    extra: dict[str, np.ndarray] = {}

    def good_var(name):
        v = np.asarray(table[name], dtype=float)
        return np.isfinite(v) & (v > 0)

    if intensity == "scale":
        _require(table, ("intensity.scale.value", "intensity.scale.variance", "inverse_scale_factor"),
                 "scaled intensities")
        ok &= (flags & np.uint64(Flags.scaled)) != 0
        ok &= (flags & np.uint64(Flags.bad_for_scaling)) == 0
        isf_all = np.asarray(table["inverse_scale_factor"], dtype=float)
        ok &= np.isfinite(isf_all) & (isf_all > 0)
        ok &= good_var("intensity.scale.variance") & np.isfinite(table["intensity.scale.value"])
    else:
        names = {"profile": ("prf",), "sum": ("sum",), "profile+sum": ("prf", "sum")}[intensity]
        for short in names:
            _require(table, (f"intensity.{short}.value", f"intensity.{short}.variance"),
                     f"{intensity} intensities")
            flag = Flags.integrated_prf if short == "prf" else Flags.integrated_sum
            ok &= (flags & np.uint64(flag)) != 0
            ok &= good_var(f"intensity.{short}.variance") & np.isfinite(table[f"intensity.{short}.value"])
    if "partiality" in table:
        p = np.asarray(table["partiality"], dtype=float)
        ok &= (p > 0) & (p >= partiality_threshold)
    rows = np.flatnonzero(ok)

    if intensity == "scale":
        isf = isf_all[rows]
        I = np.asarray(table["intensity.scale.value"], dtype=float)[rows] / isf
        sig = np.sqrt(np.asarray(table["intensity.scale.variance"], dtype=float)[rows]) / isf
        extra["SCALEUSED"] = isf
        if "inverse_scale_factor_variance" in table:
            v = np.asarray(table["inverse_scale_factor_variance"], dtype=float)[rows]
            extra["SIGSCALEUSED"] = np.sqrt(np.clip(v, 0, None))
        else:
            extra["SIGSCALEUSED"] = np.zeros(len(rows))
        keep = np.ones(len(rows), dtype=bool)
    else:
        conv, keep = _lp_qe(table, rows)
        out = {}
        for short in names:
            c = conv.copy()
            if short == "sum" and "partiality" in table:
                c = c / np.asarray(table["partiality"], dtype=float)[rows]
            out[short] = (np.asarray(table[f"intensity.{short}.value"], dtype=float)[rows] * c,
                          np.sqrt(np.asarray(table[f"intensity.{short}.variance"], dtype=float)[rows]) * np.abs(c))
        if intensity == "profile+sum":
            extra["IPR"], extra["SIGIPR"] = out["prf"]
            I, sig = out["sum"]
        else:
            I, sig = out["prf" if intensity == "profile" else "sum"]
    keep &= np.isfinite(I) & np.isfinite(sig) & (sig > 0)
    if min_isigi is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            keep &= I / sig >= min_isigi
            if "IPR" in extra:
                keep &= extra["IPR"] / extra["SIGIPR"] >= min_isigi
    rows = rows[keep]
    if len(rows) == 0:
        raise XtalError(f"no reflections left to export ({intensity} intensities: none passes the "
                        f"flag, variance and partiality filters)")
    return _Rows(rows=rows, expt=expt[rows], intensity=I[keep], sigma=sig[keep],
                 extra={k: v[keep] for k, v in extra.items()}, n_input=n, expt_all=expt)


def _position(table: ReflectionTable, rows: np.ndarray, prefer: Sequence[str]) -> np.ndarray:
    for name in prefer:
        if name in table:
            return np.asarray(table[name], dtype=float)[rows]
    raise XtalError(f"cannot export: the reflection table lacks {' and '.join(prefer)}")


def _images_of_rows(experiments, expt: np.ndarray, z_obs: np.ndarray, ranges) -> np.ndarray:
    """Image number of each row: floor(z) + 1 clipped to its scan's image range (0 for stills)."""
    images = np.floor(z_obs).astype(np.int64) + 1
    lo = np.array([r[0] for r in ranges], dtype=np.int64)[expt]
    hi = np.array([r[1] for r in ranges], dtype=np.int64)[expt]
    bad = ~np.isfinite(z_obs)
    images[bad] = lo[bad]
    return np.clip(images, lo, hi)


def _rotation_angles(experiments, expt: np.ndarray, z_cal: np.ndarray) -> np.ndarray:
    """Rotation angle (deg) from each experiment's scan at frame z (z itself for stills)."""
    start = np.zeros(len(experiments))
    width = np.ones(len(experiments))
    frame0 = np.zeros(len(experiments))
    for k, e in enumerate(experiments):
        if e.scan is not None and e.scan.oscillation[1] != 0.0:
            start[k], width[k] = e.scan.oscillation
            frame0[k] = e.scan.array_range[0]
    return start[expt] + (z_cal - frame0[expt]) * width[expt]


# --------------------------------------------------------------------------- unmerged
@dataclass(frozen=True)
class UnmergedExport:
    """What :func:`write_unmerged_mtz` wrote (JSON-able through ``dataclasses.asdict``)."""

    n_observations: int
    n_input: int
    batch_offsets: tuple[int, ...]
    batch_ranges: tuple[tuple[int, int], ...]  # per experiment (first, last batch)
    unit_cell: tuple[float, ...]
    wavelengths: tuple[float, ...]  # one per MTZ dataset


def _wavelength_groups(experiments, used: Sequence[int], counts: np.ndarray, tolerance: float):
    """Group experiments by wavelength; returns (dataset number of each experiment, mean wavelengths)."""
    groups: list[list[int]] = []
    keys: list[float] = []
    dataset_of = {}
    for k in used:
        w = float(experiments[k].beam.wavelength)
        for g, w0 in enumerate(keys):
            if abs(w - w0) <= tolerance:
                groups[g].append(k)
                dataset_of[k] = g
                break
        else:
            keys.append(w)
            groups.append([k])
            dataset_of[k] = len(groups) - 1
    means = []
    for g in groups:
        ws = np.array([experiments[k].beam.wavelength for k in g], dtype=float)
        wt = np.array([counts[k] for k in g], dtype=float)
        means.append(float((ws * wt).sum() / wt.sum()) if wt.sum() > 0 else float(ws.mean()))
    return dataset_of, means


def _add_batches(mtz: gemmi.Mtz, experiment, first_image: int, last_image: int, offset: int,
                 dataset_id: int, wavelength: float, force_static_model: bool) -> None:
    n = last_image - first_image + 1
    gonio = experiment.goniometer
    crystal = experiment.crystal
    if crystal is None or experiment.beam is None or experiment.detector is None:
        raise XtalError("every exported experiment needs a crystal, a beam and a detector model")
    S = gonio.setting_rotation if gonio is not None else np.eye(3)
    F = gonio.fixed_rotation if gonio is not None else np.eye(3)
    datum = gonio.rotation_axis if gonio is not None else np.array([1.0, 0.0, 0.0])
    R = cambridge_frame(datum, experiment.beam.s0)

    A = None
    scan = experiment.scan
    rotating = scan is not None and scan.oscillation[1] != 0.0
    if rotating and not force_static_model and gonio is not None:
        A_all = _image_centre_A(crystal, scan.num_images)
        if A_all is not None:
            A = A_all[first_image - scan.image_range[0]: last_image - scan.image_range[0] + 1]
    if A is None:
        A = np.broadcast_to(crystal.A, (n, 3, 3))
        cells = np.broadcast_to(np.array(crystal.unit_cell), (n, 6))
    else:
        cells = np.array([cell_from_real_space(np.linalg.inv(a)) for a in A])
    U = mosflm_u(R @ S @ F @ A, cells)
    umat = np.transpose(U, (0, 2, 1)).reshape(n, 9)  # column-major (Fortran) order

    if rotating:
        start, width = scan.oscillation
        phi0 = start + (np.arange(first_image, last_image + 1) - scan.image_range[0]) * width
    else:
        width = 0.0
        phi0 = np.zeros(n)
    axis = R @ (S @ (datum / np.linalg.norm(datum))) if gonio is not None else np.zeros(3)
    source = R @ (np.asarray(experiment.beam.direction, dtype=float)
                  / np.linalg.norm(experiment.beam.direction))
    panel = experiment.detector[0]

    b = gemmi.Mtz.Batch()
    b.dataset_id = dataset_id
    b.wavelength = wavelength
    b.axes = ["AXIS"]
    b.ints[12] = 1  # ncryst
    b.ints[14] = 2  # ldtype: 3D
    b.ints[15] = 1  # jsaxs: scan axis number
    b.ints[17] = 1  # ngonax
    b.ints[19] = 1  # ndet
    b.floats[21] = 0.0  # crydat[0]: mosaicity, not modelled here
    for j in range(3):
        b.floats[38 + j] = float(axis[j])  # scanax
        b.floats[59 + j] = float(axis[j])  # e1
        b.floats[83 + j] = float(source[j])  # so: sample-to-source, Cambridge frame
    b.floats[80 + int(np.argmin(source))] = -1.0  # idealised source vector
    b.floats[43] = 1.0  # bscale
    b.floats[111] = float(panel.distance)  # dx[0]
    b.floats[114] = float(panel.image_size[0])  # detlm[0][0][1]: NX
    b.floats[116] = float(panel.image_size[1])  # detlm[0][1][1]: NY
    for i in range(n):
        number = first_image + i + offset
        b.number = int(number)
        b.title = f"Batch {number}"
        for j in range(6):
            b.floats[j] = float(cells[i, j])
        for j in range(9):
            b.floats[6 + j] = float(umat[i, j])
        b.floats[36] = float(phi0[i])  # phistt
        b.floats[37] = float(phi0[i] + width)  # phiend
        b.floats[47] = float(width)  # phirange
        mtz.batches.append(b)


def write_unmerged_mtz(path, experiments, table: ReflectionTable, space_group, *, intensity: str = "scale",
                       history: Sequence[str] = (), project: str = "xtal", crystal: str = "crystal",
                       dataset: str = "dataset", unit_cell: Sequence[float] | None = None,
                       partiality_threshold: float = 0.4, min_isigi: float | None = -5.0,
                       force_static_model: bool = False,
                       wavelength_tolerance: float = 1e-4) -> UnmergedExport:
    """Write observations as dials.export's unmerged MTZ (``scaled.mtz`` for scaled data).

    ``table["miller_index"]`` holds the original indices in the final setting; H K L are
    written as their reciprocal-ASU index in ``space_group`` with M/ISYM = ISYM (M = 0:
    every row is a full or a summed reflection). ``intensity`` is ``scale`` (default),
    ``profile``, ``sum`` or ``profile+sum``; row selection and corrections as
    :func:`select_observations`. Returns an :class:`UnmergedExport` summary.
    """
    experiments = ExperimentList(experiments)
    if len(experiments) == 0:
        raise XtalError("no experiments to export")
    sg = _space_group(space_group)
    sel = select_observations(table, experiments, intensity, partiality_threshold=partiality_threshold,
                              min_isigi=min_isigi)
    rows, expt = sel.rows, sel.expt
    obs = _position(table, rows, ("xyzobs.px.value", "xyzcal.px"))
    cal = _position(table, rows, ("xyzcal.px", "xyzobs.px.value"))

    ranges = image_ranges(experiments)
    offsets = batch_offsets(experiments)
    images = _images_of_rows(experiments, expt, obs[:, 2], ranges)
    batch = images + np.asarray(offsets, dtype=np.int64)[expt]
    rot = _rotation_angles(experiments, expt, cal[:, 2])

    hkl = np.asarray(table["miller_index"])[rows]
    asu, isym = to_asu_with_isym(hkl, sg)

    counts = np.bincount(expt, minlength=len(experiments))
    used = [int(k) for k in np.unique(sel.expt_all) if k >= 0]
    dataset_of, wavelengths = _wavelength_groups(experiments, used, counts, wavelength_tolerance)
    cell = tuple(float(v) for v in unit_cell) if unit_cell is not None else median_cell(experiments)
    if len(cell) != 6:
        raise XtalError(f"unit_cell needs 6 numbers, got {len(cell)}", field="unit_cell")

    columns: list[tuple[str, str, np.ndarray]] = [("M/ISYM", "Y", isym), ("BATCH", "B", batch)]
    if intensity == "profile+sum":
        columns += [("IPR", "J", sel.extra["IPR"]), ("SIGIPR", "Q", sel.extra["SIGIPR"])]
    columns += [("I", "J", sel.intensity), ("SIGI", "Q", sel.sigma)]
    if intensity == "scale":
        columns += [("SCALEUSED", "R", sel.extra["SCALEUSED"]), ("SIGSCALEUSED", "R", sel.extra["SIGSCALEUSED"])]
    if "background.sum.value" in table and "background.sum.variance" in table:
        var = np.asarray(table["background.sum.variance"], dtype=float)[rows]
        columns += [("BG", "R", np.asarray(table["background.sum.value"], dtype=float)[rows]),
                    ("SIGBG", "R", np.sqrt(np.clip(var, 0, None)))]
    frac = (np.asarray(table["partiality"], dtype=float)[rows] if "partiality" in table
            else np.ones(len(rows)))
    columns += [("FRACTIONCALC", "R", frac), ("XDET", "R", obs[:, 0]), ("YDET", "R", obs[:, 1]),
                ("ROT", "R", rot)]
    if "lp" in table:
        columns.append(("LP", "R", np.asarray(table["lp"], dtype=float)[rows]))
    qe_name = next((q for q in ("qe", "dqe") if q in table), None)
    columns.append(("QE", "R", np.asarray(table[qe_name], dtype=float)[rows] if qe_name
                    else np.ones(len(rows))))

    data = np.empty((len(rows), 3 + len(columns)), dtype=np.float32)
    data[:, :3] = asu
    for j, (_, _, values) in enumerate(columns):
        data[:, 3 + j] = _f32(values)

    mtz = gemmi.Mtz(with_base=True)
    mtz.title = "From xtal export"
    mtz.history = _history(history)
    mtz.spacegroup = sg
    n_sets = len(wavelengths)
    for g, w in enumerate(wavelengths):
        ds = mtz.add_dataset(dataset if n_sets == 1 else f"{dataset}_WAVE{g + 1}")
        ds.project_name = project
        ds.crystal_name = crystal
        ds.wavelength = w
    for label, kind, _ in columns:
        mtz.add_column(label, kind)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    batch_ranges = []
    for k, e in enumerate(experiments):
        lo, hi = ranges[k]
        batch_ranges.append((lo + offsets[k], hi + offsets[k]))
        if k not in dataset_of:
            continue
        g = dataset_of[k]
        _add_batches(mtz, e, lo, hi, offsets[k], mtz.datasets[g + 1].id, wavelengths[g], force_static_model)
    mtz.set_data(data)
    mtz.sort(5)
    _write_mtz(mtz, path)
    return UnmergedExport(n_observations=len(rows), n_input=sel.n_input, batch_offsets=tuple(offsets),
                          batch_ranges=tuple(batch_ranges), unit_cell=cell, wavelengths=tuple(wavelengths))
