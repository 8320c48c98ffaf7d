"""The import stage end to end: form → transaction.on_commit → Redis → a real Celery
worker → processing.importer.run_import → StageRun, Sweep rows, imported.expt."""

from __future__ import annotations

import html
import json
import os

import pytest
from django.urls import reverse

from xtalweb.projects.models import Project, StageRun
from xtalweb.projects.tasks import run_import_stage

from .helpers import copy_image, wait_for_run

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]


def create_project(client, user, data_root, name="project", group=None) -> tuple[Project, StageRun]:
    client.force_login(user)
    data = {"name": name, "data_root": str(data_root)}
    if group is not None:
        data["group"] = group.pk
    response = client.post(reverse("project_new"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    project = Project.objects.get(name=name)
    assert response["Location"] == reverse("project_detail", args=[project.pk])
    return project, project.runs.get()


def files_under(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_import_real_cbf(client, users, folders, smargon_cbf):
    copy_image(smargon_cbf, folders["data"] / "xtal1")
    project, run = create_project(client, users["alice"], folders["data"] / "xtal1", group=users["lab_a"])
    run = wait_for_run(run.pk)
    assert (run.status, run.error) == ("succeeded", ""), run.log
    assert run.progress == 1.0
    assert run.started is not None and run.finished is not None and run.finished >= run.started
    assert run.parameters["paths"] == [os.path.join(project.data_root, smargon_cbf.name)]

    # outputs in the run's own folder
    assert run.output_dir == os.path.join(project.work_dir, "001_import")
    expt = os.path.join(run.output_dir, "imported.expt")
    with open(expt) as f:
        assert json.load(f)["__id__"] == "ExperimentList"
    assert files_under(project.work_dir) == ["001_import/imported.expt"]

    # the summary and the sweep table
    assert run.summary["n_images"] == 1
    assert run.summary["format"]
    sweeps = list(project.sweeps.all())
    assert len(sweeps) == 1
    s = sweeps[0]
    assert s.files == [os.path.join(project.data_root, smargon_cbf.name)]
    assert (s.image_range_start, s.image_range_end, s.n_images) == (1, 1, 1)
    assert s.oscillation_start == pytest.approx(45.0, abs=1e-6)
    assert s.oscillation_width == pytest.approx(0.1, abs=1e-6)
    assert s.wavelength == pytest.approx(0.97625, abs=1e-5)
    # the header says (1229.30, 1200.48); DIALS's parallax-corrected model (1229.30, 1200.47)
    assert s.beam_centre_x == pytest.approx(1229.30, abs=0.011)
    assert s.beam_centre_y == pytest.approx(1200.47, abs=0.011)
    assert s.distance == pytest.approx(291.47, abs=0.01)
    assert "6M" in s.detector or "2463" in s.detector, s.detector
    if "image_size" in s.summary:  # not part of the summary contract, checked when given
        assert list(s.summary["image_size"]) == [2463, 2527]
    assert s.included is True

    # shown to the group (page and JSON), not to another group
    client.force_login(users["bob"])
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert "0.97625" in page and "291.47" in page and "succeeded" in page
    status = client.get(reverse("project_status", args=[project.pk])).json()
    assert [(r["stage"], r["status"], r["progress"]) for r in status["runs"]] == [("import", "succeeded", 1.0)]
    assert status["sweeps"][0]["wavelength"] == pytest.approx(0.97625, abs=1e-5)
    assert "summary" not in status["runs"][0]  # polled: what changes; the summary comes with the report
    assert "files" not in status["sweeps"][0]
    log = client.get(reverse("stagerun_log", args=[project.pk, run.pk]))
    assert log.status_code == 200 and b"imported.expt" in log.content
    client.force_login(users["carol"])
    assert client.get(reverse("project_status", args=[project.pk])).status_code == 404

    # a rerun gets a new folder and leaves the first one alone
    first = open(expt, "rb").read()
    rerun = StageRun.objects.create(project=project, stage="import")
    rerun.parents.add(run)
    run_import_stage.delay(rerun.pk)
    rerun = wait_for_run(rerun.pk)
    assert rerun.status == "succeeded", rerun.log
    assert rerun.output_dir == os.path.join(project.work_dir, "002_import")
    assert open(expt, "rb").read() == first
    assert files_under(project.work_dir) == ["001_import/imported.expt", "002_import/imported.expt"]
    assert project.sweeps.count() == 1


@pytest.mark.parametrize("bad", ["truncated-binary", "truncated-header", "text"])
def test_bad_file_fails_with_one_clear_message(client, users, folders, smargon_cbf, bad):
    data = folders["data"] / "bad"
    data.mkdir()
    raw = smargon_cbf.read_bytes()
    if bad == "truncated-binary":
        (data / "x_0001.cbf").write_bytes(raw[: len(raw) // 2])
    elif bad == "truncated-header":
        (data / "x_0001.cbf").write_bytes(raw[:1200])
    else:
        (data / "x.cbf").write_text("this is not an image\njust some text\n")

    project, run = create_project(client, users["alice"], data)
    run = wait_for_run(run.pk)
    assert run.status == "failed"
    assert run.error and "\n" not in run.error
    assert "Traceback" not in run.error
    assert not run.error.startswith("Internal error"), run.log  # a user error, not a crash
    assert run.output_dir == ""
    assert files_under(project.work_dir) == []  # no imported.expt, no half-written folder
    assert project.sweeps.count() == 0

    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert html.escape(run.error) in page
    assert "Traceback" not in page


def test_empty_folder_fails_clearly(client, users, folders):
    (folders["data"] / "empty").mkdir()
    (folders["data"] / "empty" / "readme.txt").write_text("no images here")
    project, run = create_project(client, users["alice"], folders["data"] / "empty")
    run = wait_for_run(run.pk)
    assert run.status == "failed"
    assert run.error.startswith("No image files")
    assert files_under(project.work_dir) == []
    status = client.get(reverse("project_status", args=[project.pk])).json()
    assert status["runs"][0]["error"] == run.error


def test_data_folder_removed_from_roots_fails_clearly(client, users, folders, settings):
    (folders["data"] / "xtal").mkdir()
    client.force_login(users["alice"])
    project = Project.objects.create(name="p", owner=users["alice"], data_root=str(folders["outside"]),
                                     work_dir=str(folders["work"] / "p"))
    run = StageRun.objects.create(project=project, stage="import")
    run_import_stage.delay(run.pk)
    run = wait_for_run(run.pk)
    assert run.status == "failed"
    assert "is outside the allowed data roots" in run.error
    assert not os.path.exists(project.work_dir) or files_under(project.work_dir) == []


@pytest.mark.parametrize("bad", ["missing-data-file", "no-nxmx-entry"])
def test_bad_nexus_fails_with_one_clear_message(client, users, folders, bad):
    import h5py
    import numpy as np

    from processing.io.nxmx import write_nxmx
    from tests.processing.io.test_nxmx import synthetic_images, sweep_models

    data = folders["data"] / "bad_nexus"
    data.mkdir()
    if bad == "missing-data-file":
        paths = write_nxmx(str(data / "sweep_master.h5"), *sweep_models(), iter(synthetic_images()),
                           images_per_file=2)
        os.remove(paths[2])
        expected = "sweep_data_000002.h5 (external link from"
    else:
        with h5py.File(data / "plain_master.h5", "w") as h:
            h["entry/data"] = np.zeros((2, 3))
        expected = "has no NXmx entry"

    project, run = create_project(client, users["alice"], data)
    run = wait_for_run(run.pk)
    assert run.status == "failed"
    assert expected in run.error and "\n" not in run.error and "Traceback" not in run.error
    assert files_under(project.work_dir) == [] and project.sweeps.count() == 0
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert html.escape(run.error) in page
