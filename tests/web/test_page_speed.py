"""Page speed (issue 15): the pages a browser polls or opens most read the database a small,
constant number of times and send little, however many runs, sweeps, log lines and
summary tables the project has.

The project page fetches a stage's run form when its card is opened (not all twelve up
front); the polled ``status.json`` carries only what changes (states, progress, counts, the
last log line; no summaries, parameters or file lists) with an ETag, so an unchanged poll
is a bodiless 304. The runs are made directly in the database, with logs and summaries as
large as real ones (no worker, no science), so these tests are fast."""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from xtalweb.projects import review
from xtalweb.projects.models import Project, StageRun, Sweep, SweepRun

from .browser import browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

STAGES = ("find_spots", "index", "refine", "integrate", "cosym", "scale", "merge")
PER_SWEEP = ("find_spots", "index", "refine", "integrate")
#: a real log's length and a scale summary's bulk (per-bin tables, plots): what must not be sent
LOG = "".join(f"2026-01-01 00:00:{k % 60:02d},000 INFO processing.stage: line {k} of the log\n" for k in range(2000))
BULK = {"normal_probability": {"x": list(range(3000)), "y": list(range(3000))},
        "merging_statistics": {"overall": {"cc_half": 0.98}, "bins": [{"d_min": 1.5 + k, "cc_half": 0.9}
                                                                        for k in range(200)]}}


def _project(users, folders, n_sweeps: int, n_passes: int) -> Project:
    """A project of ``n_sweeps`` sweeps processed ``n_passes`` times from import to merge
    (each pass a full line of runs, each run with large logs and summaries), plus notes,
    a flag, a share and a running rerun of integrate."""
    project = Project.objects.create(name=f"speed-{n_sweeps}-{n_passes}", owner=users["alice"],
                                     group=users["lab_a"], data_root=str(folders["data"]))
    project.work_dir = str(folders["work"] / str(project.pk))
    os.makedirs(project.work_dir, exist_ok=True)
    project.save()
    names = [f"xtal_{k:02d}" for k in range(n_sweeps)]
    Sweep.objects.bulk_create([Sweep(project=project, name=n, n_images=3600, files=[f"{n}_{i:05d}.cbf"
                                                                                    for i in range(3600)])
                               for n in names])
    now = timezone.now()
    imp = StageRun.objects.create(project=project, stage="import", status="succeeded", progress=1.0, log=LOG,
                                  summary={"n_images": 3600 * n_sweeps, "sweeps": [{"name": n} for n in names]},
                                  started=now, finished=now)
    parent = None
    for _ in range(n_passes):
        parent = imp
        for stage in STAGES:
            run = StageRun.objects.create(project=project, stage=stage, status="succeeded", progress=1.0, log=LOG,
                                          parameters={"d_min": None, "nproc": 1}, started=now, finished=now,
                                          summary={"n_reflections": 1234, "space_group": "I 2 1 3", **BULK})
            run.parents.add(parent)
            SweepRun.objects.bulk_create([SweepRun(run=run, index=k, name=n, unit=k if stage in PER_SWEEP else 0,
                                                   status="succeeded", progress=1.0, log=LOG,
                                                   summary=BULK if stage in PER_SWEEP else {})
                                          for k, n in enumerate(names)])
            parent = run if stage != "merge" else parent
    refine = project.runs.filter(stage="refine").latest("id")
    running = StageRun.objects.create(project=project, stage="integrate", status="running", progress=0.4,
                                      started=now)
    running.parents.add(refine)
    SweepRun.objects.bulk_create([SweepRun(run=running, index=k, name=n, unit=k, status="running", progress=0.4,
                                           log=LOG + f"2026-01-01 00:01:0{k % 10},000 INFO integrate: block {k}\n")
                                  for k, n in enumerate(names)])
    review.add_note(project, users["bob"], "crystal 1 is split", dataset=names[1])
    review.set_flag(project, users["bob"], names[1], "exclude", "split spots")
    review.share(project, users["alice"], "read", group=users["lab_b"])
    return project


@pytest.fixture
def small(users, folders):
    return _project(users, folders, n_sweeps=3, n_passes=1)


@pytest.fixture
def large(users, folders):
    return _project(users, folders, n_sweeps=8, n_passes=3)


def _queries(client, url: str, **headers) -> tuple[int, object]:
    client.get(url, headers=headers)  # warm: the session's first use, the registry's import
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, headers=headers)
    return len(captured), response


def _urls(project) -> dict[str, str]:
    merge = project.runs.filter(stage="merge").latest("id")
    scale = project.runs.filter(stage="scale").latest("id")
    return {"project_page": reverse("project_detail", args=[project.pk]),
            "status_json": reverse("project_status", args=[project.pk]),
            "stage_form": reverse("stagerun_new", args=[project.pk, "integrate"]),
            "report_page": reverse("stagerun_report", args=[project.pk, merge.pk]),
            "scale_report_page": reverse("stagerun_report", args=[project.pk, scale.pk]),
            "report_json": reverse("stagerun_report_json", args=[project.pk, scale.pk]),
            "project_list": reverse("project_list")}


#: most queries of each page (session, user and project included)
MAX_QUERIES = {"project_page": 16, "status_json": 12, "stage_form": 20, "report_page": 14,
               "scale_report_page": 14, "report_json": 8, "project_list": 5}
#: most bytes each page sends for the large project (8 sweeps × 3 lines of 8 runs, MB of logs and summaries)
MAX_BYTES = {"project_page": 90_000, "status_json": 40_000, "stage_form": 30_000, "report_page": 40_000,
             "scale_report_page": 200_000, "report_json": 200_000, "project_list": 4_000}


@pytest.mark.parametrize("page", sorted(MAX_QUERIES))
def test_queries_are_few_and_do_not_grow_with_the_project(client, users, small, large, page,
                                                          django_assert_max_num_queries):
    client.force_login(users["alice"])
    url = _urls(large)[page]
    n_small, _ = _queries(client, _urls(small)[page])
    n_large, response = _queries(client, url)
    assert response.status_code == 200
    assert n_large == n_small, (page, n_small, n_large)  # 3 → 8 sweeps, 1 → 3 lines of runs: no query more
    with django_assert_max_num_queries(MAX_QUERIES[page]):
        client.get(url)
    assert len(response.content) <= MAX_BYTES[page], (page, len(response.content))


def test_project_page_has_no_form_until_one_is_opened(client, users, large):
    client.force_login(users["bob"])
    page = client.get(reverse("project_detail", args=[large.pk])).content.decode()
    assert page.count('class="card run-form"') == 12 and "/runs/new/" in page
    assert 'name="integrate-parent"' not in page and 'name="integrate-d_min"' not in page  # fetched when opened
    assert page.count(LOG[:60]) == 0 and "normal_probability" not in page
    form = client.get(reverse("stagerun_new", args=[large.pk, "integrate"]))
    assert form.status_code == 200 and form["Cache-Control"] == "private, no-store"
    html = form.content.decode()
    assert f'action="{reverse("stagerun_new", args=[large.pk, "integrate"])}"' in html
    assert 'name="integrate-d_min"' in html and 'name="csrfmiddlewaretoken"' in html
    refine = large.runs.filter(stage="refine", status="succeeded").latest("id")
    assert f'<option value="{refine.pk}" selected>' in html  # the latest refine run is the input
    # the exclude flag unticks its data set, with why
    assert 'value="1" id="id_integrate-sweeps_1">' in html.replace('name="integrate-sweeps" ', "")
    assert "split spots" in html
    # a stage without input says what it needs
    fresh = Project.objects.create(name="fresh", owner=users["alice"], group=users["lab_a"],
                                   data_root=str(large.data_root))
    assert "Needs a succeeded" in client.get(reverse("stagerun_new", args=[fresh.pk, "merge"])).content.decode()
    assert client.get(reverse("stagerun_new", args=[large.pk, "nonsense"])).status_code == 404


def test_read_only_member_gets_no_form(client, users, large):
    client.force_login(users["carol"])  # lab-b: a read-only share
    page = client.get(reverse("project_detail", args=[large.pk])).content.decode()
    assert "no run can be started" in page and 'class="card run-form"' not in page and "/runs/new/" not in page
    assert client.get(reverse("stagerun_new", args=[large.pk, "integrate"])).status_code == 403
    status = client.get(reverse("project_status", args=[large.pk])).json()
    assert status["project"]["access"] == "read" and all(r["retry_url"] is None for r in status["runs"])


def test_status_carries_what_changes_and_304_when_nothing_did(client, users, large):
    client.force_login(users["bob"])
    url = reverse("project_status", args=[large.pk])
    first = client.get(url)
    data = first.json()
    assert first["Cache-Control"] == "private, no-cache" and first["ETag"].startswith('"')
    assert len(data["runs"]) == 1 + 3 * len(STAGES) + 1 and len(data["sweeps"]) == 8
    run = data["runs"][-1]
    assert set(run) == {"id", "stage", "status", "progress", "error", "parents", "started", "finished",
                        "report_url", "log_url", "retry_url", "n_failed_sweeps", "log_tail", "sweeps"}
    assert set(run["sweeps"][0]) == {"index", "name", "status", "progress", "error"}
    assert "files" not in data["sweeps"][0] and data["sweeps"][0]["n_images"] == 3600
    # the running rerun's last log line: its sweeps' latest (a line starts with its time)
    assert (run["status"], run["progress"]) == ("running", 0.4)
    assert run["log_tail"] == "2026-01-01 00:01:07,000 INFO integrate: block 7"
    assert all(r["log_tail"] == "" for r in data["runs"][:-1])  # finished runs: no log read
    assert {s["stage"]: s["state"] for s in data["overview"]["stages"]}["integrate"] == "running"

    with CaptureQueriesContext(connection) as captured:
        again = client.get(url, headers={"If-None-Match": first["ETag"]})
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == first["ETag"]
    # session, user, project, bob's groups, the columns that change, the running run's log ends
    assert len(captured) <= 9
    assert not any("summary" in q["sql"] for q in captured.captured_queries)
    StageRun.objects.filter(pk=run["id"]).update(progress=0.6)
    changed = client.get(url, headers={"If-None-Match": first["ETag"]})
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert changed.json()["runs"][-1]["progress"] == 0.6
    # the run's own log (the join) wins over its sweeps'
    StageRun.objects.filter(pk=run["id"]).update(log="a\n2026-01-01 00:02:00,000 INFO join: merging 8 sweeps\n\n")
    assert client.get(url).json()["runs"][-1]["log_tail"] == "2026-01-01 00:02:00,000 INFO join: merging 8 sweeps"


def test_project_page_shows_the_last_log_line_of_a_running_run(client, users, small):
    client.force_login(users["alice"])
    page = client.get(reverse("project_detail", args=[small.pk])).content.decode()
    running = small.runs.get(status="running")
    row = page[page.index(f'id="run-{running.pk}"'):]
    row = row[: row.index("</tr>")]
    assert '<p class="log-tail meta"' in row and "2026-01-01 00:01:02,000 INFO integrate: block 2" in row
    assert page.count('class="log-tail') == 1


@pytest.mark.django_db(transaction=True)
def test_lazy_form_and_live_status_in_the_browser(browser, live_server, client, users, folders, tmp_path):  # noqa: F811
    """bob opens the integrate card (its form arrives), sets d_min and runs it; the running
    run's last log line is on the page and stays after the poller has redrawn the table."""
    from unittest import mock

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from xtalweb.projects import runs

    from .browser import login, save_screenshot, severe_errors

    project = _project(users, folders, n_sweeps=3, n_passes=1)
    running = project.runs.get(status="running")
    login(browser, live_server, client, users["bob"])
    browser.get(f"{live_server.url}{project.get_absolute_url()}")
    assert not browser.find_elements(By.CSS_SELECTOR, "#run-forms form")  # no form until a card is opened
    tail = browser.find_element(By.CSS_SELECTOR, f"#run-{running.pk} .log-tail").text
    assert tail == "2026-01-01 00:01:02,000 INFO integrate: block 2"
    save_screenshot(browser, tmp_path, "page_speed_project.png")
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.ID, f"run-{running.pk}"))
    save_screenshot(browser, tmp_path, "page_speed_running_run.png")

    card = browser.find_element(By.ID, "form-integrate")
    browser.execute_script("arguments[0].scrollIntoView()", card)
    card.find_element(By.TAG_NAME, "summary").click()
    form = WebDriverWait(browser, 10).until(lambda b: card.find_element(By.TAG_NAME, "form"))
    boxes = {e.get_attribute("value"): e.is_selected()
             for e in form.find_elements(By.CSS_SELECTOR, "input[name='integrate-sweeps']")}
    assert boxes == {"0": True, "1": False, "2": True}  # xtal_01 flagged exclude
    assert "split spots" in card.text
    save_screenshot(browser, tmp_path, "page_speed_form_open.png")
    time.sleep(2.5)  # the poller has redrawn the runs table (the open form is left alone)
    assert browser.find_element(By.CSS_SELECTOR, f"#run-{running.pk} .log-tail").text == tail
    assert card.get_attribute("open") is not None and card.find_elements(By.NAME, "integrate-d_min")

    field = card.find_element(By.NAME, "integrate-d_min")
    field.clear()
    field.send_keys("2.5")
    with mock.patch.object(runs, "dispatch_run") as dispatch:
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 20).until(lambda b: "Queued integrate" in b.page_source)
    new = project.runs.filter(stage="integrate").latest("id")
    dispatch.assert_called_once_with(new.pk)
    assert new.parameters["d_min"] == 2.5 and [s.name for s in new.sweep_runs.order_by("index")] == \
        ["xtal_00", "xtal_02"]
    assert severe_errors(browser) == []
