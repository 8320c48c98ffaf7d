"""The new-project form: validation (data roots, groups) and what a valid submit creates."""

from __future__ import annotations

import os
from unittest import mock

import pytest
from django.urls import reverse

from xtalweb.projects.models import Project, StageRun

pytestmark = pytest.mark.django_db


def post_new(client, **data):
    return client.post(reverse("project_new"), data)


@pytest.mark.parametrize("how", ["dotdot", "relative-dotdot", "symlink"])
def test_folder_outside_data_roots_is_refused(client, users, folders, how):
    if how == "dotdot":
        path = f"{folders['data']}/../outside"
    elif how == "relative-dotdot":
        path = "../outside"
    else:
        (folders["data"] / "escape").symlink_to(folders["outside"], target_is_directory=True)
        path = str(folders["data"] / "escape")
    client.force_login(users["alice"])
    with mock.patch("xtalweb.projects.tasks.run_import_stage") as task:
        response = post_new(client, name="x", data_root=path)
    assert response.status_code == 200
    assert "is outside the allowed data roots" in response.content.decode()
    assert Project.objects.count() == 0
    assert StageRun.objects.count() == 0
    assert os.listdir(folders["work"]) == []
    task.delay.assert_not_called()


def test_missing_folder_is_refused(client, users, folders):
    client.force_login(users["alice"])
    response = post_new(client, name="x", data_root=str(folders["data"] / "nope"))
    assert response.status_code == 200
    assert "is not an existing folder" in response.content.decode()
    assert Project.objects.count() == 0


def test_group_must_be_one_of_the_users_groups(client, users, folders):
    client.force_login(users["alice"])
    form_page = client.get(reverse("project_new")).content.decode()
    assert "lab-a" in form_page and "lab-b" not in form_page
    response = post_new(client, name="x", group=users["lab_b"].pk, data_root=str(folders["data"]))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Project.objects.count() == 0


def test_valid_submit_creates_project_workdir_run_and_dispatches(client, users, folders, django_capture_on_commit_callbacks):
    (folders["data"] / "xtal").mkdir()
    client.force_login(users["alice"])
    with mock.patch("xtalweb.projects.tasks.run_import_stage") as task:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = post_new(client, name="Lysozyme", group=users["lab_a"].pk, data_root=str(folders["data"] / "xtal"))
    project = Project.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("project_detail", args=[project.pk])
    assert project.owner == users["alice"] and project.group == users["lab_a"]
    assert project.data_root == os.path.realpath(folders["data"] / "xtal")
    assert project.work_dir == os.path.join(os.path.realpath(folders["work"]), str(project.pk))
    assert os.path.isdir(project.work_dir)
    run = StageRun.objects.get()
    assert (run.project, run.stage, run.status, run.progress) == (project, "import", "queued", 0.0)
    assert len(callbacks) == 1
    task.delay.assert_called_once_with(run.pk)


def test_dispatch_waits_for_commit(client, users, folders, django_capture_on_commit_callbacks):
    client.force_login(users["alice"])
    with mock.patch("xtalweb.projects.tasks.run_import_stage") as task:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            post_new(client, name="p", data_root=str(folders["data"]))
        task.delay.assert_not_called()  # not before the transaction commits
        assert len(callbacks) == 1


def test_project_page_shows_run_status_and_error(client, users, folders):
    project = Project.objects.create(name="p", owner=users["alice"], data_root=str(folders["data"]))
    StageRun.objects.create(project=project, stage="import", status="failed",
                            error="image.cbf: truncated <binary> section")
    client.force_login(users["alice"])
    body = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert "failed" in body
    assert "image.cbf: truncated &lt;binary&gt; section" in body  # shown, and escaped
    status = client.get(reverse("project_status", args=[project.pk])).json()
    assert [(r["stage"], r["status"], r["error"]) for r in status["runs"]] == [
        ("import", "failed", "image.cbf: truncated <binary> section")
    ]
    assert status["sweeps"] == []


def test_unreachable_broker_fails_the_run_visibly(client, users, folders, django_capture_on_commit_callbacks):
    client.force_login(users["alice"])
    with mock.patch("xtalweb.projects.tasks.run_import_stage") as task:
        task.delay.side_effect = ConnectionError("Error 111 connecting to redis")
        with django_capture_on_commit_callbacks(execute=True):
            response = post_new(client, name="p", data_root=str(folders["data"]))
    assert response.status_code == 302
    run = StageRun.objects.get()
    assert run.status == "failed"
    assert run.error.startswith("Could not queue the import")
    assert "ConnectionError" in run.log
