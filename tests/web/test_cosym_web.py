"""cosym in the web app (issue 11): the run form after integrate queues one ensemble
task on the real worker; the run writes symmetrized.expt/.refl into its own folder and
its report shows the best solution, the operator and subgroup tables, the reindexing
of every data set by sweep name and the embedding; a rerun with ``space_group=`` is
honoured and flagged."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse
from django.utils import timezone

from xtalweb.projects.models import Project, StageRun, SweepRun

from .helpers import wait_for_run

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]

N = 8


@pytest.fixture(scope="session")
def integrated_ensemble(tmp_path_factory):
    """Reflection-level tiny ensemble (I 2₁3, half in the other setting): integrated.*."""
    from processing.simulate import SimulateParams, run_simulate

    out = tmp_path_factory.mktemp("ensemble")
    _, summary = run_simulate(SimulateParams(preset="tiny", mode="reflections", output_dir=str(out), n_crystals=N,
                                             seed=4))
    return out, summary


@pytest.fixture
def integrated_project(integrated_ensemble, folders, users):
    import shutil

    src, summary = integrated_ensemble
    project = Project.objects.create(name="ensemble", owner=users["alice"], group=users["lab_a"],
                                     data_root=str(folders["data"]))
    project.work_dir = str(folders["work"] / str(project.pk))
    project.save()
    os.makedirs(project.work_dir)
    folder = os.path.join(project.work_dir, "005_integrate")
    os.makedirs(folder)
    for name in ("integrated.expt", "integrated.refl"):
        shutil.copy(src / name, os.path.join(folder, name))
    now = timezone.now()
    names = [f"crystal_{k:03d}" for k in range(N)]
    experiments = [{"id": k, "identifier": c["identifier"], "sweep": k, "name": names[k]}
                   for k, c in enumerate(summary["crystals"])]
    integ = StageRun.objects.create(project=project, stage="integrate", status="succeeded", progress=1.0,
                                    output_dir=folder, summary={"experiments": experiments, "n_experiments": N},
                                    started=now, finished=now)
    for k in range(N):
        SweepRun.objects.create(run=integ, index=k, name=names[k], unit=k, status="succeeded", progress=1.0,
                                started=now, finished=now)
    return project, integ, summary


def run_cosym(client, project, parent, **params):
    data = {"cosym-parent": parent.pk, "cosym-sweeps": [str(k) for k in range(N)]}
    data.update({f"cosym-{k}": v for k, v in params.items()})
    before = set(project.runs.values_list("pk", flat=True))
    response = client.post(reverse("stagerun_new", args=[project.pk, "cosym"]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    (run_id,) = set(project.runs.values_list("pk", flat=True)) - before
    return wait_for_run(run_id, timeout=240)


def test_cosym_from_the_project_page(client, users, integrated_project):
    project, integ, truth = integrated_project
    client.force_login(users["bob"])
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    form = client.get(reverse("stagerun_new", args=[project.pk, "cosym"])).content.decode()  # fetched when opened
    assert 'id="form-cosym"' in page and 'name="cosym-space_group"' in form and 'name="cosym-seed"' in form

    run = run_cosym(client, project, integ)
    assert (run.status, run.error) == ("succeeded", ""), run.log
    assert list(run.parents.all()) == [integ]
    assert sorted(os.listdir(run.output_dir)) == ["symmetrized.expt", "symmetrized.refl"]
    assert [r.status for r in run.sweep_runs.order_by("index")] == ["succeeded"] * N
    best = run.summary["best"]
    assert best["patterson_group"] == "I m -3" and best["probability"] > 0.95
    # the two settings of the truth are two operators here
    settings = [c["change_of_basis_op"] for c in truth["crystals"]]
    ours = [d["operator"] for d in run.summary["datasets"]]
    assert len(set(zip(settings, ours))) == len(set(settings)) == len(set(ours)) == 2

    report = client.get(reverse("stagerun_report_json", args=[project.pk, run.pk])).json()
    tables = {t["id"]: t for t in report["tables"]}
    assert ["Best solution", "I m -3"] in tables["best"]["rows"]
    assert len(tables["operators"]["rows"]) == 24 and len(tables["reindexing"]["rows"]) == N
    assert [r[1] for r in tables["reindexing"]["rows"]] == [f"crystal_{k:03d}" for k in range(N)]
    (embedding, functional) = report["figures"]
    assert sum(len(t["x"]) for t in embedding["data"]) == N
    assert any("crystal_003" in text for t in embedding["data"] for text in t["text"])
    html_page = client.get(reverse("stagerun_report", args=[project.pk, run.pk])).content.decode()
    assert "Reindexing of each data set" in html_page and "I m -3" in html_page

    # a rerun with the user's space group: honoured, and the report says so
    rerun = run_cosym(client, project, integ, space_group="I 21 3")
    assert rerun.status == "succeeded" and rerun.output_dir != run.output_dir
    assert rerun.summary["best"]["space_group"] == "I 21 3"
    report = client.get(reverse("stagerun_report_json", args=[project.pk, rerun.pk])).json()
    rows = {r[0]: r[1] for r in next(t for t in report["tables"] if t["id"] == "best")["rows"]}
    assert rows["Given space_group"] == "I 21 3"


def test_cosym_with_an_uploaded_reference(client, users, integrated_project, integrated_ensemble, folders):
    from django.core.files.uploadedfile import SimpleUploadedFile

    project, integ, _ = integrated_project
    src, _ = integrated_ensemble
    client.force_login(users["alice"])
    base = {"cosym-parent": integ.pk, "cosym-sweeps": [str(k) for k in range(N)], "cosym-stability": "false"}
    url = reverse("stagerun_new", args=[project.pk, "cosym"])
    n_runs = StageRun.objects.count()
    # not an MTZ; a path outside the data roots: form errors, nothing queued
    bad = client.post(url, dict(base, **{"cosym-reference_upload": SimpleUploadedFile("ref.mtz", b"not an mtz")}))
    assert bad.status_code == 200 and "ref.mtz: not a readable MTZ file" in bad.content.decode()
    outside = client.post(url, dict(base, **{"cosym-reference": str(folders["outside"] / "x.mtz")}))
    assert outside.status_code == 200 and "is outside the allowed data roots" in outside.content.decode()
    assert StageRun.objects.count() == n_runs
    # the true intensities uploaded: the run reads them from the project's uploads folder
    upload = SimpleUploadedFile("true.mtz", (src / "true.mtz").read_bytes())
    response = client.post(url, dict(base, **{"cosym-reference_upload": upload}))
    assert response.status_code == 302, response.content.decode()[:2000]
    run = wait_for_run(StageRun.objects.filter(stage="cosym").latest("id").pk, timeout=240)
    assert run.status == "succeeded", run.log
    assert run.parameters["reference"].startswith(os.path.join(project.work_dir, "uploads"))
    ref = run.summary["reference"]
    assert ref["column"] == "IMEAN" and max(r["cc"] for r in ref["settings"]) > 0.9
