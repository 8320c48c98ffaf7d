"""Symmetry of an ensemble (dials.cosym): Laue group, indexing ambiguity, space group.

``run_cosym(experiments, reflections, CosymParams(...))`` returns the data sets
reindexed into one setting (symmetrized.expt/.refl) and the analysis's summary.
"""
from .cosym import run_cosym
from .params import CosymParams

__all__ = ["CosymParams", "run_cosym"]
