"""The project page in a real browser (headless Chromium through selenium): a partial run
shows its amber badge, the "N of M sweeps failed" message, each failed sweep's reason and
the retry button, and keeps them when the page's poller redraws the runs table.

Skips when Chromium, chromedriver or selenium are missing (``make test`` installs them
when it can)."""

from __future__ import annotations

import os
import time

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

from .browser import browser, login  # noqa: F401  (fixture)


def test_partial_run_in_the_browser(browser, live_server, client, users, indexed_project):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from xtalweb.projects.models import StageRun, SweepRun

    project, idx = indexed_project["project"], indexed_project["index"]
    now = timezone.now()
    run = StageRun.objects.create(project=project, stage="refine", status="partial", progress=1.0,
                                  error="1 of 3 sweeps failed", output_dir=str(project.work_dir),
                                  started=now, finished=now)
    run.parents.add(idx)
    reason = "only 12 reflections pass the inclusion criteria for 9 crystal parameters (need 45); not refined"
    for s in idx.sweep_runs.all():
        failed = s.index == 1
        SweepRun.objects.create(run=run, index=s.index, name=s.name, unit=s.index, progress=1.0,
                                status="failed" if failed else "succeeded", error=reason if failed else "",
                                started=now, finished=now)
    login(browser, live_server, client, users["alice"])
    browser.get(f"{live_server.url}/projects/{project.pk}/")

    def check():
        row = browser.find_element(By.ID, f"run-{run.pk}")
        badge = row.find_element(By.CSS_SELECTOR, ".badge.partial")
        assert badge.text == "partial"
        assert badge.value_of_css_property("background-color") in ("rgba(227, 160, 8, 1)", "rgb(227, 160, 8)")
        assert "1 of 3 sweeps failed" in row.find_element(By.CSS_SELECTOR, ".run-partial").text
        assert reason in row.text
        button = row.find_element(By.CSS_SELECTOR, "form.retry button")
        assert button.text == "Retry failed sweeps" and button.is_displayed()
        return row

    check()
    # the integrate form: sweeps 0 and 2 offered, sweep 1 listed as left out with its reason
    browser.find_element(By.CSS_SELECTOR, "#form-integrate summary").click()
    form = browser.find_element(By.ID, "form-integrate")
    WebDriverWait(browser, 10).until(lambda b: form.find_elements(By.TAG_NAME, "form"))  # fetched when opened
    assert "Left out: 1 sweep did not succeed in run" in form.text and reason in form.text
    values = [e.get_attribute("value") for e in form.find_elements(By.CSS_SELECTOR, "input[name='integrate-sweeps']")]
    assert values == ["0", "2"]
    time.sleep(2.5)  # the poller (every 2 s) has redrawn the runs table from status.json
    row = check()
    assert row.find_element(By.CSS_SELECTOR, "form.retry input[name=csrfmiddlewaretoken]").get_attribute("value")
    shot = os.environ.get("XTALWEB_SCREENSHOTS")
    if shot:
        browser.save_screenshot(os.path.join(shot, "partial_run.png"))


def test_cosym_report_in_the_browser(browser, live_server, client, users, folders, tmp_path):
    """The cosym report draws the embedding (one point per data set) and its tables."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections
    from processing.simulate import SimulateParams, run_simulate
    from processing.symmetry import CosymParams, run_cosym
    from processing.summary import json_ready
    from xtalweb.projects.models import Project, StageRun

    run_simulate(SimulateParams(preset="tiny", mode="reflections", output_dir=str(tmp_path / "sim"), n_crystals=6))
    _, _, summary = run_cosym(read_experiments(str(tmp_path / "sim" / "integrated.expt")),
                              read_reflections(str(tmp_path / "sim" / "integrated.refl")), CosymParams())
    project = Project.objects.create(name="cosym", owner=users["alice"], data_root=str(folders["data"]),
                                     work_dir=str(folders["work"]))
    now = timezone.now()
    run = StageRun.objects.create(project=project, stage="cosym", status="succeeded", progress=1.0,
                                  summary=json_ready(summary), started=now, finished=now)
    login(browser, live_server, client, users["alice"])
    browser.get(f"{live_server.url}/projects/{project.pk}/runs/{run.pk}/")
    WebDriverWait(browser, 20).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#figure-embedding .scatterlayer .point")) == 6)
    best = browser.find_element(By.ID, "table-best").text
    assert "I m -3" in best and "Laue group probability" in best
    assert len(browser.find_elements(By.CSS_SELECTOR, "#table-operators tbody tr")) == 24
    shot = os.environ.get("XTALWEB_SCREENSHOTS")
    if shot:
        browser.save_screenshot(os.path.join(shot, "cosym_report.png"))
