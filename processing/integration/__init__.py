"""Integration (dials.integrate): prediction, shoeboxes, background, summation,
profile fitting and corrections.

``run_integrate(experiments, reflections, IntegrateParams(...), progress=None)``
(the parameters in params.py)
returns ``(experiments, integrated_table, summary)``; the profile model of each
sweep is stored in its experiment's ``profile`` dict as DIALS's gaussian_rs.
"""
from .integrator import integrate_sweep, run_integrate
from .params import IntegrateParams
from .profile_model import ProfileModel

__all__ = ["IntegrateParams", "ProfileModel", "integrate_sweep", "run_integrate"]
