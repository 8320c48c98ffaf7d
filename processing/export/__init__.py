"""Export of scaled, unmerged observations (dials.export): ``run_export`` picks the rows
and the writers in ``processing.io`` write scaled_unmerged.mtz (one batch range per data
set) and scaled.cif (mmCIF reflections)."""
from __future__ import annotations

import numpy as np

from ..errors import XtalError
from ..reflections import Flags
from .params import ExportParams


def run_export(experiments, reflections, params: ExportParams, progress=None):
    """The scaled observations to export unmerged (dials.export).

    Parameters
    ----------
    experiments : ExperimentList
        Scaled data sets (scaled.expt); one batch range per data set in the MTZ.
    reflections : ReflectionTable
        scaled.refl; rows flagged scaled and not bad_for_scaling are kept.
    params : ExportParams
        ``d_min`` (Å).

    Returns
    -------
    (experiments, table, summary)
        The rows to write (scaled_unmerged.mtz, scaled.cif) and what they hold
        (observations in all and per data set, space group, cell).

    Examples
    --------
    >>> expts, rows, summary = run_export(scaled_expts, scaled, ExportParams())
    >>> summary["n_observations"], summary["observations_per_dataset"]
    """
    from ..merging.stage import space_group_and_cell

    sg, cell = space_group_and_cell(experiments)
    if reflections is None or "intensity.scale.value" not in reflections:
        raise XtalError("the reflections are not scaled (no intensity.scale.value): run xtal scale first")
    flags = reflections["flags"].astype(np.uint64)
    ok = ((flags & np.uint64(int(Flags.scaled))) != 0) & ((flags & np.uint64(int(Flags.bad_for_scaling))) == 0)
    if params.d_min is not None:
        ok &= reflections["d"] >= params.d_min
    if not ok.any():
        raise XtalError("no scaled observations to export")
    table = reflections.select(ok)
    per = np.bincount(table["id"].astype(np.int64), minlength=len(experiments))
    summary = {"n_observations": int(ok.sum()), "n_datasets": int((per > 0).sum()), "space_group": sg.xhm(),
               "unit_cell": list(cell), "observations_per_dataset": per.tolist(),
               "identifiers": [e.identifier for e in experiments],
               "project_name": params.project_name, "crystal_name": params.crystal_name}
    return experiments, table, summary


__all__ = ["ExportParams", "run_export"]
