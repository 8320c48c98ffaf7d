"""Refinement of beam, detector and crystal models against indexed centroids (dials.refine).

``run_refine(experiments, reflections, RefineParams(...))`` is the stage; the pieces
are the parameterisations (parameterisation.py), the predictions with analytic
derivatives (prediction_derivatives.py), the weighted residuals and sparse Jacobian
(residuals.py), Levenberg–Marquardt (engine.py) and outlier rejection (outliers.py).
"""
from .params import RefineParams
from .refiner import run_refine, sweep_name

__all__ = ["RefineParams", "run_refine", "sweep_name"]
