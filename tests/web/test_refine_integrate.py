"""refine and integrate end to end: the run form → a Celery chord (one task per sweep, a
join) on the real worker → processing.refinement / processing.integration → SweepRun
rows, merged refined.* / integrated.* files, and the reports (RMSDs by experiment with
badly refined sweeps highlighted, refined cells, integration summary, ⟨I/σ⟩ plots).

Input: the session's tiny set indexed once (``indexed_project`` in conftest.py)."""

from __future__ import annotations

import hashlib
import html
import os

import numpy as np
import pytest
from django.urls import reverse

from xtalweb.projects.models import StageRun

from .helpers import wait_for_run

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]

NAMES = ["crystal_000", "crystal_001", "crystal_002"]


def run_stage(client, project, stage, parent, sweeps, params=None) -> StageRun:
    data = {f"{stage}-{k}": v for k, v in (params or {}).items()}
    data[f"{stage}-parent"] = parent.pk
    data[f"{stage}-sweeps"] = [str(k) for k in sweeps]
    before = set(project.runs.values_list("pk", flat=True))
    response = client.post(reverse("stagerun_new", args=[project.pk, stage]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    (run_id,) = set(project.runs.values_list("pk", flat=True)) - before
    return wait_for_run(run_id, timeout=240)


def tree_digest(folder) -> dict[str, str]:
    return {os.path.relpath(os.path.join(d, f), folder): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, fs in os.walk(folder) for f in fs}


def add_centroid_noise(path, sigma_px: float, seed: int = 1) -> None:
    """Gaussian noise of ``sigma_px`` on the observed x, y centroids (px and mm alike):
    no model can fit it, so this sweep's RMSDs stay high whatever refinement does."""
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections, write_reflections

    (pixel_size,) = {tuple(p.pixel_size) for e in read_experiments(path[:-5] + ".expt") for p in e.detector.panels}
    t = read_reflections(path)
    noise = np.random.default_rng(seed).normal(0.0, sigma_px, size=(len(t), 2))
    px = t["xyzobs.px.value"].copy()
    mm = t["xyzobs.mm.value"].copy()
    px[:, :2] += noise
    mm[:, :2] += noise * np.asarray(pixel_size)
    t["xyzobs.px.value"] = px
    t["xyzobs.mm.value"] = mm
    write_reflections(path, t)


def test_refine_and_integrate_per_sweep_match_the_science(client, users, indexed_project, tiny_data):
    from processing.integration import IntegrateParams, run_integrate
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections
    from processing.models import format_with_sd
    from processing.refinement import RefineParams, run_refine

    project, idx = indexed_project["project"], indexed_project["index"]
    idx_rows = list(idx.sweep_runs.order_by("index"))
    add_centroid_noise(idx_rows[1].output_files[1], sigma_px=1.0)  # sweep 1 will refine badly
    client.force_login(users["bob"])  # a member of the project's group

    # --- refine: one task per sweep on the real worker ------------------------------------
    # scan_varying=false: one static macrocycle, the quick way (the default comes in the rerun)
    ref = run_stage(client, project, "refine", idx, [0, 1, 2], {"scan_varying": "false"})
    assert (ref.status, ref.error) == ("succeeded", ""), ref.log
    assert ref.output_dir == os.path.join(project.work_dir, "004_refine")
    assert list(ref.parents.all()) == [idx]
    rows = list(ref.sweep_runs.order_by("index"))
    assert [(r.name, r.status, r.progress) for r in rows] == [(n, "succeeded", 1.0) for n in NAMES]

    # the worker's per-sweep RMSD rows are the science's on the same input, sweep by sweep
    direct = []
    for r in idx_rows:
        expts = read_experiments(r.output_files[0])
        refl = read_reflections(r.output_files[1])
        direct.append(run_refine(expts, refl, RefineParams(scan_varying="false")))
    for row, (out_e, out_r, s) in zip(rows, direct):
        got = row.summary["rmsds_by_experiment"]
        assert [(x["experiment"], x["nref"]) for x in got] == [(x["experiment"], x["nref"])
                                                               for x in s["rmsds_by_experiment"]]
        for g, d in zip(got, s["rmsds_by_experiment"]):
            for key in ("rmsd_x_px", "rmsd_y_px", "rmsd_z_images"):
                assert g[key] == pytest.approx(d[key], rel=1e-9, abs=1e-12), (row.name, key)
        assert row.summary["crystals"][0]["unit_cell"] == pytest.approx(s["crystals"][0]["unit_cell"], rel=1e-9)
    rmsd_x = [s["rmsds_by_experiment"][0]["rmsd_x_px"] for _, _, s in direct]
    assert rmsd_x[1] > 0.5 and rmsd_x[0] < 0.1 and rmsd_x[2] < 0.1, rmsd_x  # the noise did its job

    # refined.expt + refined.refl: the three sweeps' files merged, ids 0, 1, 2 in sweep order
    merged_e = read_experiments(os.path.join(ref.output_dir, "refined.expt"))
    merged_r = read_reflections(os.path.join(ref.output_dir, "refined.refl"))
    assert [e.identifier for e in merged_e] == [x.identifier for out_e, _, _ in direct for x in out_e]
    assert len(merged_r) == sum(len(t) for _, t, _ in direct) == ref.summary["n_reflections"]
    ids = merged_r["id"]
    assert [int((ids == k).sum()) for k in range(3)] == [int((t["id"] == 0).sum()) for _, t, _ in direct]
    assert int((ids < 0).sum()) == sum(int((t["id"] < 0).sum()) for _, t, _ in direct)  # not indexed: kept
    assert [x["id"] for x in ref.summary["experiments"]] == [0, 1, 2]

    # the report: DIALS's "RMSDs by experiment" table, sweep 1 highlighted, cells with e.s.d.s
    report = client.get(reverse("stagerun_report_json", args=[project.pk, ref.pk])).json()
    rmsd = next(t for t in report["tables"] if t["id"] == "rmsds")
    assert rmsd["columns"] == ["Exp id", "Nref", "RMSD_X (px)", "RMSD_Y (px)", "RMSD_Z (images)"]
    assert rmsd["rows"] == [[k, s["rmsds_by_experiment"][0]["nref"]]
                            + [float(f"{s['rmsds_by_experiment'][0][key]:.5g}")
                               for key in ("rmsd_x_px", "rmsd_y_px", "rmsd_z_images")]
                            for k, (_, _, s) in enumerate(direct)]
    assert rmsd["row_status"] == ["succeeded", "bad", "succeeded"]
    assert [h["exp_id"] for h in rmsd["highlights"]] == [1]
    assert any(r.startswith("RMSD_X") and "> 0.5 px" in r for r in rmsd["highlights"][0]["reasons"])
    assert any("× median" in r for r in rmsd["highlights"][0]["reasons"])
    cells = next(t for t in report["tables"] if t["id"] == "cells")
    for row, (_, _, s) in zip(cells["rows"], direct):
        c = s["crystals"][0]
        assert row[2] == ", ".join(format_with_sd(v, e) for v, e in zip(c["unit_cell"], c["unit_cell_sd"]))
    page = client.get(reverse("stagerun_report", args=[project.pk, ref.pk])).content.decode()
    assert 'class="row-bad"' in page and html.escape("2× the median") in page

    # --- integrate on top: sweep 2's images are gone → it alone fails, one line ------------
    os.remove(tiny_data / "crystal_002_data_000001.h5")
    integ = run_stage(client, project, "integrate", ref, [0, 1, 2], {"d_min": "3.0"})
    # issue 9: a run with a failed sweep is "partial", not "succeeded"
    assert (integ.status, integ.error) == ("partial", "1 of 3 sweeps failed"), integ.log
    assert integ.output_dir == os.path.join(project.work_dir, "005_integrate")
    assert integ.parameters["d_min"] == 3.0
    irows = list(integ.sweep_runs.order_by("index"))
    assert [(r.name, r.status) for r in irows] == [("crystal_000", "succeeded"), ("crystal_001", "succeeded"),
                                                   ("crystal_002", "failed")]
    bad = irows[2]
    assert "crystal_002_data_000001.h5" in bad.error and "missing" in bad.error
    assert "\n" not in bad.error and not bad.error.startswith("Internal error"), bad.log
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert html.escape(bad.error) in page

    # integrated.refl holds exactly the science's rows for the two good sweeps
    direct_i = []
    for r in rows[:2]:
        expts = read_experiments(os.path.join(ref.output_dir, "sweeps", f"{r.index:03d}_{r.name}.expt"))
        refl = read_reflections(os.path.join(ref.output_dir, "sweeps", f"{r.index:03d}_{r.name}.refl"))
        direct_i.append(run_integrate(expts, refl, IntegrateParams(d_min=3.0)))
    integrated = read_reflections(os.path.join(integ.output_dir, "integrated.refl"))
    assert len(integrated) == sum(len(t) for _, t, _ in direct_i) == integ.summary["n_reflections"]
    assert [int((integrated["id"] == k).sum()) for k in range(3)] == [len(t) for _, t, _ in direct_i] + [0]
    assert [r.summary["n_integrated_sum"] for r in irows[:2]] == [s["n_integrated_sum"] for _, _, s in direct_i]
    assert len(read_experiments(os.path.join(integ.output_dir, "integrated.expt"))) == 2

    report = client.get(reverse("stagerun_report_json", args=[project.pk, integ.pk])).json()
    (table,) = report["tables"]
    assert table["columns"][:10] == ["Exp id", "Sweep", "Predicted", "Integrated (sum)", "Integrated (prf)",
                                     "Failed", "⟨I/σ⟩ (sum)", "⟨I/σ⟩ (prf)", "σ_b (°)", "σ_m (°)"]
    for row, (_, _, s) in zip(table["rows"], direct_i):
        sw = s["sweeps"][0]
        assert row[2:6] == [sw["n_predicted"], sw["n_integrated_sum"], sw["n_integrated_prf"],
                            sw["n_failed_summation"]]
        assert row[8:10] == [round(sw["profile_model"]["sigma_b"], 4), round(sw["profile_model"]["sigma_m"], 4)]
        n = sum(b["n_integrated_sum"] for b in sw["resolution_table"])
        assert row[6] == round(sum(b["n_integrated_sum"] * b["mean_ios_sum"] for b in sw["resolution_table"]) / n, 2)
    assert table["rows"][2][1] == "crystal_002" and table["rows"][2][-2:] == ["failed", bad.error]
    (fig,) = report["figures"]
    assert [t["name"] for t in fig["data"]] == ["crystal_000 sum", "crystal_000 prf",
                                                "crystal_001 sum", "crystal_001 prf"]
    res0 = direct_i[0][2]["sweeps"][0]["resolution_table"]
    assert fig["data"][1]["y"] == [round(b["mean_ios_prf"], 3) for b in res0]
    assert len(fig["data"][0]["x"]) == len(res0) and fig["data"][0]["x"] == sorted(fig["data"][0]["x"])

    # --- rerun refine with other parameters: a new folder; the old one untouched ----------
    before = tree_digest(ref.output_dir)
    rerun = run_stage(client, project, "refine", idx, [0])
    assert (rerun.status, rerun.error) == ("succeeded", ""), rerun.log
    assert rerun.output_dir == os.path.join(project.work_dir, "006_refine")
    assert rerun.parameters["scan_varying"] == "auto" and ref.parameters["scan_varying"] == "false"
    assert tree_digest(ref.output_dir) == before
    assert len(read_experiments(os.path.join(rerun.output_dir, "refined.expt"))) == 1
    assert [c["scan_varying"] for c in rerun.sweep_runs.get().summary["macrocycles"]] == [False, True]
    assert [c["scan_varying"] for c in rows[0].summary["macrocycles"]] == [False]


def test_a_sweeps_input_from_a_shared_file_is_its_own_part(indexed_project, settings):
    """Without the sweep's own files (e.g. ``index joint=true`` writes one file for all
    sweeps), the task takes the sweep's experiment and reflections out of the merged
    indexed.expt/.refl: the same models and rows as the sweep's own files."""
    from xtalweb.projects import runs, sweep_inputs

    project, idx = indexed_project["project"], indexed_project["index"]
    run = runs.create_run(project, "refine", parameters={}, parents=[idx], sweeps=runs.available_sweeps(idx))
    row = run.sweep_runs.get(index=1)
    own_e, own_r = sweep_inputs.sweep_models(run, row, "index", ("indexed.expt", "indexed.refl"))
    for path in idx.sweep_runs.get(index=1).output_files:
        os.remove(path)
    part_e, part_r = sweep_inputs.sweep_models(run, row, "index", ("indexed.expt", "indexed.refl"))
    assert [e.identifier for e in part_e] == [e.identifier for e in own_e] and len(own_e) == 1
    assert np.allclose(part_e[0].crystal.A, own_e[0].crystal.A)
    assert part_r.experiment_identifiers == own_r.experiment_identifiers == {0: own_e[0].identifier}
    indexed = own_r["id"] == 0
    assert int((part_r["id"] == 0).sum()) == int(indexed.sum()) > 1000
    assert np.array_equal(part_r["xyzobs.px.value"], own_r["xyzobs.px.value"][indexed])
    # and a sweep whose images lie outside the data roots is refused
    settings.DATA_ROOTS = [str(indexed_project["project"].work_dir)]
    with pytest.raises(sweep_inputs.DataPathError, match="outside the allowed data roots"):
        sweep_inputs.sweep_models(run, row, "index", ("indexed.expt", "indexed.refl"))
