"""MergeParams: the parameters of ``xtal merge`` (dials.merge)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import XtalError
from ..params import StageParams, param


@dataclass(frozen=True)
class MergeParams(StageParams):
    """Parameters of ``xtal merge`` (dials.merge); names as DIALS's."""

    d_min: float | None = param(None, "high-resolution limit (Å) of the merged data", gt=0)
    d_max: float | None = param(None, "low-resolution limit (Å)", gt=0)
    anomalous: bool = param(True, "write I(+)/I(−), F(+)/F(−) and DANO as well as the means")
    truncate: bool = param(True, "amplitudes F/SIGF by French & Wilson's method")
    n_resolution_bins: int = param(20, "resolution shells of the merging statistics", ge=1, le=200,
                                   aliases="merging.n_bins")
    seed: int = param(0, "seed of the random half-data-set split (CC½ random half)", ge=0)
    project_name: str = param("xtal", "the MTZ's project name", aliases="output.project_name")
    crystal_name: str = param("crystal", "the MTZ's crystal name", aliases="output.crystal_names")
    dataset_name: str = param("dataset", "the MTZ's data-set name", aliases="output.dataset_names")

    def __post_init__(self):
        if self.d_min is not None and self.d_max is not None and self.d_min >= self.d_max:
            raise XtalError(f"d_min ({self.d_min}) must be below d_max ({self.d_max})", field="d_min")
