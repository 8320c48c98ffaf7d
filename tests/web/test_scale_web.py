"""scale, merge and export in the web app (issue 12, section 5): on the real worker, after
cosym on the reflection-level ``tiny`` ensemble (the cosym tests' fixture). The scale
report shows dials.scale's merging tables from the run's summary and one checkbox per
data set; dropping a data set makes a new scale run from the same cosym run without it,
and the earlier run's report and files stay; merged.mtz, scaled_unmerged.mtz and
scaled.cif download for the project's group, and nobody else (404)."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from django.urls import reverse

from xtalweb.projects.models import StageRun

from .helpers import wait_for_run
from .browser import browser  # noqa: F401  (fixture)
from .test_cosym_web import N, integrated_ensemble, integrated_project  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]


def run_stage(client, project, stage, parent, sweeps, **params):
    """Submit the project page's form of ``stage`` and wait for the run."""
    data = {f"{stage}-parent": parent.pk, f"{stage}-sweeps": [str(k) for k in sweeps]}
    data.update({f"{stage}-{k}": v for k, v in params.items()})
    before = set(project.runs.values_list("pk", flat=True))
    response = client.post(reverse("stagerun_new", args=[project.pk, stage]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    (run_id,) = set(project.runs.values_list("pk", flat=True)) - before
    return wait_for_run(run_id, timeout=300)


def scaled(client, project, integ):
    cosym = run_stage(client, project, "cosym", integ, range(N), stability="false")
    assert cosym.status == "succeeded", cosym.log
    scale = run_stage(client, project, "scale", cosym, range(N))
    assert (scale.status, scale.error) == ("succeeded", ""), scale.log
    return cosym, scale


def file_url(run, name):
    return reverse("stagerun_file", args=[run.project_id, run.pk, name])


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_scale_report(client, users, integrated_project):
    project, integ, _ = integrated_project
    client.force_login(users["bob"])
    cosym, scale = scaled(client, project, integ)
    assert list(scale.parents.all()) == [cosym]
    assert sorted(os.listdir(scale.output_dir)) == ["scaled.expt", "scaled.refl"]
    s = scale.summary
    stats = s["merging_statistics"]
    overall = stats["overall"]
    assert s["n_datasets"] == N and s["excluded"] == []
    assert overall["cc_half"] > 0.95 and overall["multiplicity"] > 2

    report = client.get(reverse("stagerun_report_json", args=[project.pk, scale.pk])).json()
    tables = {t["id"]: t for t in report["tables"]}
    # the table by resolution bin: one row per shell, then the overall (DIALS's layout)
    shells = tables["merging_shells"]
    assert shells["columns"][:6] == ["d_max", "d_min", "#obs", "#uniq", "mult.", "%comp"]
    assert len(shells["rows"]) == len(stats["shells"]) + 1 == stats["n_bins"] + 1
    assert shells["row_status"][-1] == "total"
    col = {c: k for k, c in enumerate(shells["columns"])}
    last = shells["rows"][-1]
    assert last[col["#obs"]] == overall["n_obs"] == s["n_observations"]
    assert last[col["cc1/2"]] == f"{overall['cc_half']:.3f}"
    assert [r[col["#uniq"]] for r in shells["rows"][:-1]] == [x["n_unique"] for x in stats["shells"]]
    assert sum(r[col["#obs"]] for r in shells["rows"][:-1]) == overall["n_obs"]
    summary = {r[0]: r[1:] for r in tables["merging_summary"]["rows"]}
    assert summary["Total observations"] == [overall["n_obs"], stats["low"]["n_obs"], stats["high"]["n_obs"]]
    assert summary["Completeness"][0] == f"{overall['completeness']:.1f}"
    # not anomalous: no anomalous completeness, shown as "—"
    assert overall["anom_completeness"] is None and summary["Anomalous completeness"] == [None, None, None]
    # one row (and checkbox) per data set, with its sweep's name; nothing left out
    datasets = tables["datasets"]
    assert [r[:2] for r in datasets["rows"]] == [[k, f"crystal_{k:03d}"] for k in range(N)]
    assert [r[2] for r in datasets["rows"]] == [d["n_observations"] for d in s["datasets"]]
    assert datasets["select"]["action"] == reverse("scale_drop", args=[project.pk, scale.pk])
    assert tables["excluded"]["rows"] == []
    assert tables["combination"]["rows"] and sum(r[3] == "***" for r in tables["combination"]["rows"]) == 1
    assert len(tables["error_model"]["rows"]) == len(s["error_model"]["bins"])
    figures = {f["id"]: f for f in report["figures"]}
    # an absorption surface only where the model has one (dials.scale: sweeps over 60°; these are 5°)
    absorbed = [d["id"] for d in s["datasets"] if d.get("absorption_range")]
    assert set(figures) == {"statistics_resolution", "scale_rotation", "normal_probability", "error_model"} \
        | ({"absorption"} if absorbed else set())
    assert [r[0] for r in datasets["rows"] if r[6] is not None] == absorbed
    cc = next(t for t in figures["statistics_resolution"]["data"] if t["name"] == "CC½ (σ-τ)")
    assert len(cc["x"]) == len(stats["shells"]) and cc["y"][0] == round(stats["shells"][0]["cc_half"], 4)
    rotation = figures["scale_rotation"]["data"]
    assert sum(t["yaxis"] == "y" for t in rotation) == sum(t["yaxis"] == "y2" for t in rotation) == N
    assert rotation[0]["y"][0] == round(s["datasets"][0]["curves"]["scale"][0], 5)
    if absorbed:
        assert len(figures["absorption"]["data"][0]["x"]) == len(absorbed)
    assert len(figures["normal_probability"]["data"][0]["x"]) == len(s["normal_probability"]["expected"])
    assert [f["name"] for f in report["downloads"]] == ["scaled.expt", "scaled.refl"]

    page = client.get(reverse("stagerun_report", args=[project.pk, scale.pk])).content.decode()
    assert "Merging statistics by resolution bin" in page and "Summary of merging statistics" in page
    assert f"<td>{overall['n_obs']}</td>" in page and f"<td>{overall['cc_half']:.3f}</td>" in page
    assert "<td>Anomalous completeness</td><td>—</td><td>—</td><td>—</td>" in page
    assert page.count('type="checkbox" name="exclude_datasets"') == N
    assert "Scale again without these" in page
    assert f'href="{file_url(scale, "scaled.refl")}"' in page
    # the project page links the files too
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert f'href="{file_url(scale, "scaled.expt")}"' in page and f'href="{file_url(scale, "scaled.refl")}"' in page


def test_drop_a_data_set(client, users, integrated_project):
    project, integ, _ = integrated_project
    client.force_login(users["alice"])
    cosym, first = scaled(client, project, integ)
    before = {n: sha(os.path.join(first.output_dir, n)) for n in os.listdir(first.output_dir)}
    drop = reverse("scale_drop", args=[project.pk, first.pk])
    n_runs = StageRun.objects.count()
    # nothing ticked, an unknown id, every data set: no new run
    for ids in ([], ["99"], ["x"], [str(k) for k in range(N)]):
        assert client.post(drop, {"exclude_datasets": ids}).status_code == 302
    assert client.get(drop).status_code == 405
    assert StageRun.objects.count() == n_runs

    response = client.post(drop, {"exclude_datasets": ["2"]})
    assert response.status_code == 302
    (new_id,) = project.runs.filter(pk__gt=first.pk).values_list("pk", flat=True)
    assert response["Location"].endswith(f"#run-{new_id}")
    new = StageRun.objects.get(pk=new_id)
    assert new.stage == "scale" and list(new.parents.all()) == [cosym]
    assert new.parameters["exclude_datasets"] == [2]
    assert {k: v for k, v in new.parameters.items() if k != "exclude_datasets"} == \
        {k: v for k, v in first.parameters.items() if k != "exclude_datasets"}
    new = wait_for_run(new_id, timeout=300)
    # left out by the user: the run is partial, sweep 2 marked with the reason
    assert new.status == "partial", new.log
    assert new.output_dir != first.output_dir
    s = new.summary
    assert s["n_datasets"] == first.summary["n_datasets"] - 1 == N - 1
    assert [(x["id"], x["identifier"]) for x in s["excluded"]] == [(2, first.summary["datasets"][2]["identifier"])]
    assert "exclude_datasets" in s["excluded"][0]["reason"]
    assert [r.status for r in new.sweep_runs.order_by("index")] == ["failed" if k == 2 else "succeeded"
                                                                    for k in range(N)]
    from processing.io.expt import read_experiments

    kept = read_experiments(os.path.join(new.output_dir, "scaled.expt"))
    assert len(kept) == N - 1 and s["datasets"][2]["identifier"] not in {e.identifier for e in kept}
    # with "then merge" ticked (as the form has it), the drop goes on downstream: a merge
    response = client.post(reverse("scale_drop", args=[project.pk, first.pk]),
                           {"exclude_datasets": ["4"], "then_merge": "1"})
    assert response.status_code == 302
    chained = wait_for_run(max(project.runs.filter(stage="scale").values_list("pk", flat=True)), timeout=300)
    assert chained.follow_up == ["merge"] and new.follow_up == []
    deadline = time.monotonic() + 60
    while not StageRun.objects.filter(parents=chained, stage="merge").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    merge = wait_for_run(StageRun.objects.get(parents=chained, stage="merge").pk, timeout=300)
    assert merge.status in ("succeeded", "partial") and os.path.isfile(os.path.join(merge.output_dir, "merged.mtz"))
    assert merge.summary["n_observations"] == chained.summary["n_observations"]
    report = client.get(reverse("stagerun_report_json", args=[project.pk, new.pk])).json()
    tables = {t["id"]: t for t in report["tables"]}
    assert [r[:2] for r in tables["excluded"]["rows"]] == [[2, "crystal_002"]]
    assert tables["datasets"]["row_status"].count("failed") == 1 and tables["datasets"]["row_status"][2] == "failed"
    page = client.get(reverse("stagerun_report", args=[project.pk, new.pk])).content.decode()
    assert page.count('type="checkbox" name="exclude_datasets"') == N - 1
    assert 'value="2"' not in page

    # the earlier run: untouched, its report and its files still there
    first.refresh_from_db()
    assert first.status == "succeeded" and first.summary["n_datasets"] == N
    assert {n: sha(os.path.join(first.output_dir, n)) for n in os.listdir(first.output_dir)} == before
    page = client.get(reverse("stagerun_report", args=[project.pk, first.pk]))
    assert page.status_code == 200 and page.content.decode().count('name="exclude_datasets"') == N
    got = client.get(file_url(first, "scaled.refl"))
    assert got.status_code == 200
    assert hashlib.sha256(body(got)).hexdigest() == before["scaled.refl"]

    # dropping from the new run keeps the earlier exclusion; an id already left out is refused
    n_runs = StageRun.objects.count()
    assert client.post(reverse("scale_drop", args=[project.pk, new.pk]), {"exclude_datasets": ["2"]}).status_code == 302
    assert StageRun.objects.count() == n_runs
    client.post(reverse("scale_drop", args=[project.pk, new.pk]), {"exclude_datasets": ["5"]})
    third = wait_for_run(StageRun.objects.latest("id").pk, timeout=300)
    assert third.parameters["exclude_datasets"] == [2, 5] and list(third.parents.all()) == [cosym]
    assert third.summary["n_datasets"] == N - 2 and [x["id"] for x in third.summary["excluded"]] == [2, 5]


def test_merge_export_downloads(client, users, integrated_project):
    import gemmi

    project, integ, _ = integrated_project
    client.force_login(users["alice"])
    _, scale = scaled(client, project, integ)
    merge = run_stage(client, project, "merge", scale, range(N))
    assert (merge.status, merge.error) == ("succeeded", ""), merge.log
    assert os.listdir(merge.output_dir) == ["merged.mtz"]
    got = client.get(file_url(merge, "merged.mtz"))
    assert got.status_code == 200
    assert got["Content-Disposition"] == 'attachment; filename="merged.mtz"'
    data = body(got)
    assert data[:4] == b"MTZ " and len(data) == os.path.getsize(os.path.join(merge.output_dir, "merged.mtz"))
    mtz = gemmi.read_mtz_file(os.path.join(merge.output_dir, "merged.mtz"))
    assert mtz.nreflections == merge.summary["n_unique"]
    assert {"IMEAN", "SIGIMEAN", "F", "SIGF", "N"} <= set(merge.summary["columns"]) <= {c.label for c in mtz.columns}
    report = client.get(reverse("stagerun_report_json", args=[project.pk, merge.pk])).json()
    tables = {t["id"]: t for t in report["tables"]}
    assert [r[0] for r in tables["columns"]["rows"]] == merge.summary["columns"]
    assert tables["merging_shells"]["rows"][-1][2] == merge.summary["merging_statistics"]["overall"]["n_obs"]
    assert [f["name"] for f in report["downloads"]] == ["merged.mtz"]

    export = run_stage(client, project, "export", scale, range(N))
    assert (export.status, export.error) == ("succeeded", ""), export.log
    report = client.get(reverse("stagerun_report_json", args=[project.pk, export.pk])).json()
    counts = next(t for t in report["tables"] if t["id"] == "per_dataset")["rows"]
    assert [r[2] for r in counts] == [d["n_observations"] for d in scale.summary["datasets"]]
    assert [r[1] for r in counts] == [f"crystal_{k:03d}" for k in range(N)]
    assert body(client.get(file_url(export, "scaled_unmerged.mtz")))[:4] == b"MTZ "
    assert body(client.get(file_url(export, "scaled.cif"))).lstrip().startswith(b"data_")
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    for run, name in ((merge, "merged.mtz"), (export, "scaled_unmerged.mtz"), (export, "scaled.cif")):
        assert f'href="{file_url(run, name)}"' in page

    # names that are not the stage's outputs; path tricks; a file the folder holds but the stage does not declare
    with open(os.path.join(merge.output_dir, "notes.txt"), "w") as f:
        f.write("private")
    base = reverse("stagerun_report", args=[project.pk, merge.pk])
    for url in (file_url(merge, "scaled.refl"), file_url(merge, "notes.txt"), file_url(merge, ".."),
                file_url(export, "merged.mtz"), base + "files/..%2Fmerged.mtz", base + "files/../log",
                base + "files/%2E%2E%2F..%2Fetc%2Fpasswd", base + "files/"):
        assert client.get(url).status_code == 404, url

    # another group's user: 404 on every download, the drop and the report; anonymous: to the login page
    urls = [file_url(merge, "merged.mtz"), file_url(export, "scaled_unmerged.mtz"), file_url(export, "scaled.cif"),
            file_url(scale, "scaled.expt"), file_url(scale, "scaled.refl")]
    n_runs = StageRun.objects.count()
    client.force_login(users["carol"])
    for url in urls:
        assert client.get(url).status_code == 404, url
    drop = client.post(reverse("scale_drop", args=[project.pk, scale.pk]), {"exclude_datasets": ["1"]})
    assert drop.status_code == 404
    assert client.get(reverse("stagerun_report", args=[project.pk, scale.pk])).status_code == 404
    assert StageRun.objects.count() == n_runs
    client.logout()
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response["Location"], url


def test_scale_report_in_the_browser(browser, live_server, client, users, integrated_project, tmp_path):
    """The figures are drawn (five resolution panels, scale and B curves of every data set,
    the normal probability plot); ticking a data set and pressing "Scale again without
    these" queues a scale run without it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .browser import login, save_screenshot, severe_errors

    project, integ, _ = integrated_project
    client.force_login(users["alice"])
    cosym, scale = scaled(client, project, integ)
    login(browser, live_server, client, users["alice"])
    browser.get(f"{live_server.url}{scale.get_report_url()}")
    WebDriverWait(browser, 30).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#figure-scale_rotation .scatterlayer .trace")) == 2 * N)
    panels = browser.find_elements(By.CSS_SELECTOR, "#figure-statistics_resolution .cartesianlayer .subplot")
    assert len(panels) == 5
    points = browser.find_elements(By.CSS_SELECTOR,
                                   "#figure-normal_probability .scatterlayer .trace:first-child .point")
    assert len(points) == len(scale.summary["normal_probability"]["expected"])
    overall = scale.summary["merging_statistics"]["overall"]
    last = browser.find_elements(By.CSS_SELECTOR, "#table-merging_shells tbody tr")[-1].text.split()
    assert last[2] == str(overall["n_obs"]) and f"{overall['cc_half']:.3f}" in last
    shot = os.environ.get("XTALWEB_SCREENSHOTS")
    if shot:
        browser.set_window_size(1300, 7600)
        browser.save_screenshot(os.path.join(shot, "scale_report.png"))
    boxes = browser.find_elements(By.CSS_SELECTOR, "#select-datasets input[name=exclude_datasets]")
    assert len(boxes) == N
    boxes[3].click()
    boxes[5].click()
    before = set(project.runs.values_list("pk", flat=True))
    browser.find_element(By.CSS_SELECTOR, "#form-datasets button[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda b: f"/projects/{project.pk}/" in b.current_url and "#run-" in b.current_url)
    assert "Scale again" not in browser.title and "Queued scale" in browser.page_source
    # the new scale run (a fast worker may already have queued its follow-up merge)
    (new_id,) = set(project.runs.filter(stage="scale").values_list("pk", flat=True)) - before
    new = wait_for_run(new_id, timeout=300)
    assert new.parameters["exclude_datasets"] == [3, 5] and new.summary["n_datasets"] == N - 2
    # the two runs side by side: both runs' overall CC½, the parameter that differs
    browser.get(f"{live_server.url}/projects/{project.pk}/compare/?a={scale.pk}&b={new.pk}")
    WebDriverWait(browser, 20).until(lambda b: "Compare runs" in b.page_source)
    page = browser.page_source
    assert f"#{scale.pk} scale" in page and f"#{new.pk} scale" in page and "exclude_datasets" in page
    for run in (scale, new):
        assert f"{run.summary['merging_statistics']['overall']['cc_half']:.3f}" in page
    assert severe_errors(browser) == []
    save_screenshot(browser, tmp_path, "compare_after_drop.png")
