"""Steering pages (issue 13, web): the run history as a graph parent → child, two runs
side by side, the fate of every data set (per project and per run) with the warning
when a stage left out more than 10 % of its data sets, and the overrides shown on
every report downstream of the run where a parameter was set.

The project goes through cosym → scale → "Scale again without these" (data set 2) on
the real worker, on the reflection-level ``tiny`` ensemble of 8 data sets (the cosym
tests' fixture): the second scale run leaves out 1 of 8 (12.5 %)."""

from __future__ import annotations

import html
import json
import os
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from xtalweb.projects.models import Project, StageRun, SweepRun

from .helpers import wait_for_run
from .test_cosym_web import N, integrated_ensemble, integrated_project  # noqa: F401  (fixtures)
from .test_scale_web import scaled

pytestmark = pytest.mark.django_db(transaction=True)

DROPPED = 2


def json_script(page: str, element_id: str):
    m = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page, re.S)
    assert m, f"no json_script {element_id}"
    return json.loads(html.unescape(m.group(1)))


def rows_of(page: str, table_id: str) -> list[str]:
    m = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', page, re.S)
    assert m, f"no table {table_id}"
    body = m.group(1).split("<tbody>", 1)[1]
    return re.findall(r"<tr[^>]*>.*?</tr>", body, re.S)


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def fate_cells(page: str, run_id: int) -> dict[str, tuple[str, str]]:
    """Sweep name → (state, text) of the fate table's column of run ``run_id``."""
    out = {}
    for row in rows_of(page, "fate"):
        name = re.search(r'data-dataset="([^"]+)"', row).group(1)
        m = re.search(rf'<td class="fate-([\w-]+)" data-stage="\w+" data-run="{run_id}"[^>]*>(.*?)</td>', row, re.S)
        assert m, (name, run_id)
        out[html.unescape(name)] = (m.group(1), html.unescape(re.sub(r"<[^>]+>", "", m.group(2))).strip())
    return out


@pytest.fixture
def dropped(client, users, integrated_project, celery_worker):
    """cosym → scale (all 8) → scale again without data set 2, by alice, on the worker."""
    project, integ, _ = integrated_project
    client.force_login(users["alice"])
    cosym, first = scaled(client, project, integ)
    response = client.post(reverse("scale_drop", args=[project.pk, first.pk]), {"exclude_datasets": [str(DROPPED)]})
    assert response.status_code == 302
    (second_id,) = project.runs.filter(pk__gt=first.pk).values_list("pk", flat=True)
    second = wait_for_run(second_id, timeout=300)
    assert second.status == "partial" and second.parameters["exclude_datasets"] == [DROPPED], second.log
    return {"project": project, "integrate": integ, "cosym": cosym, "first": first, "second": second}


def test_history_compare_fate_and_overrides(client, users, dropped):
    project, integ, cosym = dropped["project"], dropped["integrate"], dropped["cosym"]
    first, second = dropped["first"], dropped["second"]
    names = [f"crystal_{k:03d}" for k in range(N)]

    # --- history: 4 runs, the edges parent → child; the main line ends at the latest scale run
    page = client.get(reverse("project_history", args=[project.pk])).content.decode()
    graph = json_script(page, "history-graph")
    assert sorted(n["id"] for n in graph["nodes"]) == [integ.pk, cosym.pk, first.pk, second.pk]
    assert sorted(map(tuple, graph["edges"])) == sorted([(integ.pk, cosym.pk), (cosym.pk, first.pk),
                                                         (cosym.pk, second.pk)])
    depth = {n["id"]: n["depth"] for n in graph["nodes"]}
    assert [depth[r.pk] for r in (integ, cosym, first, second)] == [0, 1, 2, 2]
    assert {n["id"] for n in graph["nodes"] if n["main"]} == {integ.pk, cosym.pk, second.pk}
    assert {n["id"]: n["status"] for n in graph["nodes"]}[second.pk] == "partial"
    # drawn: 4 boxes each linking its report, 3 arrows
    assert page.count('<path class="edge') == 3
    for run in (integ, cosym, first, second):
        assert f'<a href="{run.get_report_url()}" class="node status-{run.status}' in page
    assert f'id="node-{second.pk}"' in page and f"{N - 1}/{N} kept" in page and f"{N}/{N} kept" in page
    # preselected for comparison: the latest run (B) and the scale run before it (A)
    assert f'name="a" value="{first.pk}" aria-label="A: run {first.pk}" checked' in page
    assert f'name="b" value="{second.pk}" aria-label="B: run {second.pk}" checked' in page

    # --- compare the two scale runs
    url = reverse("compare_runs", args=[project.pk])
    page = client.get(url, {"a": first.pk, "b": second.pk}).content.decode()
    params = [cells(r) for r in rows_of(page, "table-parameters")]
    assert params == [["exclude_datasets", "(none)", str(DROPPED), "(none)"]]
    datasets = {c[0]: c[1:] for c in map(cells, rows_of(page, "table-datasets"))}
    assert list(datasets) == names
    assert [n for n, (a, b) in datasets.items() if a != b] == [names[DROPPED]]
    assert datasets[names[DROPPED]][0] == "✓" and datasets[names[DROPPED]][1].startswith("✗")
    assert "exclude_datasets" in datasets[names[DROPPED]][1]
    assert all(datasets[n] == ["✓", "✓"] for n in names if n != names[DROPPED])
    # the merging summary of both, and the overall CC½ of each
    merging = {c[0]: c[1:] for c in map(cells, rows_of(page, "table-merging"))}
    cc = [r.summary["merging_statistics"]["overall"]["cc_half"] for r in (first, second)]
    assert merging["CC half"][:2] == [f"{cc[0]:.3f}", f"{cc[1]:.3f}"]
    n_obs = [r.summary["merging_statistics"]["overall"]["n_obs"] for r in (first, second)]
    assert merging["Total observations"][:2] == [str(n) for n in n_obs] and n_obs[1] < n_obs[0]
    # CC½ and I/σ against resolution, both runs overlaid in one figure
    (figure,) = json_script(page, "figures-data")
    traces = {t["name"]: t for t in figure["data"]}
    assert sorted(traces) == sorted(f"#{r.pk} scale: {q}" for r in (first, second) for q in ("CC½", "⟨I/σ⟩"))
    for run in (first, second):
        shells = run.summary["merging_statistics"]["shells"]
        assert traces[f"#{run.pk} scale: CC½"]["y"] == [round(s["cc_half"], 4) for s in shells]
    # runs of different stages: what applies (cosym has no merging statistics)
    page = client.get(url, {"a": cosym.pk, "b": second.pk}).content.decode()
    params = {c[0]: c[1:] for c in map(cells, rows_of(page, "table-parameters"))}
    assert params["stability"][:2] == ["false", "—"] and params["exclude_datasets"][:2] == ["—", str(DROPPED)]
    assert f'<th class="side-b">#{second.pk}</th>' in page and f'<th class="side-a">#{cosym.pk}</th>' not in page
    assert f"Run #{second.pk} starts from run #{cosym.pk}" in page
    # the siblings branch at cosym
    page = client.get(url, {"a": second.pk, "b": first.pk}).content.decode()
    assert f"Both runs start from #{cosym.pk} (cosym)" in page
    # a run of no such id, or not a number: 404; no runs picked: back to the history
    assert client.get(url, {"a": first.pk, "b": 999999}).status_code == 404
    assert client.get(url, {"a": "x", "b": first.pk}).status_code == 404
    response = client.get(url)
    assert response.status_code == 302 and response["Location"] == reverse("project_history", args=[project.pk])

    # --- the fate of every data set: the main line integrate → cosym → scale #second
    page = client.get(reverse("project_datasets", args=[project.pk])).content.decode()
    scaling = fate_cells(page, second.pk)
    assert list(scaling) == names
    assert scaling[names[DROPPED]][0] == "out" and scaling[names[DROPPED]][1].startswith("✗")
    assert "exclude_datasets" in scaling[names[DROPPED]][1]
    assert all(scaling[n] == ("kept", "✓") for n in names if n != names[DROPPED])
    assert all(v == ("kept", "✓") for v in fate_cells(page, cosym.pk).values())
    assert all(v == ("kept", "✓") for v in fate_cells(page, integ.pk).values())
    header = re.search(r'<table class="grid fate" id="fate">.*?</thead>', page, re.S).group(0)
    titles = re.findall(r'<th class="stage-[^"]*"[^>]*>(.*?)<br>', header)
    assert titles[-4:] == ["integrated", "kept by cosym", "kept by scaling", "merged"]
    assert "ΔCC½" not in header  # no compute_delta_cchalf run: no column
    assert 'class="stage-merge not-run"' in header
    warning = f"scale (run #{second.pk}) left out 1 of {N} data sets (12.5 %)"
    assert warning in page and f"#{first.pk} scale</a>" in page  # the other line's end is linked
    # the 10 % warning on the project page, naming the stage and the count
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert page.count('class="banner warning-banner leave-out-warning"') == 1 and warning in page
    assert f'href="{reverse("project_datasets", args=[project.pk])}"' in page
    assert f'href="{reverse("project_history", args=[project.pk])}"' in page
    # per run: the first scale run's line keeps all 8
    page = client.get(reverse("run_datasets", args=[project.pk, first.pk])).content.decode()
    assert all(v == ("kept", "✓") for v in fate_cells(page, first.pk).values()) and "warning-banner" not in page
    assert len(fate_cells(page, first.pk)) == N and f'data-run="{second.pk}"' not in page

    # --- overrides: exclude_datasets on the second scale run's report, with the sweep it left out
    page = client.get(second.get_report_url()).content.decode()
    assert f'<li class="override" data-param="exclude_datasets" data-run="{second.pk}">' in page
    note = re.search(r'<li class="override" data-param="exclude_datasets".*?</li>', page, re.S).group(0)
    assert f"exclude_datasets={DROPPED}" in note and f"left out: {names[DROPPED]}" in note
    assert f'href="{reverse("run_datasets", args=[project.pk, second.pk])}"' in page
    # cosym's stability=false is listed among the other non-default parameters of the line
    assert f'<li data-param="stability"><code>stability=false</code> on' in page
    page = client.get(first.get_report_url()).content.decode()
    assert 'class="override"' not in page and 'data-param="stability"' in page

    # --- another group's user: 404 on every page; anonymous: to the login page
    urls = [reverse("project_history", args=[project.pk]),
            reverse("compare_runs", args=[project.pk]) + f"?a={first.pk}&b={second.pk}",
            reverse("project_datasets", args=[project.pk]), reverse("run_datasets", args=[project.pk, second.pk])]
    client.force_login(users["bob"])  # alice's group: allowed
    assert [client.get(u).status_code for u in urls] == [200] * 4
    client.force_login(users["carol"])
    assert [client.get(u).status_code for u in urls] == [404] * 4
    client.logout()
    for u in urls:
        response = client.get(u)
        assert response.status_code == 302 and "/login" in response["Location"], u


def _scale_run(project, parent, n_given, n_left, when):
    run = StageRun.objects.create(project=project, stage="scale", status="partial" if n_left else "succeeded",
                                  progress=1.0, parameters={"exclude_datasets": list(range(n_left))},
                                  started=when, finished=when)
    run.parents.add(parent)
    for k in range(n_given):
        SweepRun.objects.create(run=run, index=k, name=f"x_{k:02d}", unit=0, progress=1.0,
                                status="failed" if k < n_left else "succeeded",
                                error="left out by exclude_datasets" if k < n_left else "")
    return run


def test_leave_out_warning_threshold(client, users):
    """More than 10 %: 1 of 10 is not, 2 of 10 is; only runs of the main line count; another
    run id in another project is 404 on the per-run table."""
    project = Project.objects.create(name="p", owner=users["alice"], group=users["lab_a"], data_root="/x")
    other = Project.objects.create(name="q", owner=users["carol"], data_root="/y")
    now = timezone.now()
    cosym = StageRun.objects.create(project=project, stage="cosym", status="succeeded", started=now, finished=now)
    client.force_login(users["alice"])
    detail = reverse("project_detail", args=[project.pk])

    one = _scale_run(project, cosym, 10, 1, now)
    assert "leave-out-warning" not in client.get(detail).content.decode()
    two = _scale_run(project, cosym, 10, 2, now + timedelta(seconds=1))
    page = client.get(detail).content.decode()
    assert page.count("leave-out-warning") == 1
    assert f"scale (run #{two.pk}) left out 2 of 10 data sets (20.0 %)" in page
    # a newer run with none left out ends the main line: no warning
    _scale_run(project, cosym, 10, 0, now + timedelta(seconds=2))
    assert "leave-out-warning" not in client.get(detail).content.decode()
    # the per-run table of run #two still shows it; x_00 and x_01 left by exclude_datasets
    page = client.get(reverse("run_datasets", args=[project.pk, two.pk])).content.decode()
    assert "left out 2 of 10 data sets" in page
    states = fate_cells(page, two.pk)
    assert [n for n, (s, _) in states.items() if s == "out"] == ["x_00", "x_01"]
    assert client.get(reverse("run_datasets", args=[other.pk, one.pk])).status_code == 404
    assert client.get(reverse("run_datasets", args=[project.pk, one.pk + 1000])).status_code == 404


def _run(project, stage, parent, *, parameters=None, summary=None, sweeps=(), when=None):
    when = when or timezone.now()
    run = StageRun.objects.create(project=project, stage=stage, status="succeeded", progress=1.0,
                                  parameters=parameters or {}, summary=summary or {}, started=when, finished=when)
    if parent is not None:
        run.parents.add(parent)
    for k, name in sweeps:
        SweepRun.objects.create(run=run, index=k, name=name, unit=0, progress=1.0, status="succeeded")
    return run


def test_overrides_downstream_and_unchosen_sweeps(client, users):
    """A space group given to cosym and a d_min given to scale show as overrides on every
    report below them, with what the program would choose and the resolution reached;
    a sweep kept by cosym but not chosen for the scale run leaves the line there."""
    from xtalweb.reports.overrides import defaults, overrides_for

    project = Project.objects.create(name="p", owner=users["alice"], group=users["lab_a"], data_root="/x")
    sweeps = [(k, f"s_{k}") for k in range(4)]
    integ = _run(project, "integrate", None, sweeps=sweeps)
    cosym_params = dict(defaults("cosym"), space_group="I 21 3")
    cosym = _run(project, "cosym", integ, parameters=cosym_params, sweeps=sweeps,
                 summary={"best": {"space_group": "I 21 3", "analysis_would_choose": "I m -3"}})
    scale = _run(project, "scale", cosym, parameters=dict(defaults("scale"), d_min=2.0), sweeps=sweeps[:3],
                 summary={"d_min": 2.004, "resolution_estimate": {"d_min": 1.83, "criterion": "cc_half"}})
    merge = _run(project, "merge", scale, parameters=defaults("merge"), sweeps=sweeps[:3])
    assert defaults("index")["joint"] is False  # the web's default, not the dataclass's: not an override

    found = overrides_for(merge)
    assert [(o["run"].pk, o["name"], o["value"]) for o in found["highlighted"]] == \
        [(cosym.pk, "space_group", "I 21 3"), (scale.pk, "d_min", "2.0")]
    assert found["highlighted"][0]["chosen"] == "the analysis alone would choose I m -3"
    assert found["highlighted"][1]["chosen"] == \
        f"the data of run #{scale.pk} reach 2.00 Å; resolution estimate 1.83 Å (run #{scale.pk})"
    assert found["others"] == [] and overrides_for(integ) == {"highlighted": [], "others": []}
    client.force_login(users["bob"])
    page = client.get(merge.get_report_url()).content.decode()
    assert page.count('<li class="override"') == 2
    assert f'data-param="space_group" data-run="{cosym.pk}"' in page and "would choose I m -3" in page
    assert f'data-param="d_min" data-run="{scale.pk}"' in page
    page = client.get(scale.get_report_url()).content.decode()  # (its stored summary is a stub: no tables)
    assert page.count('<li class="override"') == 2 and "d_min=2.0</code> set on this run" in page
    assert [o["here"] for o in overrides_for(cosym)["highlighted"]] == [True]

    # the fate: s_3 kept by cosym, not chosen for the scale run; blank (left before) in merge
    page = client.get(reverse("project_datasets", args=[project.pk])).content.decode()
    assert fate_cells(page, cosym.pk)["s_3"] == ("kept", "✓")
    assert fate_cells(page, scale.pk)["s_3"] == ("not-given", f"✗ not chosen for run #{scale.pk}")
    assert fate_cells(page, merge.pk) == {"s_0": ("kept", "✓"), "s_1": ("kept", "✓"), "s_2": ("kept", "✓"),
                                          "s_3": ("before", "")}
    assert f"left at scale #{scale.pk}: not chosen for run #{scale.pk}" in page
    # 1 of 4 not chosen is the user's choice, not a stage leaving data sets out: no warning
    assert "warning-banner" not in page


def test_delta_cchalf_column(client, users):
    """A ΔCC½ filter run on the line gets its column; a data set its summary's ``removed``
    list names (rows not marked) is ✗ there with its ΔCC½ and cycle, counts for the 10 %
    warning, and is blank in the merge after it."""
    project = Project.objects.create(name="p", owner=users["alice"], group=users["lab_a"], data_root="/x")
    sweeps = [(k, f"s_{k}") for k in range(5)]
    experiments = [{"id": k, "identifier": f"id-{k}", "sweep": k, "name": n} for k, n in sweeps]
    integ = _run(project, "integrate", None, sweeps=sweeps, summary={"experiments": experiments})
    cosym = _run(project, "cosym", integ, sweeps=sweeps)
    scale = _run(project, "scale", cosym, sweeps=sweeps)
    filt = _run(project, "compute_delta_cchalf", scale, sweeps=sweeps, summary={
        "removed": [{"id": 3, "identifier": "id-3", "cycle": 1, "delta_cc_half": -0.0123, "reason": "below cutoff"}]})
    merge = _run(project, "merge", filt, sweeps=[x for x in sweeps if x[0] != 3])
    client.force_login(users["alice"])
    page = client.get(reverse("project_datasets", args=[project.pk])).content.decode()
    assert "kept by ΔCC½ filtering<br>" in page
    states = fate_cells(page, filt.pk)
    assert states["s_3"] == ("out", "✗ ΔCC½ -0.0123, removed in cycle 1: below cutoff")
    assert [n for n, (st, _) in states.items() if st == "kept"] == ["s_0", "s_1", "s_2", "s_4"]
    assert fate_cells(page, merge.pk)["s_3"] == ("before", "")
    warning = html.escape(f"{filt.get_stage_display()} (run #{filt.pk}) left out 1 of 5 data sets (20.0 %)")
    assert warning in page and warning in client.get(reverse("project_detail", args=[project.pk])).content.decode()


def test_fate_from_the_import(client, users, indexed_project):
    """import → find_spots → index: the sweeps as imported, one column per run, and the
    stages not run yet as empty columns; an index failure is ✗ with the sweep's message."""
    project, imp, idx = indexed_project["project"], indexed_project["import"], indexed_project["index"]
    names = list(project.sweeps.values_list("name", flat=True))
    assert len(names) == 3
    row = idx.sweep_runs.get(index=1)
    row.status, row.error = "failed", "only 7 spots indexed (need 20)"
    row.save()
    StageRun.objects.filter(pk=idx.pk).update(status="partial")
    client.force_login(users["alice"])
    page = client.get(reverse("project_datasets", args=[project.pk])).content.decode()
    header = re.search(r'<table class="grid fate" id="fate">.*?</thead>', page, re.S).group(0)
    assert re.findall(r'<th class="stage-[^"]*"[^>]*>(.*?)<br>', header) == [
        "imported", "spots", "indexed", "refined", "integrated", "kept by cosym", "kept by scaling", "merged"]
    assert list(fate_cells(page, imp.pk).values()) == [("kept", "✓")] * 3
    assert fate_cells(page, idx.pk)[names[1]] == ("out", "✗ only 7 spots indexed (need 20)")
    warning = f"index (run #{idx.pk}) left out 1 of 3 data sets (33.3 %)"
    assert warning in page and warning in client.get(reverse("project_detail", args=[project.pk])).content.decode()
    graph = json_script(client.get(reverse("project_history", args=[project.pk])).content.decode(), "history-graph")
    assert sorted(map(tuple, graph["edges"])) == [(imp.pk, indexed_project["find_spots"].pk),
                                                  (indexed_project["find_spots"].pk, idx.pk)]


from .browser import browser as logged_browser, severe_errors  # noqa: E402,F401  (fixture)


def test_steering_pages_in_the_browser(logged_browser, live_server, client, users, dropped, tmp_path):
    """The graph's boxes and arrows, the overlaid figure (4 traces) and the fate table in a
    real browser, without console errors; screenshots in the test's tmp folder (and in
    $XTALWEB_SCREENSHOTS if set)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .browser import login

    browser = logged_browser
    project, first, second = dropped["project"], dropped["first"], dropped["second"]
    login(browser, live_server, client, users["alice"])
    folders = [str(tmp_path)] + ([os.environ["XTALWEB_SCREENSHOTS"]] if os.environ.get("XTALWEB_SCREENSHOTS") else [])

    def shot(name, height):
        browser.set_window_size(1300, height)
        for folder in folders:
            browser.save_screenshot(os.path.join(folder, name))

    base = f"{live_server.url}/projects/{project.pk}"
    browser.get(f"{base}/history/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history-svg a.node")) == 4
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history-svg path.edge")) == 3
    stripe = browser.find_element(By.CSS_SELECTOR, f"#node-{second.pk} rect.stripe")
    assert stripe.value_of_css_property("fill") == "rgb(227, 160, 8)"  # partial: amber
    shot("history.png", 1100)
    # pick A and B on the history page: the compare page opens with them
    browser.find_element(By.CSS_SELECTOR, "#compare-form button[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda b: "/compare/" in b.current_url)
    assert f"a={first.pk}" in browser.current_url and f"b={second.pk}" in browser.current_url
    WebDriverWait(browser, 30).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#figure-compare_resolution .scatterlayer .trace")) == 4)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#figure-compare_resolution .cartesianlayer .subplot")) == 2
    shot("compare.png", 2700)
    browser.get(f"{base}/")
    banner = browser.find_element(By.CSS_SELECTOR, ".leave-out-warning")
    assert f"left out 1 of {N} data sets (12.5 %)" in banner.text
    shot("project.png", 900)
    browser.get(f"{base}/datasets/")
    out = browser.find_elements(By.CSS_SELECTOR, f'#fate td.fate-out[data-run="{second.pk}"]')
    assert len(out) == 1 and "exclude_datasets" in out[0].text
    assert len(browser.find_elements(By.CSS_SELECTOR, f'#fate td.fate-kept[data-run="{second.pk}"]')) == N - 1
    shot("datasets.png", 900)
    browser.get(f"{live_server.url}{second.get_report_url()}")
    assert "exclude_datasets" in browser.find_element(By.CSS_SELECTOR, "#overrides li.override").text
    shot("report_overrides.png", 900)
    # (the browser's own request for /favicon.ico, which the app does not serve, is not the pages')
    errors = severe_errors(browser)
    assert errors == []
