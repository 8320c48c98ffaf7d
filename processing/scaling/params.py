"""ScaleParams: the parameters of ``xtal scale`` (dials.scale); names as DIALS's."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import XtalError
from ..params import StageParams, param


@dataclass(frozen=True)
class ScaleParams(StageParams):
    """Parameters of ``xtal scale`` (dials.scale, physical model)."""

    model: str = param("physical", "the scaling model (DIALS's physical model: scale, decay, absorption)",
                       choices=("physical",))
    scale_correction: bool = param(True, "refine a scale term smooth in rotation",
                                   aliases="physical.scale_correction")
    scale_interval: float = param(15.0, "rotation (deg) between the scale term's parameters",
                                  gt=0, aliases="physical.scale_interval")
    decay_correction: bool = param(True, "refine a relative B (decay) term smooth in rotation",
                                   aliases="physical.decay_correction")
    decay_interval: float = param(20.0, "rotation (deg) between the decay term's parameters",
                                  gt=0, aliases="physical.decay_interval")
    decay_restraint: float = param(0.1, "weight restraining the relative B values to zero", ge=0,
                                   aliases="physical.decay_restraint")
    absorption_correction: bool = param(True, "refine an absorption surface (spherical harmonics of the "
                                              "beam's paths in the crystal frame)",
                                        aliases="physical.absorption_correction")
    lmax: int = param(4, "highest order of the absorption surface's spherical harmonics", ge=1, le=6,
                      aliases="physical.lmax")
    surface_weight: float = param(5e5, "weight restraining the absorption coefficients to zero", ge=0,
                                  aliases="physical.surface_weight")
    intensity_choice: str = param("combine", "profile, sum, or combine: the profile/summation mix "
                                             "(Imid) whose scaled data have the best CC½",
                                  choices=("profile", "sum", "combine"),
                                  aliases="reflection_selection.intensity_choice")
    partiality_cutoff: float = param(0.4, "leave out reflections whose partiality is below this", ge=0, le=1,
                                     aliases="cut_data.partiality_cutoff")
    d_min: float | None = param(None, "high-resolution limit (Å) of the data scaled and merged", gt=0,
                                aliases="cut_data.d_min")
    d_max: float | None = param(None, "low-resolution limit (Å)", gt=0, aliases="cut_data.d_max")
    anomalous: bool = param(False, "keep Friedel mates apart in scaling and statistics",
                            aliases="scaling_options.anomalous")
    exclude_datasets: tuple[int, ...] = param((), "data sets (ids) to leave out",
                                              aliases="dataset_selection.exclude_datasets")
    reference: str | None = param(None, "a merged MTZ (IMEAN, I or F) to scale against instead of the "
                                        "data's own merged intensities", aliases="scaling_options.reference")
    rescale: bool = param(False, "rescale data sets that were scaled before (default: keep their scales, "
                                 "and scale only new data sets against them — incremental scaling)")
    outlier_rejection: str = param("standard", "standard: reject observations far from the others of their "
                                               "reflection; none: keep all",
                                   choices=("standard", "none"), aliases="scaling_options.outlier_rejection")
    outlier_zmax: float = param(6.0, "normalised deviation beyond which an observation is an outlier", gt=0,
                                aliases="scaling_options.outlier_zmax")
    error_model: str = param("basic", "basic: refine σ' = a·sqrt(σ² + (b·I)²); none: keep σ",
                             choices=("basic", "none"), aliases="weighting.error_model.error_model")
    max_iterations: int = param(30, "cycles of the minimiser (each: merge, then refine every data set)",
                                ge=1, le=1000, aliases="refinement.max_iterations")
    n_resolution_bins: int = param(20, "resolution shells of the merging statistics", ge=1, le=200,
                                   aliases="output.merging.nbins")
    nproc: int = param(1, "processes (accepted as DIALS; the work is vectorised in one process)", ge=1)
    seed: int = param(0, "seed of the random half-data-set split (CC½ random half)", ge=0)

    def __post_init__(self):
        if self.d_min is not None and self.d_max is not None and self.d_min >= self.d_max:
            raise XtalError(f"d_min ({self.d_min}) must be below d_max ({self.d_max})", field="d_min")
