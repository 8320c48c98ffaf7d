"""Rotation scan (DIALS/dxtbx Scan): image range, oscillation, exposure and epochs.

Image numbers are 1-based and inclusive (``image_range=(1, 50)``). Frame
coordinate z: image i covers z ∈ [i − first, i − first + 1), so the angle at frame z
is ``start + z · width`` (deg).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Scan:
    image_range: tuple[int, int] = (1, 1)
    oscillation: tuple[float, float] = (0.0, 0.0)  # start, width (deg)
    exposure_times: np.ndarray | None = None  # s, one per image
    epochs: np.ndarray | None = None  # s since 1970, one per image
    batch_offset: int = 0
    valid_image_ranges: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.image_range = (int(self.image_range[0]), int(self.image_range[1]))
        if self.image_range[1] < self.image_range[0]:
            raise ValueError(f"empty image range {self.image_range}")
        self.oscillation = (float(self.oscillation[0]), float(self.oscillation[1]))
        n = self.num_images
        self.exposure_times = (np.zeros(n) if self.exposure_times is None
                               else np.broadcast_to(np.asarray(self.exposure_times, float), (n,)).copy())
        self.epochs = (np.zeros(n) if self.epochs is None
                       else np.broadcast_to(np.asarray(self.epochs, float), (n,)).copy())

    @property
    def num_images(self) -> int:
        return self.image_range[1] - self.image_range[0] + 1

    @property
    def is_still(self) -> bool:
        return self.oscillation[1] == 0.0

    @property
    def array_range(self) -> tuple[int, int]:
        """Zero-based frame range [first, last) as DIALS's get_array_range."""
        return (self.image_range[0] - 1, self.image_range[1])

    def angle_from_frame(self, z):
        """Rotation angle (deg) at frame coordinate z (array frames, 0 = start of first image)."""
        return self.oscillation[0] + (np.asarray(z, dtype=float) - self.array_range[0]) * self.oscillation[1]

    def frame_from_angle(self, phi_deg):
        return self.array_range[0] + (np.asarray(phi_deg, dtype=float) - self.oscillation[0]) / self.oscillation[1]

    @property
    def oscillation_range(self) -> tuple[float, float]:
        s, w = self.oscillation
        return (s, s + w * self.num_images)

    def to_dict(self) -> dict:
        d = {"image_range": list(self.image_range), "batch_offset": int(self.batch_offset),
             "oscillation": [float(self.oscillation[0]), float(self.oscillation[1])],
             "exposure_time": [float(x) for x in self.exposure_times],
             "epochs": [float(x) for x in self.epochs],
             "valid_image_ranges": self.valid_image_ranges}
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scan":
        """Reads both the classic layout and dxtbx ≥ 3.10's ``properties`` table."""
        props = d.get("properties", {})
        if "oscillation" in d:
            osc = d["oscillation"]
        else:  # properties: per-image start angles and a width
            starts = props["oscillation"]
            width = props.get("oscillation_width", [None])[0]
            if width is None:
                width = starts[1] - starts[0] if len(starts) > 1 else 0.0
            osc = [starts[0], width]
        exposure = d.get("exposure_time", props.get("exposure_time"))
        epochs = d.get("epochs", props.get("epochs"))
        known = {"image_range", "batch_offset", "oscillation", "exposure_time", "epochs",
                 "valid_image_ranges", "properties"}
        return cls(image_range=tuple(d["image_range"]), oscillation=tuple(osc),
                   exposure_times=exposure, epochs=epochs,
                   batch_offset=int(d.get("batch_offset", 0)),
                   valid_image_ranges=d.get("valid_image_ranges", {}),
                   extra={k: v for k, v in d.items() if k not in known})
