"""Flat-panel detector made of panels (DIALS/dxtbx Detector, Panel).

Frames: laboratory frame as DIALS (beam along -z, y up). A panel is a plane with
``origin`` (mm, the lab position of the outer corner of pixel (0, 0)), unit
``fast_axis`` and ``slow_axis``. Pixel coordinates are (x = fast, y = slow) with
pixel centres at +0.5. Millimetre coordinates on the panel are (fast, slow) from
the origin. Parallax: when ``px_mm_strategy`` is ``ParallaxCorrectedPxMmStrategy``
the recorded pixel position of a ray is shifted outwards by the mean absorption
depth in the sensor (``mu`` in 1/mm, ``thickness`` in mm), as dxtbx does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PARALLAX = "ParallaxCorrectedPxMmStrategy"
SIMPLE = "SimplePxMmStrategy"


def _attenuation_length(mu: float, t0: float, s1: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Mean depth (mm) at which a ray along ``s1`` (N×3) is absorbed in the sensor."""
    cos_t = np.abs(s1 @ normal) / np.linalg.norm(s1, axis=-1)
    path = t0 / cos_t
    return 1.0 / mu - (path + 1.0 / mu) * np.exp(-mu * path)


@dataclass
class Panel:
    """One detector module: geometry, size, trusted range and sensor."""

    name: str = "Panel"
    type: str = "SENSOR_PAD"
    fast_axis: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    slow_axis: np.ndarray = field(default_factory=lambda: np.array([0.0, -1.0, 0.0]))
    origin: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, -100.0]))
    image_size: tuple[int, int] = (1000, 1000)  # (fast, slow) pixels
    pixel_size: tuple[float, float] = (0.075, 0.075)  # mm
    trusted_range: tuple[float, float] = (-1.0, 65535.0)
    thickness: float = 0.0  # mm
    material: str = ""
    mu: float = 0.0  # linear attenuation coefficient, 1/mm
    identifier: str = ""
    mask: list = field(default_factory=list)  # rectangles [x0, y0, x1, y1], px, end exclusive
    gain: float = 1.0
    pedestal: float = 0.0
    raw_image_offset: tuple[int, int] = (0, 0)
    px_mm_strategy: str = SIMPLE
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.fast_axis = np.asarray(self.fast_axis, dtype=float)
        self.slow_axis = np.asarray(self.slow_axis, dtype=float)
        self.origin = np.asarray(self.origin, dtype=float)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.pixel_size = (float(self.pixel_size[0]), float(self.pixel_size[1]))
        self.trusted_range = (float(self.trusted_range[0]), float(self.trusted_range[1]))

    # --- frame -----------------------------------------------------------
    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.fast_axis, self.slow_axis)
        return n / np.linalg.norm(n)

    @property
    def d_matrix(self) -> np.ndarray:
        """Columns fast, slow, origin: lab = D @ (x_mm, y_mm, 1)."""
        return np.column_stack([self.fast_axis, self.slow_axis, self.origin])

    @property
    def distance(self) -> float:
        """Perpendicular distance (mm) from the sample to the panel plane."""
        return float(self.origin @ self.normal)

    @property
    def _parallax(self) -> bool:
        return self.px_mm_strategy == PARALLAX and self.mu > 0 and self.thickness > 0

    def _signed_normal(self) -> np.ndarray:
        n = self.normal
        return -n if self.origin @ n < 0 else n

    # --- pixel <-> millimetre ------------------------------------------------
    def pixel_to_millimeter(self, xy) -> np.ndarray:
        """Recorded pixel position (N×2 px) → geometric ray intersection (N×2 mm)."""
        xy = np.atleast_2d(np.asarray(xy, dtype=float))
        mm = xy * np.asarray(self.pixel_size)
        if not self._parallax:
            return mm
        target = mm.copy()
        n = self._signed_normal()
        out = mm.copy()
        for _ in range(100):  # fixed-point inverse of millimeter_to_pixel's shift
            s1 = self.origin + out[:, :1] * self.fast_axis + out[:, 1:2] * self.slow_axis
            o = _attenuation_length(self.mu, self.thickness, s1, n)[:, None]
            norm = np.linalg.norm(s1, axis=1)[:, None]
            new = target - np.column_stack([s1 @ self.fast_axis, s1 @ self.slow_axis]) * o / norm
            if np.max(np.abs(new - out)) < 1e-9:
                out = new
                break
            out = new
        return out

    def millimeter_to_pixel(self, mm) -> np.ndarray:
        """Geometric intersection (N×2 mm) → recorded pixel position (N×2 px)."""
        mm = np.atleast_2d(np.asarray(mm, dtype=float))
        if self._parallax:
            s1 = self.origin + mm[:, :1] * self.fast_axis + mm[:, 1:2] * self.slow_axis
            o = _attenuation_length(self.mu, self.thickness, s1, self._signed_normal())[:, None]
            norm = np.linalg.norm(s1, axis=1)[:, None]
            mm = mm + np.column_stack([s1 @ self.fast_axis, s1 @ self.slow_axis]) * o / norm
        return mm / np.asarray(self.pixel_size)

    # --- lab <-> panel -----------------------------------------------------
    def get_lab_coord(self, mm) -> np.ndarray:
        """Panel millimetres (N×2) → laboratory position (N×3, mm)."""
        mm = np.atleast_2d(np.asarray(mm, dtype=float))
        return self.origin + mm[:, :1] * self.fast_axis + mm[:, 1:2] * self.slow_axis

    def get_ray_intersection(self, s1) -> tuple[np.ndarray, np.ndarray]:
        """Where rays from the sample along ``s1`` (N×3) meet the panel plane.

        Returns (mm N×2, valid N bool); a ray parallel to or away from the panel is
        not valid.
        """
        s1 = np.atleast_2d(np.asarray(s1, dtype=float))
        d = self.d_matrix
        v = s1 @ np.linalg.inv(d).T  # D^-1 s1: (a, b, c) with lab = c * D (x, y, 1)
        valid = v[:, 2] > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            mm = v[:, :2] / v[:, 2:3]
        return mm, valid

    def get_beam_centre(self, s0) -> np.ndarray:
        """Beam centre on this panel (mm, fast/slow)."""
        mm, valid = self.get_ray_intersection(np.asarray(s0)[None, :])
        return mm[0]

    def get_beam_centre_px(self, s0) -> np.ndarray:
        return self.millimeter_to_pixel(self.get_beam_centre(s0)[None, :])[0]

    def is_coord_valid_mm(self, mm) -> np.ndarray:
        mm = np.atleast_2d(mm)
        size = np.asarray(self.image_size) * np.asarray(self.pixel_size)
        return np.all((mm >= 0) & (mm <= size), axis=1)

    def get_max_resolution_at_corners(self, s0) -> float:
        """d (Å) at the panel corner farthest from the beam centre."""
        s0 = np.asarray(s0, dtype=float)
        nx, ny = self.image_size
        corners = np.array([[0, 0], [nx, 0], [0, ny], [nx, ny]], dtype=float)
        lab = self.get_lab_coord(self.pixel_to_millimeter(corners))
        return float(np.min(resolution_of_lab(lab, s0)))

    # --- serialisation ------------------------------------------------------
    _keys = ("name", "type", "fast_axis", "slow_axis", "origin", "raw_image_offset",
             "image_size", "pixel_size", "trusted_range", "thickness", "material", "mu",
             "identifier", "mask", "gain", "pedestal", "px_mm_strategy")

    def to_dict(self) -> dict:
        d = {
            "name": self.name, "type": self.type,
            "fast_axis": [float(x) for x in self.fast_axis],
            "slow_axis": [float(x) for x in self.slow_axis],
            "origin": [float(x) for x in self.origin],
            "raw_image_offset": [int(x) for x in self.raw_image_offset],
            "image_size": [int(x) for x in self.image_size],
            "pixel_size": [float(x) for x in self.pixel_size],
            "trusted_range": [float(x) for x in self.trusted_range],
            "thickness": float(self.thickness), "material": self.material,
            "mu": float(self.mu), "identifier": self.identifier,
            "mask": [[int(v) for v in r] for r in self.mask],
            "gain": float(self.gain), "pedestal": float(self.pedestal),
            "px_mm_strategy": {"type": self.px_mm_strategy},
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Panel":
        strategy = d.get("px_mm_strategy", {"type": SIMPLE})
        return cls(
            name=d.get("name", "Panel"), type=d.get("type", "SENSOR_PAD"),
            fast_axis=d["fast_axis"], slow_axis=d["slow_axis"], origin=d["origin"],
            raw_image_offset=tuple(d.get("raw_image_offset", (0, 0))),
            image_size=tuple(d["image_size"]), pixel_size=tuple(d["pixel_size"]),
            trusted_range=tuple(d.get("trusted_range", (-1.0, 65535.0))),
            thickness=float(d.get("thickness", 0.0)), material=d.get("material", ""),
            mu=float(d.get("mu", 0.0)), identifier=d.get("identifier", ""),
            mask=[list(r) for r in d.get("mask", [])],
            gain=float(d.get("gain", 1.0)), pedestal=float(d.get("pedestal", 0.0)),
            px_mm_strategy=strategy.get("type", SIMPLE) if isinstance(strategy, dict) else str(strategy),
            extra={k: v for k, v in d.items() if k not in cls._keys},
        )


def resolution_of_lab(lab, s0) -> np.ndarray:
    """d-spacing (Å) of rays from the sample to lab points (N×3 mm)."""
    s0 = np.asarray(s0, dtype=float)
    lab = np.atleast_2d(lab)
    s1 = lab / np.linalg.norm(lab, axis=1)[:, None] * np.linalg.norm(s0)
    return 1.0 / np.linalg.norm(s1 - s0, axis=1)


@dataclass
class Detector:
    """A list of panels and the hierarchy they hang from (kept as a dict)."""

    panels: list[Panel] = field(default_factory=list)
    hierarchy: dict | None = None

    def __len__(self) -> int:
        return len(self.panels)

    def __getitem__(self, i: int) -> Panel:
        return self.panels[i]

    def __iter__(self):
        return iter(self.panels)

    def get_ray_intersection(self, s1) -> tuple[np.ndarray, np.ndarray]:
        """Panel index (−1 if none) and panel mm (N×2) hit by each ray."""
        s1 = np.atleast_2d(np.asarray(s1, dtype=float))
        panel_id = np.full(len(s1), -1, dtype=np.int64)
        mm = np.full((len(s1), 2), np.nan)
        for i, p in enumerate(self.panels):
            m, valid = p.get_ray_intersection(s1)
            inside = valid & p.is_coord_valid_mm(np.nan_to_num(m, nan=-1.0)) & (panel_id < 0)
            panel_id[inside] = i
            mm[inside] = m[inside]
        return panel_id, mm

    def get_max_resolution(self, s0) -> float:
        return min(p.get_max_resolution_at_corners(s0) for p in self.panels)

    def to_dict(self) -> dict:
        hierarchy = self.hierarchy
        if hierarchy is None:
            hierarchy = Panel(name="", type="", fast_axis=[1, 0, 0], slow_axis=[0, 1, 0],
                              origin=[0, 0, 0], image_size=(0, 0), pixel_size=(0, 0),
                              trusted_range=(0, 0)).to_dict()
            hierarchy["children"] = [{"panel": i} for i in range(len(self.panels))]
        return {"panels": [p.to_dict() for p in self.panels], "hierarchy": hierarchy}

    @classmethod
    def from_dict(cls, d: dict) -> "Detector":
        return cls(panels=[Panel.from_dict(p) for p in d["panels"]], hierarchy=d.get("hierarchy"))
