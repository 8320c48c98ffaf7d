"""``run_estimate_resolution``: scaled observations → resolution limits (dials.estimate_resolution).

Reads nothing and writes nothing: the stage's result is its summary (the criteria, their
fitted curves, the recommended d_min with its uncertainty)."""
from __future__ import annotations

import numpy as np

from .resolution import estimate_resolution
from .resolution_params import EstimateResolutionParams
from .stage import scaled_observations, space_group_and_cell

#: dials.estimate_resolution leaves out rows of scaled.refl with a lower partiality
PARTIALITY_THRESHOLD = 0.4
#: resolution cuts whose statistics the summary carries (the web's d_min slider)
N_CUTS = 24
_KEYS = ("n_obs", "n_unique", "multiplicity", "completeness", "i_over_sigma", "cc_half", "rpim", "rmerge")


def statistics_at_cuts(obs, n_cuts: int = N_CUTS) -> list[dict]:
    """Overall and outer-shell statistics of the scaled observations cut at ``n_cuts``
    resolutions, evenly spaced in 1/d² from the data's edge to the median d: what a
    merge at each d_min would report, so a slider can show them at once."""
    from .remerge import remerge_observations

    if len(obs) < 100:
        return []
    s = 1.0 / obs.d ** 2
    cuts = 1.0 / np.sqrt(np.linspace(s.max(), np.median(s), n_cuts))
    out = []
    for d_min in cuts:
        _, summary = remerge_observations(obs, d_min=float(d_min), merge=False)
        stats = summary["merging_statistics"]
        out.append({"d_min": float(d_min), "overall": {k: stats["overall"].get(k) for k in _KEYS},
                    "outer": {k: stats["shells"][-1].get(k) for k in _KEYS + ("d_max",)}})
    return out


def run_estimate_resolution(experiments, reflections, params: EstimateResolutionParams, progress=None):
    """Resolution limits of scaled data (dials.estimate_resolution).

    Parameters
    ----------
    experiments, reflections : ExperimentList, ReflectionTable
        Scaled data (scaled.expt/.refl); the rows scaling kept with partiality ≥ 0.4,
        as DIALS, are used.
    params : EstimateResolutionParams
        Criteria (cc_half, isigma, misigma, completeness…), binning, ``anomalous``.

    Returns
    -------
    (experiments, reflections, summary)
        The input unchanged; the summary is the estimate of
        :func:`~processing.merging.resolution.estimate_resolution` (d_min in Å per
        criterion, the tanh fit of CC½ with its uncertainty, the shells) with the
        space group, the median cell and the number of data sets.

    Examples
    --------
    >>> _, _, summary = run_estimate_resolution(scaled_expts, scaled, EstimateResolutionParams())
    >>> summary["d_min"]
    """
    sg, cell = space_group_and_cell(experiments)
    if progress:
        progress(0.1, "scaled observations")
    table = reflections
    if reflections is not None and "partiality" in reflections:
        low = reflections["partiality"] < PARTIALITY_THRESHOLD
        if low.any():  # as dials.estimate_resolution reads scaled.refl
            table = reflections.select(~low)
    hkl, value, var, _ = scaled_observations(experiments, table)
    if progress:
        progress(0.3, "statistics in resolution shells")
    summary = estimate_resolution(hkl, value, var, sg, cell, params)
    summary.update(space_group=sg.xhm(), unit_cell=[float(x) for x in cell], n_datasets=len(experiments))
    if progress:
        progress(0.7, "statistics at trial resolution cuts")
    from .remerge import ScaledObservations

    summary["cuts"] = statistics_at_cuts(ScaledObservations.from_reflections(experiments, table))
    if progress:
        progress(1.0, "resolution estimated")
    return experiments, reflections, summary


__all__ = ["EstimateResolutionParams", "run_estimate_resolution"]
