"""DeltaCcHalfParams: the parameters of ``xtal compute_delta_cchalf`` (dials.compute_delta_cchalf).

Names as DIALS's (``mode``, ``group_size``, ``stdcutoff``, ``dmin``/``dmax``, ``nbins``;
the iterative options as dials.scale's and xia2.multiplex's ``filtering.deltacchalf.*``:
``max_cycles``, ``max_percent_removed``).

Defaults: one cycle, as dials.compute_delta_cchalf (compute ΔCC½, remove what falls
below the cutoff, write filtered.expt/.refl for the next ``xtal scale``). xia2.multiplex
filters iteratively instead — it runs dials.scale with ``filtering.method=deltacchalf``,
whose defaults are ``max_cycles=6`` and ``max_percent_removed=10``: scale, compute ΔCC½,
remove, rescale, … until nothing more is removed, the cycles run out or the removals
would pass the limit — and then re-estimates the resolution limit. Here that is
``max_cycles=6 final_rescale=true``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import XtalError
from ..params import StageParams, param


@dataclass(frozen=True)
class DeltaCcHalfParams(StageParams):
    """Parameters of xtal compute_delta_cchalf (dials.compute_delta_cchalf; iterative as xia2.multiplex)."""

    mode: str = param("dataset", "dataset: ΔCC½ of whole data sets; image_group: of groups of images "
                                 "within each data set (groups at the ends of a sweep are removed)",
                      choices=("dataset", "image_group"), aliases="filtering.deltacchalf.mode")
    group_size: int = param(10, "images per group in mode=image_group (a last, shorter group joins the "
                                "one before)", ge=1, aliases="filtering.deltacchalf.group_size")
    stdcutoff: float = param(4.0, "remove data sets (groups) whose ΔCC½ is below mean − stdcutoff·σ of "
                                  "all the ΔCC½ values", ge=0, aliases="filtering.deltacchalf.stdcutoff")
    cutoff: float | None = param(None, "an absolute ΔCC½ cutoff instead (as a fraction: cutoff=-0.01 "
                                       "removes what the table, ×100 as DIALS, shows below -1.0)")
    max_cycles: int = param(1, "cycles of ΔCC½ → remove → rescale (1: dials.compute_delta_cchalf; "
                               "xia2.multiplex/dials.scale filtering use 6)", ge=1, le=100,
                            aliases="filtering.deltacchalf.max_cycles")
    max_percent_removed: float = param(10.0, "never remove more than this percentage of the data sets "
                                             "(mode=dataset) or of the observations (image_group), "
                                             "counted over all cycles", ge=0, le=100,
                                       aliases="filtering.deltacchalf.max_percent_removed")
    final_rescale: bool = param(False, "rescale after the last removal too, so filtered.refl carries "
                                       "new scales (xia2.multiplex); default: keep the input's scales "
                                       "and rescale with xtal scale, as the DIALS tutorial")
    common_reflections: bool = param(True, "compare CC½ with and without each group over the same "
                                           "reflections (those still measured twice without it); false: "
                                           "DIALS's calculation, where a reflection measured by a good data "
                                           "set and a bad one only drops out without the good one, which "
                                           "then looks bad")
    d_min: float | None = param(None, "high-resolution limit (Å) of the ΔCC½ calculation", gt=0,
                                aliases="dmin")
    d_max: float | None = param(None, "low-resolution limit (Å) of the ΔCC½ calculation", gt=0,
                                aliases="dmax")
    n_bins: int = param(10, "resolution shells (equal in 1/d²) over which CC½ is averaged", ge=1, le=100,
                        aliases="nbins")
    anomalous: bool = param(False, "keep Friedel mates apart in the ΔCC½ groups, the rescaling and "
                                   "the merging statistics (DIALS's ΔCC½ merges them)")

    def __post_init__(self):
        if self.d_min is not None and self.d_max is not None and self.d_min >= self.d_max:
            raise XtalError(f"d_min ({self.d_min}) must be below d_max ({self.d_max})", field="d_min")


__all__ = ["DeltaCcHalfParams"]
