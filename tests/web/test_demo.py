"""``manage.py xtal_demo_project`` and the simulate task, through the real worker: the
chain import → find_spots → index → refine → integrate → cosym → scale → merge runs by itself, and running things twice changes nothing."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from django.core.management import call_command

from xtalweb.projects import runs
from xtalweb.projects.models import Project, StageRun

from .helpers import wait_for_run

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]


def wait_for_stage(project, stage, timeout=180.0) -> StageRun:
    deadline = time.monotonic() + timeout
    while not project.runs.filter(stage=stage).exists():
        if time.monotonic() > deadline:
            states = list(project.runs.values_list("stage", "status", "error"))
            pytest.fail(f"no {stage} run was queued; runs: {states}")
        time.sleep(0.2)
    return wait_for_run(project.runs.get(stage=stage).pk, timeout)


def test_demo_project_is_processed_and_the_command_is_idempotent(folders, tiny_dataset):
    # the simulation itself is the session's (same preset, same seed): the command finds it
    # complete (truth.json) and keeps it; simulate_into is tested by the tiny_dataset fixture
    demo = folders["data"] / "demo-tiny"
    shutil.copytree(tiny_dataset, demo)
    stamp = {f: os.stat(demo / f).st_mtime_ns for f in os.listdir(demo)}

    call_command("xtal_demo_project", stdout=open(os.devnull, "w"))
    project = Project.objects.get()
    assert (project.name, project.owner.username, project.group.name) == ("Demo: tiny (3 crystals)", "demo", "demo-lab")
    assert project.data_root == os.path.realpath(demo)

    imp = wait_for_stage(project, "import")
    fs = wait_for_stage(project, "find_spots")
    idx = wait_for_stage(project, "index")
    ref = wait_for_stage(project, "refine")
    integ = wait_for_stage(project, "integrate", timeout=300)
    runs = (imp, fs, idx, ref, integ)
    assert [r.status for r in runs] == ["succeeded"] * 5, [r.error for r in runs]
    assert [list(r.parents.all()) for r in runs[1:]] == [[imp], [fs], [idx], [ref]]
    for run in runs[1:]:
        assert [s.status for s in run.sweep_runs.all()] == ["succeeded"] * 3, run.stage
    assert all(s.summary["percent_indexed"] > 90 for s in idx.sweep_runs.all())
    # the simulated crystals refine to RMSDs far under a pixel, and integrate almost fully
    for s in ref.sweep_runs.all():
        (r,) = s.summary["rmsds_by_experiment"]
        assert r["rmsd_x_px"] < 0.1 and r["rmsd_y_px"] < 0.1 and r["rmsd_z_images"] < 0.5, r
    for s in integ.sweep_runs.all():
        assert s.summary["n_integrated_sum"] > 0.9 * s.summary["n_predicted"] > 1000, s.summary
    assert integ.summary["n_reflections"] == sum(s.summary["n_reflections"] for s in integ.sweep_runs.all())
    # then the ensemble: cosym → scale → merge, each on the run before
    cosym = wait_for_stage(project, "cosym", timeout=300)
    scale = wait_for_stage(project, "scale", timeout=300)
    merge = wait_for_stage(project, "merge", timeout=300)
    assert [r.status for r in (cosym, scale, merge)] == ["succeeded"] * 3, [r.error for r in (cosym, scale, merge)]
    assert [list(r.parents.all()) for r in (cosym, scale, merge)] == [[integ], [cosym], [scale]]
    assert cosym.summary["best"]["patterson_group"] == "I m -3"
    assert scale.summary["merging_statistics"]["overall"]["cc_half"] > 0.95
    assert os.path.isfile(os.path.join(merge.output_dir, "merged.mtz"))
    assert sorted(os.listdir(project.work_dir)) == ["001_import", "002_find_spots", "003_index", "004_refine",
                                                    "005_integrate", "006_cosym", "007_scale", "008_merge"]
    chain = ["find_spots", "index", "refine", "integrate", "cosym", "scale", "merge"]
    assert [r.follow_up for r in (*runs, cosym, scale, merge)] == [chain[k:] for k in range(8)]

    call_command("xtal_demo_project", stdout=open(os.devnull, "w"))
    time.sleep(0.5)
    assert Project.objects.count() == 1
    assert StageRun.objects.count() == 8
    assert {f: os.stat(demo / f).st_mtime_ns for f in os.listdir(demo)} == stamp
    assert sorted(os.listdir(folders["data"])) == ["demo-tiny"]  # no second simulation, no leftovers


def test_simulate_task_then_import(users, folders, tiny_dataset):
    """The preset path: the simulate run (here finding its folder complete) queues the import."""
    target = folders["data"] / "simulated" / "0001-tiny"
    target.parent.mkdir()
    shutil.copytree(tiny_dataset, target)
    project = Project.objects.create(name="sim", owner=users["alice"], data_root=str(target),
                                     work_dir=str(folders["work"] / "sim"))
    run = runs.create_run(project, "simulate", parameters={"preset": "tiny"}, follow_up=["import"])
    runs.dispatch_run(run.pk)
    run = wait_for_run(run.pk)
    assert run.status == "succeeded", run.log
    assert run.summary["space_group"] == "I 21 3" and len(run.summary["crystals"]) == 3
    imp = wait_for_stage(project, "import")
    assert imp.status == "succeeded", imp.log
    assert imp.summary["n_sweeps"] == 3 and imp.summary["n_images"] == 30
    assert list(imp.parents.all()) == [run]


def test_simulate_outside_the_data_roots_fails_clearly(users, folders):
    project = Project.objects.create(name="sim", owner=users["alice"], data_root=str(folders["outside"] / "x"),
                                     work_dir=str(folders["work"] / "sim"))
    run = runs.create_run(project, "simulate", parameters={"preset": "tiny"}, follow_up=["import"])
    runs.dispatch_run(run.pk)
    run = wait_for_run(run.pk)
    assert run.status == "failed"
    assert "is outside the allowed data roots" in run.error
    assert not os.path.exists(folders["outside"] / "x")
    assert project.runs.count() == 1  # no import queued after a failure
