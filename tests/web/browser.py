"""Headless Debian Chromium for the browser tests: the ``browser`` fixture (console messages
kept), logging a test user in, the console's SEVERE errors, and screenshots."""
from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium driven by selenium; the tests skip with the reason without it."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1300,1800", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def login(browser, live_server, client, user):
    client.force_login(user)
    browser.get(live_server.url + "/accounts/login/")
    browser.add_cookie({"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"})


def severe_errors(browser) -> list[dict]:
    """The console's SEVERE messages, but for the browser's own request of /favicon.ico
    (which the app does not serve)."""
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]


def save_screenshot(browser, tmp_path, name: str) -> str:
    """A screenshot in the test's folder (and in $XTALWEB_SCREENSHOTS when set)."""
    path = str(tmp_path / name)
    browser.save_screenshot(path)
    shots = os.environ.get("XTALWEB_SCREENSHOTS")
    if shots:
        shutil.copy(path, os.path.join(shots, name))
    return path
