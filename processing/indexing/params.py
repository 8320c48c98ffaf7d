"""IndexParams: the parameters of ``xtal index`` (dials.index)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import XtalError
from ..params import StageParams, param
from .known_cell import validate_cell

METHODS = ("fft3d", "fft1d", "real_space_grid_search")


@dataclass(frozen=True)
class IndexParams(StageParams):
    """Parameters of ``xtal index`` (dials.index)."""

    method: str = param("fft3d", "basis vector search: fft3d, fft1d or real_space_grid_search (needs unit_cell)",
                        choices=METHODS)
    joint: bool = param(True, "index all sweeps together as one crystal; false: each sweep alone, one crystal per experiment")
    unit_cell: tuple[float, ...] | None = param(None, "known unit cell a,b,c,alpha,beta,gamma (Å, deg): keep only matching lattices")
    space_group: str | None = param(None, "known space group: the crystal is written in its lattice's setting")
    max_lattices: int = param(1, "maximum number of lattices to search for in each sweep (or in the joint data); "
                                 "with unit_cell= and > 1 the real-space grid search is tried first", ge=1)
    nproc: int = param(1, "number of processes indexing sweeps in parallel (joint=false)", ge=1)
    min_cell: float = param(3.0, "minimum length of candidate basis vectors (Å)", gt=0)
    max_cell: float | None = param(None, "maximum length of candidate basis vectors (Å); None: from the spot spacing", gt=0)
    min_cell_volume: float = param(25.0, "minimum unit cell volume (Å³)", ge=0)
    n_points: int = param(256, "fft3d.reciprocal_space_grid.n_points", ge=1)
    d_min: float | None = param(None, "fft3d.reciprocal_space_grid.d_min (Å); None: 5·max_cell/n_points or the spots' limit", gt=0)
    hkl_tolerance: float = param(0.3, "index_assignment.simple.hkl_tolerance", gt=0, le=0.5)
    n_macro_cycles: int = param(5, "refinement_protocol.n_macro_cycles", ge=1)
    max_refine: int = param(50, "basis_vector_combinations.max_refine: candidate lattices evaluated", ge=1)
    relative_length_tolerance: float = param(0.1, "known_symmetry.relative_length_tolerance", ge=0)
    absolute_angle_tolerance: float = param(5.0, "known_symmetry.absolute_angle_tolerance (deg)", ge=0)
    max_delta: float = param(5.0, "known_symmetry.max_delta: Le Page δ allowed for the space_group= lattice (deg)", ge=0)
    lepage_max_delta: float = param(5.0, "Bravais settings listed up to this Le Page δ (deg)", ge=0)
    choose_bravais: bool = param(False, "write the recommended Bravais setting instead of P1 (as refine_bravais_settings + reindex)")
    recycle_unindexed_reflections_cutoff: float = param(0.1, "search another lattice only if more than this fraction is unindexed",
                                                        ge=0, le=1)
    minimum_angular_separation: float = param(5.0, "minimum rotation (deg) between two lattices of one sweep", ge=0)
    max_rmsd_xy: float = param(3.0, "accept a lattice only if its refined positional RMSD √(X²+Y²) is at most this (px)",
                               gt=0)
    max_rmsd_z: float = param(6.0, "accept a lattice only if its refined φ RMSD is at most this (images)", gt=0)
    min_lattice_spots: int = param(20, "accept a lattice only if it indexes at least this many spots", ge=6)
    min_spots: int = param(20, "fewest spots a sweep needs to be indexed", ge=1)
    refine_detector: str = param("auto", "detector refined with each lattice in the macro-cycles, the spots re-mapped "
                                         "from it: auto (beam centre shifts; distance too on wedges of at least "
                                         "10°), shift, shift+distance or none (tilts and beam stay fixed)",
                                 choices=("auto", "shift", "shift+distance", "none"))
    beam_search: bool = param(True, "if no lattice is found from the header, search again from the beam centre moved "
                                    "3 px in 8 directions (a small dials.search_beam_position; needs refine_detector)")
    sigma_phi_deg: float | None = param(None, "override the φ sigmas in refinement (deg); None: from the spots, "
                                              "at least 2 images on wedges of < 20 images", gt=0)

    def __post_init__(self):
        validate_cell(self.unit_cell)  # six numbers that close a cell
        if self.method == "real_space_grid_search" and self.unit_cell is None:
            raise XtalError("method=real_space_grid_search needs unit_cell=", field="unit_cell")
