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
    scale_interval: float | None = param(None, "rotation (deg) between the scale term's parameters; auto: "
                                               "1, 2, 4, 8 or 15 by the sweep's range (< 5, 10, 25, 90°), as DIALS",
                                         gt=0, aliases="physical.scale_interval")
    decay_correction: bool = param(True, "refine a relative B (decay) term smooth in rotation",
                                   aliases="physical.decay_correction")
    decay_interval: float | None = param(None, "rotation (deg) between the decay term's parameters; auto: "
                                               "1.5, 3, 5, 10 or 20 by the sweep's range, as DIALS",
                                         gt=0, aliases="physical.decay_interval")
    decay_restraint: float = param(0.1, "weight restraining the relative B values to zero (per parameter, "
                                        "added to Σ w(I − gĨ)² as DIALS)", ge=0,
                                   aliases="physical.decay_restraint")
    absorption_correction: bool | None = param(None, "refine an absorption surface (spherical harmonics of "
                                                     "the beam's paths in the crystal frame); auto: for sweeps "
                                                     "of more than 60°, as DIALS",
                                               aliases="physical.absorption_correction")
    absorption_level: str | None = param(None, "expected relative absorption: low (lmax 4, surface_weight "
                                               "5e5), medium (6, 5e4), high (6, 5e3); sets lmax and "
                                               "surface_weight and switches the correction on",
                                         choices=("low", "medium", "high"), aliases="physical.absorption_level")
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
    reference: str | None = param(None, "a merged MTZ (IMEAN, I or F), or an atomic model (PDB or mmCIF) whose "
                                        "calculated intensities (with bulk solvent) are scaled against instead of "
                                        "the data's own merged intensities", aliases="scaling_options.reference")
    k_sol: float = param(0.35, "reference model: bulk-solvent density (e/Å³); 0 leaves bulk solvent out", ge=0,
                         aliases="reference_model.k_sol")
    b_sol: float = param(46.0, "reference model: bulk-solvent B (Å²)", ge=0, aliases="reference_model.b_sol")
    rescale: bool = param(False, "rescale data sets that were scaled before even when new ones join them "
                                 "(default: keep their scales and scale only the new data sets against them — "
                                 "incremental scaling; data that were all scaled before are always rescaled)")
    overwrite_existing_models: bool = param(False, "start every data set from a fresh model; by default a data set "
                                                   "scaled before starts from its model (as dials.scale; the same "
                                                   "terms and knots, else a fresh one)",
                                            aliases="overwrite_existing_models")
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

    def intervals(self, angle_range: float) -> tuple[float, float]:
        """(scale, decay) intervals (deg) for a sweep of ``angle_range`` degrees."""
        width = abs(angle_range)
        auto = next(v for limit, v in ((5, (1.0, 1.5)), (10, (2.0, 3.0)), (25, (4.0, 5.0)), (90, (8.0, 10.0)),
                                       (float("inf"), (15.0, 20.0))) if width < limit)
        return (self.scale_interval or auto[0], self.decay_interval or auto[1])

    def absorption(self, angle_range: float) -> tuple[int, float]:
        """(lmax, surface_weight) of the absorption surface, lmax 0 when it is off."""
        if self.absorption_level:
            return {"low": (4, 5e5), "medium": (6, 5e4), "high": (6, 5e3)}[self.absorption_level]
        on = abs(angle_range) > 60 if self.absorption_correction is None else self.absorption_correction
        return (self.lmax, self.surface_weight) if on else (0, self.surface_weight)

    def __post_init__(self):
        if self.d_min is not None and self.d_max is not None and self.d_min >= self.d_max:
            raise XtalError(f"d_min ({self.d_min}) must be below d_max ({self.d_max})", field="d_min")
