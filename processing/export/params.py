"""ExportParams: the parameters of ``xtal export`` (dials.export of scaled data)."""
from __future__ import annotations

from dataclasses import dataclass

from ..params import StageParams, param


@dataclass(frozen=True)
class ExportParams(StageParams):
    """Parameters of ``xtal export`` (dials.export); names as DIALS's."""

    d_min: float | None = param(None, "leave out observations beyond this resolution (Å)", gt=0)
    project_name: str = param("xtal", "the MTZ's project name", aliases="mtz.project_name")
    crystal_name: str = param("crystal", "the MTZ's crystal name", aliases="mtz.crystal_name")
