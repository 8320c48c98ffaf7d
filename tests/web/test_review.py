"""Lab-group review and approved results (issue 15, parts 1 and 2).

A merged project (integrate → cosym → scale → merge of 4 reflection-level tiny crystals,
made once per session by the science and stored as the worker stores runs) owned by
alice (lab-a, with bob); the owner shares it read-only with lab-b (carol); eve is in no
group. No worker: runs posted here are created and never dispatched (the test's
transaction never commits), which is all the forms and the activity list need.

* a read-only member gets 200 on every page and download, 403 on every POST endpoint of
  the app's URL list, and nothing is created; a stranger gets 404 everywhere;
* a note added by one user appears for another (project page, report, data-set pages);
* an "exclude" flag leaves the sweep out of the next run's form, which says why, and out
  of a follow-up run; "suspect" is a warning badge;
* the activity list records run, drop, approve and comment with user, time, parameters;
* approve → the bundle zip holds every listed file, the MTZ reads back with gemmi;
  the approved files are locked (chmod, folders.remove refused, deletion refused);
* in a real browser: the read-only member sees the project and no run form, sees the
  note bob added, and downloads the approved run's bundle.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import zipfile

import pytest
from django.urls import URLPattern, reverse
from django.utils import timezone

from xtalweb.projects.models import (Activity, Approval, DatasetFlag, Note, Project, ProjectShare, StageRun, Sweep,
                                     SweepRun)

from .browser import browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

N = 4
NAMES = [f"crystal_{k:03d}" for k in range(N)]
STAGES = ("integrate", "cosym", "scale", "merge", "export")


@pytest.fixture(scope="session")
def merged_ensemble(tmp_path_factory):
    """integrate → cosym → scale → merge and export of 4 tiny crystals by the science, with the
    web's default parameters: ``{stage: {"parameters", "summary"}, "root", "experiments"}``."""
    from processing.io.expt import read_experiments
    from processing.io.outputs import write_output
    from processing.io.refl import read_reflections
    from processing.simulate import SimulateParams, run_simulate
    from processing.stages import STAGES as REGISTRY

    from xtalweb.projects.stages import build_params, params_json, words_from_values

    root = tmp_path_factory.mktemp("review")
    run_simulate(SimulateParams(preset="tiny", mode="reflections", output_dir=str(root / "integrate"),
                                n_crystals=N, seed=2))
    e = read_experiments(str(root / "integrate" / "integrated.expt"))
    r = read_reflections(str(root / "integrate" / "integrated.refl"))
    out = {"root": root, "experiments": [{"id": k, "identifier": x.identifier, "sweep": k, "name": NAMES[k]}
                                         for k, x in enumerate(e)]}
    for stage, values in (("cosym", {"stability": "false"}), ("scale", {}), ("merge", {}), ("export", {})):
        params = build_params(stage, words_from_values(stage, values))
        e2, r2, summary = REGISTRY[stage].execute(e, r, params)
        (root / stage).mkdir()
        for name in REGISTRY[stage].outputs:
            write_output(str(root / stage / name), e2, r2, params=params)
        out[stage] = {"parameters": params_json(params), "summary": summary}
        if stage in ("cosym", "scale"):
            e, r = e2, r2
    return out


def add_run(project, stage, parent, ens, k) -> StageRun:
    folder = os.path.join(project.work_dir, f"{k:03d}_{stage}")
    shutil.copytree(ens["root"] / stage, folder)
    fields = ({"summary": {"experiments": ens["experiments"], "n_experiments": N}} if stage == "integrate" else
              {"summary": ens[stage]["summary"], "parameters": ens[stage]["parameters"]})
    now = timezone.now()
    run = StageRun.objects.create(project=project, stage=stage, status="succeeded", progress=1.0, output_dir=folder,
                                  started=now, finished=now, log=f"{stage} log line\n", **fields)
    if parent is not None:
        run.parents.add(parent)
    sweeps = {s.name: s for s in project.sweeps.all()}
    for i, name in enumerate(NAMES):
        SweepRun.objects.create(run=run, index=i, name=name, sweep=sweeps[name], unit=i if stage == "integrate" else 0,
                                status="succeeded", progress=1.0, started=now, finished=now,
                                log=f"{stage} of {name}\n" if stage == "integrate" else "")
    return run


@pytest.fixture
def merged(merged_ensemble, folders, users, django_user_model):
    """alice's project (lab-a) with integrate, cosym, scale and merge runs (no export yet),
    shared read-only with lab-b (carol); eve is in no group."""
    project = Project.objects.create(name="review", owner=users["alice"], group=users["lab_a"],
                                     data_root=str(folders["data"]))
    project.work_dir = str(folders["work"] / str(project.pk))
    project.save()
    os.makedirs(project.work_dir)
    Sweep.objects.bulk_create([Sweep(project=project, name=n, n_images=10) for n in NAMES])
    out, parent = {"project": project}, None
    for k, stage in enumerate(STAGES[:-1], start=5):
        parent = out[stage] = add_run(project, stage, parent, merged_ensemble, k)
    out["share"] = ProjectShare.objects.create(project=project, group=users["lab_b"], access="read",
                                               created_by=users["alice"])
    out["eve"] = django_user_model.objects.create_user("eve", password="pw-eve")
    return out


def counts() -> dict:
    return {m.__name__: m.objects.count() for m in (StageRun, SweepRun, Activity, Approval, DatasetFlag, Note,
                                                    ProjectShare, Project, Sweep)}


def project_urls(m) -> dict[str, str]:
    """Every URL of the projects app (but the list and the new-project form) for this project."""
    from xtalweb.projects.urls import urlpatterns

    values = {"pk": m["project"].pk, "run_id": m["merge"].pk, "stage": "merge", "share_id": m["share"].pk,
              "name": "merged.mtz"}
    sweep = m["project"].sweeps.order_by("pk").first()
    if sweep is not None:
        values["sweep_id"] = sweep.pk
    out = {}
    for p in urlpatterns:
        assert isinstance(p, URLPattern)
        keys = list(p.pattern.converters)
        if "pk" in keys and set(keys) <= set(values):
            out[p.name] = reverse(p.name, kwargs={k: values[k] for k in keys})
    return out


#: the endpoints that change something (every other one answers GET only)
WRITE_ENDPOINTS = {"stagerun_new", "stagerun_retry", "scale_drop", "merge_at_d_min", "delta_cc_half_drop",
                   "cluster_merge", "note_add", "flag_set", "share_add", "share_remove", "approve_run",
                   "run_export_for_bundle"}


def post_data(m, name) -> dict:
    """A POST that would change something for a read-write member."""
    return {"stagerun_new": {"merge-parent": m["scale"].pk, "merge-sweeps": ["0", "1"], "merge-d_min": "2.0"},
            "scale_drop": {"exclude_datasets": ["1"]},
            "merge_at_d_min": {"d_min": "2.0"}, "cluster_merge": {"identifiers": ["a", "b"]},
            "note_add": {"about": "project", "text": "not allowed"},
            "flag_set": {"dataset": NAMES[1], "kind": "exclude", "reason": "x"},
            "share_add": {"username": "eve", "access": "write"},
            }.get(name, {})


def test_read_only_member_sees_everything_changes_nothing(client, users, merged):
    from xtalweb.projects import review

    project, merge = merged["project"], merged["merge"]
    review.approve(merge, users["alice"])
    urls = project_urls(merged)
    assert WRITE_ENDPOINTS <= set(urls)
    # GET: every page and download 200 for carol (read-only)
    client.force_login(users["carol"])
    # (the image viewer needs images, which this reflection-level project has not: test_viewer checks its access)
    gets = {name: url for name, url in urls.items() if name not in WRITE_ENDPOINTS and "viewer" not in name}
    gets["compare_runs"] += f"?a={merged['scale'].pk}&b={merge.pk}"
    for name, url in gets.items():
        response = client.get(url)
        assert response.status_code == 200, (name, url, response.status_code)
    page = client.get(urls["project_detail"]).content.decode()
    assert 'id="read-only"' in page and "read-only" in page and "no run can be started" in page
    assert 'id="form-merge"' not in page and f'action="/projects/{project.pk}/' not in page  # no form at all
    assert "note-form" not in page and "flag-form" not in page and "share-form" not in page
    status = client.get(urls["project_status"]).json()
    assert status["project"]["access"] == "read"
    report = client.get(merge.get_report_url()).content.decode()
    assert "approve-form" not in report and "note-form" not in report and "bundle.zip" in report
    # POST: every endpoint that changes something is 403 and nothing changes; the others are GET-only (405)
    before = counts()
    forbidden = set()
    for name, url in urls.items():
        response = client.post(url, post_data(merged, name))
        assert response.status_code in (403, 405), (name, response.status_code)
        if response.status_code == 403:
            forbidden.add(name)
            assert b"read-only access" in response.content or b"Only the project&#x27;s owner" in response.content
    assert forbidden == WRITE_ENDPOINTS
    assert counts() == before
    assert Approval.objects.count() == 1 and not Note.objects.exists() and not DatasetFlag.objects.exists()
    # the same POSTs change things for bob (read-write, lab-a): the 403s were about the permission
    client.force_login(users["bob"])
    for name in ("stagerun_new", "scale_drop", "note_add", "flag_set"):
        n = counts()
        url = urls[name] if name != "scale_drop" else reverse(name, args=[project.pk, merged["scale"].pk])
        assert client.post(url, post_data(merged, name)).status_code == 302, name
        assert counts() != n, name
    assert client.post(urls["share_add"], post_data(merged, "share_add")).status_code == 403  # owner only
    # a stranger: 404 on everything, GET or POST; nobody logged in: the login page
    client.force_login(merged["eve"])
    for name, url in urls.items():
        statuses = (client.get(url).status_code, client.post(url, post_data(merged, name)).status_code)
        assert set(statuses) <= {404, 405} and 404 in statuses, (name, statuses)  # 405: the wrong method
    assert client.get(urls["project_detail"]).status_code == 404
    assert client.get(urls["bundle_download"]).status_code == 404
    assert project.pk not in [p.pk for p in client.get(reverse("project_list")).context["projects"]]
    client.logout()
    before = counts()
    assert client.post(urls["note_add"], post_data(merged, "note_add")).status_code == 302  # to the login page
    assert counts() == before


def test_owner_shares_read_only_then_read_write(client, users, merged):
    project = merged["project"]
    merged["share"].delete()
    client.force_login(users["carol"])
    assert client.get(project.get_absolute_url()).status_code == 404
    client.force_login(users["alice"])
    page = client.get(project.get_absolute_url()).content.decode()
    assert 'id="share-form"' in page
    assert client.post(reverse("share_add", args=[project.pk]),
                       {"group": users["lab_b"].pk, "access": "read"}).status_code == 302
    client.force_login(users["carol"])
    assert client.get(project.get_absolute_url()).status_code == 200
    assert client.post(reverse("note_add", args=[project.pk]), {"text": "hi"}).status_code == 403
    client.force_login(users["alice"])
    client.post(reverse("share_add", args=[project.pk]), {"group": users["lab_b"].pk, "access": "write"})
    assert ProjectShare.objects.get(project=project).access == "write"
    client.force_login(users["carol"])
    assert client.post(reverse("note_add", args=[project.pk]), {"text": "hi"}).status_code == 302
    assert Note.objects.get().author == users["carol"]
    share = ProjectShare.objects.get(project=project)
    assert client.post(reverse("share_remove", args=[project.pk, share.pk])).status_code == 403
    client.force_login(users["alice"])
    client.post(reverse("share_remove", args=[project.pk, share.pk]))
    client.force_login(users["carol"])
    assert client.get(project.get_absolute_url()).status_code == 404


def test_a_note_by_one_user_appears_for_another(client, users, merged):
    project, merge = merged["project"], merged["merge"]
    client.force_login(users["alice"])
    url = reverse("note_add", args=[project.pk])
    for about, text in (("project", "use the merge at 2.0 Å"), (f"run:{merge.pk}", "<b>CC½ dips</b> at 2.2 Å"),
                        (f"dataset:{NAMES[2]}", "crystal 2 is split")):
        assert client.post(url, {"about": about, "text": text}).status_code == 302
    assert client.post(url, {"about": "dataset:nope", "text": "x"}).status_code == 302
    assert client.post(url, {"about": "project", "text": "   "}).status_code == 302
    assert Note.objects.count() == 3
    for user in ("bob", "carol"):
        client.force_login(users[user])
        page = client.get(project.get_absolute_url()).content.decode()
        assert "use the merge at 2.0 Å" in page and "crystal 2 is split" in page
        assert "&lt;b&gt;CC½ dips&lt;/b&gt;" in page and "<b>CC½ dips" not in page  # escaped
        report = client.get(merge.get_report_url()).content.decode()
        assert "&lt;b&gt;CC½ dips&lt;/b&gt; at 2.2 Å" in report and "— alice" in report
        assert "crystal 2 is split" not in client.get(merged["scale"].get_report_url()).content.decode()
        fate = client.get(reverse("project_datasets", args=[project.pk])).content.decode()
        assert "crystal 2 is split" in fate


def test_exclude_flag_leaves_the_sweep_out_of_the_next_run(client, users, merged, merged_ensemble):
    from xtalweb.projects import runs
    from xtalweb.projects.forms import StageRunForm

    project, integ = merged["project"], merged["integrate"]
    client.force_login(users["bob"])
    url = reverse("flag_set", args=[project.pk])
    client.post(url, {"dataset": NAMES[1], "kind": "exclude", "reason": "split spots, two lattices"})
    client.post(url, {"dataset": NAMES[3], "kind": "suspect", "reason": "weak"})
    assert client.post(url, {"dataset": "nope", "kind": "exclude"}).status_code == 302
    assert client.post(url, {"dataset": NAMES[0], "kind": "bogus"}).status_code == 302
    assert dict(DatasetFlag.objects.values_list("dataset", "kind")) == {NAMES[1]: "exclude", NAMES[3]: "suspect"}
    form = StageRunForm("cosym", project)
    assert form.input_run == integ
    assert [c[0] for c in form.fields["sweeps"].choices] == [0, 1, 2, 3]  # still offered
    assert form.fields["sweeps"].initial == [0, 2, 3]
    assert [(s["name"], s["reason"], s["author"]) for s in form.flagged_out] == \
        [(NAMES[1], "split spots, two lattices", "bob")]
    page = client.get(project.get_absolute_url()).content.decode()
    form_html = client.get(reverse("stagerun_new", args=[project.pk, "cosym"])).content.decode()
    assert 'value="0" id="id_cosym-sweeps_0" checked' in form_html.replace('name="cosym-sweeps" ', "")
    assert 'value="1" id="id_cosym-sweeps_1">' in form_html.replace('name="cosym-sweeps" ', "")
    assert "flagged <strong>exclude</strong>" in form_html and "split spots, two lattices" in form_html
    assert "⚠ suspect" in form_html and "weak" in form_html
    assert 'class="badge flag-suspect"' in page and 'class="badge flag-exclude"' in page
    # a follow-up run (queued by the app after a run succeeds) leaves it out too
    again = add_run(project, "integrate", None, merged_ensemble, 10)
    again.follow_up = ["cosym"]
    again.save()
    nxt = runs.queue_follow_up(again.pk)
    assert [r.name for r in nxt.sweep_runs.order_by("index")] == [NAMES[0], NAMES[2], NAMES[3]]
    # cleared: ticked again
    client.post(url, {"dataset": NAMES[1], "kind": "none"})
    assert StageRunForm("cosym", project).fields["sweeps"].initial == [0, 1, 2, 3]


def test_activity_records_run_drop_approve_comment(client, users, merged):
    project, scale, merge = merged["project"], merged["scale"], merged["merge"]
    start = timezone.now()
    client.force_login(users["alice"])
    data = post_data(merged, "stagerun_new")
    data["merge-sweeps"] = [str(k) for k in range(N)]
    assert client.post(reverse("stagerun_new", args=[project.pk, "merge"]), data).status_code == 302
    client.force_login(users["bob"])
    assert client.post(reverse("scale_drop", args=[project.pk, scale.pk]), {"exclude_datasets": ["2"]}).status_code == 302
    assert client.post(reverse("approve_run", args=[project.pk, merge.pk]), {"comment": "for PDB"}).status_code == 302
    client.force_login(users["alice"])
    client.post(reverse("note_add", args=[project.pk]), {"about": f"run:{merge.pk}", "text": "looks good"})
    rows = list(Activity.objects.filter(project=project).order_by("id"))
    assert [(a.user.username, a.verb) for a in rows] == [("alice", "ran"), ("bob", "dropped"), ("bob", "approved"),
                                                         ("alice", "commented")]
    ran, dropped, approved, commented = rows
    assert all(start <= a.created <= timezone.now() for a in rows)
    new_merge = StageRun.objects.filter(stage="merge").latest("id")
    assert ran.run == new_merge and ran.parameters == new_merge.parameters and ran.parameters["d_min"] == 2.0
    new_scale = StageRun.objects.filter(stage="scale").latest("id")
    assert dropped.run == new_scale and dropped.parameters["exclude_datasets"] == [2]
    assert f"left out data set(s) 2 of scale run #{scale.pk}" in dropped.detail
    assert approved.run == merge and approved.detail == "for PDB" and approved.parameters == merge.parameters
    assert commented.run == merge and "looks good" in commented.detail
    for user in ("alice", "carol"):
        client.force_login(users[user])
        page = client.get(project.get_absolute_url()).content.decode()
        table = page.split('id="activity"', 1)[1]
        assert "<code>d_min=2.0</code>" in table and "<code>exclude_datasets=2</code>" in table
        assert table.index("looks good") < table.index(f"merge #{merge.pk}</a>: for PDB") \
            < table.index(f"scale #{new_scale.pk}</a>: left out data set(s) 2")
        full = client.get(reverse("project_activity", args=[project.pk])).content.decode()
        assert full.count('<tr class="verb-') == 4


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return sorted(n.split("/", 1)[1] for n in z.namelist())


def test_approve_bundle_and_locked_files(client, users, merged, merged_ensemble, tmp_path):
    import gemmi
    import numpy
    from django.db.models import ProtectedError

    from xtalweb.projects import folders as run_folders
    from xtalweb.projects.review import LockedError

    project, scale, merge = merged["project"], merged["scale"], merged["merge"]
    bundle = reverse("bundle_download", args=[project.pk, merge.pk])
    client.force_login(users["bob"])
    assert client.get(bundle).status_code == 404  # not approved yet
    client.post(reverse("approve_run", args=[project.pk, scale.pk]))  # not a merge run: refused
    assert not Approval.objects.exists()
    assert client.post(reverse("approve_run", args=[project.pk, merge.pk]), {"comment": "deposit"}).status_code == 302
    approval = Approval.objects.get()
    mtz = os.path.join(merge.output_dir, "merged.mtz")
    assert approval.run == merge and approval.approved_by == users["bob"] and list(approval.files) == ["merged.mtz"]
    report = client.get(merge.get_report_url()).content.decode()
    assert "approved</span> by bob" in report and 'id="no-export"' in report and "Run export from scale run" in report

    # locked: read-only on disk, folders.remove refused, deletion refused, a second approval refused
    assert stat.S_IMODE(os.stat(mtz).st_mode) & 0o222 == 0
    assert stat.S_IMODE(os.stat(merge.output_dir).st_mode) & 0o222 == 0
    with pytest.raises(LockedError):
        run_folders.remove(merge.output_dir)
    with pytest.raises(LockedError):
        run_folders.remove(project.work_dir)
    assert os.path.isfile(mtz)
    with pytest.raises(ProtectedError):
        StageRun.objects.get(pk=merge.pk).delete()
    with pytest.raises(ProtectedError):
        Project.objects.get(pk=project.pk).delete()
    client.post(reverse("approve_run", args=[project.pk, merge.pk]))
    assert Approval.objects.count() == 1 and StageRun.objects.filter(pk=merge.pk).exists()

    # the bundle without an export run: merged.mtz, the merging table, parameters, logs, versions; README says so
    names_base = ["README.txt", "logs/001_integrate_run{}.log", "logs/002_cosym_run{}.log",
                  "logs/003_scale_run{}.log", "logs/004_merge_run{}.log", "merged.mtz", "merging_statistics.txt",
                  "parameters.json", "versions.txt"]
    ids = [merged[s].pk for s in ("integrate", "cosym", "scale", "merge")]
    client.force_login(users["carol"])  # read-only members download it too
    got = client.get(bundle)
    assert got.status_code == 200 and got["Content-Type"] == "application/zip"
    data = b"".join(got.streaming_content)
    expected = sorted(n.format(ids[int(n[5:8]) - 1]) if n.startswith("logs/") else n for n in names_base)
    assert zip_names(data) == expected
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        top = z.namelist()[0].split("/")[0]
        readme = z.read(f"{top}/README.txt").decode()
        assert f"no export run from scale run #{scale.pk}" in readme and "Approved by bob" in readme
    # an export run from the same scale run: its unmerged MTZ and mmCIF go in
    client.force_login(users["alice"])
    client.post(reverse("run_export_for_bundle", args=[project.pk, merge.pk]))
    queued = StageRun.objects.get(stage="export")
    assert list(queued.parents.all()) == [scale] and queued.status == "queued" and queued.output_dir == ""
    queued.delete()
    export = add_run(project, "export", scale, merged_ensemble, 9)
    data = b"".join(client.get(bundle).streaming_content)
    names = zip_names(data)
    assert names == sorted(expected + ["scaled_unmerged.mtz", "scaled.cif", f"logs/005_export_run{export.pk}.log"])
    out = tmp_path / "unzipped"
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(out)
    (top,) = os.listdir(out)
    out = out / top
    merged_mtz = gemmi.read_mtz_file(str(out / "merged.mtz"))
    assert merged_mtz.nreflections == merge.summary["n_unique"] and "IMEAN" in [c.label for c in merged_mtz.columns]
    unmerged = gemmi.read_mtz_file(str(out / "scaled_unmerged.mtz"))
    assert unmerged.nreflections == merged_ensemble["export"]["summary"]["n_observations"]
    assert (out / "scaled.cif").read_text().lstrip().startswith("data_")
    table = (out / "merging_statistics.txt").read_text()
    overall = merge.summary["merging_statistics"]["overall"]
    assert "Merging statistics by resolution bin" in table and "Summary of merging statistics" in table
    assert f"{overall['cc_half']:.3f}" in table and str(overall["n_obs"]) in table
    import json

    params = json.loads((out / "parameters.json").read_text())
    assert [r["id"] for r in params["runs"]] == ids + [export.pk]
    assert params["runs"][3]["parameters"] == merge.parameters and params["runs"][3]["parents"] == [scale.pk]
    assert "merge log line" in (out / f"logs/004_merge_run{merge.pk}.log").read_text()
    assert "integrate of crystal_002" in (out / f"logs/001_integrate_run{ids[0]}.log").read_text()
    versions = (out / "versions.txt").read_text()
    assert f"numpy {numpy.__version__}" in versions and f"gemmi {gemmi.__version__}" in versions
    assert versions.startswith("xtalweb 0.1.0")
    readme = (out / "README.txt").read_text()
    assert f"export run #{export.pk}" in readme and review_sha(out / "merged.mtz") in readme
    assert review_sha(out / "merged.mtz") == approval.files["merged.mtz"]
    bundles = os.listdir(os.path.join(project.work_dir, "bundles"))
    assert len(bundles) == 2 and not any(b.endswith(".partial") for b in bundles)  # atomic, one per content
    # a file changed behind the app's back (root ignores the chmod): no bundle, a clear message
    os.chmod(merge.output_dir, 0o755)
    os.chmod(mtz, 0o644)
    with open(mtz, "ab") as f:
        f.write(b"tampered")
    shutil.rmtree(os.path.join(project.work_dir, "bundles"))
    got = client.get(bundle)
    assert got.status_code == 409 and b"changed on disk since its approval" in got.content


def review_sha(path) -> str:
    from xtalweb.projects.review import sha256

    return sha256(str(path))


@pytest.mark.django_db(transaction=True)
def test_review_in_the_browser(browser, live_server, client, users, merged, tmp_path):  # noqa: F811
    """bob adds a note in the browser; carol (read-only) sees it, sees no run form and the
    reason, and downloads the approved run's bundle."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from xtalweb.projects import review

    from .browser import login, save_screenshot, severe_errors

    project, merge = merged["project"], merged["merge"]
    review.approve(merge, users["alice"], "for deposition")
    review.set_flag(project, users["alice"], NAMES[1], "exclude", "split spots")
    login(browser, live_server, client, users["bob"])
    browser.get(f"{live_server.url}{project.get_absolute_url()}")
    browser.find_element(By.CSS_SELECTOR, "#form-cosym summary").click()  # the flagged sweep is left out, with why
    cosym = browser.find_element(By.ID, "form-cosym")
    WebDriverWait(browser, 10).until(lambda b: cosym.find_elements(By.TAG_NAME, "form"))  # fetched when opened
    assert "flagged exclude by a reviewer" in cosym.text and "split spots" in cosym.text
    boxes = {e.get_attribute("value"): e.is_selected()
             for e in cosym.find_elements(By.CSS_SELECTOR, "input[name='cosym-sweeps']")}
    assert boxes == {"0": True, "1": False, "2": True, "3": True}
    browser.execute_script("arguments[0].scrollIntoView()", cosym)
    save_screenshot(browser, tmp_path, "review_flagged_form.png")
    form = browser.find_element(By.ID, "note-form")
    form.find_element(By.CSS_SELECTOR, f"option[value='dataset:{NAMES[2]}']").click()
    form.find_element(By.NAME, "text").send_keys("crystal 2 is split — leave it out next time")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda b: "Note added on data set" in b.page_source)
    save_screenshot(browser, tmp_path, "review_writer.png")

    browser.delete_all_cookies()
    login(browser, live_server, client, users["carol"])
    browser.get(f"{live_server.url}{project.get_absolute_url()}")
    assert "read-only" in browser.find_element(By.ID, "access").text
    assert "cannot start or retry runs" in browser.find_element(By.ID, "read-only").text
    run_forms = browser.find_element(By.ID, "run-forms")
    assert "no run can be started" in run_forms.text and not run_forms.find_elements(By.TAG_NAME, "form")
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action*='/runs/new/']")
    note = browser.find_element(By.CSS_SELECTOR, f"#sweeps tbody tr:nth-child(3) td.review").text
    assert "crystal 2 is split — leave it out next time" in note and "bob" in note
    assert "exclude" in browser.find_element(By.CSS_SELECTOR, "#sweeps tbody tr:nth-child(2) td.review").text
    assert "crystal 2 is split" in browser.find_element(By.ID, "notes").text
    assert not browser.find_elements(By.ID, "note-form")
    browser.set_window_size(1300, 2600)
    save_screenshot(browser, tmp_path, "review_read_only.png")

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.get(f"{live_server.url}{merge.get_report_url()}")
    assert "approved" in browser.find_element(By.ID, "approval").text
    save_screenshot(browser, tmp_path, "review_approved_report.png")
    browser.find_element(By.ID, "bundle-link").click()
    WebDriverWait(browser, 30).until(lambda b: any(n.endswith(".zip") for n in os.listdir(downloads)))
    (name,) = [n for n in os.listdir(downloads) if n.endswith(".zip")]
    assert name == f"review-merge-{merge.pk}.zip"
    with zipfile.ZipFile(downloads / name) as z:
        names = {n.split("/", 1)[1] for n in z.namelist()}
    assert {"merged.mtz", "README.txt", "merging_statistics.txt", "parameters.json", "versions.txt"} <= names
    assert severe_errors(browser) == []
