"""A sweep's inputs for a per-sweep stage, from the runs it starts from.

The registry (``processing.stages``) names each stage's input files with DIALS's
names; :func:`sweep_inputs` finds, for one sweep, the run among the new run's
ancestors that wrote them and reads that sweep's part: the imported experiment, its
strong spots, or its experiments and reflections of index or refine. Image paths are
checked against the data roots on the way.
"""

from __future__ import annotations

import os

from .models import StageRun, SweepRun
from .permissions import DataPathError, data_roots, is_inside


class StageInputError(Exception):
    """A user error found by the web app itself (e.g. an input folder removed)."""


def sweep_inputs(run: StageRun, rows: list[SweepRun], stage):
    """``(experiments, reflections or None)`` of ``rows`` (one sweep; several for a joint
    unit), as ``stage`` (a ``processing.stages.Stage``) reads them; ids from 0."""
    from processing.models import ExperimentList
    from processing.reflections import ReflectionTable
    from processing.stages import producer

    expt_name = next((n for n in stage.inputs if n.endswith(".expt")), None)
    refl_name = next((n for n in stage.inputs if n.endswith(".refl")), None)
    source = producer(expt_name)
    if refl_name and producer(refl_name) == source:  # both from one stage: index → refine → integrate
        parts = [sweep_models(run, row, source, (expt_name, refl_name)) for row in rows]
        if len(parts) == 1:
            return parts[0]
        experiments = ExperimentList()
        for e, _ in parts:
            experiments.extend(e)
        return experiments, ReflectionTable.concatenate([t for _, t in parts])
    imported = imported_experiments(run)
    experiments = ExperimentList([experiment_of(imported, row) for row in rows])
    if refl_name is None:
        return experiments, None
    tables = [strong_spots_of(run, row, e) for row, e in zip(rows, experiments)]
    return experiments, (ReflectionTable.concatenate(tables) if len(tables) > 1 else tables[0])


def ancestor(run: StageRun, stage: str) -> StageRun | None:
    """The nearest run of ``stage`` among ``run``'s parents, grandparents …"""
    seen, todo = set(), list(run.parents.all())
    while todo:
        r = todo.pop(0)
        if r.pk in seen:
            continue
        seen.add(r.pk)
        if r.stage == stage:
            return r
        todo.extend(r.parents.all())
    return None


def imported_experiments(run: StageRun):
    """The import's experiment list this run works on, with the image paths checked."""
    from processing.io.expt import read_experiments

    imp = run if run.stage == "import" else ancestor(run, "import")
    if imp is None or not imp.output_dir:
        raise StageInputError("This run has no import run among its inputs")
    path = os.path.join(imp.output_dir, "imported.expt")
    if not os.path.isfile(path):
        raise StageInputError(f"The input {path} is gone (was the import's folder removed?)")
    experiments = read_experiments(path)
    check_image_paths(experiments)
    return experiments


def check_image_paths(experiments) -> None:
    """Raise :class:`DataPathError` if an image of ``experiments`` lies outside the data roots."""
    roots = data_roots()
    for e in experiments:
        src = e.imageset
        for p in ([src.template] if src is not None and src.template else []) + list(getattr(src, "paths", []) or []):
            real = os.path.realpath(p)
            if not any(is_inside(real, r) for r in roots):
                raise DataPathError(f"{p} is outside the allowed data roots")


def experiment_of(experiments, row: SweepRun):
    if row.index >= len(experiments):
        raise StageInputError(f"sweep {row.name}: experiment {row.index} is not in the imported experiment list")
    return experiments[row.index]


def strong_spots_of(run: StageRun, row: SweepRun, experiment):
    """The find_spots run's spots of one sweep (its per-sweep file, else its part of
    strong.refl), with id 0."""
    from processing.io.refl import read_reflections

    fs = ancestor(run, "find_spots")
    if fs is None or not fs.output_dir:
        raise StageInputError("This run has no find_spots run among its inputs")
    src = fs.sweep_runs.filter(index=row.index, status=StageRun.Status.SUCCEEDED).first()
    own = [p for p in (src.output_files if src else []) if p.endswith(".refl") and os.path.isfile(p)]
    path = own[0] if own else os.path.join(fs.output_dir, "strong.refl")
    if not os.path.isfile(path):
        raise StageInputError(f"The input {path} is gone (was the find_spots folder removed?)")
    table = read_reflections(path)
    if experiment.identifier and experiment.identifier in table.experiment_identifiers.values():
        table = table.select_on_experiment_identifiers([experiment.identifier])
    elif not own:
        table = table.select(table["id"] == row.index)
    table.reset_ids()
    if not table.experiment_identifiers and "id" in table:
        table["id"] = table["id"] * 0
    return table


def imageset_key(experiment):
    src = experiment.imageset
    if src is None:
        return None
    return (src.template or "", tuple(getattr(src, "paths", None) or ()))


def sweep_models(run: StageRun, row: SweepRun, stage: str, merged: tuple[str, str]):
    """The experiments and reflections of one sweep, as the ``stage`` run this run starts
    from wrote them: the sweep's own files (``sweeps/<nnn>_<name>.expt/.refl``); from a
    file shared by several sweeps (``index joint=true``), or the merged ``merged`` files
    when the sweep's files are missing, only this sweep's experiments (its identifier, or
    the same images) with their reflections, ids renumbered from 0."""
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections
    from processing.models import ExperimentList

    src = ancestor(run, stage)
    if src is None or not src.output_dir:
        raise StageInputError(f"This run has no {stage} run among its inputs")
    srow = src.sweep_runs.filter(index=row.index, status=StageRun.Status.SUCCEEDED).first()
    if srow is None:
        raise StageInputError(f"sweep {row.name} did not succeed in {stage} run #{src.pk}")
    files = list(srow.output_files or [])
    expt_path = next((f for f in files if f.endswith(".expt")), None)
    refl_path = next((f for f in files if f.endswith(".refl")), None)
    shared = src.sweep_runs.filter(unit=srow.unit).count() > 1
    if not (expt_path and refl_path and os.path.isfile(expt_path) and os.path.isfile(refl_path)):
        expt_path, refl_path = (os.path.join(src.output_dir, n) for n in merged)
        shared = True
    for path in (expt_path, refl_path):
        if not os.path.isfile(path):
            raise StageInputError(f"The input {path} is gone (was the {stage} run's folder removed?)")
    experiments = read_experiments(expt_path)
    table = read_reflections(refl_path)
    if shared:
        imported = experiment_of(imported_experiments(run), row)
        key = imageset_key(imported)
        keep = [e for e in experiments
                if e.identifier == imported.identifier or (key is not None and imageset_key(e) == key)]
        if not keep:
            raise StageInputError(f"sweep {row.name}: {os.path.basename(expt_path)} of {stage} run #{src.pk} "
                                  "holds no experiment of it")
        table = table.select_on_experiment_identifiers([e.identifier for e in keep])
        old_id = {v: k for k, v in table.experiment_identifiers.items()}
        keep.sort(key=lambda e: old_id.get(e.identifier, 1 << 30))
        table.reset_ids()
        experiments = ExperimentList()
        experiments.extend(keep)
    check_image_paths(experiments)
    return experiments, table
