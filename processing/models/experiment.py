"""Experiment (one sweep or still with its models) and ExperimentList."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from .beam import Beam
from .crystal import Crystal
from .detector import Detector
from .goniometer import Goniometer
from .scan import Scan


@dataclass
class ImageSource:
    """Where an experiment's images are, as DIALS's imageset entry.

    ``kind`` is ``ImageSequence`` (a rotation sweep) or ``ImageSet`` (stills);
    ``template`` is a file-name template with ``#`` for the image number (CBF) or the
    NeXus master file; ``paths`` lists single images for ImageSet.
    ``single_file_indices`` are 0-based image indices inside one multi-image file.
    """

    kind: str = "ImageSequence"
    template: str = ""
    paths: list[str] = field(default_factory=list)
    single_file_indices: list[int] | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"__id__": self.kind}
        if self.kind == "ImageSequence":
            d["template"] = self.template
        else:
            d["images"] = list(self.paths)
        d.update({"mask": "", "gain": "", "pedestal": "", "dx": "", "dy": ""})
        if self.single_file_indices is not None:
            d["single_file_indices"] = [int(i) for i in self.single_file_indices]
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ImageSource":
        known = {"__id__", "template", "images", "single_file_indices"}
        return cls(kind=d.get("__id__", "ImageSequence"), template=d.get("template", ""),
                   paths=list(d.get("images", [])),
                   single_file_indices=d.get("single_file_indices"),
                   extra={k: v for k, v in d.items() if k not in known})


@dataclass
class Experiment:
    beam: Beam | None = None
    detector: Detector | None = None
    goniometer: Goniometer | None = None
    scan: Scan | None = None
    crystal: Crystal | None = None
    imageset: ImageSource | None = None
    profile: dict | None = None
    scaling_model: dict | None = None
    identifier: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def is_still(self) -> bool:
        return self.scan is None or self.goniometer is None or self.scan.is_still


class ExperimentList(list):
    """A list of Experiments; models may be shared between experiments."""

    def identifiers(self) -> list[str]:
        return [e.identifier for e in self]

    def models(self, name: str) -> list:
        """Distinct (by identity) models of one kind, in order of first use."""
        seen, out = set(), []
        for e in self:
            m = getattr(e, name)
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                out.append(m)
        return out

    def select(self, indices) -> "ExperimentList":
        return ExperimentList(self[i] for i in indices)
