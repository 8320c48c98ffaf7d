"""The stages, each declared once: the command line and the web app read this registry.

A :class:`Stage` names its parameter dataclass, its ``run_<stage>`` function, the
DIALS-named files it reads and writes, and how it runs (``per_sweep``: each sweep on
its own, so the web fans out one task per sweep and joins their files; otherwise once
on the whole ensemble). :meth:`Stage.execute` calls the stage with one signature for
all stages and returns its summary as strict JSON (``processing.summary.json_ready``).

Adding a stage: its folder (``params.py``, ``run_<stage>``), one entry in
:data:`STAGES`, a command module in ``processing/cli`` (its table) and a report in
``xtalweb/reports``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .importer import ImportParams, run_import
from .indexing import IndexParams, run_index
from .integration import IntegrateParams, run_integrate
from .models import ExperimentList
from .refinement import RefineParams, run_refine
from .spotfinding import FindSpotsParams, run_find_spots
from .summary import json_ready
from .symmetry import CosymParams, run_cosym, run_symmetry
from .scaling import ScaleParams, run_scale
from .merging.params import MergeParams
from .merging.stage import run_merge
from .merging.resolution_stage import EstimateResolutionParams, run_estimate_resolution
from .export import ExportParams, run_export
from .merging.filter_params import DeltaCcHalfParams
from .merging.filtering import run_compute_delta_cchalf
from .multiplex.params import ClusterParams
from .multiplex.stage import run_cluster


@dataclass(frozen=True)
class SweepOutcome:
    """One sweep's part of a stage's summary: did it succeed, why not, its own summary."""

    ok: bool
    summary: dict
    reason: str = ""
    #: one line for the log when it succeeded
    line: str = ""
    traceback: str | None = None


def _whole(summary: dict, n: int) -> list[SweepOutcome]:
    """Every sweep shares the summary (a stage that fails by raising)."""
    return [SweepOutcome(True, dict(summary)) for _ in range(n)]


def _find_spots_outcomes(summary: dict, n: int) -> list[SweepOutcome]:
    return [SweepOutcome(True, dict(s), line=f"{s.get('n_spots')} spots on {s.get('n_images')} images")
            for s in summary["experiments"][:n]]


def _index_outcomes(summary: dict, n: int) -> list[SweepOutcome]:
    unit = {k: v for k, v in summary.items() if k != "sweeps"}
    by_sweep = {int(r.get("sweep", -1)): r for r in summary.get("sweeps", [])}
    out = []
    for k in range(n):
        r = dict(by_sweep.get(k) or {"status": "failed", "reason": "not indexed"})
        tb = r.pop("traceback", None)
        if r.get("status") == "indexed":
            cell = ", ".join(f"{x:.2f}" for x in r.get("unit_cell") or [])
            out.append(SweepOutcome(True, dict(r, unit=unit), line=f"{r.get('percent_indexed', 0.0):.1f} % "
                                    f"indexed, cell ({cell}) {r.get('space_group')}"))
        else:
            out.append(SweepOutcome(False, dict(r, unit=unit), reason=r.get("reason") or "not indexed",
                                    traceback=tb))
    return out


def _refine_outcomes(summary: dict, n: int) -> list[SweepOutcome]:
    s = {k: v for k, v in summary.items() if k != "parameters"}
    rmsds = s.get("rmsds_by_experiment") or []
    if not rmsds:
        reason = "; ".join(f.get("reason") or f.get("message", "") for f in s.get("failed") or []) or "not refined"
        return [SweepOutcome(False, s, reason=reason) for _ in range(n)]
    line = "; ".join(f"{r['nref']} reflections, RMSD X {r['rmsd_x_px']:.4g} px, Y {r['rmsd_y_px']:.4g} px, "
                     f"Z {r['rmsd_z_images']:.4g} images" for r in rmsds)
    return [SweepOutcome(True, s, line=line) for _ in range(n)]


def _integrate_outcomes(summary: dict, n: int) -> list[SweepOutcome]:
    per_expt = [{k: v for k, v in e.items() if k != "name"} for e in summary.get("sweeps") or []]
    s = {k: v for k, v in summary.items() if k != "sweeps"}
    s["experiments"] = per_expt
    s["n_reflections"] = int(summary.get("n_predicted") or 0)
    line = f"{s.get('n_predicted')} predicted, integrated sum {s.get('n_integrated_sum')}, " \
           f"prf {s.get('n_integrated_prf')}"
    return [SweepOutcome(True, s, line=line) for _ in range(n)]


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    ``run(experiments, reflections, params, progress)`` returns ``(experiments,
    reflections, summary)``; a stage that writes no experiment list (find_spots) returns
    its input experiments, one that reads none (import) is given ``None``.
    """

    name: str
    title: str
    #: one line for ``xtal -h``, with the DIALS program it stands for
    description: str
    params: type
    run: Callable
    #: DIALS file names it reads, e.g. ("refined.expt", "refined.refl")
    inputs: tuple[str, ...]
    #: DIALS file names it writes
    outputs: tuple[str, ...]
    per_sweep: bool
    #: the stage whose output is this one's input (the web's default parent)
    previous: str | None
    #: ``(summary, n_sweeps) -> [SweepOutcome]``: each sweep's part of a per-sweep run
    sweep_outcomes: Callable = _whole
    #: per-sweep counts the joined run adds up
    summed_counts: tuple[str, ...] = ()

    def execute(self, experiments, reflections, params, progress=None):
        """Run the stage: ``(experiments, reflections, summary)``, the summary strict JSON."""
        if not isinstance(params, self.params):
            raise TypeError(f"{self.name} needs {self.params.__name__}, not {type(params).__name__}")
        experiments, reflections, summary = self.run(experiments, reflections, params, progress)
        return experiments, reflections, json_ready(summary)

    @property
    def experiments_output(self) -> str | None:
        return next((n for n in self.outputs if n.endswith(".expt")), None)

    @property
    def reflections_output(self) -> str | None:
        return next((n for n in self.outputs if n.endswith(".refl")), None)


def _import(experiments, reflections, params, progress=None):
    experiments, summary = run_import(params)
    return experiments, None, summary


def _find_spots(experiments, reflections, params, progress=None):
    table, summary = run_find_spots(experiments, params, progress=progress)
    return experiments, table, summary


def _data_d_min(reflections, d_min) -> float | None:
    """The high-resolution limit (Å) a reference model is calculated to: d_min, else the data's."""
    if d_min:
        return d_min
    if reflections is not None and "d" in reflections and len(reflections):
        import numpy as np

        d = np.asarray(reflections["d"], dtype=float)
        d = d[np.isfinite(d) & (d > 0)]
        return float(d.min()) if len(d) else None
    return None


def _reference(params, reflections, **model):
    from .io.reference import read_reference

    if not params.reference:
        return None
    return read_reference(params.reference, _data_d_min(reflections, params.d_min), **model)


def _cosym(experiments, reflections, params, progress=None):
    return run_cosym(experiments, reflections, params, progress=progress, reference=_reference(params, reflections))


def _scale(experiments, reflections, params, progress=None):
    reference = _reference(params, reflections, k_sol=params.k_sol, b_sol=params.b_sol)
    return run_scale(experiments, reflections, params, progress=progress, reference=reference)


def _with_reflections(run):
    def run_stage(experiments: ExperimentList, reflections, params, progress=None):
        return run(experiments, reflections, params, progress=progress)
    return run_stage


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("import", "import", "read image headers and write imported.expt (dials.import)",
          ImportParams, _import, inputs=(), outputs=("imported.expt",), per_sweep=False, previous=None),
    Stage("find_spots", "find spots", "find strong spots on the images (dials.find_spots)",
          FindSpotsParams, _find_spots, inputs=("imported.expt",), outputs=("strong.refl",),
          per_sweep=True, previous="import", sweep_outcomes=_find_spots_outcomes,
          summed_counts=("n_spots", "n_images")),
    Stage("index", "index", "find the lattice, assign Miller indices, refine orientation and cell (dials.index)",
          IndexParams, _with_reflections(run_index), inputs=("imported.expt", "strong.refl"),
          outputs=("indexed.expt", "indexed.refl"), per_sweep=True, previous="find_spots",
          sweep_outcomes=_index_outcomes, summed_counts=("n_spots", "n_indexed")),
    Stage("refine", "refine", "refine beam, detector and crystal models against indexed centroids (dials.refine)",
          RefineParams, _with_reflections(run_refine), inputs=("indexed.expt", "indexed.refl"),
          outputs=("refined.expt", "refined.refl"), per_sweep=True, previous="index",
          sweep_outcomes=_refine_outcomes, summed_counts=("n_used_in_refinement",)),
    Stage("integrate", "integrate",
          "integrate reflections: background, summation, profile fitting (dials.integrate)",
          IntegrateParams, _with_reflections(run_integrate), inputs=("refined.expt", "refined.refl"),
          outputs=("integrated.expt", "integrated.refl"), per_sweep=True, previous="refine",
          sweep_outcomes=_integrate_outcomes,
          summed_counts=("n_predicted", "n_integrated_sum", "n_integrated_prf")),
    Stage("cosym", "cosym", "Laue group and indexing ambiguity across the ensemble (dials.cosym)",
          CosymParams, _cosym, inputs=("integrated.expt", "integrated.refl"),
          outputs=("symmetrized.expt", "symmetrized.refl"), per_sweep=False, previous="integrate"),
    Stage("symmetry", "symmetry", "Laue group and space group of one sweep or consistently indexed sweeps "
          "(dials.symmetry)", CosymParams, _with_reflections(run_symmetry),
          inputs=("integrated.expt", "integrated.refl"), outputs=("symmetrized.expt", "symmetrized.refl"),
          per_sweep=False, previous="integrate"),
    Stage("scale", "scale", "scale the data sets with a physical model, error model, merging statistics "
          "(dials.scale)", ScaleParams, _scale, inputs=("symmetrized.expt", "symmetrized.refl"),
          outputs=("scaled.expt", "scaled.refl"), per_sweep=False, previous="cosym"),
    Stage("merge", "merge", "merge scaled observations: intensities, French–Wilson amplitudes, anomalous "
          "differences (dials.merge)", MergeParams, _with_reflections(run_merge),
          inputs=("scaled.expt", "scaled.refl"), outputs=("merged.mtz",), per_sweep=False, previous="scale"),
    Stage("estimate_resolution", "estimate resolution", "resolution limits from CC½ (tanh fit, with its "
          "uncertainty), I/σ, Rmerge and completeness in fine shells (dials.estimate_resolution)",
          EstimateResolutionParams, _with_reflections(run_estimate_resolution),
          inputs=("scaled.expt", "scaled.refl"), outputs=(), per_sweep=False, previous="scale"),
    Stage("export", "export", "scaled observations, unmerged, as MTZ (one batch range per data set) and "
          "mmCIF (dials.export)", ExportParams, _with_reflections(run_export),
          inputs=("scaled.expt", "scaled.refl"), outputs=("scaled_unmerged.mtz", "scaled.cif"),
          per_sweep=False, previous="scale"),
    Stage("compute_delta_cchalf", "ΔCC½ filter", "ΔCC½ per data set or image group, remove those below "
          "mean − 4σ, rescale, re-estimate d_min (dials.compute_delta_cchalf; xia2.multiplex filtering)",
          DeltaCcHalfParams, _with_reflections(run_compute_delta_cchalf), inputs=("scaled.expt", "scaled.refl"),
          outputs=("filtered.expt", "filtered.refl"), per_sweep=False, previous="scale"),
    Stage("cluster", "cluster", "unit-cell and intensity clustering of scaled data sets: dendrograms, correlation "
          "and cos-angle matrices, the candidate clusters with their statistics (xia2.multiplex's clustering)",
          ClusterParams, _with_reflections(run_cluster), inputs=("scaled.expt", "scaled.refl"), outputs=(),
          per_sweep=False, previous="scale"),
)}


def producer(file_name: str) -> str:
    """The stage that writes ``file_name`` (e.g. "strong.refl" → "find_spots")."""
    for s in STAGES.values():
        if file_name in s.outputs:
            return s.name
    raise KeyError(file_name)


__all__ = ["STAGES", "Stage", "SweepOutcome", "producer"]
