"""Security of the web app (issue 15, part 4), each case with its status code and a check
that nothing of another group's project leaks into the answer:

* another group's project, runs, logs, report JSON and file downloads by guessed ids: 404,
  on every URL of the projects app (walked from the URLconf, GET and POST);
* login required on every URL but the login page (walked from the URLconf, real ids);
* a POST without its CSRF token: 403, nothing changes;
* path escapes (``..``, symlinks, absolute paths, ``~``, NUL) in the new-project form and
  in the reference field — typed, or among the "more parameters" words;
* oversized and malformed uploads (MTZ, PDB/mmCIF, .expt/.refl given as a reference);
* the production settings: SECRET_KEY required unless XTALWEB_DEMO=1 (one clear line),
  DEBUG off, ``check --deploy`` clean, https behind a TLS proxy;
* gunicorn serving the app with its CSS through whitenoise (the server of ``make run``).

Access of members with read-only shares is tested with the review features.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from xtalweb.projects import forms as project_forms
from xtalweb.projects import runs
from xtalweb.projects.models import Project, StageRun, SweepRun

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
#: in the name, logs, errors, parameters and files of alice's project: must never reach carol
SECRET = "S3CRET-7f1c"


def _run(project, stage, parents=(), **fields) -> StageRun:
    fields.setdefault("status", "succeeded")
    fields.setdefault("progress", 1.0)
    run = StageRun.objects.create(project=project, stage=stage, **fields)
    run.parents.set(parents)
    return run


@pytest.fixture
def secured(users, folders):
    """alice's project (lab-a) with an import, an integrate run (one sweep), a merge run
    with its merged.mtz and a failed run, every one carrying SECRET; carol's project (lab-b)."""
    alice = Project.objects.create(name=f"alice {SECRET}", owner=users["alice"], group=users["lab_a"],
                                   data_root=str(folders["data"]))
    work = folders["work"] / str(alice.pk)
    work.mkdir()
    alice.work_dir = str(work)
    alice.save()
    imp = _run(alice, "import", log=f"imported {SECRET}\n", output_dir=str(work / "001_import"),
               summary={"sweeps": [{"name": "crystal_000"}]}, parameters={"data_root": str(folders["data"])})
    integ = _run(alice, "integrate", [imp], log=f"joined {SECRET}\n", output_dir=str(work / "005_integrate"))
    SweepRun.objects.create(run=integ, index=0, name="crystal_000", status="succeeded", progress=1.0,
                            log=f"integrated crystal_000 {SECRET}\n")
    merge_dir = work / "008_merge"
    merge_dir.mkdir()
    (merge_dir / "merged.mtz").write_bytes(f"MTZ {SECRET}".encode())
    merge = _run(alice, "merge", [integ], log=f"merged {SECRET}\n", output_dir=str(merge_dir),
                 parameters={"project_name": SECRET})
    failed = _run(alice, "cosym", [integ], status="failed", error=f"cosym failed: {SECRET}", log=f"{SECRET}\n")
    carol = Project.objects.create(name="carol's project", owner=users["carol"], group=users["lab_b"],
                                   data_root=str(folders["data"]), work_dir=str(folders["work"] / "carol"))
    carol_run = _run(carol, "import", log="carol's import\n")
    return {"project": alice, "import": imp, "integrate": integ, "merge": merge, "failed": failed,
            "carol": carol, "carol_run": carol_run}


# --- walking the URLconf ------------------------------------------------------------------


def named_patterns(resolver=None, namespace: str = ""):
    """``(name, pattern, in_app)`` for every named URL pattern, through every include;
    ``in_app``: a pattern of the projects app (``xtalweb.projects.urls``)."""
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            for name, pattern, in_app in named_patterns(p, ns):
                yield name, pattern, in_app or getattr(p.urlconf_module, "__name__", "") == "xtalweb.projects.urls"
        elif isinstance(p, URLPattern) and p.name:
            yield namespace + p.name, p, False


def url_of(name: str, pattern: URLPattern, ids: dict) -> str:
    """The URL of ``pattern`` with real ids for its arguments (``pk``, ``run_id`` …) and a
    plausible value for any other one."""
    converters = getattr(pattern.pattern, "converters", {})
    params = {k: type(converters[k]).__name__ if k in converters else "str" for k in pattern.pattern.regex.groupindex}
    kwargs = {}
    for key, conv in params.items():
        if key in ids:
            kwargs[key] = ids[key]
        else:
            kwargs[key] = 1 if conv == "IntConverter" else "1"
    return reverse(name, kwargs=kwargs)


def all_urls(ids: dict, app_only: bool = False) -> list[tuple[str, str]]:
    out = []
    for name, pattern, in_app in named_patterns():
        if app_only and not in_app:
            continue
        out.append((name, url_of(name, pattern, ids)))
    return out


def ids_of(secured, run="merge") -> dict:
    return {"pk": secured["project"].pk, "run_id": secured[run].pk, "stage": "cosym", "name": "merged.mtz",
            "app_label": "projects", "object_id": str(secured["project"].pk)}


# --- another group's objects by guessed ids --------------------------------------------


def test_every_url_of_another_groups_project_is_404_and_leaks_nothing(client, users, secured):
    client.force_login(users["carol"])
    n_runs, n_projects = StageRun.objects.count(), Project.objects.count()
    checked = []
    for run in ("merge", "integrate", "failed", "import"):
        for name, url in all_urls(ids_of(secured, run), app_only=True):
            if name in ("project_list", "project_new"):
                continue
            answers = [client.get(url), client.get(url, headers={"Accept": "text/html"}), client.post(url, {})]
            codes = [r.status_code for r in answers]
            # 404 for the GET or the POST (the one the view takes), 405 for the other
            assert set(codes) <= {404, 405} and 404 in codes, (name, url, codes)
            for r in answers:
                body = b"".join(r) if r.streaming else r.content
                assert SECRET.encode() not in body and b"crystal_000" not in body, (name, url)
            checked.append(name)
    assert {"project_detail", "project_status", "stagerun_report", "stagerun_report_json", "stagerun_log",
            "stagerun_log_json", "stagerun_file", "stagerun_new", "stagerun_retry"} <= set(checked)
    assert (StageRun.objects.count(), Project.objects.count()) == (n_runs, n_projects)
    # her own list does not name it
    listing = client.get(reverse("project_list"))
    assert listing.status_code == 200 and SECRET.encode() not in listing.content


def test_runs_of_another_project_through_ones_own_project_are_404(client, users, secured):
    """carol guesses alice's run ids under her own project's URL: 404, nothing read."""
    client.force_login(users["carol"])
    own = secured["carol"].pk
    for run in ("merge", "integrate", "failed"):
        run_id = secured[run].pk
        for name in ("stagerun_report", "stagerun_report_json", "stagerun_log", "stagerun_log_json"):
            r = client.get(reverse(name, args=[own, run_id]), headers={"Accept": "text/html"})
            assert r.status_code == 404 and SECRET.encode() not in r.content, (name, run)
    r = client.get(reverse("stagerun_file", args=[own, secured["merge"].pk, "merged.mtz"]))
    assert r.status_code == 404 and SECRET.encode() not in r.content
    # ids that do not exist at all answer the same
    missing = max(Project.objects.values_list("pk", flat=True)) + 1000
    for url in (reverse("project_detail", args=[missing]), reverse("stagerun_report_json", args=[own, missing]),
                reverse("stagerun_file", args=[missing, missing, "merged.mtz"])):
        assert client.get(url).status_code == 404
    # while alice's group gets the file and the log
    client.force_login(users["bob"])
    p = secured["project"].pk
    got = client.get(reverse("stagerun_file", args=[p, secured["merge"].pk, "merged.mtz"]))
    assert got.status_code == 200 and b"".join(got) == f"MTZ {SECRET}".encode()
    assert SECRET.encode() in client.get(reverse("stagerun_log", args=[p, secured["merge"].pk])).content


# --- login everywhere ----------------------------------------------------------------------


def test_login_required_on_every_url_but_the_login_page(client, secured):
    login, admin_login = reverse("login"), reverse("admin:login")
    public = {"login": 200, "admin:login": 200}
    urls = all_urls(ids_of(secured))
    assert len(urls) > 40  # the whole URLconf: projects, runs, review, auth, admin
    for name, url in urls:
        for method in ("get", "post"):
            r = getattr(client, method)(url)
            body = b"".join(r) if r.streaming else r.content
            assert SECRET.encode() not in body, (name, url)
            if name in public:
                assert r.status_code == public[name], (name, method, r.status_code)
                continue
            if (name, method) == ("logout", "get"):  # log out is a POST only (Django 5): no page at all
                assert r.status_code == 405 and not body
                continue
            assert r.status_code == 302, (name, method, url, r.status_code)
            where = r["Location"]
            if name.startswith("admin:"):
                # the admin's own login page (its logout sends an anonymous user to the admin, then there)
                assert where.startswith(admin_login) or where == reverse("admin:index"), (name, where)
            else:
                assert where.startswith(login + "?next=") or where == login, (name, method, where)
    # the site's root too
    assert client.get("/")["Location"] == f"{login}?next=/"
    # and nothing was created by the anonymous POSTs
    assert StageRun.objects.count() == 5 and Project.objects.count() == 2


# --- CSRF --------------------------------------------------------------------------------------


def test_post_without_csrf_token_is_403(users, secured, folders):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["alice"])
    project, integ = secured["project"], secured["integrate"]
    n_runs, n_projects = StageRun.objects.count(), Project.objects.count()
    posts = [
        (reverse("project_new"), {"name": "csrf", "data_root": str(folders["data"])}),
        (reverse("stagerun_new", args=[project.pk, "cosym"]), {"cosym-parent": integ.pk, "cosym-sweeps": ["0"]}),
        (reverse("stagerun_retry", args=[project.pk, integ.pk]), {}),
        (reverse("scale_drop", args=[project.pk, secured["merge"].pk]), {"exclude_datasets": ["0"]}),
        (reverse("logout"), {}),
    ]
    with mock.patch.object(runs, "dispatch_run") as dispatch:
        for url, data in posts:
            r = client.post(url, data)
            assert r.status_code == 403, (url, r.status_code)
            assert b"CSRF" in r.content and SECRET.encode() not in r.content
    assert not dispatch.called
    assert (StageRun.objects.count(), Project.objects.count()) == (n_runs, n_projects)
    assert client.get(reverse("project_list")).status_code == 200  # the logout did not happen
    # a login form posted without its token: 403 too
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post(reverse("login"), {"username": "alice", "password": "pw-alice"}).status_code == 403
    # the same POST with the form's token goes through
    page = client.get(reverse("project_new"))
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    with mock.patch("xtalweb.projects.tasks.run_import_stage"):
        r = client.post(reverse("project_new"), {"name": "csrf", "data_root": str(folders["data"]),
                                                 "csrfmiddlewaretoken": token})
    assert r.status_code == 302 and Project.objects.filter(name="csrf").exists()


# --- path escapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["absolute-outside", "system-folder", "home", "nul", "sibling-prefix",
                                 "symlink-chain", "dotdot-through-symlink"])
def test_new_project_folder_escapes_are_refused(client, users, folders, how):
    data, outside = folders["data"], folders["outside"]
    if how == "absolute-outside":
        path = str(outside)
    elif how == "system-folder":
        path = "/etc"
    elif how == "home":
        path = "~"
    elif how == "nul":
        path = f"{data}/x\x00/../../outside"
    elif how == "sibling-prefix":  # ".../data-evil" starts with ".../data"
        (data.parent / "data-evil").mkdir()
        path = f"{data}-evil"
    elif how == "symlink-chain":  # a link inside to a link inside to outside
        (data / "hop2").symlink_to(outside, target_is_directory=True)
        (data / "hop1").symlink_to(data / "hop2", target_is_directory=True)
        path = str(data / "hop1")
    else:  # inside, through a link, then up and out
        (data / "deep").mkdir()
        (data / "link").symlink_to(data / "deep", target_is_directory=True)
        path = f"{data}/link/../../outside"
    client.force_login(users["alice"])
    with mock.patch("xtalweb.projects.tasks.run_import_stage") as task:
        response = client.post(reverse("project_new"), {"name": "x", "data_root": path})
    body = response.content.decode()
    assert response.status_code == 200
    assert ("is outside the allowed data roots" in body or "Null characters are not allowed" in body), body[:2000]
    assert Project.objects.count() == 0 and StageRun.objects.count() == 0
    assert os.listdir(folders["work"]) == []
    task.delay.assert_not_called()


def write_mtz(path) -> None:
    """A small merged MTZ (H K L IMEAN SIGIMEAN, I 21 3) a reference reader accepts."""
    import gemmi
    import numpy as np

    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.find_spacegroup_by_name("I 21 3")
    mtz.set_cell_for_all(gemmi.UnitCell(78.1, 78.1, 78.1, 90, 90, 90))
    mtz.add_dataset("reference")
    mtz.add_column("IMEAN", "J")
    mtz.add_column("SIGIMEAN", "Q")
    mtz.set_data(np.array([[1, 1, 0, 100.0, 5.0], [2, 0, 0, 50.0, 3.0], [2, 1, 1, 75.0, 4.0]], dtype=np.float32))
    mtz.write_to_file(str(path))


def post_cosym(client, secured, **fields):
    data = {"cosym-parent": secured["integrate"].pk, "cosym-sweeps": ["0"], "cosym-stability": "false"}
    data.update({f"cosym-{k}": v for k, v in fields.items()})
    with mock.patch.object(runs, "dispatch_run") as dispatch:
        response = client.post(reverse("stagerun_new", args=[secured["project"].pk, "cosym"]), data)
    return response, dispatch


def _new_runs(before: int) -> list[StageRun]:
    return list(StageRun.objects.order_by("id")[before:])


@pytest.mark.parametrize("where, how", [
    ("reference", "dotdot"), ("reference", "absolute-outside"), ("reference", "symlink-out"),
    ("reference", "system-file"), ("words", "absolute-outside"), ("words", "dotdot"), ("words", "system-file"),
])
def test_reference_path_escapes_are_refused(client, users, folders, secured, where, how):
    target = folders["outside"] / "ref.mtz"
    write_mtz(target)  # a good reference, but outside the data roots
    if how == "dotdot":
        path = "../outside/ref.mtz"
    elif how == "absolute-outside":
        path = str(target)
    elif how == "symlink-out":
        (folders["data"] / "ref.mtz").symlink_to(target)
        path = str(folders["data"] / "ref.mtz")
    else:
        path = "/etc/passwd"
    client.force_login(users["alice"])
    n_runs = StageRun.objects.count()
    fields = {"reference": path} if where == "reference" else {"words": f"reference={path}"}
    response, dispatch = post_cosym(client, secured, **fields)
    body = response.content.decode()
    assert response.status_code == 200
    assert "is outside the allowed data roots" in body
    assert "root:" not in body  # nothing of the file is shown
    assert StageRun.objects.count() == n_runs and not dispatch.called


@pytest.mark.parametrize("where", ["reference", "words"])
def test_a_reference_inside_the_data_roots_is_taken(client, users, folders, secured, where):
    """The same form with a reference inside the data roots (through a symlink that stays
    inside): accepted, the run's parameter is the resolved path."""
    (folders["data"] / "refs").mkdir()
    write_mtz(folders["data"] / "refs" / "ref.mtz")
    (folders["data"] / "alias").symlink_to(folders["data"] / "refs", target_is_directory=True)
    path = str(folders["data"] / "alias" / "ref.mtz")
    client.force_login(users["alice"])
    n_runs = StageRun.objects.count()
    fields = {"reference": path} if where == "reference" else {"words": f"reference={path}"}
    response, _ = post_cosym(client, secured, **fields)
    assert response.status_code == 302, response.content.decode()[:3000]
    (run,) = _new_runs(n_runs)
    assert run.stage == "cosym" and run.parameters["reference"] == os.path.realpath(folders["data"] / "refs" / "ref.mtz")


@pytest.mark.parametrize("name, content, message", [
    ("strong.refl", b"\x85\xa6header\xa4junk", "not a readable MTZ file"),
    ("integrated.expt", b'{"__id__": "ExperimentList", "experiment": [', "not a readable MTZ file"),
    ("missing.mtz", None, "no such file"),
    ("model.cif", b"not a cif {", "not a readable PDB or mmCIF model"),
])
def test_a_typed_reference_that_is_no_reference_is_refused(client, users, folders, secured, name, content, message):
    path = folders["data"] / name
    if content is not None:
        path.write_bytes(content)
    client.force_login(users["alice"])
    n_runs = StageRun.objects.count()
    response, dispatch = post_cosym(client, secured, reference=str(path))
    body = response.content.decode()
    assert response.status_code == 200 and message in body, body[:3000]
    assert "Traceback" not in body
    assert StageRun.objects.count() == n_runs and not dispatch.called


# --- uploads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, message", [
    ("ref.mtz", b"not an mtz", "not a readable MTZ file"),
    ("empty.mtz", b"", None),
    ("model.pdb", b"ATOM  garbage\n", "not a readable PDB or mmCIF model"),
    ("model.cif", b"data_x\n_cell.length_a abc\n", "the model has no atoms"),
    ("integrated.expt", b'{"__id__": "ExperimentList", "experiment": [', "not a readable MTZ file"),
    ("strong.refl", b"\x85\xa6header\xa4junk\x00\x01", "not a readable MTZ file"),
    ("../../../escape.mtz", b"junk", "not a readable MTZ file"),
])
def test_malformed_reference_uploads_are_refused(client, users, folders, secured, name, content, message):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(users["alice"])
    n_runs = StageRun.objects.count()
    response, dispatch = post_cosym(client, secured, reference_upload=SimpleUploadedFile(name, content))
    body = response.content.decode()
    assert response.status_code == 200
    if message:
        assert message in body, body[:3000]
    else:  # an empty file is no upload at all: the form says so
        assert "The submitted file is empty" in body
    assert "Traceback" not in body and secured["project"].work_dir not in body  # no server paths
    assert StageRun.objects.count() == n_runs and not dispatch.called
    uploads = Path(secured["project"].work_dir) / "uploads"
    assert not uploads.exists() or os.listdir(uploads) == []  # nothing left behind
    assert not any(p.name.endswith("escape.mtz") for p in folders["data"].parent.rglob("*"))


def test_an_oversized_upload_is_refused_and_not_kept(client, users, secured, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    monkeypatch.setattr(project_forms, "MAX_REFERENCE_MB", 0.001)  # 1 kB
    client.force_login(users["alice"])
    n_runs = StageRun.objects.count()
    response, dispatch = post_cosym(client, secured, reference_upload=SimpleUploadedFile("big.mtz", b"\0" * 20000))
    assert response.status_code == 200
    assert "big.mtz is larger than 0.001 MB" in response.content.decode()
    assert StageRun.objects.count() == n_runs and not dispatch.called
    uploads = Path(secured["project"].work_dir) / "uploads"
    assert not uploads.exists() or os.listdir(uploads) == []


def test_a_good_upload_is_kept_in_the_projects_folder(client, users, secured, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    write_mtz(tmp_path / "good.mtz")
    client.force_login(users["alice"])
    n_runs = StageRun.objects.count()
    upload = SimpleUploadedFile("../good ref.mtz", (tmp_path / "good.mtz").read_bytes())
    response, _ = post_cosym(client, secured, reference_upload=upload)
    assert response.status_code == 302, response.content.decode()[:3000]
    (run,) = _new_runs(n_runs)
    ref = run.parameters["reference"]
    assert os.path.dirname(ref) == os.path.join(secured["project"].work_dir, "uploads")
    assert ref.endswith("-good_ref.mtz") and os.path.isfile(ref)


# --- settings: demo mode, production, check --deploy --------------------------------------------

_CLEAN = ("XTALWEB_DEMO", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER",
          "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE",
          "CSRF_COOKIE_SECURE", "CSRF_TRUSTED_ORIGINS", "USE_X_FORWARDED_HOST", "DATABASE_URL", "STATIC_ROOT")
PRODUCTION_KEY = "k3y-for-the-tests-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"
SHOW = ("import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({k: getattr(s, k) for k in ('DEBUG', 'SECRET_KEY', 'ALLOWED_HOSTS', 'SECURE_SSL_REDIRECT', "
        "'SECURE_PROXY_SSL_HEADER', 'SECURE_HSTS_SECONDS', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', 'CSRF_TRUSTED_ORIGINS')}))")


def django_process(args: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    """``python args…`` in the repository with the real settings module and a clean
    environment (no demo mode, no key) plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    clean.update(DJANGO_SETTINGS_MODULE="xtalweb.settings", DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3", **env)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120)


def test_without_secret_key_or_demo_mode_the_settings_refuse_with_one_line(tmp_path):
    for args in (["manage.py", "check"], ["-c", "import django; django.setup()"]):
        proc = django_process(args, tmp_path)
        assert proc.returncode != 0, proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith("xtalweb: SECRET_KEY is not set") and "XTALWEB_DEMO=1" in lines[0]
    # the WSGI app (gunicorn's workers) exits with status 3, which gunicorn takes as "failed to boot"
    proc = django_process(["-c", "import xtalweb.wsgi"], tmp_path)
    assert proc.returncode == 3 and proc.stderr.strip().startswith("xtalweb: SECRET_KEY is not set")


def test_production_settings_are_secure_and_check_deploy_is_clean(tmp_path):
    proc = django_process(["-c", SHOW], tmp_path, SECRET_KEY=PRODUCTION_KEY, ALLOWED_HOSTS="xtalweb.example.org")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["DEBUG"] is False and s["SECRET_KEY"] == PRODUCTION_KEY
    assert s["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "xtalweb.example.org"]  # no "testserver"
    assert (s["SECURE_SSL_REDIRECT"], s["SESSION_COOKIE_SECURE"], s["CSRF_COOKIE_SECURE"]) == (True, True, True)
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert s["SECURE_HSTS_SECONDS"] == 31536000 and s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and s["SECURE_HSTS_PRELOAD"]
    check = django_process(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path,
                           SECRET_KEY=PRODUCTION_KEY, ALLOWED_HOSTS="xtalweb.example.org")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "System check identified no issues (0 silenced)." in check.stdout
    # every one of them from the environment (a site without its own https, another proxy header)
    proc = django_process(["-c", SHOW], tmp_path, SECRET_KEY=PRODUCTION_KEY, DEBUG="1", SECURE_SSL_REDIRECT="0",
                          SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="no", SECURE_HSTS_SECONDS="0",
                          SECURE_PROXY_SSL_HEADER="X-Scheme", CSRF_TRUSTED_ORIGINS="https://a.example.org,https://b.org")
    s = json.loads(proc.stdout)
    assert s["DEBUG"] is True
    assert (s["SECURE_SSL_REDIRECT"], s["SESSION_COOKIE_SECURE"], s["CSRF_COOKIE_SECURE"], s["SECURE_HSTS_SECONDS"]) \
        == (False, False, False, 0)
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_SCHEME", "https"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://a.example.org", "https://b.org"]


def test_demo_mode_needs_no_key_and_keeps_debug_off(tmp_path):
    proc = django_process(["-c", SHOW], tmp_path, XTALWEB_DEMO="1")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["DEBUG"] is False
    assert len(s["SECRET_KEY"]) >= 50 and "insecure" not in s["SECRET_KEY"]
    assert s["SECRET_KEY"] == (REPO / "var" / "secret_key").read_text().strip()  # the same on every start
    assert (s["SECURE_SSL_REDIRECT"], s["SESSION_COOKIE_SECURE"], s["SECURE_HSTS_SECONDS"]) == (False, False, 0)
    assert "testserver" in s["ALLOWED_HOSTS"]


def test_behind_a_tls_proxy(client, users, settings):
    """The production https settings at work: http is redirected to https; a request the
    proxy marks as https is served with HSTS, and the session cookie is Secure."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    plain = client.get(reverse("login"))
    assert plain.status_code == 301 and plain["Location"] == "https://testserver" + reverse("login")
    proxied = {"X-Forwarded-Proto": "https"}
    page = client.get(reverse("login"), headers=proxied)
    assert page.status_code == 200
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert page["X-Frame-Options"] == "DENY" and page["X-Content-Type-Options"] == "nosniff"
    assert page.cookies["csrftoken"]["secure"]
    login = client.post(reverse("login"), {"username": "alice", "password": "pw-alice"}, headers=proxied)
    assert login.status_code == 302 and login.cookies["sessionid"]["secure"] and login.cookies["sessionid"]["httponly"]


def test_static_files_are_served_by_whitenoise(client):
    r = client.get("/static/css/xtalweb.css")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/css")
    assert b"".join(r.streaming_content).startswith(b"/* xtalweb")
    assert "max-age" in r["Cache-Control"]


# --- gunicorn: the server of `make run` and the docker image ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_gunicorn_serves_the_app_and_whitenoise_its_css(tmp_path):
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed in this environment")
    env = {"XTALWEB_DEMO": "1", "STATIC_ROOT": str(tmp_path / "static")}
    collected = django_process(["manage.py", "collectstatic", "--noinput", "-v", "0"], tmp_path, **env)
    assert collected.returncode == 0, collected.stderr
    port = _free_port()
    proc_env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    proc_env.update(env, DJANGO_SETTINGS_MODULE="xtalweb.settings", DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
                    GUNICORN_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1")
    server = subprocess.Popen([str(gunicorn), "-c", "python:xtalweb.gunicorn_conf"], cwd=REPO, env=proc_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = opener.open(base + "/accounts/login/", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.2)
        html = page.read().decode()
        assert page.status == 200 and page.headers["Server"].startswith("gunicorn")
        assert 'name="password"' in html
        css = re.search(r'href="(/static/css/xtalweb\.[0-9a-f]{12}\.css)"', html).group(1)  # hashed by collectstatic
        got = opener.open(urllib.request.Request(base + css, headers={"Accept-Encoding": "gzip"}), timeout=5)
        assert got.status == 200 and got.headers["Content-Encoding"] == "gzip"
        assert "immutable" in got.headers["Cache-Control"]
        try:
            opener.open(base + "/projects/", timeout=5)
            pytest.fail("/projects/ answered without a login")
        except urllib.error.HTTPError as exc:
            assert exc.code == 302 and exc.headers["Location"] == "/accounts/login/?next=/projects/"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
