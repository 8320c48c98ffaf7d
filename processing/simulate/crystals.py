"""The crystal ensemble: orientations, cells, scales and flags of every crystal."""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np
from scipy.spatial.transform import Rotation

from ..models.crystal import b_matrix
from .truth import format_abc


@dataclass
class CrystalTruth:
    """What is true of one simulated crystal (one sweep)."""

    index: int
    identifier: str
    cell: tuple[float, ...]
    U: np.ndarray
    setting_op: np.ndarray  # h_reference = setting_op · h_simulated
    scale: float
    b_extra: float
    exposure_time: float
    flags: list[str] = field(default_factory=list)
    second_U: np.ndarray | None = None
    second_scale: float = 0.0
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

    def to_dict(self) -> dict:
        d = {"index": self.index, "identifier": self.identifier,
             "unit_cell": [round(float(x), 6) for x in self.cell],
             "U": [[float(x) for x in row] for row in self.U],
             "A": [[float(x) for x in row] for row in self.A],
             "A_reference": [[float(x) for x in row] for row in self.A @ np.linalg.inv(self.setting_op)],
             "change_of_basis_op": self.change_of_basis_op,
             "scale": float(self.scale), "B": float(self.b_extra),
             "exposure_time": float(self.exposure_time), "flags": list(self.flags)}
        if self.second_U is not None:
            d["second_lattice"] = {"U": [[float(x) for x in row] for row in self.second_U],
                                   "scale": float(self.second_scale)}
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
        out.append(CrystalTruth(i, identifier, c, U, np.asarray(op, dtype=np.int64), scale, b_extra,
                                exposure, flags[i], second, 0.5 if second is not None else 0.0, seed))
    return out
