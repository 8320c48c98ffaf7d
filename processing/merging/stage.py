"""``run_merge``: scaled observations → merged intensities and amplitudes (dials.merge)."""
from __future__ import annotations

import numpy as np

from ..errors import XtalError
from ..reflections import Flags
from .merge import merge_intensities
from .params import MergeParams
from .statistics import merging_statistics


def scaled_rows(reflections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ok, I, σ²)``: the rows scaling kept (flag ``scaled``, not ``bad_for_scaling``, valid
    values) and every row's scaled intensity I = intensity.scale.value / inverse_scale_factor
    and variance / g² (as DIALS)."""
    if reflections is None or len(reflections) == 0:
        raise XtalError("no reflections to merge")
    if "intensity.scale.value" not in reflections or "flags" not in reflections:
        raise XtalError("the reflections are not scaled (no intensity.scale.value): run xtal scale first")
    flags = reflections["flags"].astype(np.uint64)
    ok = ((flags & np.uint64(int(Flags.scaled))) != 0) & ((flags & np.uint64(int(Flags.bad_for_scaling))) == 0)
    g = reflections["inverse_scale_factor"] if "inverse_scale_factor" in reflections else np.ones(len(reflections))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = reflections["intensity.scale.value"] / g
        var = reflections["intensity.scale.variance"] / g ** 2
    ok &= np.isfinite(value) & np.isfinite(var) & (var > 0) & (g > 0)
    return ok, value, var


def scaled_observations(experiments, reflections, d_min=None, d_max=None):
    """(hkl, I, σ², d) of the rows scaling kept (flag ``scaled``, not ``bad_for_scaling``),
    scaled: I = intensity.scale.value / inverse_scale_factor, σ² = variance / g² (as DIALS)."""
    ok, value, var = scaled_rows(reflections)
    # d in the median cell the data are merged in (as the re-merge and the statistics' shells)
    from .merge import d_spacing

    _, cell = space_group_and_cell(experiments)
    d = d_spacing(reflections["miller_index"], cell)
    if d_min is not None:
        ok &= d >= d_min
    if d_max is not None:
        ok &= d <= d_max
    if not ok.any():
        raise XtalError("no scaled observations to merge" + (" within the resolution limits" if d_min or d_max else ""))
    return reflections["miller_index"][ok], value[ok], var[ok], d[ok]


def space_group_and_cell(experiments):
    """The experiments' (one) space group and their median cell."""
    import gemmi

    from ..scaling.scale import common_space_group, median_cell

    if experiments is None or len(experiments) == 0:
        raise XtalError("no experiments")
    sg = common_space_group(experiments)
    return sg, median_cell(experiments)


def run_merge(experiments, reflections, params: MergeParams, progress=None):
    """Merge scaled observations (dials.merge).

    Parameters
    ----------
    experiments : ExperimentList
        Scaled data sets (scaled.expt): one space group; the median cell and
        wavelength (Å) go to the MTZ.
    reflections : ReflectionTable
        scaled.refl: rows flagged scaled and not bad_for_scaling are merged,
        I = intensity.scale.value / inverse_scale_factor.
    params : MergeParams
        ``d_min``/``d_max`` (Å), ``anomalous``, ``truncate`` (French–Wilson F).

    Returns
    -------
    (experiments, MergedIntensities, summary)
        The merged data for merged.mtz (IMEAN, I(±), F, DANO, N by unique reflection in
        the asymmetric unit) and the merging statistics of what was merged.

    Examples
    --------
    >>> _, merged, summary = run_merge(scaled_expts, scaled, MergeParams(d_min=1.6))
    >>> len(merged), summary["merging_statistics"]["overall"]["completeness"]
    """
    sg, cell = space_group_and_cell(experiments)
    hkl, value, var, _ = scaled_observations(experiments, reflections, params.d_min, params.d_max)
    wavelengths = np.array([e.beam.wavelength for e in experiments])
    wavelength = float(np.median(wavelengths))
    merged = merge_intensities(hkl, value, var, sg, cell, wavelength, anomalous=params.anomalous)
    stats = merging_statistics(hkl, value, var, sg, cell, anomalous=params.anomalous, d_min=params.d_min,
                               d_max=params.d_max, n_bins=params.n_resolution_bins, seed=params.seed)
    if not params.truncate:
        for name in ("f", "sigf", "f_plus", "sigf_plus", "f_minus", "sigf_minus", "dano", "sigdano"):
            setattr(merged, name, np.full(len(merged), np.nan))
    columns = [label for label, _, _ in merged.columns()]
    summary = {"n_observations": int(len(value)), "n_unique": int(len(merged)), "space_group": sg.xhm(),
               "unit_cell": list(cell), "wavelength": wavelength, "anomalous": params.anomalous,
               "truncate": params.truncate, "columns": columns,
               "n_f": int(np.isfinite(merged.f).sum()),
               "wavelength_spread": float(np.ptp(wavelengths)) if len(wavelengths) else 0.0,
               "merging_statistics": stats, "d_min": stats.get("d_min"), "d_max": stats.get("d_max")}
    return experiments, merged, summary


__all__ = ["MergeParams", "run_merge", "scaled_observations", "scaled_rows", "space_group_and_cell"]
