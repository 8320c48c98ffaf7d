"""CosymParams: the parameters of ``xtal cosym`` (dials.cosym)."""
from __future__ import annotations

from dataclasses import dataclass

from ..params import StageParams, param


@dataclass(frozen=True)
class CosymParams(StageParams):
    """Parameters of ``xtal cosym`` (dials.cosym); names as DIALS's."""

    space_group: str | None = param(None, "the space group to use (always honoured); None: determine it")
    lattice_group: str | None = param(None, "the lattice group to search within (a space group symbol, e.g. "
                                            "P 4/m m m); None: the highest the cells allow")
    reference: str | None = param(None, "a merged MTZ (IMEAN, I or F), or an atomic model (PDB or mmCIF) whose "
                                        "calculated intensities serve, whose indexing the output follows where "
                                        "the Laue group allows more than one")
    d_min: float | None = param(None, "high-resolution limit (Å); None: where both min_i_mean_over_sigma_mean "
                                      "and min_cc_half fail (the higher resolution of the two)", gt=0)
    min_i_mean_over_sigma_mean: float = param(
        4.0, "automatic d_min: the resolution where the shells' ⟨I⟩/⟨σ⟩ falls below this", ge=0)
    min_cc_half: float = param(0.6, "automatic d_min: the resolution where the shells' CC½ (σ-τ, all data sets' "
                                    "reflections in the reduced setting) falls below this", ge=-1, le=1)
    dimensions: int | None = param(None, "dimensions of the embedding; None: chosen from the functional's elbow",
                                   ge=2, le=10)
    min_pairs: int = param(3, "fewest reflections two data sets must share for their correlation to count", ge=3)
    min_reflections: int = param(10, "fewest unique reflections a data set needs to be placed", ge=3)
    lattice_symmetry_max_delta: float = param(5.0, "largest deviation (deg) of a lattice symmetry", gt=0, le=10)
    seed: int = param(230, "random seed of the embedding's start (results repeat exactly)", ge=0)
    max_iterations: int = param(500, "L-BFGS iterations of the embedding", ge=1)
    stability: str = param("auto", "rerun the analysis on random halves of the data sets and with a second seed "
                                   "and report how often the answer repeats; auto: up to 200 data sets",
                           choices=("auto", "true", "false"))
