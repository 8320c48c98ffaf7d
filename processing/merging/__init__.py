"""Merging scaled observations and the merging statistics (pure numpy + gemmi; no I/O)."""
from processing.merging.data import MergedIntensities
from processing.merging.french_wilson import french_wilson, wilson_prior
from processing.merging.merge import asu_index, map_to_asu, merge_intensities
from processing.merging.statistics import cc_half_sigma_tau, merging_statistics
from processing.merging.wilson import wilson_b, wilson_b_from_merged

__all__ = ["MergedIntensities", "merge_intensities", "asu_index", "map_to_asu", "french_wilson",
           "wilson_prior", "merging_statistics", "cc_half_sigma_tau", "wilson_b",
           "wilson_b_from_merged"]
