"""Reflection filters of integration: hexagonal-ice rings (dials.integrate's
``integration.filter.ice_rings``).

DIALS flags, without removing them, the reflections whose 1/d² falls in one of the
fixed hexagonal-ice ranges below (Å⁻², dials/algorithms/integration/filtering.py,
``IceRingFilter``); scaling and export can then leave them out.
"""
from __future__ import annotations

import numpy as np

ICE_RING_RANGES_INV_D2 = (
    (0.0640, 0.0690), (0.0710, 0.0780), (0.0825, 0.0880), (0.138, 0.144), (0.190, 0.205),
    (0.228, 0.240), (0.262, 0.266), (0.267, 0.278), (0.280, 0.288), (0.337, 0.341),
    (0.429, 0.435), (0.459, 0.466), (0.478, 0.486), (0.531, 0.537),
)

__all__ = ["ICE_RING_RANGES_INV_D2", "in_ice_ring"]


def in_ice_ring(d: np.ndarray) -> np.ndarray:
    """True where the resolution d (Å) lies on a hexagonal-ice ring (closed 1/d² ranges)."""
    s = 1.0 / np.asarray(d, dtype=float) ** 2
    out = np.zeros(s.shape, dtype=bool)
    for lo, hi in ICE_RING_RANGES_INV_D2:
        out |= (s >= lo) & (s <= hi)
    return out
