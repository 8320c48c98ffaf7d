"""Synthetic scaled observations with known truth for the merging tests."""
from __future__ import annotations

import gemmi
import numpy as np


def unique_reflections(space_group: str, cell, d_min: float) -> np.ndarray:
    """Every systematically allowed ASU reflection to d_min, (n, 3) int32."""
    sg = gemmi.SpaceGroup(space_group)
    return np.asarray(gemmi.make_miller_array(gemmi.UnitCell(*cell), sg, d_min, 0, True))


def equivalents(hkl: np.ndarray, space_group: str, rng: np.random.Generator, friedel: bool = True
                ) -> np.ndarray:
    """A random symmetry equivalent of each row (random Friedel sign when ``friedel``)."""
    ops = gemmi.SpaceGroup(space_group).operations()
    rots = np.array([np.array(op.rot) // op.DEN for op in ops.sym_ops])
    k = rng.integers(0, len(rots), len(hkl))
    out = np.einsum("ni,nij->nj", hkl.astype(np.int64), rots[k])
    if friedel:
        out *= rng.choice([-1, 1], len(hkl))[:, None]
    return out.astype(np.int32)


def observations(space_group="P 21 3", cell=(78.0, 78.0, 78.0, 90.0, 90.0, 90.0), d_min=2.0,
                 multiplicity=4, sigma=None, b_factor=20.0, mean_i=1000.0, seed=1):
    """Observations of Wilson-distributed true intensities, each measured ``multiplicity`` times.

    Returns (unique hkl, true I, obs hkl, obs I, obs variance, index of the unique
    reflection of each observation). sigma: constant σ (default 0.3·⟨I⟩ of the shell).
    """
    rng = np.random.default_rng(seed)
    uniq = unique_reflections(space_group, cell, d_min)
    d = np.asarray(gemmi.UnitCell(*cell).calculate_d_array(uniq))
    scale = mean_i * np.exp(-b_factor / (2 * d ** 2))
    true_i = rng.exponential(1.0, len(uniq)) * scale
    src = np.repeat(np.arange(len(uniq)), multiplicity)
    hkl = equivalents(uniq[src], space_group, rng)
    sig = (0.3 * scale[src]) if sigma is None else np.full(len(src), float(sigma))
    obs = true_i[src] + rng.normal(0.0, 1.0, len(src)) * sig
    return uniq, true_i, hkl, obs, sig ** 2, src
