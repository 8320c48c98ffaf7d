"""The project overview (issue 14): the whole pipeline from the registry, each stage's
latest run with its state, counts in → out, what failed and why and where to look next,
on the page and in the polled status JSON (strict JSON); and the task routing that lets
per-sweep and ensemble work go to different workers.

The runs are made directly in the database with the summaries the stages store (no
worker, no science), so these tests are fast."""

from __future__ import annotations

import json
import os
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from xtalweb.projects.models import Project, StageRun, Sweep, SweepRun
from xtalweb.projects.overview import build_overview, pipeline, project_overview

from .browser import browser, login, save_screenshot, severe_errors  # noqa: F401  (fixture)

NAMES = ["xtal_A", "xtal_B", "xtal_C"]


# --- making runs as the stages leave them --------------------------------------------------------


def _project(users, folders, name="overview") -> Project:
    project = Project.objects.create(name=name, owner=users["alice"], group=users["lab_a"],
                                     data_root=str(folders["data"]))
    project.work_dir = str(folders["work"] / str(project.pk))
    os.makedirs(project.work_dir, exist_ok=True)
    project.save()
    Sweep.objects.bulk_create([Sweep(project=project, name=n, n_images=10) for n in NAMES])
    return project


def _run(project, stage, parent=None, status="succeeded", summary=None, sweeps=None, error="", progress=None,
         output_dir=True) -> StageRun:
    """A run of ``stage`` on ``parent``; ``sweeps``: ``{name: (status, error)}`` (SweepRun rows)."""
    now = timezone.now()
    finished = status in ("succeeded", "partial", "failed")
    folder = ""
    if output_dir and finished and status != "failed":
        folder = os.path.join(project.work_dir, f"{project.runs.count() + 1:03d}_{stage}")
        os.makedirs(folder, exist_ok=True)
    run = StageRun.objects.create(project=project, stage=stage, status=status, error=error,
                                  progress=1.0 if finished else (progress or 0.0), summary=summary or {},
                                  output_dir=folder, started=None if status == "queued" else now,
                                  finished=now if finished else None)
    if parent is not None:
        run.parents.add(parent)
    for k, (name, (st, err)) in enumerate((sweeps or {}).items()):
        SweepRun.objects.create(run=run, index=k, name=name, unit=k, status=st, error=err,
                                progress=1.0 if st in ("succeeded", "failed") else 0.3)
    return run


def _all(status="succeeded", failed=()):
    return {n: (("failed", "no lattice found: 12 spots, need 20 for indexing") if n in failed else (status, ""))
            for n in NAMES}


EXPERIMENTS = [{"id": k, "identifier": f"ident-{k}", "sweep": k, "name": n} for k, n in enumerate(NAMES)]


def _full_project(users, folders):
    """import → … → integrate (index partial: xtal_C failed), cosym leaves out xtal_B,
    scale, ΔCC½ removes nothing, merge succeeded; estimate_resolution, export, cluster not run."""
    p = _project(users, folders)
    imp = _run(p, "import", summary={"n_images": 30, "n_sweeps": 3, "sweeps": [{"name": n} for n in NAMES]})
    fs = _run(p, "find_spots", imp, summary={"n_sweeps": 3, "n_succeeded": 3, "n_failed": 0, "n_spots": 12345,
                                             "n_images": 30, "n_reflections": 12345}, sweeps=_all())
    idx = _run(p, "index", fs, status="partial", error="1 of 3 sweeps failed", sweeps=_all(failed=("xtal_C",)),
               summary={"n_spots": 8000, "n_indexed": 7000, "n_reflections": 7000})
    ref = _run(p, "refine", idx, sweeps={n: ("succeeded", "") for n in NAMES[:2]},
               summary={"n_used_in_refinement": 5000, "n_reflections": 7000})
    integ = _run(p, "integrate", ref, sweeps={n: ("succeeded", "") for n in NAMES[:2]},
                 summary={"n_predicted": 20000, "n_integrated_prf": 15000, "n_reflections": 20000,
                          "experiments": EXPERIMENTS[:2]})
    cos = _run(p, "cosym", integ, status="partial", error="1 of 2 data sets left out",
               sweeps={"xtal_A": ("succeeded", ""), "xtal_B": ("failed", "only 3 usable reflections (need 10)")},
               summary={"best": {"space_group": "I 2 1 3"}, "datasets": [{"id": 0, "identifier": "ident-0"}],
                        "excluded": [{"id": 1, "identifier": "ident-1",
                                      "reason": "only 3 usable reflections (need 10)"}]})
    scale = _run(p, "scale", cos, sweeps={"xtal_A": ("succeeded", "")},
                 summary={"n_datasets": 1, "n_observations": 29204, "space_group": "I 2 1 3", "d_min": 1.5078,
                          "merging_statistics": {"overall": {"cc_half": 0.98397}}, "excluded": []})
    dcc = _run(p, "compute_delta_cchalf", scale, sweeps={"xtal_A": ("succeeded", "")},
               summary={"n_datasets_in": 1, "n_datasets": 1, "n_observations_in": 29204, "n_observations": 29204,
                        "cc_half_in": 0.96, "cc_half_out": 0.96, "removed": []})
    merge = _run(p, "merge", scale, sweeps={"xtal_A": ("succeeded", "")},
                 summary={"n_observations": 29204, "n_unique": 9448, "d_min": 1.5078, "space_group": "I 2 1 3"})
    with open(os.path.join(merge.output_dir, "merged.mtz"), "wb") as f:
        f.write(b"MTZ ")
    return {"project": p, "import": imp, "find_spots": fs, "index": idx, "refine": ref, "integrate": integ,
            "cosym": cos, "scale": scale, "compute_delta_cchalf": dcc, "merge": merge}


def by_stage(overview) -> dict:
    return {s["stage"]: s for s in overview["stages"]}


# --- the stage list -------------------------------------------------------------------------------


def test_pipeline_is_the_registry_in_the_order_of_its_previous_links():
    from processing.stages import STAGES

    order = [s["stage"] for s in pipeline()]
    assert sorted(order) == sorted(STAGES)  # every registered stage, once (a new one appears by itself)
    pos = {name: k for k, name in enumerate(order)}
    for name, s in STAGES.items():
        if s.previous is not None:
            assert pos[s.previous] < pos[name], (name, s.previous)
    assert order[:6] == ["import", "find_spots", "index", "refine", "integrate", "cosym"]
    # the filter that writes data comes first among scale's followers, the final files last
    assert pos["compute_delta_cchalf"] < pos["estimate_resolution"] < pos["merge"] < pos["export"]
    alt = {s["stage"]: s["alternative_of"] for s in pipeline()}
    assert alt["symmetry"] == "cosym" and pos["symmetry"] == pos["cosym"] + 1
    assert [k for k, v in alt.items() if v] == ["symmetry"]


# --- the overview of a project --------------------------------------------------------------------


@pytest.mark.django_db
def test_overview_of_a_project(users, folders, django_assert_max_num_queries):
    made = _full_project(users, folders)
    p = made["project"]
    with django_assert_max_num_queries(3):  # runs, their SweepRun rows, their parents: no query per run
        ov = project_overview(p)
    stages = by_stage(ov)
    assert "symmetry" not in stages  # cosym's alternative, never run here
    assert [s["step"] for s in ov["stages"]] == list(range(1, len(ov["stages"]) + 1))
    assert ov["n_done"] == 9 and ov["n_stages"] == len(ov["stages"])

    imp = stages["import"]
    assert (imp["state"], imp["counts"]["text"]) == ("succeeded", "3 sweeps imported")
    assert "30 images" in imp["facts"]
    assert stages["find_spots"]["counts"]["text"] == "3 sweeps in → 3 succeeded"
    assert "12,345 spots" in stages["find_spots"]["facts"]

    # a partial per-sweep run: the failed sweep with its reason, retry, and the next stage
    idx = stages["index"]
    assert idx["state"] == "partial" and idx["counts"]["text"] == "3 sweeps in → 2 succeeded"
    assert idx["problems"] == [{"name": "xtal_C", "reason": "no lattice found: 12 spots, need 20 for indexing"}]
    retry = reverse("stagerun_retry", args=[p.pk, made["index"].pk])
    assert idx["next"][0] == {"text": "retry failed sweeps", "url": retry, "kind": "retry"}
    assert idx["run"]["report_url"] == made["index"].get_report_url()
    assert "7,000 indexed" in idx["facts"]

    # ensemble stages count data sets and name the ones left out
    cos = stages["cosym"]
    assert cos["state"] == "partial" and cos["counts"]["text"] == "2 data sets in → 1 kept"
    assert cos["problems"] == [{"name": "xtal_B", "reason": "only 3 usable reflections (need 10)"}]
    assert "I 2 1 3" in cos["facts"]
    sc = stages["scale"]
    assert sc["counts"]["text"] == "1 data set in → 1 kept" and sc["problems"] == []
    assert sc["facts"] == ["29,204 observations", "I 2 1 3", "CC½ 0.984", "d_min 1.51 Å"]
    assert {"text": "the scale report", "url": made["scale"].get_report_url(), "kind": "link"} in sc["next"]
    # scale's first follower without a run is estimate_resolution (ΔCC½ has one)
    assert {"text": "run estimate resolution", "url": "#form-estimate_resolution", "kind": "form"} in sc["next"]
    assert stages["compute_delta_cchalf"]["facts"] == ["29,204 → 29,204 observations", "CC½ 0.960 → 0.960"]

    # merge: the merged MTZ to download
    mg = stages["merge"]
    url = reverse("stagerun_file", args=[p.pk, made["merge"].pk, "merged.mtz"])
    assert mg["next"][0] == {"text": "download merged.mtz", "url": url, "kind": "download"}
    assert "9,448 unique reflections" in mg["facts"]

    # never run: what it needs, or the form to run it
    assert stages["export"]["state"] == "none"
    assert stages["export"]["next"] == [{"text": "run export", "url": "#form-export", "kind": "form"}]
    assert stages["export"]["run"] is None and stages["export"]["counts"] is None

    json.dumps(ov, allow_nan=False)


@pytest.mark.django_db
def test_overview_while_running_and_after_failures(users, folders):
    from xtalweb.celery import app

    p = _project(users, folders)
    imp = _run(p, "import", summary={"n_images": 30, "sweeps": [{"name": n} for n in NAMES]})
    fs = _run(p, "find_spots", imp, status="running", progress=0.4,
              sweeps={"xtal_A": ("succeeded", ""), "xtal_B": ("running", ""), "xtal_C": ("queued", "")})
    ov = by_stage(build_overview(p.runs.all()))
    f = ov["find_spots"]
    assert f["state"] == "running" and f["progress"] == pytest.approx(0.4)
    assert f["progress_text"] == "1 of 3 sweeps done" and f["counts"]["text"] == "3 sweeps in"
    assert f["next"] == [{"text": "follow the log", "url": f["run"]["log_url"], "kind": "link"}]
    assert ov["index"]["next"] == [{"text": "needs a find spots run first", "url": "", "kind": "wait"}]

    # a queued run names the queue its tasks wait on (derived from the configured queue)
    idx = _run(p, "index", fs, status="queued", sweeps={n: ("queued", "") for n in NAMES})
    fs.status = "succeeded"
    fs.save()
    ov = by_stage(build_overview(p.runs.all()))
    base = app.conf.task_default_queue
    assert ov["index"]["next"] == [{"text": f"waiting for a worker on {base}.sweeps", "url": "", "kind": "wait"}]
    assert ov["index"]["state_label"] == "queued" and ov["index"]["progress"] is None
    assert ov["index"]["progress_text"] == "0 of 3 sweeps done"
    assert build_overview(p.runs.all(), base_queue="lab")["stages"][2]["next"][0]["text"] == \
        "waiting for a worker on lab.sweeps"

    # every sweep failed: the reasons, retry and the log; an ensemble run that failed: its error
    idx.delete()
    idx = _run(p, "index", fs, status="failed", error="All 3 sweep(s) failed — …", sweeps=_all(failed=NAMES))
    _run(p, "cosym", idx, status="failed", sweeps={n: ("failed", "the run failed") for n in NAMES},
         error="fewer than two data sets can be placed: only 3 usable reflections (need 10)\nmore")
    ov = by_stage(build_overview(p.runs.all()))
    i = ov["index"]
    assert i["state"] == "failed" and [x["name"] for x in i["problems"]] == NAMES and i["error"] == ""
    assert i["counts"]["text"] == "3 sweeps in → 0 succeeded"
    assert [n["kind"] for n in i["next"]] == ["retry", "link", "form"]
    c = ov["cosym"]
    assert c["problems"] == [] and c["counts"]["text"] == "3 sweeps in"
    assert c["error"] == "fewer than two data sets can be placed: only 3 usable reflections (need 10) more"
    assert [n["text"] for n in c["next"]] == ["the log", "rerun cosym with other parameters"]

    # a stage made from an older run than the newest of the stage before says so
    fs2 = _run(p, "find_spots", imp, sweeps=_all())
    idx3 = _run(p, "index", fs, sweeps=_all())
    ov = by_stage(build_overview(p.runs.all()))
    assert ov["index"]["note"] == f"made from find spots run #{fs.pk}; #{fs2.pk} is newer"
    assert ov["index"]["run"]["id"] == idx3.pk and ov["index"]["n_runs"] == 2


@pytest.mark.django_db
def test_overview_names_the_data_sets_a_filter_removed_and_shows_an_alternative(users, folders):
    made = _full_project(users, folders)
    p, scale = made["project"], made["scale"]
    made["compute_delta_cchalf"].delete()
    sweeps = {n: ("succeeded", "") for n in NAMES[:2]}
    StageRun.objects.filter(pk=made["cosym"].pk).update(status="succeeded")
    _run(p, "compute_delta_cchalf", scale, sweeps=sweeps,
         summary={"n_datasets_in": 2, "n_datasets": 1, "removed": [
             {"id": 1, "identifier": "ident-1", "delta_cc_half": -0.0123, "cycle": 1, "reason": "below mean − 4σ"}]})
    _run(p, "symmetry", made["integrate"], sweeps=sweeps, summary={"best": {"space_group": "I 2 3"}})
    ov = by_stage(project_overview(p))
    d = ov["compute_delta_cchalf"]
    assert d["counts"]["text"] == "2 data sets in → 1 kept"
    assert d["problems"] == [{"name": "xtal_B", "reason": "ΔCC½ -0.0123, removed in cycle 1: below mean − 4σ"}]
    sym = ov["symmetry"]
    assert sym["alternative_of"] == "cosym" and sym["alternative_title"] == "cosym" and sym["state"] == "succeeded"
    order = [s["stage"] for s in project_overview(p)["stages"]]
    assert order.index("symmetry") == order.index("cosym") + 1


@pytest.mark.django_db
def test_overview_of_odd_summaries(users, folders, client):
    """Summaries of unexpected shapes (an older stage's, a stage being changed) are read as
    far as they go; a failure to build the overview never takes the page down."""
    p = _project(users, folders)
    imp = _run(p, "import", summary={"sweeps": "three", "n_images": None})
    odd = {"excluded": "oops", "removed": [3, None], "merging_statistics": [1], "best": "x", "d_min": "1.5",
           "datasets": 5, "n_datasets": True, "space_group": 7}
    _run(p, "cosym", imp, status="partial", summary=odd, sweeps={"xtal_A": ("succeeded", "")})
    ov = by_stage(project_overview(p))
    assert ov["cosym"]["state"] == "partial" and ov["cosym"]["facts"] == [] and ov["import"]["counts"] is None
    json.dumps(ov, allow_nan=False)
    client.force_login(users["alice"])
    with mock.patch("xtalweb.projects.overview.build_overview", side_effect=RuntimeError("bug")):
        page = client.get(reverse("project_detail", args=[p.pk]))
        status = client.get(reverse("project_status", args=[p.pk]))
    assert page.status_code == 200 and 'id="overview"' not in page.content.decode()
    assert status.status_code == 200 and status.json()["overview"] is None


# --- the page and the polled JSON ----------------------------------------------------------------


@pytest.mark.django_db
def test_overview_on_the_page_and_in_the_status_json(client, users, folders):
    made = _full_project(users, folders)
    p = made["project"]
    # a value the strict JSON could not carry must never reach it
    StageRun.objects.filter(pk=made["scale"].pk).update(summary={**made["scale"].summary, "d_min": None})
    client.force_login(users["alice"])
    page = client.get(reverse("project_detail", args=[p.pk])).content.decode()
    assert page.index('id="overview"') < page.index('id="sweeps"')
    assert 'id="stage-index"' in page and "3 sweeps in → 2 succeeded" in page
    assert "no lattice found: 12 spots" in page and "retry failed sweeps" in page
    assert reverse("stagerun_file", args=[p.pk, made["merge"].pk, "merged.mtz"]) in page
    assert "9 of " in page

    response = client.get(reverse("project_status", args=[p.pk]))
    assert response.status_code == 200

    def no_constants(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    data = json.loads(response.content, parse_constant=no_constants)
    ov = by_stage(data["overview"])
    assert ov["cosym"]["problems"][0]["name"] == "xtal_B"
    assert "d_min" not in " ".join(ov["scale"]["facts"])
    assert [s["stage"] for s in data["overview"]["stages"]] == [s["stage"] for s in project_overview(p)["stages"]]
    # carol (another lab) sees nothing
    client.force_login(users["carol"])
    assert client.get(reverse("project_status", args=[p.pk])).status_code == 404


# --- queue routing --------------------------------------------------------------------------------


def test_router_sends_each_task_to_its_queue(_celery_test_queue):
    from xtalweb.celery import app
    from xtalweb.projects import tasks
    from xtalweb.routing import queue_names

    base = app.conf.task_default_queue
    assert base == _celery_test_queue  # the tests' per-session queue: the names derive from it
    expected = {
        tasks.run_sweep_unit.name: f"{base}.sweeps",
        tasks.join_stage_run.name: f"{base}.ensemble",
        tasks.run_ensemble_stage.name: f"{base}.ensemble",
        tasks.run_import_stage.name: base,
        tasks.run_simulate_stage.name: base,
        "celery.ping": base,
    }
    router = app.amqp.router
    for name, queue in expected.items():
        assert router.route({}, name)["queue"].name == queue, name
    assert queue_names(base) == (base, f"{base}.sweeps", f"{base}.ensemble")

    # the names follow the configured queue at send time
    app.conf.task_default_queue = "elsewhere"
    try:
        assert app.amqp.router.route({}, tasks.run_sweep_unit.name)["queue"].name == "elsewhere.sweeps"
        assert app.amqp.router.route({}, tasks.run_import_stage.name)["queue"].name == "elsewhere"
    finally:
        app.conf.task_default_queue = base
    # and an explicit queue still wins
    assert router.route({"queue": "special"}, tasks.run_sweep_unit.name)["queue"].name == "special"


@pytest.mark.django_db
def test_dispatch_sends_to_the_routed_queues(users, folders, _celery_test_queue):
    """What dispatching a run publishes (the broker is not touched: the publish is caught)."""
    from xtalweb.celery import app
    from xtalweb.projects import runs

    base = _celery_test_queue
    made = _full_project(users, folders)
    p = made["project"]
    sent = []

    def publish(producer, name, message, **options):
        sent.append((name, options["queue"].name))

    new = runs.create_run(p, "estimate_resolution", parents=[made["scale"]], sweeps=[{"index": 0, "name": "xtal_A"}])
    imp = runs.create_run(p, "import")
    with mock.patch.object(app.amqp, "send_task_message", side_effect=publish):
        runs.dispatch_run(new.pk)
        runs.dispatch_run(imp.pk)
        from xtalweb.projects import tasks

        tasks.run_sweep_unit.si(made["index"].pk, 0).apply_async()
        tasks.join_stage_run.si(made["index"].pk).apply_async()
    assert sent == [("xtalweb.projects.tasks.run_ensemble_stage", f"{base}.ensemble"),
                    ("xtalweb.projects.tasks.run_import_stage", base),
                    ("xtalweb.projects.tasks.run_sweep_unit", f"{base}.sweeps"),
                    ("xtalweb.projects.tasks.join_stage_run", f"{base}.ensemble")]
    assert StageRun.objects.get(pk=new.pk).status == "queued"


# --- in a real browser ----------------------------------------------------------------------------

def settled(fn, tries: int = 20):
    """``fn()``, again if the poller redrew the cards under it (a stale element)."""
    import time

    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(tries - 1):
        try:
            return fn()
        except StaleElementReferenceException:
            time.sleep(0.05)
    return fn()


def card(browser, stage: str) -> str:
    return browser.execute_script("return document.getElementById(arguments[0]).innerText", f"stage-{stage}")


@pytest.mark.django_db(transaction=True)
def test_overview_in_the_browser(browser, live_server, client, users, folders, tmp_path):
    """The cards read right, survive the poller's redraw unchanged, follow a run live, and
    "run …" opens the stage's form."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    made = _full_project(users, folders)
    p = made["project"]
    login(browser, live_server, client, users["alice"])
    browser.get(f"{live_server.url}/projects/{p.pk}/")
    overview = browser.find_element(By.ID, "overview")
    stages = browser.execute_script(
        "return Array.from(document.querySelectorAll('#pipeline > li.stage')).map(e => e.dataset.stage)")
    assert stages == [s["stage"] for s in project_overview(p)["stages"]]
    text = card(browser, "index")
    assert "3 sweeps in → 2 succeeded" in text and "xtal_C: no lattice found: 12 spots" in text
    assert settled(lambda: browser.find_element(By.CSS_SELECTOR, "#stage-index form.retry button").text) == \
        "retry failed sweeps"
    assert settled(lambda: browser.find_element(By.ID, "stage-index").value_of_css_property("border-top-color")) in \
        ("rgba(227, 160, 8, 1)", "rgb(227, 160, 8)")
    link = settled(lambda: [(a.text, a.get_attribute("href")) for a in
                            browser.find_elements(By.CSS_SELECTOR, "#stage-merge li.next-download a")])
    assert link[0][0] == "download merged.mtz" and link[0][1].endswith("/files/merged.mtz")
    text = card(browser, "cosym")
    assert "2 data sets in → 1 kept" in text and "xtal_B: only 3 usable reflections (need 10)" in text
    save_screenshot(browser, tmp_path, "overview_finished.png")
    settled(lambda: overview.screenshot(str(tmp_path / "overview_finished_crop.png")))

    def drawn():
        return browser.execute_script(
            "var p = document.getElementById('pipeline');"
            "return [p.innerText, Array.from(p.querySelectorAll('a')).map(a => [a.textContent, a.href,"
            " a.hasAttribute('download')]), Array.from(p.querySelectorAll('button, form, progress, .badge'))"
            ".map(e => e.className + ' ' + e.textContent + ' ' + (e.action || '') + (e.value || ''))];")

    before = drawn()
    time.sleep(2.6)  # the poller (every 2 s) has redrawn the cards from status.json
    assert drawn() == before  # the script draws what the template drew

    # a new run of estimate_resolution shows up live: queued, then running with its progress
    run = _run(p, "estimate_resolution", made["scale"], status="queued", sweeps={"xtal_A": ("queued", "")})
    WebDriverWait(browser, 10).until(lambda b: "waiting for a worker on" in card(b, "estimate_resolution"))
    StageRun.objects.filter(pk=run.pk).update(status="running", progress=0.5)
    WebDriverWait(browser, 10).until(lambda b: "50%" in card(b, "estimate_resolution"))
    assert settled(lambda: browser.find_element(By.CSS_SELECTOR, "#stage-estimate_resolution .badge").text) == \
        "running"
    assert settled(lambda: browser.find_element(By.CSS_SELECTOR, "#stage-estimate_resolution progress")
                   .get_attribute("value")) == "0.5"
    save_screenshot(browser, tmp_path, "overview_running.png")
    settled(lambda: overview.screenshot(str(tmp_path / "overview_running_crop.png")))

    # "run export" opens the export form
    settled(lambda: browser.find_element(By.CSS_SELECTOR, "#stage-export li.next-form a").click())
    WebDriverWait(browser, 5).until(lambda b: b.find_element(By.ID, "form-export").get_attribute("open") is not None)
    assert severe_errors(browser) == []
    shots = os.environ.get("XTALWEB_SCREENSHOTS")
    if shots:
        import shutil

        for name in ("overview_finished_crop.png", "overview_running_crop.png"):
            shutil.copy(tmp_path / name, os.path.join(shots, name))


@pytest.mark.django_db(transaction=True)
def test_overview_in_the_browser_mid_run(browser, live_server, client, users, folders, tmp_path):
    """A project under way: refine partial, integrate running, cosym failed before, a queued
    rerun of find spots; every card says what to do."""
    from selenium.webdriver.common.by import By

    p = _project(users, folders, name="under way")
    imp = _run(p, "import", summary={"n_images": 30, "sweeps": [{"name": n} for n in NAMES]})
    fs = _run(p, "find_spots", imp, summary={"n_spots": 12345}, sweeps=_all())
    idx = _run(p, "index", fs, summary={"n_spots": 12000, "n_indexed": 11000}, sweeps=_all())
    ref = _run(p, "refine", idx, status="partial", error="1 of 3 sweeps failed", summary={"n_used_in_refinement": 900},
               sweeps={"xtal_A": ("succeeded", ""), "xtal_B": ("succeeded", ""), "xtal_C": (
                   "failed", ("only 12 reflections pass the inclusion criteria for 9 crystal parameters (need 45); "
                              "not refined"))})
    _run(p, "integrate", ref, status="running", progress=0.62,
         sweeps={"xtal_A": ("succeeded", ""), "xtal_B": ("running", "")})
    _run(p, "find_spots", imp, status="queued", sweeps={n: ("queued", "") for n in NAMES})
    login(browser, live_server, client, users["alice"])
    browser.get(f"{live_server.url}/projects/{p.pk}/")
    refine = card(browser, "refine")
    assert "3 sweeps in → 2 succeeded" in refine and "xtal_C: only 12 reflections" in refine
    assert "run integrate" not in refine  # integrate has a run already
    integ = card(browser, "integrate")
    assert "62%" in integ and "1 of 2 sweeps done" in integ
    fs_card = card(browser, "find_spots")
    assert "waiting for a worker on" in fs_card and ".sweeps" in fs_card
    assert "needs an integrate run first" in card(browser, "cosym")
    save_screenshot(browser, tmp_path, "overview_mid_run.png")
    shots = os.environ.get("XTALWEB_SCREENSHOTS")
    if shots:
        settled(lambda: browser.find_element(By.ID, "overview").screenshot(
            os.path.join(shots, "overview_mid_run_crop.png")))
    assert severe_errors(browser) == []


# --- two workers: one for the sweeps, one for the ensemble ----------------------------------------


@pytest.fixture(scope="session")
def split_workers(_celery_test_queue, django_db_setup):
    """Two more in-thread workers on queues of their own (``<test queue>-split``): one
    consuming only ``.sweeps``, one the base queue and ``.ensemble``. Each polls its own
    connection (``use_eventloop=False``: in-thread workers would otherwise share kombu's one
    event loop, and each other's messages). They stop with the session (stopping an
    in-thread worker stops every one of them)."""
    import threading
    import uuid

    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connections

    from xtalweb.celery import app
    from xtalweb.routing import queue_names

    base = f"{_celery_test_queue}-split"
    names = queue_names(base)
    tag = uuid.uuid4().hex[:6]
    hosts = {"ensemble": f"ensemble-{tag}@xtalweb-test", "sweeps": f"sweeps-{tag}@xtalweb-test"}

    def close_worker_connections(**kwargs):
        connections.close_all()

    task_postrun.connect(close_worker_connections, weak=False)
    try:
        with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=60.0,
                          loglevel="WARNING", hostname=hosts["ensemble"], queues=[names[0], names[2]],
                          use_eventloop=False) as ensemble:
            with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=60.0,
                              loglevel="WARNING", hostname=hosts["sweeps"], queues=[names[1]],
                              use_eventloop=False) as sweeps:
                # a solo worker runs its tasks in its own thread: which thread is which worker
                threads = {t.ident: name for t in threading.enumerate() for name, w in
                           (("ensemble", ensemble), ("sweeps", sweeps)) if getattr(t, "_target", None) == w.start}
                assert sorted(threads.values()) == ["ensemble", "sweeps"]
                yield {"base": base, "threads": threads, **hosts}
    finally:
        app.conf.task_default_queue = _celery_test_queue
        app.amqp.__dict__.pop("queues", None)
        task_postrun.disconnect(close_worker_connections)
        try:
            with app.connection_for_write() as conn:
                client = conn.default_channel.client
                for q in names:
                    client.delete(q, f"_kombu.binding.{q}", f"_kombu.binding_permanent.{q}")
        except Exception:
            pass


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_sweeps_and_ensemble_on_different_workers(split_workers, users, folders, _celery_test_queue):
    """A per-sweep run's unit tasks run on the worker of ``.sweeps``, its join (sent by that
    worker when the last unit ends) on the worker of ``.ensemble``."""
    import threading

    from celery.signals import task_prerun

    from xtalweb.celery import app
    from xtalweb.projects import runs

    from .helpers import wait_for_run

    ran = []

    def record(sender=None, task=None, **kwargs):
        worker = split_workers["threads"].get(threading.get_ident(), threading.current_thread().name)
        ran.append((task.name.rsplit(".", 1)[-1], worker, (task.request.delivery_info or {}).get("routing_key")))

    p = _project(users, folders, name="two workers")
    imp = _run(p, "import", summary={"sweeps": [{"name": n} for n in NAMES]})  # its folder has no imported.expt
    task_prerun.connect(record, weak=False)
    app.conf.task_default_queue = split_workers["base"]
    app.amqp.__dict__.pop("queues", None)
    try:
        run = runs.create_run(p, "find_spots", parents=[imp], sweeps=[{"index": k, "name": n}
                                                                       for k, n in enumerate(NAMES)])
        runs.dispatch_run(run.pk)
        run = wait_for_run(run.pk, timeout=60)
    finally:
        app.conf.task_default_queue = _celery_test_queue
        app.amqp.__dict__.pop("queues", None)
        task_prerun.disconnect(record)
    # every sweep failed fast (the import's file is missing): the point is where each task ran
    assert run.status == "failed" and "imported.expt" in run.sweep_runs.first().error
    base = split_workers["base"]
    assert sorted(ran) == sorted([("run_sweep_unit", "sweeps", f"{base}.sweeps")] * 3 +
                                 [("join_stage_run", "ensemble", f"{base}.ensemble")])
