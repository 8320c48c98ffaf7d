"""Resolution and ΔCC½ reports, and steering from them (issue 13, web): on the real worker,
cosym → scale on the reflection-level ``tiny`` ensemble of 8 data sets (the cosym tests'
fixture), then estimate_resolution and compute_delta_cchalf from the project page's forms.

The resolution report: the criteria with the summary's d_min, the CC½ figure (observed
shells, tanh fit, its band, the limit line, the cut), the d_min slider's 24 cuts in the
page, and "Merge at this d_min" → a merge run from the scale run that writes merged.mtz
to that d_min. The ΔCC½ report: one bar per data set, the cutoff line at the summary's
cutoff, the removed data set in another colour and ticked; "Scale again without these"
→ a scale run from the cosym run without them, the ids mapped from the ΔCC½ run's input
to scale's by experiment identifier. Another group's user gets 404 on both new views.
In a real browser, moving the slider shows the chosen cut's numbers at once."""

from __future__ import annotations

import html
import json
import os
import re

import pytest
from django.urls import reverse

from xtalweb.projects.models import StageRun

from .helpers import wait_for_run
from .test_cosym_web import N, integrated_ensemble, integrated_project  # noqa: F401  (fixtures)
from .test_scale_web import run_stage, scaled

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]

#: a CC½ limit the tiny ensemble's tanh fit crosses inside the data (at about 1.96 Å);
#: at the default 0.3 its CC½ never falls that low
CC_HALF_LIMIT = "0.996"
STATISTICS = (("completeness", ".1f"), ("multiplicity", ".2f"), ("i_over_sigma", ".1f"), ("cc_half", ".3f"),
              ("rpim", ".3f"), ("rmerge", ".3f"), ("n_obs", "d"), ("n_unique", "d"))


def json_script(page: str, element_id: str):
    m = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page, re.S)
    assert m, f"no json_script {element_id}"
    return json.loads(html.unescape(m.group(1)))


def fmt(value, spec: str) -> str:
    if value is None:
        return "—"
    return str(int(value)) if spec == "d" else format(value, spec)


def report_json(client, run) -> dict:
    response = client.get(reverse("stagerun_report_json", args=[run.project_id, run.pk]))
    assert response.status_code == 200
    return response.json()


def test_resolution_report_slider_and_merge(client, users, integrated_project):
    import gemmi

    project, integ, _ = integrated_project
    client.force_login(users["bob"])
    cosym, scale = scaled(client, project, integ)
    # the scale report shows its own CC½ estimate (one table; no cuts there, so no slider)
    scale_report = report_json(client, scale)
    tables = {t["id"]: t for t in scale_report["tables"]}
    estimate = scale.summary["resolution_estimate"]
    assert tables["resolution_estimate"]["rows"][0][0] == "Recommended d_min"
    assert tables["resolution_estimate"]["rows"][0][1] == estimate["recommended"]["message"]  # no cut at 0.3
    assert "resolution.js" not in client.get(scale.get_report_url()).content.decode()

    # --- the default CC½ limit 0.3: never reached on this good data; the slider starts at the data's edge
    est0 = run_stage(client, project, "estimate_resolution", scale, range(N))
    assert (est0.status, est0.error) == ("succeeded", ""), est0.log
    assert list(est0.parents.all()) == [scale]
    s0 = est0.summary
    assert s0["d_min"] is None and s0["criteria"]["cc_half"]["status"] == "never_reached"
    report = report_json(client, est0)
    figures = {f["id"]: f for f in report["figures"]}
    assert list(figures) == ["cc_half"]  # the other criteria are off
    traces = {t["name"]: t for t in figures["cc_half"]["data"]}
    curve = s0["criteria"]["cc_half"]["curve"]
    assert traces["CC½ observed"]["y"] == [None if v is None else round(v, 4) for v in curve["observed"]]
    assert traces["CC½ observed"]["x"] == [round(v, 6) for v in curve["s"]]
    assert traces["tanh fit"]["y"] == [None if v is None else round(v, 4) for v in curve["fit"]]
    assert traces["CC½ = 0.3"]["y"] == [0.3, 0.3]
    assert not any(n.startswith("cut ") for n in traces)  # nothing to cut
    ticks = figures["cc_half"]["layout"]["xaxis"]
    assert ticks["ticktext"] and all(abs(x - 1 / float(t) ** 2) < 1e-5 for x, t in zip(ticks["tickvals"],
                                                                                        ticks["ticktext"]))
    page = client.get(est0.get_report_url()).content.decode()
    cuts0 = json_script(page, "d-min-cuts")
    assert len(cuts0) == len(s0["cuts"]) == 24
    assert f'value="{len(cuts0) - 1}"' in page and "No criterion cuts the data" in page
    assert abs(cuts0[-1]["d_min"] - s0["data_d_min"]) < 1e-6

    # --- a CC½ limit the fit crosses: the cut, its error and interval, the band
    est = run_stage(client, project, "estimate_resolution", scale, range(N), cc_half=CC_HALF_LIMIT)
    assert (est.status, est.error) == ("succeeded", ""), est.log
    s = est.summary
    d, err = s["d_min"], s["d_min_error"]
    cc = s["criteria"]["cc_half"]
    assert cc["status"] == "crossed" and 1.6 < d < 2.3 and 0 < err < 0.3
    assert s["recommended"]["criterion"] == "cc_half"
    report = report_json(client, est)
    tables = {t["id"]: t for t in report["tables"]}
    criteria = {r[0]: r for r in tables["criteria"]["rows"]}
    assert criteria["cc_half"][1:6] == [CC_HALF_LIMIT.rstrip("0"), f"{d:.2f}", f"{err:.2f}", "tanh", "crossed"]
    assert criteria["I/sig"][1:3] == ["—", None] and criteria["I/sig"][5] == "off"
    assert len(tables["criteria"]["rows"]) == len(s["criteria"])
    assert tables["resolution_estimate"]["rows"][0][1].startswith(f"{d:.2f} ± {err:.2f} Å")
    fig = next(f for f in report["figures"] if f["id"] == "cc_half")
    traces = {t["name"]: t for t in fig["data"]}
    assert traces[f"CC½ = {float(CC_HALF_LIMIT):g}"]["y"] == [float(CC_HALF_LIMIT)] * 2
    assert traces[f"cut {d:.2f} Å"]["x"] == [round(1 / d ** 2, 6)] * 2
    band = traces["fit ± σ (Fisher-z errors)"]
    assert band["fill"] == "tonexty" and len(band["y"]) == sum(v is not None for v in cc["curve"]["fit_error"])
    interval = next(sh for sh in fig["layout"]["shapes"] if sh["name"] == "interval")
    assert interval["x1"] == round(1 / cc["d_min_interval"][0] ** 2, 6)
    # the slider: 24 cuts, lowest resolution first, starting at the cut nearest d_min
    page = client.get(est.get_report_url()).content.decode()
    cuts = json_script(page, "d-min-cuts")
    assert len(cuts) == 24 and cuts == sorted(s["cuts"], key=lambda c: -c["d_min"])
    start = min(range(24), key=lambda k: abs(1 / cuts[k]["d_min"] ** 2 - 1 / d ** 2))
    assert re.search(rf'<input type="range" id="d-min-range" min="0" max="23" step="1" value="{start}"', page)
    slider = next(sh for sh in fig["layout"]["shapes"] if sh["name"] == "slider")
    assert slider["x0"] == round(1 / cuts[start]["d_min"] ** 2, 6)
    for key, spec in STATISTICS:  # the start cut's numbers, drawn by the server too
        for part in ("overall", "outer"):
            cell = re.search(rf'<td data-part="{part}" data-key="{key}" data-format="[^"]*">([^<]*)</td>', page)
            assert cell.group(1) == fmt(cuts[start][part][key], spec), (part, key)
    assert f'value="{cuts[start]["d_min"]:.3f}"' in page and "Merge at this d_min" in page
    assert page.count("js/resolution.js") == 1

    # --- "Merge at this d_min": bad values and GET make nothing
    url = reverse("merge_at_d_min", args=[project.pk, est.pk])
    n_runs = StageRun.objects.count()
    for bad in ("", "abc", "-1", "0", "nan", "inf"):
        response = client.post(url, {"d_min": bad})
        assert response.status_code == 302 and response["Location"] == est.get_report_url(), bad
    assert client.get(url).status_code == 405
    # a scale run is not an estimate
    assert client.post(reverse("merge_at_d_min", args=[project.pk, scale.pk]), {"d_min": "2"}).status_code == 404
    # another group's user: 404, nothing queued
    client.force_login(users["carol"])
    assert client.post(url, {"d_min": "2.0"}).status_code == 404
    assert client.get(est.get_report_url()).status_code == 404
    assert StageRun.objects.count() == n_runs

    client.force_login(users["alice"])
    d_cut = f"{cuts[start]['d_min']:.3f}"
    response = client.post(url, {"d_min": d_cut})
    assert response.status_code == 302
    (merge_id,) = project.runs.filter(pk__gt=est.pk).values_list("pk", flat=True)
    assert response["Location"] == f"{project.get_absolute_url()}#run-{merge_id}"
    merge = StageRun.objects.get(pk=merge_id)
    assert merge.stage == "merge" and list(merge.parents.all()) == [scale]
    from xtalweb.projects.stages import build_params, params_json, words_from_values

    defaults = params_json(build_params("merge", words_from_values("merge", {})))
    assert merge.parameters == dict(defaults, d_min=float(d_cut))
    assert sorted(r.index for r in merge.sweep_runs.all()) == list(range(N))
    merge = wait_for_run(merge_id, timeout=300)
    assert (merge.status, merge.error) == ("succeeded", ""), merge.log
    mtz = gemmi.read_mtz_file(os.path.join(merge.output_dir, "merged.mtz"))
    assert float(d_cut) - 0.01 <= mtz.resolution_high() < float(d_cut) + 0.05
    # the merge's statistics are the slider's at that cut (within 1 %: merge cuts each observation
    # at its own crystal's d, the slider's cuts at d in the median cell)
    overall = merge.summary["merging_statistics"]["overall"]
    for key in ("n_obs", "n_unique"):
        assert abs(overall[key] - cuts[start]["overall"][key]) <= 0.01 * cuts[start]["overall"][key], key
    assert abs(overall["completeness"] - cuts[start]["overall"]["completeness"]) < 1.0
    # the d_min shows as an override on the merge's report
    page = client.get(merge.get_report_url()).content.decode()
    assert f'data-param="d_min" data-run="{merge.pk}"' in page and f"d_min={float(d_cut):g}" in page


def _bars(figure) -> dict[str, list]:
    return {t["name"]: t["x"] for t in figure["data"] if t["type"] == "bar"}


def test_delta_cc_half_report_and_drop(client, users, integrated_project):
    project, integ, _ = integrated_project
    client.force_login(users["alice"])
    cosym, scale = scaled(client, project, integ)
    names = [f"crystal_{k:03d}" for k in range(N)]

    # --- defaults (mean − 4σ): nothing falls below on this ensemble
    run = run_stage(client, project, "compute_delta_cchalf", scale, range(N))
    assert (run.status, run.error) == ("succeeded", ""), run.log
    s = run.summary
    assert s["removed"] == [] and s["n_datasets"] == N
    report = report_json(client, run)
    (fig,) = [f for f in report["figures"] if f["id"] == "delta_cc_half"]
    bars = _bars(fig)
    assert list(bars) == ["kept"] and len(bars["kept"]) == N  # one bar per data set
    cycle = s["cycles"][0]
    cutoff = next(sh for sh in fig["layout"]["shapes"] if sh["name"].startswith("cutoff"))
    assert cutoff["y0"] == cutoff["y1"] == round(100 * cycle["cutoff"], 4)
    assert cutoff["name"] == "cutoff (mean − 4σ)"
    # sorted from the lowest ΔCC½, as the tutorial's table
    values = {d["id"]: d["delta_cc_half"] for d in s["datasets"]}
    order = sorted(values, key=values.get)
    assert bars["kept"] == [f"{k}: {names[k]}" for k in order]
    assert fig["layout"]["xaxis"]["categoryarray"] == bars["kept"]
    heights = next(t for t in fig["data"] if t["name"] == "kept")["y"]
    assert heights == [round(100 * values[k], 4) for k in order]
    tables = {t["id"]: t for t in report["tables"]}
    assert [r[:3] for r in tables["datasets"]["rows"]] == [[k, names[k], f"{100 * values[k]:.3f}"] for k in order]
    assert tables["datasets"]["select"]["checked"] == []
    (row,) = tables["cycles"]["rows"]
    assert row[0] == 1 and row[7] == f"{100 * cycle['cutoff']:.3f}" and row[9] == "—"

    # --- on sweeps 1…7 only (positions in this run's input are scale's ids − 1), with a
    # cutoff between the two lowest values: exactly the lowest is removed
    sub = run_stage(client, project, "compute_delta_cchalf", scale, range(1, N), max_percent_removed="30")
    low = sorted(sub.summary["datasets"], key=lambda x: x["delta_cc_half"])
    cut = (low[0]["delta_cc_half"] + low[1]["delta_cc_half"]) / 2
    sub = run_stage(client, project, "compute_delta_cchalf", scale, range(1, N), cutoff=repr(cut),
                    max_percent_removed="30")
    assert (sub.status, sub.error) == ("succeeded", ""), sub.log
    s = sub.summary
    assert [x["id"] for x in s["removed"]] == [low[0]["id"]] and s["n_datasets"] == N - 2
    report = report_json(client, sub)
    (fig,) = [f for f in report["figures"] if f["id"] == "delta_cc_half"]
    bars = _bars(fig)
    removed_label = f"{low[0]['id']}: {names[low[0]['id'] + 1]}"
    assert bars["removed"] == [removed_label] and len(bars["kept"]) == N - 2
    assert next(t for t in fig["data"] if t["name"] == "removed")["marker"]["color"] != \
        next(t for t in fig["data"] if t["name"] == "kept")["marker"]["color"]
    cutoff = next(sh for sh in fig["layout"]["shapes"] if sh["name"].startswith("cutoff"))
    assert cutoff["y0"] == round(100 * s["cycles"][0]["cutoff"], 4) == round(100 * cut, 4)
    assert cutoff["name"] == "cutoff (cutoff=)"
    tables = {t["id"]: t for t in report["tables"]}
    rows = tables["datasets"]["rows"]
    assert rows[0][:2] == [low[0]["id"], names[low[0]["id"] + 1]] and rows[0][3] == 1
    assert tables["datasets"]["row_status"][0] == "bad" and tables["datasets"]["select"]["checked"] == [low[0]["id"]]
    page = client.get(sub.get_report_url()).content.decode()
    assert page.count('name="exclude_datasets"') == N - 1
    assert f'value="{low[0]["id"]}" aria-label="leave out {low[0]["id"]}" checked>' in page
    assert page.count(" checked>") == 2 and page.count('name="then_merge" value="1" checked>') == 1  # a row, "then merge"

    # --- image groups of 5 images: a heat map of data sets × groups
    groups = run_stage(client, project, "compute_delta_cchalf", scale, range(N), mode="image_group", group_size="5")
    assert groups.status == "succeeded", groups.log
    report = report_json(client, groups)
    figures = {f["id"]: f for f in report["figures"]}
    heat = figures["delta_cc_half_groups"]["data"][0]
    assert heat["type"] == "heatmap" and heat["x"] == ["1–5", "6–10"] and len(heat["y"]) == N
    table = groups.summary["cycles"][0]["table"]
    by = {(r["id"], tuple(r["image_range"])): r["delta_cc_half"] for r in table}
    assert heat["z"][0] == [round(100 * by[(0, (1, 5))], 4), round(100 * by[(0, (6, 10))], 4)]
    assert sum(len(x) for x in _bars(figures["delta_cc_half"]).values()) == N

    # --- "Scale again without these": the removed data set and the one of the highest ΔCC½
    drop = reverse("delta_cc_half_drop", args=[project.pk, sub.pk])
    n_runs = StageRun.objects.count()
    for ids in ([], ["99"], ["x"]):
        assert client.post(drop, {"exclude_datasets": ids}).status_code == 302
    assert client.get(drop).status_code == 405
    client.force_login(users["carol"])
    assert client.post(drop, {"exclude_datasets": ["0"]}).status_code == 404
    client.force_login(users["bob"])
    assert StageRun.objects.count() == n_runs
    chosen = sorted({low[0]["id"], low[-1]["id"]})
    assert len(chosen) == 2
    response = client.post(drop, {"exclude_datasets": [str(k) for k in chosen]})
    assert response.status_code == 302
    (new_id,) = project.runs.filter(pk__gt=groups.pk).values_list("pk", flat=True)
    assert response["Location"] == f"{project.get_absolute_url()}#run-{new_id}"
    new = StageRun.objects.get(pk=new_id)
    assert new.stage == "scale" and list(new.parents.all()) == [cosym]
    # ΔCC½ input position k is sweep k + 1, scale's data set k + 1
    assert new.parameters["exclude_datasets"] == [k + 1 for k in chosen]
    new = wait_for_run(new_id, timeout=300)
    assert new.status == "partial", new.log
    identifiers = {d["id"]: d["identifier"] for d in sub.summary["datasets"]}
    assert [x["identifier"] for x in new.summary["excluded"]] == [identifiers[k] for k in chosen]
    assert new.summary["n_datasets"] == N - 2


# --- in a real browser ------------------------------------------------------------------------

from .browser import browser, save_screenshot as _save, severe_errors  # noqa: E402,F401  (fixture)


def test_slider_in_the_browser(browser, live_server, client, users, integrated_project, tmp_path):
    """Moving the slider shows the chosen cut's statistics (from the page's JSON, no request)
    and moves the line on the CC½ figure; the merge button queues a merge at that cut."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from .browser import login

    project, integ, _ = integrated_project
    client.force_login(users["alice"])
    _, scale = scaled(client, project, integ)
    est = run_stage(client, project, "estimate_resolution", scale, range(N), cc_half=CC_HALF_LIMIT)
    assert est.status == "succeeded", est.log
    login(browser, live_server, client, users["alice"])
    browser.get(f"{live_server.url}{est.get_report_url()}")
    WebDriverWait(browser, 30).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#figure-cc_half .scatterlayer .trace"))
    cuts = json.loads(browser.find_element(By.ID, "d-min-cuts").get_attribute("textContent"))
    assert len(cuts) == 24
    slider = browser.find_element(By.ID, "d-min-range")
    start = int(slider.get_attribute("value"))

    def shown() -> dict:
        cells = browser.find_elements(By.CSS_SELECTOR, "#d-min-statistics td[data-part]")
        return {(c.get_attribute("data-part"), c.get_attribute("data-key")): c.text for c in cells}

    def expected(k: int) -> dict:
        return {(part, key): fmt(cuts[k][part][key], spec) for key, spec in STATISTICS
                for part in ("overall", "outer")}

    def slider_line() -> float:
        return browser.execute_script(
            "var s = document.getElementById('figure-cc_half').layout.shapes;"
            "for (var k = 0; k < s.length; k++) if (s[k].name === 'slider') return s[k].x0; return null;")

    assert shown() == expected(start)
    before = shown()
    slider.send_keys(Keys.HOME)  # the lowest-resolution cut
    WebDriverWait(browser, 5).until(lambda b: b.find_element(By.ID, "d-min-value").text == f"{cuts[0]['d_min']:.2f} Å")
    assert shown() == expected(0) and shown() != before
    assert shown()[("outer", "completeness")] == fmt(cuts[0]["outer"]["completeness"], ".1f")
    assert browser.find_element(By.ID, "d-min-outer-range").text == \
        f"{cuts[0]['outer']['d_max']:.2f} – {cuts[0]['d_min']:.2f} Å"
    assert abs(slider_line() - 1 / cuts[0]["d_min"] ** 2) < 1e-9
    for _ in range(5):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert int(slider.get_attribute("value")) == 5
    assert shown() == expected(5) and shown()[("outer", "n_obs")] == str(cuts[5]["outer"]["n_obs"])
    assert browser.find_element(By.ID, "d-min-input").get_attribute("value") == f"{cuts[5]['d_min']:.3f}"
    assert abs(slider_line() - 1 / cuts[5]["d_min"] ** 2) < 1e-9
    assert severe_errors(browser) == []
    browser.set_window_size(1300, 2600)
    shot = _save(browser, tmp_path, "resolution_slider.png")
    assert os.path.getsize(shot) > 10_000

    before = set(project.runs.values_list("pk", flat=True))
    browser.find_element(By.CSS_SELECTOR, "#d-min-merge button[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda b: "#run-" in b.current_url)
    assert "Queued merge" in browser.page_source
    (merge_id,) = set(project.runs.values_list("pk", flat=True)) - before
    merge = wait_for_run(merge_id, timeout=300)
    assert merge.status == "succeeded" and merge.parameters["d_min"] == float(f"{cuts[5]['d_min']:.3f}")
    n_obs = merge.summary["merging_statistics"]["overall"]["n_obs"]
    assert abs(n_obs - cuts[5]["overall"]["n_obs"]) <= 0.01 * cuts[5]["overall"]["n_obs"]
    assert severe_errors(browser) == []


def test_delta_cc_half_in_the_browser(browser, live_server, client, users, integrated_project, tmp_path):
    """The ΔCC½ bars are drawn, one per data set, the removed one ticked in the table."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .browser import login

    project, integ, _ = integrated_project
    client.force_login(users["alice"])
    _, scale = scaled(client, project, integ)
    first = run_stage(client, project, "compute_delta_cchalf", scale, range(N))
    low = sorted(d["delta_cc_half"] for d in first.summary["datasets"])
    run = run_stage(client, project, "compute_delta_cchalf", scale, range(N), cutoff=repr((low[0] + low[1]) / 2),
                    max_percent_removed="30")
    (removed,) = run.summary["removed"]
    login(browser, live_server, client, users["alice"])
    browser.get(f"{live_server.url}{run.get_report_url()}")
    WebDriverWait(browser, 30).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#figure-delta_cc_half .bars .point")) == N)
    boxes = browser.find_elements(By.CSS_SELECTOR, "#select-datasets input[name=exclude_datasets]")
    ticked = [b.get_attribute("value") for b in boxes if b.is_selected()]
    assert ticked == [str(removed["id"])]
    assert severe_errors(browser) == []
    browser.set_window_size(1300, 2600)
    assert os.path.getsize(_save(browser, tmp_path, "delta_cc_half_report.png")) > 10_000
