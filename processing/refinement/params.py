"""RefineParams: the parameters of ``xtal refine`` (dials.refine)."""
from __future__ import annotations

from dataclasses import dataclass

from ..params import StageParams, param
from .outliers import ALGORITHMS as OUTLIER_ALGORITHMS

BEAM_FIX = ("all", "in_spindle_plane", "out_spindle_plane", "wavelength", "none")
DETECTOR_FIX = ("all", "position", "orientation", "distance", "none")
CRYSTAL_FIX = ("all", "cell", "orientation", "none")


@dataclass(frozen=True)
class RefineParams(StageParams):
    """Parameters of ``xtal refine`` (dials.refine); names as DIALS's with '.' → '_'."""

    scan_varying: str = param("auto", "true, false or auto (static then scan-varying crystal, as dials.refine)",
                              choices=("true", "false", "auto"))
    beam_fix: tuple[str, ...] = param(("in_spindle_plane", "wavelength"),
                                      "beam.fix: any of all, in_spindle_plane, out_spindle_plane, wavelength; none",
                                      choices=BEAM_FIX, aliases=("beam.fix",))
    detector_fix: str = param("none", "detector.fix: all, position, orientation, distance or none",
                              choices=DETECTOR_FIX, aliases=("detector.fix",))
    detector_panels: str = param("rigid", "rigid: all panels move as one body (DIALS automatic); per_panel: each panel alone",
                                 choices=("rigid", "per_panel"), aliases=("detector.panels",))
    crystal_fix: str = param("none", "crystal.fix: all, cell, orientation or none",
                             choices=CRYSTAL_FIX, aliases=("crystal.fix",))
    share_models: str = param("equal", "input: share beam/detector models as the input does; equal: also share "
                                       "equal models (as dials.import combines them); all: one beam and detector for all sweeps",
                              choices=("input", "equal", "all"))
    sv_fix_beam: bool = param(True, "the scan-varying macrocycle keeps the static macrocycle's beam: a beam tilt "
                                    "is nearly degenerate with a smoothed crystal rotation and a detector tilt "
                                    "(DIALS refines it again: false)")
    interval_width_degrees: float = param(36.0, "smoother.interval_width_degrees for scan-varying models", gt=0)
    absolute_num_intervals: int | None = param(None, "smoother.absolute_num_intervals (overrides the width)", ge=1)
    block_width: float = param(1.0, "scan-varying models are evaluated at the centre of φ blocks this wide (deg)", gt=0)
    outlier_algorithm: str = param("auto", "outlier.algorithm: auto (mcd for scans), mcd, tukey or null",
                                   choices=OUTLIER_ALGORITHMS, aliases=("outlier.algorithm",))
    outlier_block_width: float | None = param(18.0, "outlier.block_width (deg); None: whole scans", gt=0,
                                              aliases=("outlier.block_width",))
    minimum_number_of_reflections: int = param(20, "outlier.minimum_number_of_reflections per job (fewer: all flagged)",
                                               ge=0)
    separate_panels: bool = param(False, "outlier.separate_panels")
    iqr_multiplier: float = param(1.5, "outlier.tukey.iqr_multiplier", gt=0)
    threshold_probability: float = param(0.975, "outlier.mcd.threshold_probability", gt=0, lt=1)
    outlier_min_scatter: float = param(0.25, "outlier rejection assumes at least this centroid scatter (px in X, Y; "
                                             "images in φ): precise strong spots would otherwise make the good weak "
                                             "ones outliers; 0 = DIALS", ge=0)
    outlier_recheck: bool = param(True, "after refining, reject outliers again with the refined model and "
                                        "refine again, up to 3 rounds: outliers picked against a wrong header's "
                                        "geometry bias the detector tilt (DIALS rejects once per macrocycle: false)")
    reflections_per_degree: float | None = param(None, "reflections.reflections_per_degree; None = Auto (all, "
                                                       "unless a scan is wider than a turn)", gt=0)
    minimum_sample_size: int = param(1000, "reflections.minimum_sample_size", ge=0)
    maximum_sample_size: int | None = param(None, "reflections.maximum_sample_size", ge=1)
    random_seed: int = param(42, "reflections.random_seed for subsetting")
    close_to_spindle_cutoff: float = param(0.02, "reflections.close_to_spindle_cutoff", ge=0)
    min_nref_per_parameter: int = param(5, "auto_reduction.min_nref_per_parameter: fewer and the sweep is set aside", ge=0)
    max_iterations: int = param(100, "refinery.max_iterations", ge=1)
    n_static_macrocycles: int = param(1, "number of static refinement macrocycles", ge=1)
    max_rmsd_px: float = param(5.0, "a sweep whose final RMSD X or Y (px) or Z (images) exceeds this is diverged", gt=0)
