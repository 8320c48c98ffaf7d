"""Monochromatic X-ray beam (DIALS/dxtbx Beam)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n == 0:
        raise ValueError(f"cannot normalise vector {v}")
    return v / n


@dataclass
class Beam:
    """The incident beam in the laboratory frame.

    ``direction`` is the unit vector from the sample towards the source (as dxtbx
    stores it), so the incident wave vector is ``s0 = -direction / wavelength``
    (1/Å). Wavelength in Å; polarisation: ``polarization_normal`` is the normal to
    the plane of polarisation, ``polarization_fraction`` the fraction polarised in
    that plane (0.999 for a synchrotron).
    """

    direction: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    wavelength: float = 1.0
    divergence: float = 0.0
    sigma_divergence: float = 0.0
    polarization_normal: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    polarization_fraction: float = 0.999
    flux: float = 0.0
    transmission: float = 1.0
    extra: dict = field(default_factory=dict)  # unrecognised keys, kept for round trips

    def __post_init__(self):
        self.direction = np.asarray(self.direction, dtype=float)
        self.polarization_normal = np.asarray(self.polarization_normal, dtype=float)
        if not (np.isfinite(self.wavelength) and self.wavelength > 0):
            raise ValueError(f"wavelength must be positive, got {self.wavelength}")

    @property
    def s0(self) -> np.ndarray:
        """Incident wave vector (1/Å), pointing along the beam."""
        return -_unit(self.direction) / self.wavelength

    @classmethod
    def from_s0(cls, s0, **kwargs) -> "Beam":
        s0 = np.asarray(s0, dtype=float)
        return cls(direction=-_unit(s0), wavelength=1.0 / np.linalg.norm(s0), **kwargs)

    def to_dict(self) -> dict:
        d = {
            "direction": [float(x) for x in self.direction],
            "wavelength": float(self.wavelength),
            "divergence": float(self.divergence),
            "sigma_divergence": float(self.sigma_divergence),
            "polarization_normal": [float(x) for x in self.polarization_normal],
            "polarization_fraction": float(self.polarization_fraction),
            "flux": float(self.flux),
            "transmission": float(self.transmission),
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Beam":
        known = {"direction", "wavelength", "divergence", "sigma_divergence",
                 "polarization_normal", "polarization_fraction", "flux", "transmission"}
        return cls(
            direction=np.array(d["direction"], dtype=float),
            wavelength=float(d["wavelength"]),
            divergence=float(d.get("divergence", 0.0)),
            sigma_divergence=float(d.get("sigma_divergence", 0.0)),
            polarization_normal=np.array(d.get("polarization_normal", [0.0, 1.0, 0.0]), dtype=float),
            polarization_fraction=float(d.get("polarization_fraction", 0.999)),
            flux=float(d.get("flux", 0.0)),
            transmission=float(d.get("transmission", 1.0)),
            extra={k: v for k, v in d.items() if k not in known},
        )
