"""Scaling (dials.scale): ``run_scale(experiments, reflections, ScaleParams(...))``."""
from .params import ScaleParams
from .scale import run_scale

__all__ = ["ScaleParams", "run_scale"]
