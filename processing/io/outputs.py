"""Writing a stage's outputs by their DIALS names: .expt, .refl, .mtz (merged intensities
when the stage made them, else scaled observations, unmerged) and .cif (scaled
observations). Each write is atomic."""
from __future__ import annotations

import gemmi

from ..errors import XtalError


def _space_group(experiments) -> gemmi.SpaceGroup:
    return gemmi.find_spacegroup_by_ops(experiments[0].crystal.space_group)


def write_output(path: str, experiments, result, summary: dict | None = None, params=None) -> str:
    """Write one output file; the line that says so."""
    from .expt import write_experiments
    from .refl import write_reflections

    name = path.rsplit("/", 1)[-1]
    history = [f"xtal: {name}"]
    if name.endswith(".expt"):
        write_experiments(path, experiments)
        return f"Saving {len(experiments)} experiment(s) to {path}"
    if name.endswith(".refl"):
        write_reflections(path, result)
        return f"Saving {len(result)} reflections to {path}"
    from ..merging.data import MergedIntensities

    if name.endswith(".mtz") and isinstance(result, MergedIntensities):
        from .mtz_export import write_merged_mtz

        kw = {}
        if params is not None:
            kw = {k: getattr(params, f"{k}_name") for k in ("project", "crystal", "dataset")
                  if hasattr(params, f"{k}_name")}
        write_merged_mtz(path, result, history=history, **kw)
        return f"Saving {len(result)} merged reflections to {path}"
    if name.endswith(".mtz"):
        from .mtz_export import write_unmerged_mtz

        write_unmerged_mtz(path, experiments, result, _space_group(experiments), history=history)
        return f"Saving {len(result)} scaled observations (unmerged) to {path}"
    if name.endswith(".cif"):
        from .mmcif import write_unmerged_mmcif

        write_unmerged_mmcif(path, experiments, result, _space_group(experiments))
        return f"Saving {len(result)} scaled observations (mmCIF) to {path}"
    raise XtalError(f"{name}: no writer for this kind of file")


__all__ = ["write_output"]
