"""Symmetry of an ensemble (dials.cosym): Laue group, indexing ambiguity, space group.

``run_cosym(experiments, reflections, CosymParams(...))`` returns the data sets
reindexed into one setting (symmetrized.expt/.refl) and the analysis's summary;
``run_symmetry`` does the same for one sweep or consistently indexed sweeps taken
together (dials.symmetry).
"""
from .cosym import run_cosym
from .params import CosymParams
from .symmetry import run_symmetry

__all__ = ["CosymParams", "run_cosym", "run_symmetry"]
