"""IntegrateParams: the parameters of ``xtal integrate`` (dials.integrate)."""
from __future__ import annotations

from dataclasses import dataclass

from ..params import StageParams, param
from .background import BACKGROUND_ALGORITHMS


@dataclass(frozen=True)
class IntegrateParams(StageParams):
    """Parameters of ``xtal integrate`` (dials.integrate)."""

    d_min: float | None = param(None, "resolution limit of the prediction (Å); default: the detector corners", gt=0)
    nproc: int = param(1, "processes: sweeps and blocks of images are integrated in parallel", ge=1)
    profile_fitting: bool = param(True, "fit 3-D reference profiles (intensity.prf); summation is always done",
                                  aliases=("profile.fitting",))
    background_algorithm: str = param("glm", "background model: glm (robust Poisson, DIALS's default) or simple (mean)",
                                      choices=tuple(BACKGROUND_ALGORITHMS), aliases=("background.algorithm",))
    n_sigma: float = param(3.0, "shoebox half-size in standard deviations of the profile model", gt=0)
    sigma_b: float | None = param(None, "override σ_b (degrees); default: estimated from indexed reflections", gt=0)
    sigma_m: float | None = param(None, "override σ_m (degrees); default: estimated from indexed reflections", gt=0)
    min_zeta: float = param(0.05, "skip reflections with |ζ| below this (too close to the rotation axis)", ge=0)
    grid_size: int = param(5, "reference profile grid half-size (the grid has 2·n+1 cells per axis)", ge=1)
    scan_step: float = param(5.0, "degrees of rotation per reference-profile block", gt=0)
    min_reference: int = param(10, "fewest references for a region's own profile (else the sweep's)", ge=1)
    max_reference: int = param(3000, "most references per sweep used to model the profile", ge=1)
    block_memory_mb: float = param(256.0, "memory for the shoeboxes of one block of images (MB)", gt=0)
    tuning_constant: float = param(1.345, "Huber tuning constant of the robust background", gt=0)
    min_background_pixels: int = param(10, "fewest background pixels for a background estimate", ge=1)
    valid_foreground_threshold: float = param(
        0.75, "profile.valid_foreground_threshold: fewest valid foreground pixels (fraction) for profile fitting",
        ge=0, le=1)
    ice_rings: bool = param(False, "filter.ice_rings: flag the reflections on hexagonal-ice rings (in_powder_ring, "
                                   "DIALS's 1/d² ranges); they are still integrated",
                            aliases=("filter.ice_rings", "integration.filter.ice_rings"))
    spike_sigma: float = param(
        10.0, "profile fitting leaves out foreground pixels this many σ above the fitted profile and over twice it "
              "(zingers, unmasked hot pixels; at most 3 per reflection) and takes their excess out of the summation "
              "intensity too; 0: off (DIALS)", ge=0)
