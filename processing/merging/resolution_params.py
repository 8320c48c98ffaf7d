"""EstimateResolutionParams: the parameters of ``xtal estimate_resolution`` (dials.estimate_resolution)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import XtalError
from ..params import StageParams, param


@dataclass(frozen=True)
class EstimateResolutionParams(StageParams):
    """Parameters of ``xtal estimate_resolution`` (dials.estimate_resolution, DIALS 3.12); names
    as DIALS's. A criterion set to None is not used. Every criterion's limit is fitted in
    shells of about equal numbers of reflections; the recommended d_min is the lowest
    resolution of the criteria used (by default CC½ alone, as xia2.multiplex)."""

    cc_half: float | None = param(0.3, "minimum CC½ in the outer shell (tanh fit)", ge=0, le=1,
                                  aliases="resolution.cc_half")
    cc_half_method: str = param("sigma_tau", "CC½ by σ-τ (Assmann et al. 2016; xia2.multiplex) or between "
                                "random half data sets (half_dataset, dials.estimate_resolution's default)",
                                choices=("sigma_tau", "half_dataset"))
    cc_half_significance_level: float | None = param(
        0.1, "shells whose CC½ is not significant at this level (t-test) are left out of the fit", gt=0, lt=1)
    cc_half_fit: str = param("tanh", "curve fitted to CC½: ½(1 − tanh((s − s0)/r)) or a polynomial in s = 1/d²",
                             choices=("tanh", "polynomial"))
    cc_half_iqr_multiplier: float | None = param(
        6.0, "refit CC½ once without shells whose residual lies beyond this many interquartile ranges "
        "(DIALS: 6); None: no refit", gt=0)
    isigma: float | None = param(None, "minimum unmerged ⟨I/σ⟩ in the outer shell", ge=0)
    misigma: float | None = param(None, "minimum merged ⟨I/σ⟩ in the outer shell", ge=0)
    i_mean_over_sigma_mean: float | None = param(None, "minimum ⟨I⟩/⟨σ⟩ (merged) in the outer shell", ge=0)
    rmerge: float | None = param(None, "maximum Rmerge in the outer shell", ge=0)
    completeness: float | None = param(None, "minimum completeness (fraction, 0.9 = 90 %) in the outer shell",
                                       ge=0, le=1)
    nbins: int = param(100, "maximum number of resolution shells", ge=1, le=1000)
    reflections_per_bin: int = param(10, "minimum number of distinct d-spacings per shell (counting_sorted)",
                                     ge=1)
    binning_method: str = param("counting_sorted", "shells with about equal numbers of d-spacings "
                                "(counting_sorted) or of equal reciprocal volume", choices=("counting_sorted",
                                                                                           "volume"))
    anomalous: bool = param(False, "keep I(+) and I(−) apart in the statistics")
    emax: float | None = param(4.0, "leave out Wilson outliers, observations with E² ≥ emax²", gt=0)
    d_min: float | None = param(None, "analyse only data to this resolution (Å)", gt=0)
    d_max: float | None = param(None, "analyse only data from this resolution (Å)", gt=0)
    seed: int = param(0, "seed of the random half-data-set split (cc_half_method=half_dataset)", ge=0)

    def __post_init__(self):
        if self.d_min is not None and self.d_max is not None and self.d_min >= self.d_max:
            raise XtalError(f"d_min ({self.d_min}) must be below d_max ({self.d_max})", field="d_min")


__all__ = ["EstimateResolutionParams"]
