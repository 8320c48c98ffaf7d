"""The crystal ensemble: orientations, cells, scales and flags of every crystal."""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np
from scipy.spatial.transform import Rotation

from ..models.crystal import b_matrix
from .truth import format_abc


@dataclass
class LatticeTruth:
    """One more lattice in a crystal's sweep (another crystal of the same form in the beam)."""

    identifier: str
    cell: tuple[float, ...]
    U: np.ndarray
    setting_op: np.ndarray
    scale: float
    b_extra: float

    @property
    def A(self) -> np.ndarray:
        return self.U @ b_matrix(self.cell)

    def to_dict(self) -> dict:
        return {"identifier": self.identifier, "unit_cell": [round(float(x), 6) for x in self.cell],
                "U": [[float(x) for x in row] for row in self.U],
                "A": [[float(x) for x in row] for row in self.A],
                "A_reference": [[float(x) for x in row] for row in self.A @ np.linalg.inv(self.setting_op)],
                "change_of_basis_op": format_abc(self.setting_op), "scale": float(self.scale),
                "B": float(self.b_extra)}


@dataclass
class CrystalTruth:
    """What is true of one simulated crystal (one sweep); ``extra_lattices`` are the
    other lattices in the same sweep (lattice 1, 2 … of its reflections)."""

    index: int
    identifier: str
    cell: tuple[float, ...]
    U: np.ndarray
    setting_op: np.ndarray  # h_reference = setting_op · h_simulated
    scale: float
    b_extra: float
    exposure_time: float
    flags: list[str] = field(default_factory=list)
    extra_lattices: list[LatticeTruth] = field(default_factory=list)
    seed: int = 0

    @property
    def B(self) -> np.ndarray:
        return b_matrix(self.cell)

    @property
    def A(self) -> np.ndarray:
        return self.U @ self.B

    @property
    def change_of_basis_op(self) -> str:
        """From this crystal's simulated setting to the reference setting (cctbx style)."""
        return format_abc(self.setting_op)

    def lattices(self) -> list[LatticeTruth]:
        """Every lattice of the sweep, this crystal's own first (lattice 0)."""
        own = LatticeTruth(self.identifier, self.cell, self.U, self.setting_op, self.scale, self.b_extra)
        return [own] + list(self.extra_lattices)

    def to_dict(self) -> dict:
        d = {"index": self.index, "identifier": self.identifier,
             "unit_cell": [round(float(x), 6) for x in self.cell],
             "U": [[float(x) for x in row] for row in self.U],
             "A": [[float(x) for x in row] for row in self.A],
             "A_reference": [[float(x) for x in row] for row in self.A @ np.linalg.inv(self.setting_op)],
             "change_of_basis_op": self.change_of_basis_op,
             "scale": float(self.scale), "B": float(self.b_extra),
             "exposure_time": float(self.exposure_time), "flags": list(self.flags),
             "n_lattices": 1 + len(self.extra_lattices)}
        if self.extra_lattices:
            d["lattices"] = [lat.to_dict() for lat in self.lattices()]
        return d


def jitter_cell(cell, sg: gemmi.SpaceGroup, rel_sd: float, rng: np.random.Generator) -> tuple[float, ...]:
    """Random relative changes of the free cell lengths, keeping the crystal system."""
    a, b, c, al, be, ga = cell
    f = 1 + rel_sd * rng.normal(size=3)
    system = sg.crystal_system_str()
    if system == "cubic":
        f[1] = f[2] = f[0]
    elif system in ("tetragonal", "hexagonal", "trigonal"):
        f[1] = f[0]
    if system == "trigonal" and sg.hm.startswith("R") and sg.ext == "R":
        f[:] = f[0]
    return (a * f[0], b * f[1], c * f[2], al, be, ga)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    return Rotation.random(random_state=np.random.default_rng(rng.integers(2**63))).as_matrix()


def make_ensemble(p, sg: gemmi.SpaceGroup, cell, ambiguities: list[np.ndarray],
                  rng: np.random.Generator) -> list[CrystalTruth]:
    """Crystals for the (resolved) parameters ``p``: flags assigned to distinct crystals."""
    n = p.n_crystals
    order = rng.permutation(n)
    flags = {i: [] for i in range(n)}
    pos = 0
    for name, count in (("non_isomorphous", p.n_non_isomorphous), ("weak", p.n_weak),
                        ("damaged", p.n_damaged), ("second_lattice", p.n_second_lattice)):
        for _ in range(int(count or 0)):
            flags[int(order[pos % n])].append(name)
            pos += 1
    n_alt = int(round((p.alt_setting_fraction or 0) * n)) if ambiguities else 0
    alt = set(int(i) for i in rng.permutation(n)[:n_alt])
    out = []
    for i in range(n):
        U = random_rotation(rng)
        c = jitter_cell(cell, sg, p.cell_jitter, rng)
        if "non_isomorphous" in flags[i]:
            c = tuple(x * 1.02 for x in c[:3]) + tuple(c[3:])
        op = ambiguities[0] if i in alt else np.eye(3, dtype=np.int64)
        scale = float(np.exp(p.scale_jitter * rng.normal()))
        b_extra = float(abs(p.b_factor_jitter * rng.normal()))
        exposure = p.exposure_time * (0.1 if "weak" in flags[i] else 1.0)
        second = random_rotation(rng) if "second_lattice" in flags[i] else None
        seed = int(rng.integers(2**62))
        identifier = f"xtal-sim-{p.seed:d}-{i:04d}"
        extra = []
        if second is not None:
            extra.append(LatticeTruth(f"{identifier}-1", c, second, np.eye(3, dtype=np.int64), 0.5 * scale, b_extra))
        out.append(CrystalTruth(i, identifier, c, U, np.asarray(op, dtype=np.int64), scale, b_extra,
                                exposure, flags[i], extra, seed))
    _add_lattices(out, p, sg, cell, ambiguities)
    return out


def _add_lattices(crystals: list[CrystalTruth], p, sg, cell, ambiguities) -> None:
    """Other crystals of the same form in every sweep, up to ``p.lattices_per_sweep``.

    Drawn from their own random stream, so that the first lattices stay as they are
    without this option.
    """
    lat = tuple(p.lattices_per_sweep or (1,))
    lo, hi = lat[0], lat[-1]
    if hi <= 1:
        return
    rng = np.random.default_rng([p.seed, 0x1A77])
    for c in crystals:
        n = int(rng.integers(lo, hi + 1))
        for j in range(len(c.extra_lattices) + 1, n):
            alt = bool(ambiguities) and rng.random() < (p.alt_setting_fraction or 0)
            op = ambiguities[0] if alt else np.eye(3, dtype=np.int64)
            c.extra_lattices.append(LatticeTruth(
                f"{c.identifier}-{j}", jitter_cell(cell, sg, p.cell_jitter, rng), random_rotation(rng),
                np.asarray(op, dtype=np.int64), float(np.exp(p.scale_jitter * rng.normal())),
                float(abs(p.b_factor_jitter * rng.normal()))))
