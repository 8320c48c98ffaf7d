"""Access rules: login, project visibility by owner/group, data roots."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from xtalweb.projects.models import Project, StageRun
from xtalweb.projects.permissions import DataPathError, resolve_data_path, visible_projects


def make_project(owner, group, folders, name="p") -> Project:
    project = Project.objects.create(name=name, owner=owner, group=group, data_root=str(folders["data"]))
    project.work_dir = str(folders["work"] / str(project.pk))
    project.save()
    return project


# --- resolve_data_path ---------------------------------------------------------------


def test_resolve_inside_root(folders):
    sub = folders["data"] / "crystal1"
    sub.mkdir()
    assert resolve_data_path(str(sub)) == os.path.realpath(sub)
    assert resolve_data_path(str(folders["data"])) == os.path.realpath(folders["data"])
    # relative paths are taken relative to the first data root
    assert resolve_data_path("crystal1") == os.path.realpath(sub)


def test_resolve_rejects_dotdot_escape(folders):
    with pytest.raises(DataPathError, match="is outside the allowed data roots"):
        resolve_data_path(f"{folders['data']}/../outside")
    with pytest.raises(DataPathError, match="is outside the allowed data roots"):
        resolve_data_path("../outside")


def test_resolve_rejects_symlink_out_but_not_in(folders):
    (folders["data"] / "out").symlink_to(folders["outside"], target_is_directory=True)
    with pytest.raises(DataPathError, match="is outside the allowed data roots"):
        resolve_data_path(str(folders["data"] / "out"))
    (folders["data"] / "real").mkdir()
    (folders["data"] / "alias").symlink_to(folders["data"] / "real", target_is_directory=True)
    assert resolve_data_path(str(folders["data"] / "alias")) == os.path.realpath(folders["data"] / "real")


def test_resolve_rejects_sibling_with_common_prefix(folders, tmp_path):
    sibling = tmp_path / "data2"  # "…/data2" starts with "…/data" but is not inside it
    sibling.mkdir()
    with pytest.raises(DataPathError):
        resolve_data_path(str(sibling))


def test_resolve_accepts_any_of_several_roots(folders, settings):
    settings.DATA_ROOTS = [str(folders["data"]), str(folders["outside"])]
    assert resolve_data_path(str(folders["outside"])) == os.path.realpath(folders["outside"])


# --- login -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name, args", [
    ("project_list", []), ("project_new", []), ("project_detail", [1]),
    ("project_status", [1]), ("stagerun_log", [1, 1]),
])
def test_login_required(client, name, args):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.django_db
def test_login_page_and_login(client, users):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="password"' in page.content
    bad = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert bad.status_code == 200
    assert b"didn't match" in bad.content
    good = client.post(reverse("login"), {"username": "alice", "password": "pw-alice"})
    assert good.status_code == 302
    assert good["Location"] == reverse("project_list")
    assert client.get(reverse("project_list")).status_code == 200


# --- visibility -------------------------------------------------------------------------


@pytest.mark.django_db
def test_project_list_shows_only_visible_projects(client, users, folders):
    shared = make_project(users["alice"], users["lab_a"], folders, name="alice-shared")
    private = make_project(users["alice"], None, folders, name="alice-private")
    carols = make_project(users["carol"], users["lab_b"], folders, name="carol-project")

    assert set(visible_projects(users["alice"])) == {shared, private}
    assert set(visible_projects(users["bob"])) == {shared}
    assert set(visible_projects(users["carol"])) == {carols}

    client.force_login(users["bob"])
    body = client.get(reverse("project_list")).content.decode()
    assert "alice-shared" in body
    assert "alice-private" not in body
    assert "carol-project" not in body


@pytest.mark.django_db
def test_group_member_sees_project_other_group_gets_404(client, users, folders):
    project = make_project(users["alice"], users["lab_a"], folders)
    run = StageRun.objects.create(project=project, stage="import", log="line one\nline two\n")
    urls = [
        reverse("project_detail", args=[project.pk]),
        reverse("project_status", args=[project.pk]),
        reverse("stagerun_log", args=[project.pk, run.pk]),
    ]
    for user, expected in (("alice", 200), ("bob", 200), ("carol", 404)):
        client.force_login(users[user])
        assert [client.get(u).status_code for u in urls] == [expected] * 3, user

    client.force_login(users["bob"])
    log = client.get(urls[2])
    assert log["Content-Type"] == "text/plain; charset=utf-8"
    assert log.content == b"line one\nline two\n"


@pytest.mark.django_db
def test_private_project_hidden_from_group(client, users, folders):
    project = make_project(users["alice"], None, folders)
    client.force_login(users["bob"])
    assert client.get(reverse("project_detail", args=[project.pk])).status_code == 404
    assert client.get(reverse("project_status", args=[project.pk])).status_code == 404
    assert client.get(reverse("project_detail", args=[project.pk + 1000])).status_code == 404


@pytest.mark.django_db
def test_log_of_a_run_of_another_project_is_404(client, users, folders):
    mine = make_project(users["alice"], users["lab_a"], folders)
    theirs = make_project(users["carol"], users["lab_b"], folders)
    their_run = StageRun.objects.create(project=theirs, stage="import", log="secret")
    client.force_login(users["alice"])
    response = client.get(reverse("stagerun_log", args=[mine.pk, their_run.pk]))
    assert response.status_code == 404
    assert b"secret" not in response.content
