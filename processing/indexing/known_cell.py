"""Known unit cell / space group priors.

``TargetSymmetry`` holds the user's ``unit_cell=`` and ``space_group=`` as DIALS's
SymmetryHandler does: the target's reduced (primitive) cell and Bravais lattice.
A candidate lattice matches when its reduced cell is within DIALS's tolerances of
the target's (``relative_length_tolerance=0.1``, ``absolute_angle_tolerance=5``)
and, with a space group, it has a Bravais setting of the target lattice with
δ ≤ ``max_delta``. ``real_space_grid_search`` is DIALS's known-cell search: for
directions on a hemisphere and each target length L, Σ cos(2π r·L·u) peaks where
L·u is a lattice vector.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import gemmi
import numpy as np

from ..errors import XtalError
from ..models.crystal import b_matrix, cell_from_real_space
from .bravais import bravais_settings, lattice_of_space_group
from .fft1d import hemisphere_directions, optimise_vector
from .lattice import niggli_reduce, reduced_cells_similar, cells_similar
from .vectors import tidy_vectors


def validate_cell(cell) -> tuple[float, ...] | None:
    """The cell as 6 floats (Å, deg), or XtalError (``field`` unit_cell) if it is impossible."""
    if cell is None:
        return None
    if len(cell) != 6:
        raise XtalError(f"unit_cell needs 6 numbers (a, b, c, α, β, γ), got {len(cell)}", field="unit_cell")
    a, b, c, al, be, ga = (float(x) for x in cell)
    if min(a, b, c) <= 0 or not all(map(math.isfinite, (a, b, c))):
        raise XtalError(f"unit_cell lengths must be positive, got {a:g}, {b:g}, {c:g}", field="unit_cell")
    if not all(0 < x < 180 for x in (al, be, ga)):
        raise XtalError(f"unit_cell angles must lie between 0 and 180°, got {al:g}, {be:g}, {ga:g}",
                        field="unit_cell")
    try:
        v = gemmi.UnitCell(a, b, c, al, be, ga).volume
    except Exception:
        v = float("nan")
    if not (v > 0 and math.isfinite(v)):
        raise XtalError(f"unit_cell {a:g},{b:g},{c:g},{al:g},{be:g},{ga:g} is impossible (the angles close no cell)",
                        field="unit_cell")
    return (a, b, c, al, be, ga)


@dataclass
class TargetSymmetry:
    unit_cell: tuple | None = None
    space_group: str | None = None
    lattice: str | None = None  # Bravais symbol of the space group
    reduced_cell: tuple | None = None  # of the primitive lattice of the target
    relative_length_tolerance: float = 0.1
    absolute_angle_tolerance: float = 5.0
    max_delta: float = 5.0

    @classmethod
    def make(cls, unit_cell=None, space_group=None, **kw) -> "TargetSymmetry":
        cell = validate_cell(unit_cell)
        lattice = None
        sg_name = None
        if space_group:
            sg = gemmi.find_spacegroup_by_name(str(space_group))
            if sg is None:
                raise XtalError(f"unknown space group {space_group!r}", field="space_group")
            sg_name = sg.xhm()
            lattice = lattice_of_space_group(sg_name)
            if cell is not None and not gemmi.UnitCell(*cell).is_compatible_with_spacegroup(sg, 1e-2):
                raise XtalError(f"unit_cell={','.join(f'{v:g}' for v in cell)} does not fit space group "
                                f"{sg.xhm()} ({sg.crystal_system_str()}); give the cell in that space "
                                "group's setting, or leave out space_group=", field="unit_cell")
        reduced = None
        if cell is not None:
            R = np.linalg.inv(b_matrix(cell))  # rows a, b, c
            if space_group:
                op = gemmi.find_spacegroup_by_name(sg_name).centred_to_primitive()
                P = (np.array(op.rot, float) / op.DEN).T @ R
            else:
                P = R
            reduced = cell_from_real_space(niggli_reduce(P)[0])
        return cls(cell, sg_name, lattice, reduced, **kw)

    @property
    def active(self) -> bool:
        return self.unit_cell is not None or self.space_group is not None

    @property
    def max_primitive_length(self) -> float | None:
        return None if self.reduced_cell is None else max(self.reduced_cell[:3])

    def matches(self, R_reduced: np.ndarray) -> bool:
        cell = cell_from_real_space(R_reduced)
        if self.reduced_cell is not None and not reduced_cells_similar(
                cell, self.reduced_cell, self.relative_length_tolerance, self.absolute_angle_tolerance):
            return False
        if self.lattice is not None and self.lattice != "aP":
            settings = [s for s in bravais_settings(R_reduced, self.max_delta, only=self.lattice)
                        if s.bravais == self.lattice]
            if not settings:
                return False
            if self.unit_cell is not None and not any(
                    cells_similar(_sorted_if_needed(s.cell, self.lattice), _sorted_if_needed(self.unit_cell, self.lattice),
                                  self.relative_length_tolerance, self.absolute_angle_tolerance) for s in settings):
                return False
        return True


def _sorted_if_needed(cell, lattice):
    if lattice in ("oP", "oI", "oF"):
        return tuple(sorted(cell[:3])) + tuple(cell[3:])
    return tuple(cell)


def real_space_grid_search(rlp: np.ndarray, target_reduced_cell, spacing_rad: float = 0.02,
                           n_keep: int = 30) -> list[np.ndarray]:
    """Candidate vectors of the target lengths along the best directions."""
    rlp = np.asarray(rlp, float)
    if len(rlp) < 10:
        raise XtalError(f"too few spots ({len(rlp)}) for the real-space grid search")
    dirs = hemisphere_directions(spacing_rad)
    lengths = sorted(set(round(x, 3) for x in target_reduced_cell[:3]))
    vecs, vals = [], []
    chunk = max(1, int(2e7 // max(len(rlp), 1)))
    for L in lengths:
        f = np.empty(len(dirs))
        for s in range(0, len(dirs), chunk):
            f[s: s + chunk] = np.cos(2 * math.pi * L * (rlp @ dirs[s: s + chunk].T)).sum(0)
        top = np.argsort(-f)[: n_keep * 4]
        for i in top:
            vecs.append(dirs[i] * L)
            vals.append(f[i])
    vecs = np.array([optimise_vector(v, rlp) for v in vecs])
    return tidy_vectors(vecs, np.array(vals), 0.5 * min(lengths), 1.5 * max(lengths))[: n_keep * len(lengths)]
