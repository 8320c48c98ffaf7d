"""ImportParams: the parameters of ``xtal import`` (dials.import)."""
from __future__ import annotations

from dataclasses import dataclass

from ..params import StageParams, param


@dataclass(frozen=True)
class ImportParams(StageParams):
    """Parameters of ``xtal import`` (dials.import)."""

    paths: tuple[str, ...] = param((), "image files or folders holding them")
    image_range: tuple[int, int] | None = param(None, "first,last image (1-based, inclusive) of every sweep", ge=1)
