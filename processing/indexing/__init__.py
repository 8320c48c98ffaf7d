"""Indexing: basis-vector searches (fft3d, fft1d, known cell), index assignment,
static P1 refinement, Bravais settings, and the stage ``run_index`` with its
parameters ``IndexParams`` (params.py)."""
from .assign import assign_indices
from .bravais import BravaisSetting, bravais_settings, lattice_of_space_group
from .indexer import run_index
from .params import METHODS, IndexParams

__all__ = ["IndexParams", "METHODS", "run_index", "assign_indices", "bravais_settings", "BravaisSetting",
           "lattice_of_space_group"]
