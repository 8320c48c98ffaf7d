"""Live report and log pages (issue 15, part 3): the log streams from ``log.json`` (cursors,
rewritten parts, chunks), the log page escapes what the log holds, the tab title carries
the run's state; and in a real browser (headless Chromium) a running run's log and report
update without a reload, the report reloading itself once the run has finished."""

from __future__ import annotations

import os
import time

import pytest
from django.urls import reverse
from django.utils import timezone

from xtalweb.projects import live
from xtalweb.projects.models import Project, StageRun, SweepRun

from .browser import browser, login, save_screenshot, severe_errors  # noqa: F401  (fixture)


def make_running(users, folders, stage="find_spots", n_sweeps=2) -> StageRun:
    project = Project.objects.create(name="live", owner=users["alice"], group=users["lab_a"],
                                     data_root=str(folders["data"]), work_dir=str(folders["work"]))
    now = timezone.now()
    run = StageRun.objects.create(project=project, stage=stage, status="running", progress=0.2, started=now)
    for k in range(n_sweeps):
        SweepRun.objects.create(run=run, index=k, name=f"crystal_{k:03d}", unit=k, status="running",
                                progress=0.2, log=f"crystal_{k:03d}: started\n", started=now)
    return run


def log_json(client, run, cursors=""):
    r = client.get(reverse("stagerun_log_json", args=[run.project_id, run.pk]), {"from": cursors})
    assert r.status_code == 200 and r["Cache-Control"] == "no-store"
    return r.json()


def cursors_of(data) -> str:
    return ",".join(f"{p['key']}:{p['cursor']}" for p in data["parts"])


@pytest.mark.django_db
def test_log_json_sends_what_is_new_and_rewritten_parts_whole(client, users, folders, monkeypatch):
    run = make_running(users, folders)
    client.force_login(users["bob"])
    first = log_json(client, run)
    assert [(p["key"], p["title"], p["status"], p["text"], p["reset"]) for p in first["parts"]] == [
        ("sweep-0", "sweep crystal_000 (experiment 0)", "running", "crystal_000: started\n", False),
        ("sweep-1", "sweep crystal_001 (experiment 1)", "running", "crystal_001: started\n", False)]
    assert first["state"] == {"status": "running", "progress": 0.2, "active": True, "error": "",
                              "title": f"▶ 20 % find spots #{run.pk}"}
    # nothing new: empty texts
    again = log_json(client, run, cursors_of(first))
    assert [p["text"] for p in again["parts"]] == ["", ""]
    # lines appended to sweep 0: only they come; a rewritten sweep 1 (a retry) comes whole
    SweepRun.objects.filter(run=run, index=0).update(log="crystal_000: started\nspots: 1234 ✓\n")
    SweepRun.objects.filter(run=run, index=1).update(log="retry of crystal_001\n", status="queued")
    StageRun.objects.filter(pk=run.pk).update(progress=0.45, log="joined 2 sweeps\n")
    new = log_json(client, run, cursors_of(again))
    assert [(p["key"], p["text"], p["reset"], p["status"]) for p in new["parts"]] == [
        ("sweep-0", "spots: 1234 ✓\n", False, "running"),
        ("sweep-1", "retry of crystal_001\n", True, "queued"),
        ("run", "joined 2 sweeps\n", False, "running")]  # the run's own part appears when it has text
    assert new["state"]["title"] == f"▶ 45 % find spots #{run.pk}"
    # a cursor from another text of the same length is not trusted either
    forged = log_json(client, run, f"sweep-0:{len('crystal_000: started')}.00000000")
    assert forged["parts"][0]["reset"] and forged["parts"][0]["text"].startswith("crystal_000")
    # a long log comes in chunks
    monkeypatch.setattr(live, "CHUNK", 10)
    SweepRun.objects.filter(run=run, index=0).update(log="x" * 25)
    texts, cursor = [], ""
    for _ in range(5):
        part = log_json(client, run, cursor)["parts"][0]
        texts.append(part["text"])
        cursor = f"sweep-0:{part['cursor']}"
        if not part["more"]:
            break
    assert texts == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.django_db
def test_log_page_for_browsers_text_for_the_rest(client, users, folders):
    run = make_running(users, folders, n_sweeps=1)
    SweepRun.objects.filter(run=run).update(log="<script>alert(1)</script> & done\n")
    client.force_login(users["alice"])
    url = reverse("stagerun_log", args=[run.project_id, run.pk])
    page = client.get(url, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    body = page.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done" in body and "<script>alert" not in body
    assert f"<title>▶ 20 % find spots #{run.pk} log · live — xtalweb</title>" in body
    assert reverse("stagerun_log_json", args=[run.project_id, run.pk]) in body and 'data-active="1"' in body
    assert "Accept" in page["Vary"]
    text = client.get(url)  # curl, scripts, the tests: the whole log as text, as before
    assert text["Content-Type"] == "text/plain; charset=utf-8"
    assert text.content.decode() == ("=== sweep crystal_000 (experiment 0): running ===\n"
                                     "<script>alert(1)</script> & done\n")
    forced = client.get(url + "?format=text", headers={"Accept": "text/html"})
    assert forced["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.django_db
@pytest.mark.parametrize("status, progress, title", [
    ("queued", 0.0, "◷ queued find spots #{}"), ("running", 0.456, "▶ 46 % find spots #{}"),
    ("succeeded", 1.0, "✓ find spots #{}"), ("partial", 1.0, "◐ find spots #{}"), ("failed", 1.0, "✗ find spots #{}"),
])
def test_tab_title_shows_the_run_state(client, users, folders, status, progress, title):
    run = make_running(users, folders, n_sweeps=1)
    StageRun.objects.filter(pk=run.pk).update(status=status, progress=progress)
    client.force_login(users["alice"])
    expected = title.format(run.pk)
    page = client.get(reverse("stagerun_report", args=[run.project_id, run.pk])).content.decode()
    assert f"<title>{expected} · live — xtalweb</title>" in page
    report = client.get(reverse("stagerun_report_json", args=[run.project_id, run.pk])).json()
    assert report["state"]["title"] == expected
    assert report["state"]["active"] is (status in ("queued", "running"))


# --- in the browser ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_running_log_and_report_update_without_reload(browser, live_server, client, users, folders, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run = make_running(users, folders)
    project = run.project
    login(browser, live_server, client, users["alice"])
    wait = WebDriverWait(browser, 20)

    # --- the log page streams ---
    browser.get(f"{live_server.url}/projects/{project.pk}/runs/{run.pk}/log")
    assert browser.title == f"▶ 20 % find spots #{run.pk} log · live — xtalweb"
    browser.execute_script("window.notReloaded = true;")
    SweepRun.objects.filter(run=run, index=0).update(log="crystal_000: started\nimage 1: 212 spots\n", progress=0.6)
    SweepRun.objects.filter(run=run, index=1).update(log="retried crystal_001\n", status="queued")
    StageRun.objects.filter(pk=run.pk).update(progress=0.45)
    wait.until(lambda b: "image 1: 212 spots" in b.find_element(By.CSS_SELECTOR, "#log-sweep-0 pre").text)
    wait.until(lambda b: b.title.startswith("▶ 45 % find spots"))
    assert browser.find_element(By.CSS_SELECTOR, "#log-sweep-0 pre").text == \
        "crystal_000: started\nimage 1: 212 spots"  # appended, not repeated
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#log-sweep-1 pre").text == "retried crystal_001")
    assert browser.find_element(By.CSS_SELECTOR, "#log-sweep-1 .badge").text == "queued"
    assert browser.find_element(By.CSS_SELECTOR, "#run-status .percent").text == "45%"
    save_screenshot(browser, tmp_path, "live_log_running.png")
    # the run finishes: its join appears, the title says so, polling stops
    SweepRun.objects.filter(run=run).update(status="succeeded", progress=1.0)
    StageRun.objects.filter(pk=run.pk).update(status="succeeded", progress=1.0, log="joined: 2 sweeps, 424 spots\n",
                                              finished=timezone.now())
    wait.until(lambda b: b.title == f"✓ find spots #{run.pk} log · live — xtalweb")
    wait.until(lambda b: "joined: 2 sweeps" in b.find_element(By.CSS_SELECTOR, "#log-run pre").text)
    assert browser.find_element(By.CSS_SELECTOR, "#run-status .badge").text == "succeeded"
    assert browser.execute_script("return window.notReloaded === true;")
    save_screenshot(browser, tmp_path, "live_log_done.png")

    # --- the report page redraws while running, reloads when done ---
    StageRun.objects.filter(pk=run.pk).update(status="running", progress=0.5, finished=None)
    SweepRun.objects.filter(run=run).update(status="running", progress=0.5, summary={})
    browser.get(f"{live_server.url}/projects/{project.pk}/runs/{run.pk}/")
    assert browser.title == f"▶ 50 % find spots #{run.pk} · live — xtalweb"
    browser.execute_script("window.notReloaded = true;")
    SweepRun.objects.filter(run=run, index=0).update(
        status="succeeded", progress=1.0,
        summary={"n_images": 10, "n_spots": 2120, "histogram": {"image": list(range(1, 11)), "n_spots": [212] * 10}})
    StageRun.objects.filter(pk=run.pk).update(progress=0.75)
    wait.until(lambda b: b.title.startswith("▶ 75 % find spots"))
    wait.until(lambda b: "2120" in b.find_element(By.ID, "table-spots").text)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#figure-spots_per_image .scatterlayer .trace")) == 1)
    assert browser.find_element(By.CSS_SELECTOR, "#run-status .percent").text == "75%"
    assert browser.execute_script("return window.notReloaded === true;")
    save_screenshot(browser, tmp_path, "live_report_running.png")
    SweepRun.objects.filter(run=run, index=1).update(
        status="succeeded", progress=1.0,
        summary={"n_images": 10, "n_spots": 1500, "histogram": {"image": list(range(1, 11)), "n_spots": [150] * 10}})
    StageRun.objects.filter(pk=run.pk).update(status="succeeded", progress=1.0, finished=timezone.now())
    wait.until(lambda b: b.title == f"✓ find spots #{run.pk} · live — xtalweb")
    wait.until(lambda b: not b.execute_script("return window.notReloaded === true;"))  # reloaded once
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#figure-spots_per_image .scatterlayer .trace")) == 2)
    assert "updating live" not in browser.find_element(By.ID, "run-status").text
    assert "3620" in browser.find_element(By.ID, "table-spots").text  # the total row of the finished run
    time.sleep(3.5)  # no further reloads or polls once finished
    assert browser.find_element(By.CSS_SELECTOR, "#run-status .badge").text == "succeeded"
    save_screenshot(browser, tmp_path, "live_report_done.png")
    assert severe_errors(browser) == []
