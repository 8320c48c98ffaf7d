"""Indexing: basis-vector searches (fft3d, fft1d, known cell), index assignment,
static P1 refinement, Bravais settings, and the stage ``run_index``."""
from .assign import assign_indices
from .bravais import BravaisSetting, bravais_settings, lattice_of_space_group
from .indexer import IndexParams, run_index

__all__ = ["IndexParams", "run_index", "assign_indices", "bravais_settings", "BravaisSetting",
           "lattice_of_space_group"]
