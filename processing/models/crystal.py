"""Crystal model (DIALS/dxtbx Crystal): A = U·B, unit cell, space group.

``A`` maps Miller indices to reciprocal-lattice vectors in the lab frame at φ = 0
(1/Å): r = A·h. ``B`` is the transposed fractionalisation matrix of the unit cell
(a along x, c* along z, as cctbx and gemmi), ``U`` the orientation. The real-space
vectors a, b, c (Å) are the rows of A⁻¹. Space groups are gemmi objects, stored as
cctbx Hall symbols for DIALS files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import gemmi
import numpy as np

CELL_NAMES = ("a", "b", "c", "alpha", "beta", "gamma")


def cell_from_real_space(vectors: np.ndarray) -> tuple[float, ...]:
    """(a, b, c, α, β, γ) in Å and degrees from the rows a, b, c (Å)."""
    a, b, c = vectors
    la, lb, lc = (np.linalg.norm(v) for v in (a, b, c))
    ang = lambda u, v, lu, lv: math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v) / (lu * lv)))))
    return (float(la), float(lb), float(lc), ang(b, c, lb, lc), ang(a, c, la, lc), ang(a, b, la, lb))


def b_matrix(cell) -> np.ndarray:
    """B = (fractionalisation matrix)ᵀ for a unit cell (1/Å)."""
    uc = gemmi.UnitCell(*cell)
    return np.array(uc.frac.mat.tolist()).T


def symmetrized_cell(cell, space_group: gemmi.SpaceGroup | None) -> tuple[float, ...]:
    """The cell nearest ``cell`` that the space group's rotations keep: the direct metric G
    averaged over the point group (Rᵀ G R), so a cubic cell gets a = b = c and 90° angles."""
    if space_group is None:
        return tuple(float(x) for x in cell)
    M = np.array(gemmi.UnitCell(*cell).orth.mat.tolist())  # columns: a, b, c (Å)
    G = M.T @ M
    rots = [np.array(op.rot, dtype=float) / op.DEN for op in space_group.operations().sym_ops]
    G = sum(R.T @ G @ R for R in rots) / len(rots)
    lengths = np.sqrt(np.diag(G))
    cos = lambda i, j: G[i, j] / (lengths[i] * lengths[j])  # noqa: E731
    angles = [math.degrees(math.acos(max(-1.0, min(1.0, cos(i, j))))) for i, j in ((1, 2), (0, 2), (0, 1))]
    return (*(float(x) for x in lengths), *angles)


def median_cell(experiments, space_group: gemmi.SpaceGroup | None = None) -> tuple[float, ...]:
    """The per-parameter median of the experiments' cells (as dials.scale merges with), made
    to obey ``space_group`` when given."""
    cells = np.array([e.crystal.unit_cell for e in experiments if e.crystal is not None])
    if len(cells) == 0:
        raise ValueError("no experiment has a crystal model")
    return symmetrized_cell(tuple(float(x) for x in np.median(cells, axis=0)), space_group)


def space_group_from_hall(hall: str) -> gemmi.GroupOps:
    return gemmi.symops_from_hall(hall.strip())


def hall_symbol(sg: gemmi.SpaceGroup | str) -> str:
    """cctbx-style Hall symbol (leading space) for a space group or H-M symbol."""
    if isinstance(sg, str):
        found = gemmi.find_spacegroup_by_name(sg)
        if found is None:
            raise ValueError(f"unknown space group {sg!r}")
        sg = found
    return " " + sg.hall.strip()


@dataclass
class Crystal:
    """One crystal lattice: orientation and cell in one space-group setting."""

    real_space_a: np.ndarray
    real_space_b: np.ndarray
    real_space_c: np.ndarray
    space_group_hall_symbol: str = " P 1"
    B_covariance: np.ndarray | None = None  # 9×9, covariance of B's elements (row-major)
    A_at_scan_points: np.ndarray | None = None  # N×3×3 scan-varying A
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.real_space_a = np.asarray(self.real_space_a, dtype=float)
        self.real_space_b = np.asarray(self.real_space_b, dtype=float)
        self.real_space_c = np.asarray(self.real_space_c, dtype=float)
        if abs(np.linalg.det(self.real_space_matrix)) < 1e-9:
            raise ValueError("crystal basis vectors are linearly dependent")
        if self.B_covariance is not None:
            self.B_covariance = np.asarray(self.B_covariance, dtype=float).reshape(9, 9)
        if self.A_at_scan_points is not None:
            self.A_at_scan_points = np.asarray(self.A_at_scan_points, dtype=float).reshape(-1, 3, 3)

    # --- construction ------------------------------------------------------
    @classmethod
    def from_A(cls, A, space_group_hall_symbol: str = " P 1", **kwargs) -> "Crystal":
        real = np.linalg.inv(np.asarray(A, dtype=float))
        return cls(real[0], real[1], real[2], space_group_hall_symbol, **kwargs)

    @classmethod
    def from_cell_and_U(cls, cell, U, space_group_hall_symbol: str = " P 1") -> "Crystal":
        return cls.from_A(np.asarray(U) @ b_matrix(cell), space_group_hall_symbol)

    # --- matrices ----------------------------------------------------------
    @property
    def real_space_matrix(self) -> np.ndarray:
        """Rows a, b, c (Å) in the lab frame at φ = 0."""
        return np.vstack([self.real_space_a, self.real_space_b, self.real_space_c])

    @property
    def A(self) -> np.ndarray:
        return np.linalg.inv(self.real_space_matrix)

    @property
    def B(self) -> np.ndarray:
        return b_matrix(self.unit_cell)

    @property
    def U(self) -> np.ndarray:
        return self.A @ np.linalg.inv(self.B)

    @property
    def unit_cell(self) -> tuple[float, ...]:
        return cell_from_real_space(self.real_space_matrix)

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.real_space_matrix)))

    @property
    def space_group(self) -> gemmi.GroupOps:
        return space_group_from_hall(self.space_group_hall_symbol)

    @property
    def space_group_symbol(self) -> str:
        """Hermann–Mauguin symbol as dials.show prints it, e.g. 'P 21 21 21'."""
        sg = gemmi.find_spacegroup_by_ops(self.space_group)
        return sg.xhm() if sg is not None else "Hall:" + self.space_group_hall_symbol

    # --- uncertainties -----------------------------------------------------
    def cell_parameter_sd(self) -> tuple[float, ...] | None:
        """Standard deviations of (a, b, c, α, β, γ) from B_covariance (Å, deg)."""
        if self.B_covariance is None:
            return None
        B0 = self.B.ravel()
        J = np.zeros((6, 9))

        def cell_of(bflat):
            return np.array(cell_from_real_space(np.linalg.inv(bflat.reshape(3, 3))))

        for k in range(9):  # central differences of the cell w.r.t. each element of B
            h = 1e-7 * max(abs(B0).max(), 1e-12)
            up, dn = B0.copy(), B0.copy()
            up[k] += h
            dn[k] -= h
            J[:, k] = (cell_of(up) - cell_of(dn)) / (2 * h)
        var = np.einsum("ik,kl,il->i", J, self.B_covariance, J)
        return tuple(float(math.sqrt(max(v, 0.0))) for v in var)

    # --- serialisation ------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"__id__": "crystal",
             "real_space_a": [float(x) for x in self.real_space_a],
             "real_space_b": [float(x) for x in self.real_space_b],
             "real_space_c": [float(x) for x in self.real_space_c],
             "space_group_hall_symbol": self.space_group_hall_symbol}
        if self.A_at_scan_points is not None:
            d["A_at_scan_points"] = [[float(x) for x in m.ravel()] for m in self.A_at_scan_points]
        if self.B_covariance is not None:
            d["B_covariance"] = [float(x) for x in self.B_covariance.ravel()]
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Crystal":
        known = {"__id__", "real_space_a", "real_space_b", "real_space_c",
                 "space_group_hall_symbol", "A_at_scan_points", "B_covariance"}
        return cls(d["real_space_a"], d["real_space_b"], d["real_space_c"],
                   d.get("space_group_hall_symbol", " P 1"),
                   B_covariance=d.get("B_covariance"), A_at_scan_points=d.get("A_at_scan_points"),
                   extra={k: v for k, v in d.items() if k not in known})


def format_with_sd(value: float, sd: float, minimum: float = 1e-12) -> str:
    """A value with its standard uncertainty in brackets, as cctbx/DIALS print it.

    ``format_with_sd(67.7912, 0.031) == '67.79(3)'``; a zero uncertainty prints the
    plain value (``'90.0'``).
    """
    if not (sd > minimum):
        return str(round(value, -int(math.log10(minimum))))
    precision = -int(round(math.log10(sd)))
    if precision > -1:
        su = sd * 10.0 ** precision
        if round(su, 1) < 2:
            su *= 10
            precision += 1
        return f"{value:.{precision}f}({round(su)})"
    precision += 1
    su = int(round(sd, precision))
    return f"{round(value, precision):.0f}({su})"
