"""Spot finding: DIALS's dispersion thresholds, 3-D connected regions, centroids.

``find_spots(experiment, reader, params)`` / ``run_find_spots(experiments, params)``
with :class:`FindSpotsParams` (params.py); the pieces are :class:`DispersionThreshold`
(threshold.py), :class:`PanelLabeller` (regions.py) and the static masks (masks.py).
"""
from .finder import auto_min_spot_size, find_spots, run_find_spots, static_masks
from .params import ALGORITHMS, FindSpotsParams
from .regions import PanelLabeller
from .threshold import DispersionThreshold

__all__ = ["ALGORITHMS", "DispersionThreshold", "FindSpotsParams", "PanelLabeller", "auto_min_spot_size",
           "find_spots", "run_find_spots", "static_masks"]
