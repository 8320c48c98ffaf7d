"""Helpers of the task modules that need neither the worker nor the science; settings; commands."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from xtalweb.projects.permissions import DataPathError
from xtalweb.projects.context import one_line
from xtalweb.projects.datafiles import find_image_files
from xtalweb.projects.folders import new_output_dir
from xtalweb.settings import database_from_url


def test_new_output_dir_numbers_after_existing_runs(tmp_path):
    work = tmp_path / "work"
    assert new_output_dir(str(work), "import") == str(work / "001_import")
    (work / "005_find_spots").mkdir()
    (work / "notes").mkdir()
    assert new_output_dir(str(work), "import") == str(work / "006_import")
    assert sorted(os.listdir(work)) == ["001_import", "005_find_spots", "006_import", "notes"]


def test_find_image_files_picks_images_and_master_files(folders):
    data = folders["data"]
    (data / "a").mkdir()
    for name in ("a/x_0001.cbf", "a/x_0002.CBF", "b_master.h5", "b_data_000001.h5", "c.nxs",
                 "notes.txt", ".hidden.cbf"):
        (data / name).write_bytes(b"")
    found = [os.path.relpath(p, data) for p in find_image_files(str(data))]
    assert found == ["b_master.h5", "c.nxs", "a/x_0001.cbf", "a/x_0002.CBF"]


def test_find_image_files_rejects_file_symlinked_from_outside(folders):
    target = folders["outside"] / "secret.cbf"
    target.write_bytes(b"")
    (folders["data"] / "secret.cbf").symlink_to(target)
    with pytest.raises(DataPathError, match="outside the allowed data roots"):
        find_image_files(str(folders["data"]))


def test_one_line():
    assert one_line("a\n  b\tc ") == "a b c"
    assert one_line("") == "Failed"
    assert len(one_line("x" * 5000)) == 1000


def test_database_from_url():
    db = database_from_url("postgresql://root:p%40ss@db.example:5433/xtal")
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "django.db.backends.postgresql", "xtal", "root", "p@ss", "db.example", "5433")
    assert database_from_url("postgres://root@127.0.0.1/test")["PORT"] == ""
    with pytest.raises(ValueError):
        database_from_url("mysql://x@y/z")


@pytest.mark.django_db
def test_demo_user_command_is_idempotent():
    call_command("xtal_demo_user")
    call_command("xtal_demo_user")
    users = get_user_model().objects.filter(username="demo")
    assert users.count() == 1
    assert authenticate(username="demo", password="demo") == users.get()
    assert list(users.get().groups.values_list("name", flat=True)) == ["demo-lab"]


def test_tasks_of_the_test_session_go_to_its_own_queue(_celery_test_queue):
    from xtalweb.celery import app
    from xtalweb.projects.tasks import run_import_stage

    assert _celery_test_queue.startswith("xtalweb-test-")
    assert app.amqp.router.route({}, run_import_stage.name)["queue"].name == _celery_test_queue
