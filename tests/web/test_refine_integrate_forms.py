"""refine and integrate without a worker: their run forms (built from RefineParams and
IntegrateParams), validation, who may use them, and the reports drawn from stored
summaries (the badly-refined rule, the integration table). Dispatch is mocked."""

from __future__ import annotations

import html
from unittest import mock

import pytest
from django.urls import reverse

from xtalweb.projects import runs
from xtalweb.projects.models import Project, StageRun, Sweep, SweepRun

pytestmark = pytest.mark.django_db

NAMES = ["crystal_000", "crystal_001", "crystal_002"]
#: (RMSD_X px, RMSD_Y px, RMSD_Z images): sweep 1's X is 2.5× the median (0.12) but under
#: 0.5 px; sweep 2's Z is over 0.5 images but under 2× the median (0.35)
RMSDS = [(0.10, 0.09, 0.30), (0.30, 0.10, 0.35), (0.12, 0.11, 0.55)]
CELL = [67.71, 67.72, 67.69, 109.47, 109.46, 109.48]
CELL_SD = [0.005, 0.004, 0.006, 0.003, 0.002, 0.0025]


def _per_sweep_run(project, stage, parent, summaries, errors=None):
    run = StageRun.objects.create(project=project, stage=stage, status="succeeded", progress=1.0,
                                  output_dir=f"/nowhere/{stage}")
    run.parents.add(parent)
    for k, name in enumerate(NAMES):
        error = (errors or {}).get(k, "")
        SweepRun.objects.create(run=run, index=k, name=name, unit=k, status="failed" if error else "succeeded",
                                error=error, progress=1.0, summary=summaries[k])
    return run


@pytest.fixture
def refined(users, folders):
    """alice's project (lab-a): import → find_spots → index → refine → integrate rows with
    made-up summaries in the science's shapes (integrate: sweep 2 failed)."""
    p = Project.objects.create(name="p", owner=users["alice"], group=users["lab_a"], data_root=str(folders["data"]))
    p.work_dir = str(folders["work"] / str(p.pk))
    p.save()
    for name in NAMES:
        Sweep.objects.create(project=p, name=name, n_images=10)
    imp = StageRun.objects.create(project=p, stage="import", status="succeeded", output_dir="/nowhere/import",
                                  summary={"sweeps": [{"name": n} for n in NAMES]})
    fs = _per_sweep_run(p, "find_spots", imp, [{"n_spots": 100, "n_images": 10}] * 3)
    idx = _per_sweep_run(p, "index", fs, [{"n_indexed": 90, "unit_cell": CELL}] * 3)
    ref = _per_sweep_run(p, "refine", idx, [
        {"identifiers": [f"id-{k}"],
         "rmsds_by_experiment": [{"experiment": 0, "nref": 1000 + k, "rmsd_x_px": x, "rmsd_y_px": y,
                                  "rmsd_z_images": z}],
         "crystals": [{"experiment": 0, "refined": True, "unit_cell": CELL, "unit_cell_sd": CELL_SD,
                       "space_group": "P 1"}],
         "failed": []}
        for k, (x, y, z) in enumerate(RMSDS)])
    ref.summary = {"experiments": [{"id": k, "identifier": f"id-{k}", "sweep": k, "name": n}
                                   for k, n in enumerate(NAMES)]}
    ref.save()
    res = [{"d_max": 30.0, "d_min": 3.0, "n_integrated_sum": 300, "n_integrated_prf": 310, "mean_ios_sum": 40.0,
            "mean_ios_prf": 42.0},
           {"d_max": 3.0, "d_min": 2.0, "n_integrated_sum": 100, "n_integrated_prf": 90, "mean_ios_sum": 8.0,
            "mean_ios_prf": 9.0}]
    integ = _per_sweep_run(p, "integrate", ref, [
        {"identifiers": [f"id-{k}"], "n_predicted": 420, "n_integrated_sum": 400, "n_integrated_prf": 400,
         "experiments": [{"identifier": f"id-{k}", "n_predicted": 420, "n_integrated_sum": 400,
                          "n_integrated_prf": 400, "n_failed_summation": 20,
                          "profile_model": {"sigma_b": 0.061234, "sigma_m": 0.054321, "n_sigma": 3.0},
                          "resolution_table": res}]} if k < 2 else {}
        for k in range(3)], errors={2: "NeXus data file x_data_000001.h5 is missing"})
    integ.summary = {"experiments": [{"id": k, "identifier": f"id-{k}", "sweep": k, "name": NAMES[k]}
                                     for k in range(2)]}
    integ.save()
    return {"project": p, "index": idx, "refine": ref, "integrate": integ}


def post(client, project, stage, data):
    return client.post(reverse("stagerun_new", args=[project.pk, stage]), data)


def test_forms_are_built_from_the_parameter_classes(client, users, refined):
    from processing.integration import IntegrateParams
    from processing.params import describe
    from processing.refinement import RefineParams

    client.force_login(users["bob"])
    # each form is fetched when its card on the project page is opened
    page = html.unescape("".join(client.get(reverse("stagerun_new", args=[refined["project"].pk, stage]))
                                 .content.decode() for stage in ("refine", "integrate")))
    for stage, cls in (("refine", RefineParams), ("integrate", IntegrateParams)):
        for name, default, help_text in describe(cls):
            if stage == "integrate" and name == "nproc":  # workers scale by fan-out
                assert f'name="{stage}-nproc"' not in page
                continue
            assert f'name="{stage}-{name}" value="{default}"' in page, (stage, name)
            assert help_text in page, (stage, name)
        assert f'name="{stage}-sweeps" value="2"' in page
    # the input runs on offer: index runs for refine, refine runs for integrate
    assert f'<option value="{refined["index"].pk}" selected>' in page
    assert f'<option value="{refined["refine"].pk}" selected>' in page


@pytest.mark.parametrize("stage, field, value, message", [
    # issue 10: limits are declared with the field and checked once, in one wording
    ("refine", "scan_varying", "maybe", "scan_varying=maybe: must be one of true, false, auto"),
    ("refine", "max_iterations", "0", "max_iterations=0: must be ≥ 1"),
    ("integrate", "d_min", "-1", "d_min=-1.0: must be > 0"),
    ("integrate", "profile_fitting", "perhaps", "profile_fitting=perhaps: expected true or false"),
])
def test_invalid_parameter_is_a_form_error_and_nothing_is_queued(
        client, users, refined, django_capture_on_commit_callbacks, stage, field, value, message):
    parent = refined["index"] if stage == "refine" else refined["refine"]
    n_runs, n_rows = StageRun.objects.count(), SweepRun.objects.count()
    client.force_login(users["alice"])
    with mock.patch.object(runs, "dispatch_run") as dispatch, \
            django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(client, refined["project"], stage, {f"{stage}-parent": parent.pk, f"{stage}-sweeps": ["0"],
                                                            f"{stage}-{field}": value})
    assert response.status_code == 200
    body = response.content.decode()
    form_part = body[body.index(f'id="form-{stage}"'):]
    assert html.escape(message) in form_part, form_part[:3000]
    assert form_part.index(f'name="{stage}-{field}"') < form_part.index(html.escape(message))
    assert (StageRun.objects.count(), SweepRun.objects.count()) == (n_runs, n_rows)
    assert callbacks == [] and not dispatch.called


def test_valid_refine_is_queued_on_the_chosen_sweeps(client, users, refined, django_capture_on_commit_callbacks):
    client.force_login(users["bob"])
    with mock.patch.object(runs, "dispatch_run") as dispatch, django_capture_on_commit_callbacks(execute=True):
        response = post(client, refined["project"], "refine", {
            "refine-parent": refined["index"].pk, "refine-sweeps": ["0", "2"], "refine-beam_fix": "all",
            "refine-outlier_algorithm": "tukey"})
    assert response.status_code == 302, response.content.decode()[:3000]
    run = StageRun.objects.filter(stage="refine").latest("id")
    dispatch.assert_called_once_with(run.pk)
    assert run.parameters["beam_fix"] == ["all"] and run.parameters["outlier_algorithm"] == "tukey"
    assert run.parameters["scan_varying"] == "auto"
    assert list(run.parents.all()) == [refined["index"]]
    assert [(s.index, s.unit, s.status) for s in run.sweep_runs.all()] == [(0, 0, "queued"), (2, 1, "queued")]


@pytest.mark.parametrize("stage, words, expect", [
    ("refine", "beam.fix=all refinement.reflections.outlier.algorithm=tukey",
     {"beam_fix": ["all"], "outlier_algorithm": "tukey"}),
    ("integrate", "profile.fitting=false prediction.d_min=2.5 background.algorithm=simple",
     {"profile_fitting": False, "d_min": 2.5, "background_algorithm": "simple"}),
])
def test_dials_names_in_the_form(client, users, refined, django_capture_on_commit_callbacks, stage, words, expect):
    """DIALS's parameter names work in the web form as on the command line (issue 10)."""
    parent = refined["index"] if stage == "refine" else refined["refine"]
    client.force_login(users["bob"])
    with mock.patch.object(runs, "dispatch_run"), django_capture_on_commit_callbacks(execute=True):
        response = post(client, refined["project"], stage, {f"{stage}-parent": parent.pk, f"{stage}-sweeps": ["0"],
                                                            f"{stage}-words": words})
    assert response.status_code == 302, response.content.decode()[:3000]
    run = StageRun.objects.filter(stage=stage).latest("id")
    assert {k: run.parameters[k] for k in expect} == expect


def test_a_bad_dials_name_is_an_error_on_the_words_field(client, users, refined):
    client.force_login(users["bob"])
    with mock.patch.object(runs, "dispatch_run") as dispatch:
        response = post(client, refined["project"], "refine", {
            "refine-parent": refined["index"].pk, "refine-sweeps": ["0"], "refine-words": "beam.fix=sideways"})
    assert response.status_code == 200 and not dispatch.called
    body = response.content.decode()
    form_part = body[body.index('id="form-refine"'):]
    message = html.escape("beam_fix=sideways: must be one of")
    assert message in form_part and form_part.index('name="refine-words"') < form_part.index(message)


def test_other_group_gets_404_on_refine_and_integrate(client, users, refined):
    p, ref, integ = refined["project"], refined["refine"], refined["integrate"]
    urls = [reverse(name, args=[p.pk, run.pk]) for run in (ref, integ)
            for name in ("stagerun_report", "stagerun_report_json", "stagerun_log")]
    n_runs = StageRun.objects.count()
    client.force_login(users["carol"])
    assert [client.get(u).status_code for u in urls] == [404] * 6
    with mock.patch.object(runs, "dispatch_run") as dispatch:
        assert post(client, p, "refine", {"refine-parent": refined["index"].pk, "refine-sweeps": ["0"]}).status_code == 404
        assert post(client, p, "integrate", {"integrate-parent": ref.pk, "integrate-sweeps": ["0"]}).status_code == 404
    assert not dispatch.called and StageRun.objects.count() == n_runs
    client.force_login(users["bob"])
    assert [client.get(u).status_code for u in urls] == [200] * 6


def test_rmsd_table_and_the_badly_refined_rule(client, users, refined):
    from processing.models import format_with_sd

    from xtalweb.reports.figures import RMSD_RULE

    client.force_login(users["alice"])
    p, ref = refined["project"], refined["refine"]
    report = client.get(reverse("stagerun_report_json", args=[p.pk, ref.pk])).json()
    rmsd, cells = report["tables"]
    assert rmsd["columns"] == ["Exp id", "Nref", "RMSD_X (px)", "RMSD_Y (px)", "RMSD_Z (images)"]
    assert rmsd["rows"] == [[k, 1000 + k, x, y, z] for k, (x, y, z) in enumerate(RMSDS)]
    # sweep 1 by the median rule only (0.30 > 2 × 0.12 px), sweep 2 by the limit only (0.55 > 0.5 images)
    assert rmsd["row_status"] == ["succeeded", "bad", "bad"]
    assert [(h["exp_id"], h["reasons"]) for h in rmsd["highlights"]] == [
        (1, ["RMSD_X 0.3 px > 2× median 0.12 px"]), (2, ["RMSD_Z 0.55 images > 0.5 images"])]
    assert rmsd["note"] == RMSD_RULE
    cell = ", ".join(format_with_sd(v, e) for v, e in zip(CELL, CELL_SD))
    assert [r[:4] for r in cells["rows"]] == [[k, n, cell, "P 1"] for k, n in enumerate(NAMES)]
    page = client.get(reverse("stagerun_report", args=[p.pk, ref.pk])).content.decode()
    assert page.count('<tr class="row-bad">') == 2 + 2  # the RMSD rows and their cells
    assert html.escape(RMSD_RULE) in page


def test_integration_table_and_ios_figure(client, users, refined):
    client.force_login(users["alice"])
    p, integ = refined["project"], refined["integrate"]
    report = client.get(reverse("stagerun_report_json", args=[p.pk, integ.pk])).json()
    (table,) = report["tables"]
    mean_sum = round((300 * 40.0 + 100 * 8.0) / 400, 2)
    mean_prf = round((310 * 42.0 + 90 * 9.0) / 400, 2)
    assert table["rows"][:2] == [[k, NAMES[k], 420, 400, 400, 20, mean_sum, mean_prf, 0.0612, 0.0543,
                                  "succeeded", ""] for k in range(2)]
    assert table["rows"][2][1:3] == ["crystal_002", None] and table["rows"][2][-2] == "failed"
    assert table["rows"][2][-1] == "NeXus data file x_data_000001.h5 is missing"
    assert table["row_status"] == ["succeeded", "succeeded", "failed"]
    (fig,) = report["figures"]
    assert [t["name"] for t in fig["data"]] == ["crystal_000 sum", "crystal_000 prf", "crystal_001 sum",
                                                "crystal_001 prf"]
    assert fig["data"][0]["y"] == [40.0, 8.0] and fig["data"][1]["y"] == [42.0, 9.0]
    assert fig["data"][0]["x"] == [round(0.5 * (1 / 30 ** 2 + 1 / 9), 6), round(0.5 * (1 / 9 + 1 / 4), 6)]
    assert "3" in fig["layout"]["xaxis"]["ticktext"]  # ticks labelled in Å
    status = client.get(reverse("project_status", args=[p.pk])).json()
    polled = next(r for r in status["runs"] if r["id"] == integ.pk)
    assert "summary" not in polled["sweeps"][0]  # the polled JSON stays small: the report has the tables
