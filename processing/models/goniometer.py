"""Rotation goniometer (DIALS/dxtbx Goniometer and MultiAxisGoniometer).

A lab-frame vector r of the crystal at scan angle φ is ``S · R(axis, φ) · F · r``
with F the fixed rotation (axes inside the scan axis) and S the setting rotation
(axes outside it). Multi-axis goniometers list ``axes`` from innermost to outermost
with their ``angles`` (deg) and the index of the ``scan_axis``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def axis_angle_matrix(axis, angle_rad: float) -> np.ndarray:
    """Right-handed rotation by ``angle_rad`` about ``axis`` (3×3)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    x, y, z = a
    return np.array([
        [c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
        [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
        [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)],
    ])


def axis_angle_matrices(axis, angles_rad) -> np.ndarray:
    """Rotations about one axis for many angles (N×3×3)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    ang = np.asarray(angles_rad, dtype=float)
    c, s = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return c * np.eye(3) + s * K + (1 - c) * np.outer(a, a)


@dataclass
class Goniometer:
    rotation_axis: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    fixed_rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    setting_rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    axes: list | None = None  # multi-axis: unit axes, innermost first
    angles: list | None = None  # deg
    names: list | None = None
    scan_axis: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rotation_axis = np.asarray(self.rotation_axis, dtype=float)
        self.fixed_rotation = np.asarray(self.fixed_rotation, dtype=float).reshape(3, 3)
        self.setting_rotation = np.asarray(self.setting_rotation, dtype=float).reshape(3, 3)

    @classmethod
    def multi_axis(cls, axes, angles, names, scan_axis: int) -> "Goniometer":
        """Build from a list of axes (innermost first) and their angles (deg)."""
        axes = [np.asarray(a, dtype=float) for a in axes]
        F = np.eye(3)
        for i in range(scan_axis):
            F = axis_angle_matrix(axes[i], np.radians(angles[i])) @ F
        S = np.eye(3)
        for i in range(scan_axis + 1, len(axes)):
            S = axis_angle_matrix(axes[i], np.radians(angles[i])) @ S
        return cls(rotation_axis=axes[scan_axis] / np.linalg.norm(axes[scan_axis]),
                   fixed_rotation=F, setting_rotation=S,
                   axes=[list(map(float, a)) for a in axes], angles=[float(x) for x in angles],
                   names=list(names), scan_axis=int(scan_axis))

    @property
    def rotation_axis_lab(self) -> np.ndarray:
        """The scan axis in the lab frame (S · axis)."""
        return self.setting_rotation @ self.rotation_axis

    def rotation_matrix(self, phi_rad) -> np.ndarray:
        """S · R(axis, φ) · F for one angle (3×3) or many (N×3×3)."""
        phi = np.asarray(phi_rad, dtype=float)
        if phi.ndim == 0:
            return self.setting_rotation @ axis_angle_matrix(self.rotation_axis, float(phi)) @ self.fixed_rotation
        return self.setting_rotation @ axis_angle_matrices(self.rotation_axis, phi) @ self.fixed_rotation

    def to_dict(self) -> dict:
        if self.axes is not None:
            d = {"axes": [list(map(float, a)) for a in self.axes],
                 "angles": [float(x) for x in self.angles],
                 "names": list(self.names), "scan_axis": int(self.scan_axis)}
        else:
            d = {"rotation_axis": [float(x) for x in self.rotation_axis],
                 "fixed_rotation": [float(x) for x in self.fixed_rotation.ravel()],
                 "setting_rotation": [float(x) for x in self.setting_rotation.ravel()]}
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Goniometer":
        if "axes" in d:
            g = cls.multi_axis(d["axes"], d["angles"], d["names"], d["scan_axis"])
            g.extra = {k: v for k, v in d.items() if k not in ("axes", "angles", "names", "scan_axis")}
            return g
        known = ("rotation_axis", "fixed_rotation", "setting_rotation")
        return cls(rotation_axis=d["rotation_axis"],
                   fixed_rotation=d.get("fixed_rotation", np.eye(3).ravel()),
                   setting_rotation=d.get("setting_rotation", np.eye(3).ravel()),
                   extra={k: v for k, v in d.items() if k not in known})
