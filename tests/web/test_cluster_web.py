"""The cluster stage in the web app and click to merge (issue 14): on a project whose
integrate → cosym → scale runs were made by the science directly (6 crystals of the
reflection-level ``tiny`` set, 2 of them non-isomorphous), the project page's cluster form
runs on the real worker; its report draws the dendrograms, heat maps (in leaf order) and
embedding from the summary and lists the candidate clusters with a "Scale and merge"
button each. Posting a cluster's identifiers queues scale from the cosym run with every
other data set in exclude_datasets, then merge, whose statistics the compare page shows
beside the clustered scale run's. Another group's user gets 404; bad choices one message
and nothing queued. In Chromium, a click on a dendrogram node starts such a merge."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from django.urls import reverse
from django.utils import timezone

from xtalweb.projects.models import Project, StageRun, SweepRun

from .browser import browser  # noqa: F401  (fixture)
from .helpers import wait_for_run
from .test_scale_web import run_stage

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]

N = 6
NAMES = [f"crystal_{k:03d}" for k in range(N)]


@pytest.fixture(scope="session")
def scaled_ensemble(tmp_path_factory):
    """integrate → cosym → scale → cluster of 6 tiny crystals (2 non-isomorphous) by the science,
    with the web's default parameters: the files of each stage and the stored summaries."""
    from processing.io.expt import read_experiments, write_experiments
    from processing.io.refl import read_reflections, write_reflections
    from processing.simulate import SimulateParams, run_simulate
    from processing.stages import STAGES
    from xtalweb.projects.stages import build_params, params_json, words_from_values

    root = tmp_path_factory.mktemp("cluster_web")
    _, truth = run_simulate(SimulateParams(preset="tiny", mode="reflections", output_dir=str(root / "integrate"),
                                           n_crystals=N, n_non_isomorphous=2, seed=2))
    e = read_experiments(str(root / "integrate" / "integrated.expt"))
    r = read_reflections(str(root / "integrate" / "integrated.refl"))
    out = {"root": root, "experiments": [{"id": k, "identifier": x.identifier, "sweep": k, "name": NAMES[k]}
                                         for k, x in enumerate(e)]}
    for stage, values in (("cosym", {"stability": "false"}), ("scale", {}), ("cluster", {"dimensions": "2"})):
        params = build_params(stage, words_from_values(stage, values))
        e, r, summary = STAGES[stage].execute(e, r, params)
        folder = root / stage
        folder.mkdir(exist_ok=True)
        for name in STAGES[stage].outputs:
            (write_experiments if name.endswith(".expt") else write_reflections)(str(folder / name),
                                                                                e if name.endswith(".expt") else r)
        out[stage] = {"parameters": params_json(params), "summary": summary}
    flagged = {c["identifier"] for c in truth["crystals"] if "non_isomorphous" in c["flags"]}
    out["bad"] = [d["id"] for d in out["scale"]["summary"]["datasets"] if d["identifier"] in flagged]
    out["good"] = [k for k in range(N) if k not in out["bad"]]
    return out


def _run(project, stage, parent, folder, **fields) -> StageRun:
    now = timezone.now()
    run = StageRun.objects.create(project=project, stage=stage, status="succeeded", progress=1.0, output_dir=folder,
                                  started=now, finished=now, **fields)
    if parent is not None:
        run.parents.add(parent)
    for k in range(N):
        SweepRun.objects.create(run=run, index=k, name=NAMES[k], unit=k if stage == "integrate" else 0,
                                status="succeeded", progress=1.0, started=now, finished=now)
    return run


@pytest.fixture
def scaled_project(scaled_ensemble, folders, users):
    """alice's project (lab-a) with succeeded integrate, cosym and scale runs (rows and folders as
    the worker leaves them): ``{"project", "integrate", "cosym", "scale"}``."""
    ens = scaled_ensemble
    project = Project.objects.create(name="clusters", owner=users["alice"], group=users["lab_a"],
                                     data_root=str(folders["data"]))
    project.work_dir = str(folders["work"] / str(project.pk))
    project.save()
    out, parent = {"project": project}, None
    for k, stage in enumerate(("integrate", "cosym", "scale"), start=5):
        folder = os.path.join(project.work_dir, f"{k:03d}_{stage}")
        shutil.copytree(ens["root"] / stage, folder)
        fields = {"summary": {"experiments": ens["experiments"], "n_experiments": N}} if stage == "integrate" else \
            {"summary": ens[stage]["summary"], "parameters": ens[stage]["parameters"]}
        parent = out[stage] = _run(project, stage, parent, folder, **fields)
    return out


def cluster_run(scaled_project, scaled_ensemble) -> StageRun:
    """A finished cluster run on the scale run, as the worker stores it (the session's summary)."""
    folder = os.path.join(scaled_project["project"].work_dir, "008_cluster")
    os.makedirs(folder)
    return _run(scaled_project["project"], "cluster", scaled_project["scale"], folder,
                summary=scaled_ensemble["cluster"]["summary"], parameters=scaled_ensemble["cluster"]["parameters"])


def identifiers(ens, ids) -> list[str]:
    return [ens["experiments"][k]["identifier"] for k in ids]


def merge_of(scale_id: int, timeout: float = 120.0) -> StageRun:
    deadline = time.monotonic() + timeout
    while not StageRun.objects.filter(parents__pk=scale_id, stage="merge").exists():
        assert time.monotonic() < deadline, "the follow-up merge was not queued"
        time.sleep(0.3)
    return wait_for_run(StageRun.objects.get(parents__pk=scale_id, stage="merge").pk, timeout=timeout)


def test_cluster_run_report_and_click_to_merge(client, users, scaled_project, scaled_ensemble):
    project, cosym, scale = scaled_project["project"], scaled_project["cosym"], scaled_project["scale"]
    good, bad = scaled_ensemble["good"], scaled_ensemble["bad"]
    client.force_login(users["bob"])
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    form = client.get(reverse("stagerun_new", args=[project.pk, "cluster"])).content.decode()  # fetched when opened
    assert 'id="form-cluster"' in page and 'name="cluster-cluster_method"' in form and 'name="cluster-seed"' in form

    run = run_stage(client, project, "cluster", scale, range(N), cluster_method="correlation", dimensions="2")
    assert (run.status, run.error) == ("succeeded", ""), run.log
    assert list(run.parents.all()) == [scale] and os.listdir(run.output_dir) == []
    s = run.summary
    assert s["n_datasets"] == N and s["cluster_method"] == "correlation" and len(s["clusters"]) == N - 1
    everything = s["clusters"][0]
    assert everything["cc_half"] == pytest.approx(scale.summary["merging_statistics"]["overall"]["cc_half"])
    good_row = next(c for c in s["clusters"] if c["members"] == good)
    assert good_row["cc_half"] > everything["cc_half"]

    report = client.get(reverse("stagerun_report_json", args=[project.pk, run.pk])).json()
    figures = {f["id"]: f for f in report["figures"]}
    assert list(figures) == ["unit_cell", "correlation", "cos_angle", "embedding"]
    # the correlation figure: every merge node a dot whose customdata are its data sets; the heat map in leaf order
    fig = figures["correlation"]
    nodes = next(t for t in fig["data"] if t.get("name") == "cluster nodes")
    assert sorted(map(sorted, nodes["customdata"])) == sorted(c["members"] for c in s["correlation"]["clusters"])
    assert nodes["y"] == [round(c["height"], 6) for c in s["correlation"]["clusters"]]
    heat = next(t for t in fig["data"] if t["type"] == "heatmap")
    leaves = s["correlation"]["dendrogram"]["leaves"]
    cc = s["correlation"]["correlation"]
    assert heat["z"][0][1] == round(cc[leaves[0]][leaves[1]], 4) and heat["z"][2][2] == 1.0
    assert fig["layout"]["xaxis"]["ticktext"] == [f"{k}: {NAMES[k]}" for k in leaves]
    points = sum(len(t["x"]) for t in figures["embedding"]["data"])
    assert points == N and figures["embedding"]["layout"]["dragmode"] == "lasso"
    tables = {t["id"]: t for t in report["tables"]}
    assert [r[1] for r in tables["datasets"]["rows"]] == NAMES
    (panel,) = report["panels"]
    assert [r["size"] for r in panel["rows"]] == [c["size"] for c in s["clusters"]]
    assert panel["action"] == reverse("cluster_merge", args=[project.pk, run.pk])
    html = client.get(run.get_report_url()).content.decode()
    for fid in figures:
        assert f'id="figure-{fid}"' in html
    assert html.count('action="' + panel["action"] + '"') == N  # one form per row and the bar
    assert f"Scale and merge these {N} data sets" in html and "js/cluster.js" in html
    assert 'id="cluster-datasets"' in html

    # click to merge: the good data sets → scale from cosym without the others, then merge
    response = client.post(panel["action"], {"identifiers": identifiers(scaled_ensemble, good)})
    (new_id,) = project.runs.filter(pk__gt=run.pk).values_list("pk", flat=True)
    assert response.status_code == 302 and response["Location"] == reverse("stagerun_report", args=[project.pk, new_id])
    new = StageRun.objects.get(pk=new_id)
    assert new.stage == "scale" and list(new.parents.all()) == [cosym] and new.follow_up == ["merge"]
    assert new.parameters["exclude_datasets"] == bad
    assert {k: v for k, v in new.parameters.items() if k != "exclude_datasets"} == \
        {k: v for k, v in scale.parameters.items() if k != "exclude_datasets"}
    page = client.get(response["Location"]).content.decode()
    compare = reverse("compare_runs", args=[project.pk]) + f"?a={scale.pk}&amp;b={new_id}"
    assert f"Queued scale (run #{new_id}) of {len(good)} data sets" in page and f'href="{compare}"' in page
    new = wait_for_run(new_id, timeout=240)
    assert new.status == "partial" and new.summary["n_datasets"] == len(good), new.log
    merge = merge_of(new_id, timeout=240)
    assert merge.status == "succeeded", merge.log
    ours = merge.summary["merging_statistics"]["overall"]
    theirs = scale.summary["merging_statistics"]["overall"]
    assert ours["cc_half"] > theirs["cc_half"] and ours["n_obs"] == new.summary["n_observations"]
    # the compare page: the merge's statistics beside the parent scale run's
    page = client.get(reverse("compare_runs", args=[project.pk]) + f"?a={scale.pk}&b={merge.pk}").content.decode()
    assert f"{ours['cc_half']:.3f}" in page and f"{theirs['cc_half']:.3f}" in page
    # the cluster report now links the runs of that cluster and the comparison
    (panel,) = client.get(reverse("stagerun_report_json", args=[project.pk, run.pk])).json()["panels"]
    started = next(r["started"] for r in panel["rows"] if r["identifiers"] == identifiers(scaled_ensemble, good))
    assert started["scale"]["id"] == new_id and started["merge"]["id"] == merge.pk
    assert started["compare_url"].endswith(f"?a={scale.pk}&b={merge.pk}")
    assert sum(r["started"] is not None for r in panel["rows"]) == 1


def test_click_to_merge_refuses_bad_choices_and_other_groups(client, users, scaled_project, scaled_ensemble):
    project = scaled_project["project"]
    run = cluster_run(scaled_project, scaled_ensemble)
    url = reverse("cluster_merge", args=[project.pk, run.pk])
    ens = scaled_ensemble
    n_runs = StageRun.objects.count()
    client.force_login(users["carol"])                     # lab-b: 404, nothing learnt, nothing queued
    assert client.post(url, {"identifiers": identifiers(ens, ens["good"])}).status_code == 404
    assert client.get(run.get_report_url()).status_code == 404
    client.force_login(users["bob"])
    assert client.get(url).status_code == 405
    for posted in ([], identifiers(ens, [0]), identifiers(ens, [0, 1]) + ["xtal-sim-9-0000"], ["", " "]):
        response = client.post(url, {"identifiers": posted})
        assert response.status_code == 302 and response["Location"] == run.get_report_url()
        page = client.get(response["Location"]).content.decode()
        assert f"Choose at least two data sets of cluster run #{run.pk} to scale and merge" in page, posted
    other = reverse("cluster_merge", args=[project.pk, scaled_project["scale"].pk])   # not a cluster run
    assert client.post(other, {"identifiers": identifiers(ens, ens["good"])}).status_code == 404
    StageRun.objects.filter(pk=run.pk).update(status="running")
    client.post(url, {"identifiers": identifiers(ens, ens["good"])})
    assert "merge the clusters of a finished clustering" in client.get(run.get_report_url()).content.decode()
    assert StageRun.objects.count() == n_runs


def test_click_a_dendrogram_node_in_the_browser(browser, live_server, client, users, scaled_project,  # noqa: F811
                                                scaled_ensemble, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .browser import login, save_screenshot, severe_errors

    project, scale = scaled_project["project"], scaled_project["scale"]
    run = cluster_run(scaled_project, scaled_ensemble)
    s, good = run.summary, scaled_ensemble["good"]
    login(browser, live_server, client, users["alice"])
    browser.get(f"{live_server.url}{run.get_report_url()}")
    WebDriverWait(browser, 30).until(lambda b: all(
        b.find_elements(By.CSS_SELECTOR, f"#figure-{f} .scatterlayer .trace") for f in
        ("unit_cell", "correlation", "cos_angle", "embedding")))
    assert browser.find_elements(By.CSS_SELECTOR, "#figure-correlation .heatmaplayer image")
    assert browser.find_elements(By.CSS_SELECTOR, "#figure-cos_angle .heatmaplayer image")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#figure-embedding .scatterlayer .point")) == N
    browser.set_window_size(1300, browser.execute_script("return document.body.scrollHeight") + 120)
    save_screenshot(browser, tmp_path, "cluster_report.png")
    browser.set_window_size(1300, 1100)
    # a lasso in the embedding (plotly's event, as the lasso sends it) fills the bar
    browser.execute_script("document.getElementById('figure-embedding').emit('plotly_selected', "
                           "{points: arguments[0].map(function (k) { return {customdata: k}; })});", good)
    assert browser.find_element(By.ID, "cluster-chosen-count").text == str(len(good))
    browser.find_element(By.ID, "cluster-clear").click()
    assert not browser.find_element(By.ID, "cluster-merge").is_displayed()
    # click the dot of the node that joins the good data sets in the cos-angle tree (the run's cluster_method)
    node = next(c for c in s["cos_angle"]["clusters"] if set(good) <= set(c["members"]))
    k = [c["node"] for c in s["cos_angle"]["clusters"]].index(node["node"])
    dots = browser.find_elements(By.CSS_SELECTOR, "#figure-cos_angle .scatterlayer .trace:last-child .point")
    assert len(dots) == N - 1
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", dots[k])
    ActionChains(browser).move_to_element(dots[k]).click().perform()
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "cluster-merge").is_displayed())
    button = browser.find_element(By.ID, "cluster-merge-button")
    assert button.text == f"Scale and merge these {node['size']} data sets"
    names = browser.find_element(By.ID, "cluster-chosen-names").text
    assert all(NAMES[m] in names for m in node["members"])
    save_screenshot(browser, tmp_path, "cluster_node_chosen.png")
    before = set(project.runs.values_list("pk", flat=True))
    button.click()
    WebDriverWait(browser, 20).until(lambda b: "Queued scale" in b.page_source)
    # the new scale run (a fast worker may already have queued its follow-up merge)
    (new_id,) = set(project.runs.filter(stage="scale").values_list("pk", flat=True)) - before
    assert browser.current_url.endswith(reverse("stagerun_report", args=[project.pk, new_id]))
    new = StageRun.objects.get(pk=new_id)
    assert new.parameters["exclude_datasets"] == [m for m in range(N) if m not in node["members"]]
    merge = merge_of(new_id, timeout=240)
    assert merge.status == "succeeded", merge.log
    browser.find_element(By.LINK_TEXT, "compare with parent").click()
    WebDriverWait(browser, 20).until(lambda b: "Compare runs" in b.page_source)
    assert f"#{scale.pk} scale" in browser.page_source and f"#{new_id} scale" in browser.page_source
    assert severe_errors(browser) == []
    save_screenshot(browser, tmp_path, "cluster_compare.png")
    print("screenshots:", tmp_path)
