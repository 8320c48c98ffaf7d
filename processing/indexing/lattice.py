"""Small lattice utilities: reduction, cell comparison, change-of-basis strings.

Real-space bases are 3×3 arrays whose rows are a, b, c (Å, lab frame at φ = 0).
A change of basis M (integer 3×3) makes new rows ``M @ R``; Miller indices then
transform as ``h_new = M @ h_old``. ``abc_string(M)`` writes M as DIALS/cctbx write
change-of-basis operators in the abc notation (``b+c,a+c,a+b``).
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import gemmi
import numpy as np

from ..models.crystal import cell_from_real_space


def niggli_reduce(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reduced rows, integer M) with reduced = M @ R, right-handed."""
    R = np.asarray(R, dtype=float)
    cell = cell_from_real_space(R)
    try:
        g = gemmi.GruberVector(gemmi.UnitCell(*cell), None, True)
        g.niggli_reduce()
        op = g.change_of_basis
        M = np.rint(np.array(op.rot, dtype=float) / op.DEN).T.astype(int)
    except Exception:  # degenerate cells: fall back to a simple greedy reduction
        M = _greedy_reduce(R)
    if np.linalg.det(M @ R) < 0:
        M = -M
    return M @ R, M


def _greedy_reduce(R: np.ndarray) -> np.ndarray:
    M = np.eye(3, dtype=int)
    for _ in range(100):
        changed = False
        for i, j in itertools.permutations(range(3), 2):
            V = M @ R
            k = round(float(V[i] @ V[j]) / float(V[j] @ V[j]))
            if k:
                M[i] -= k * M[j]
                changed = True
        if not changed:
            break
    return M


def cell_volume(cell) -> float:
    return gemmi.UnitCell(*cell).volume


def cells_similar(cell1, cell2, relative_length_tolerance: float = 0.1,
                  absolute_angle_tolerance: float = 5.0) -> bool:
    """cctbx's ``unit_cell.is_similar_to``: every length within a relative tolerance
    and every angle within an absolute tolerance (deg)."""
    c1, c2 = np.asarray(cell1, float), np.asarray(cell2, float)
    if np.any(np.abs(c1[:3] - c2[:3]) / np.maximum(c1[:3], c2[:3]) > relative_length_tolerance):
        return False
    return bool(np.all(np.abs(c1[3:] - c2[3:]) <= absolute_angle_tolerance))


_PERMS = np.array(list(itertools.permutations(range(3))))
_FLIPS = np.array([(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)])


def reduced_cells_similar(cell1, cell2, relative_length_tolerance: float = 0.1,
                          absolute_angle_tolerance: float = 5.0) -> bool:
    """Compare two reduced cells allowing the ambiguities of reduction near its
    boundaries: axis permutations and the acute/obtuse choice of angle pairs."""
    c1, c2 = np.asarray(cell1, float), np.asarray(cell2, float)
    L = c2[:3][_PERMS]  # 6 × 3
    A = c2[3:][_PERMS]
    ang = np.where(_FLIPS[None] > 0, A[:, None], 180.0 - A[:, None])  # 6 × 4 × 3
    len_ok = np.all(np.abs(c1[:3] - L) / np.maximum(c1[:3], L) <= relative_length_tolerance, axis=1)
    ang_ok = np.all(np.abs(c1[3:] - ang) <= absolute_angle_tolerance, axis=2)
    return bool(np.any(len_ok[:, None] & ang_ok))


def same_lattice(R1: np.ndarray, R2: np.ndarray, tol: float = 0.1) -> bool:
    """True when two bases describe the same lattice (R1 = M R2, M unimodular integer)."""
    M = R1 @ np.linalg.inv(R2)
    Mi = np.rint(M)
    return bool(np.all(np.abs(M - Mi) < tol) and abs(round(np.linalg.det(Mi))) == 1)


def abc_string(M) -> str:
    """Rows of M (new basis vectors in terms of a, b, c) in cctbx's abc notation."""
    out = []
    for row in np.asarray(M):
        terms = ""
        for coef, name in zip(row, "abc"):
            f = Fraction(float(coef)).limit_denominator(12)
            if f == 0:
                continue
            sign = "-" if f < 0 else ("+" if terms else "")
            mag = abs(f)
            if mag == 1:
                terms += f"{sign}{name}"
            elif mag.denominator == 1:
                terms += f"{sign}{mag.numerator}*{name}"
            else:
                terms += f"{sign}{mag.numerator}/{mag.denominator}*{name}" if mag.numerator != 1 else f"{sign}{name}/{mag.denominator}"
        out.append(terms or "0")
    return ",".join(out)


def hkl_string(M) -> str:
    """The same operator acting on Miller indices (h_new = M h), as ``h+k,-h+k,l``."""
    return abc_string(M).replace("a", "h").replace("b", "k").replace("c", "l")


def closest_rotation(M: np.ndarray) -> np.ndarray:
    """Nearest proper rotation to a 3×3 matrix (polar decomposition)."""
    u, _, vt = np.linalg.svd(M)
    R = u @ vt
    if np.linalg.det(R) < 0:
        u[:, -1] *= -1
        R = u @ vt
    return R


def rotation_angle_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(R) - 1.0) / 2.0))))
