"""The run forms (built from the stages' parameter dataclasses), their validation, who
may use them and the report endpoints; the preset form. No worker: dispatch is
captured or mocked, so nothing here reaches the science beyond the parameter classes."""

from __future__ import annotations

import html
import os
from unittest import mock

import pytest
from django.urls import reverse

from xtalweb.projects import context, runs
from xtalweb.projects.models import Project, StageRun, Sweep, SweepRun

pytestmark = pytest.mark.django_db

NAMES = ["crystal_000", "crystal_001", "crystal_002"]


@pytest.fixture
def project(users, folders):
    """alice's project (lab-a) with a succeeded import and find_spots (sweep 1 failed)."""
    p = Project.objects.create(name="p", owner=users["alice"], group=users["lab_a"], data_root=str(folders["data"]))
    p.work_dir = str(folders["work"] / str(p.pk))
    p.save()
    for k, name in enumerate(NAMES):
        Sweep.objects.create(project=p, name=name, n_images=10, included=(k != 2))
    imp = StageRun.objects.create(project=p, stage="import", status="succeeded", output_dir="/nowhere/001_import",
                                  summary={"sweeps": [{"name": n} for n in NAMES]})
    fs = StageRun.objects.create(project=p, stage="find_spots", status="succeeded",
                                 output_dir="/nowhere/002_find_spots", summary={"n_spots": 30})
    fs.parents.add(imp)
    for k, name in enumerate(NAMES):
        SweepRun.objects.create(run=fs, index=k, name=name, unit=k, status="failed" if k == 1 else "succeeded",
                                error="cannot read image 1" if k == 1 else "", progress=1.0,
                                summary={"n_images": 10, "n_spots": 10 * (k + 1),
                                         "histogram": {"image": list(range(1, 11)), "n_spots": [k + 1] * 10}})
    return {"project": p, "import": imp, "find_spots": fs}


def test_forms_show_every_parameter_with_default_and_help(client, users, project):
    from processing.params import describe
    from processing.spotfinding import FindSpotsParams

    client.force_login(users["bob"])
    # each form is fetched when its card on the project page is opened
    page = "".join(client.get(reverse("stagerun_new", args=[project["project"].pk, stage])).content.decode()
                   for stage in ("find_spots", "index"))
    for name, default, help_text in describe(FindSpotsParams):
        if name == "nproc":  # workers scale by fan-out; a prefork worker may not fork a pool
            assert 'name="find_spots-nproc"' not in page
            continue
        assert f'name="find_spots-{name}"' in page, name
        assert html.escape(help_text, quote=False) in page or help_text in html.unescape(page), name
    assert 'name="find_spots-sigma_strong" value="3.0"' in page
    assert 'name="index-unit_cell" value="None"' in page
    assert 'name="index-joint" value="false"' in page  # the web default: one task per sweep
    # sweeps: all of the import for find_spots (included ones ticked); only the good ones for index
    assert 'name="find_spots-sweeps" value="0"' in page and 'name="find_spots-sweeps" value="2"' in page
    assert 'name="index-sweeps" value="0"' in page and 'name="index-sweeps" value="1"' not in page


def post(client, project, stage, data):
    return client.post(reverse("stagerun_new", args=[project.pk, stage]), data)


@pytest.mark.parametrize("stage, field, value, message", [
    ("find_spots", "sigma_strong", "-1", "sigma_strong=-1.0: must be ≥ 0"),
    ("find_spots", "kernel_size", "3,x", "kernel_size=x: expected an integer"),
    ("index", "unit_cell", "1,2,3", "unit_cell needs 6 numbers (a, b, c, α, β, γ), got 3"),
    ("index", "space_group", "P 7", "unknown space group 'P 7'"),
    ("index", "hkl_tolerance", "2", "hkl_tolerance=2.0: must be > 0 and ≤ 0.5"),  # issue 10: one wording
])
def test_invalid_parameters_are_a_form_error_and_nothing_is_queued(
        client, users, project, django_capture_on_commit_callbacks, stage, field, value, message):
    p = project["project"]
    parent = project["import"] if stage == "find_spots" else project["find_spots"]
    n_runs = StageRun.objects.count()
    client.force_login(users["alice"])
    with mock.patch.object(runs, "dispatch_run") as dispatch, \
            django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(client, p, stage, {f"{stage}-parent": parent.pk, f"{stage}-sweeps": ["0"],
                                           f"{stage}-{field}": value})
    assert response.status_code == 200
    body = response.content.decode()
    assert html.escape(message) in body, body[body.find("error"):][:500]
    # the message sits next to its field, and the user's text is kept
    form_part = body[body.index(f'id="form-{stage}"'):]
    assert form_part.index(f'name="{stage}-{field}"') < form_part.index(html.escape(message))
    assert f'value="{html.escape(value)}"' in form_part
    assert StageRun.objects.count() == n_runs
    assert SweepRun.objects.count() == 3
    assert callbacks == [] and not dispatch.called


def test_tutorial_second_pass_is_typeable_and_queued(client, users, project, django_capture_on_commit_callbacks):
    p, fs = project["project"], project["find_spots"]
    client.force_login(users["bob"])
    with mock.patch.object(runs, "dispatch_run") as dispatch, \
            django_capture_on_commit_callbacks(execute=True):
        response = post(client, p, "index", {"index-parent": fs.pk, "index-sweeps": ["0", "2"],
                                             "index-unit_cell": "67,67,67,109,109,109"})
    assert response.status_code == 302, response.content.decode()[:3000]
    run = StageRun.objects.get(stage="index")
    dispatch.assert_called_once_with(run.pk)
    assert run.parameters["unit_cell"] == [67.0, 67.0, 67.0, 109.0, 109.0, 109.0]
    assert run.parameters["space_group"] is None  # as the tutorial types it: the cell alone
    assert run.parameters["joint"] is False and run.parameters["nproc"] == 1
    assert list(run.parents.all()) == [fs]
    assert [(s.index, s.name, s.unit, s.status) for s in run.sweep_runs.all()] == [
        (0, "crystal_000", 0, "queued"), (2, "crystal_002", 1, "queued")]
    assert run.status == "queued" and run.output_dir == ""  # the folder is made by the first task


def test_joint_index_is_one_task_over_all_sweeps(client, users, project, django_capture_on_commit_callbacks):
    p, fs = project["project"], project["find_spots"]
    client.force_login(users["alice"])
    with mock.patch.object(runs, "dispatch_run"), django_capture_on_commit_callbacks(execute=True):
        response = post(client, p, "index", {"index-parent": fs.pk, "index-sweeps": ["0", "2"],
                                             "index-joint": "true"})
    assert response.status_code == 302
    run = StageRun.objects.get(stage="index")
    assert [s.unit for s in run.sweep_runs.all()] == [0, 0]


def test_sweep_not_offered_by_the_parent_is_refused(client, users, project):
    p, fs = project["project"], project["find_spots"]
    client.force_login(users["alice"])
    response = post(client, p, "index", {"index-parent": fs.pk, "index-sweeps": ["1"]})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not StageRun.objects.filter(stage="index").exists()


def test_dispatch_sends_a_chord_of_one_task_per_unit(users, project):
    p, fs = project["project"], project["find_spots"]
    run = runs.create_run(p, "index", parameters={"joint": False}, parents=[fs],
                           sweeps=runs.available_sweeps(fs))
    with mock.patch("celery.chord") as chord:
        runs.dispatch_run(run.pk)
    header, = chord.call_args.args
    assert [(s.task, s.args) for s in header] == [
        ("xtalweb.projects.tasks.run_sweep_unit", (run.pk, 0)), ("xtalweb.projects.tasks.run_sweep_unit", (run.pk, 1))]
    body, = chord.return_value.call_args.args
    assert (body.task, body.args, body.immutable) == ("xtalweb.projects.tasks.join_stage_run", (run.pk,), True)


def test_other_group_gets_404_on_the_stage_endpoints(client, users, project):
    p, fs = project["project"], project["find_spots"]
    data = {"index-parent": fs.pk, "index-sweeps": ["0"]}
    urls = [reverse("stagerun_report", args=[p.pk, fs.pk]), reverse("stagerun_report_json", args=[p.pk, fs.pk])]
    client.force_login(users["carol"])
    assert [client.get(u).status_code for u in urls] == [404, 404]
    with mock.patch.object(runs, "dispatch_run") as dispatch:
        assert post(client, p, "index", data).status_code == 404
        assert post(client, p, "find_spots", {}).status_code == 404
    assert not dispatch.called and not StageRun.objects.filter(stage="index").exists()
    client.force_login(users["bob"])
    assert [client.get(u).status_code for u in urls] == [200, 200]
    assert post(client, p, "no_such_stage", {}).status_code == 404
    # a run of another project through this project's URL is 404 too
    other = Project.objects.create(name="o", owner=users["carol"], group=users["lab_b"], data_root="/x")
    theirs = StageRun.objects.create(project=other, stage="find_spots", summary={"secret": 1})
    assert client.get(reverse("stagerun_report_json", args=[p.pk, theirs.pk])).status_code == 404
    client.logout()
    assert client.get(urls[1]).status_code == 302  # login first


def test_report_json_of_stored_summaries(client, users, project):
    fs = project["find_spots"]
    client.force_login(users["alice"])
    report = client.get(reverse("stagerun_report_json", args=[project["project"].pk, fs.pk])).json()
    rows = report["tables"][0]["rows"]
    assert [r[:5] for r in rows] == [["crystal_000", 10, 10, 1.0, "succeeded"],
                                     ["crystal_001", 10, 20, 2.0, "failed"],
                                     ["crystal_002", 10, 30, 3.0, "succeeded"],
                                     ["all succeeded sweeps", 20, 40, 2.0, ""]]
    assert rows[1][5] == "cannot read image 1"
    assert report["tables"][0]["row_status"] == ["succeeded", "failed", "succeeded", "total"]


def test_plotly_js_is_served_from_the_installed_package(client, users):
    import plotly

    assert client.get(reverse("plotly_js")).status_code == 302  # to the login page, as every URL
    client.force_login(users["bob"])
    response = client.get(reverse("plotly_js"))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    path = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    assert body == open(path, "rb").read() and len(body) > 1_000_000
    assert response["Content-Type"].startswith("text/javascript")


def test_new_project_from_a_preset_queues_simulate_then_import(client, users, folders,
                                                              django_capture_on_commit_callbacks):
    client.force_login(users["alice"])
    page = client.get(reverse("project_new")).content.decode()
    assert "insulin-24" in page and "LARGE" in page
    with mock.patch.object(runs, "dispatch_run") as dispatch, django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("project_new"), {"preset-preset": "tiny", "preset-name": "",
                                                        "preset-group": users["lab_a"].pk})
    assert response.status_code == 302
    project = Project.objects.get()
    assert project.name == "Simulated: tiny" and project.group == users["lab_a"]
    assert project.data_root == os.path.join(os.path.realpath(folders["data"]), "simulated", f"{project.pk:04d}-tiny")
    run = project.runs.get()
    assert (run.stage, run.parameters, run.follow_up) == ("simulate", {"preset": "tiny"}, ["import"])
    dispatch.assert_called_once_with(run.pk)
    bad = client.post(reverse("project_new"), {"preset-preset": "huge"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()
    assert Project.objects.count() == 1


def test_live_progress_of_each_sweep_and_the_run(users, project):
    p, fs = project["project"], project["find_spots"]
    run = runs.create_run(p, "index", parameters={"joint": False}, parents=[fs], sweeps=runs.available_sweeps(fs))
    StageRun.objects.filter(pk=run.pk).update(status="running")
    rows = list(run.sweep_runs.all())
    SweepRun.objects.filter(run=run).update(status="running")
    ctx = context.UnitContext(run, rows)
    ctx.PERIOD = 0.0
    ctx.progress_for([rows[0]])(0.5, "half way")
    ctx.progress_for([rows[1]])(0.25)
    run.refresh_from_db()
    assert [s.progress for s in run.sweep_runs.all()] == [0.5, 0.25]
    assert run.progress == pytest.approx(0.375)
    ctx.progress_for([rows[0]])(1.0)
    ctx.progress_for([rows[1]])(1.0)
    run.refresh_from_db()
    assert run.progress == 0.99  # 1.0 only once the join has merged the sweeps
    status = StageRun.objects.get(pk=run.pk).as_dict(compact=True)
    assert [(s["name"], s["progress"]) for s in status["sweeps"]] == [("crystal_000", 1.0), ("crystal_002", 1.0)]


def test_the_simulated_project_form_offers_every_simulator_preset():
    from processing.simulate.presets import PRESETS
    from xtalweb.projects.forms import PRESET_CHOICES

    assert [k for k, _ in PRESET_CHOICES] == list(PRESETS)
