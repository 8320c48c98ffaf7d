"""The image viewer: its page, the PNG views, the overlays and the pixel under the pointer
(xtalweb/projects/viewer_views.py), access control, clear messages, the links from the
project page and the reports — and, in a real browser, an image with its spots and the
Miller index of a predicted spot under the pointer.

The data: one crystal of the ``tiny`` preset (10 images, Eiger-like 1M with a module gap)
taken through import → find_spots → index → refine → integrate once per session by the
science called directly, written in the layout of the web's run folders; each test gets
its own copy as alice's project (lab-a)."""

from __future__ import annotations

import io
import json
import math
import os
import shutil

import numpy as np
import pytest
from django.utils import timezone

from .browser import browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

STAGES = ("find_spots", "index", "refine", "integrate")


@pytest.fixture(scope="session")
def viewer_data(tmp_path_factory):
    """import → integrate of one tiny crystal; ``{root, data, runs: {stage: folder}, import}``."""
    from processing.importer import ImportParams
    from processing.indexing import IndexParams
    from processing.integration import IntegrateParams
    from processing.io.expt import write_experiments
    from processing.io.refl import write_reflections
    from processing.refinement import RefineParams
    from processing.simulate import SimulateParams, run_simulate
    from processing.spotfinding import FindSpotsParams
    from processing.stages import STAGES as REGISTRY

    root = tmp_path_factory.mktemp("viewer")
    data = root / "data"
    run_simulate(SimulateParams(preset="tiny", n_crystals=1, output_dir=str(data)))
    master = str(next(p for p in sorted(data.iterdir()) if p.name.endswith("_master.h5")))
    experiments, _, imp_summary = REGISTRY["import"].execute(None, None, ImportParams(paths=(master,)))
    name = imp_summary["sweeps"][0]["name"]
    params = {"find_spots": FindSpotsParams(), "index": IndexParams(joint=False, n_points=128),
              "refine": RefineParams(), "integrate": IntegrateParams()}
    folders = {"import": root / "work" / "001_import"}
    folders["import"].mkdir(parents=True)
    write_experiments(str(folders["import"] / "imported.expt"), experiments)
    expts, refl, summaries = experiments, None, {}
    for k, stage in enumerate(STAGES, start=2):
        reg = REGISTRY[stage]
        expts, refl, summary = reg.execute(expts, refl, params[stage])
        summaries[stage] = summary
        folder = root / "work" / f"{k:03d}_{stage}"
        (folder / "sweeps").mkdir(parents=True)
        stem = folder / "sweeps" / f"000_{name}"
        write_reflections(str(stem) + ".refl", refl)
        write_reflections(str(folder / reg.reflections_output), refl)
        if reg.experiments_output:
            write_experiments(str(stem) + ".expt", expts)
            write_experiments(str(folder / reg.experiments_output), expts)
        folders[stage] = folder
    return {"root": root, "data": data, "folders": folders, "import": imp_summary, "name": name,
            "summaries": summaries}


@pytest.fixture
def viewer_project(viewer_data, folders, users):
    """alice's project with succeeded import, find_spots, index, refine and integrate runs
    (rows and folders as the worker leaves them) on this test's copy of the data."""
    from xtalweb.projects.models import Project, StageRun, SweepRun
    from xtalweb.projects.whole_project import sweep_from_summary

    data = folders["data"] / "tiny1"
    shutil.copytree(viewer_data["data"], data)
    project = Project.objects.create(name="tiny1", owner=users["alice"], group=users["lab_a"], data_root=str(data))
    work = folders["work"] / str(project.pk)
    shutil.copytree(viewer_data["root"] / "work", work)
    old_root, old_data = str(viewer_data["root"] / "work"), str(viewer_data["data"])
    for d, _, names in os.walk(work):
        for n in names:
            if n.endswith(".expt"):
                path = os.path.join(d, n)
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(text.replace(old_data, str(data)))
    summary = json.loads(json.dumps(viewer_data["import"]).replace(old_data, str(data)))
    sweep = sweep_from_summary(project, summary["sweeps"][0], True)
    sweep.save()
    now = timezone.now()
    runs = {"project": project, "sweep": sweep}
    parent = runs["import"] = StageRun.objects.create(
        project=project, stage="import", status="succeeded", progress=1.0, summary=summary,
        output_dir=str(work / "001_import"), started=now, finished=now)
    for stage in STAGES:
        folder = work / os.path.basename(str(viewer_data["folders"][stage]))
        run = StageRun.objects.create(project=project, stage=stage, status="succeeded", progress=1.0,
                                      output_dir=str(folder), summary={"n_sweeps": 1}, started=now, finished=now)
        run.parents.add(parent)
        files = sorted(str(p) for p in (folder / "sweeps").iterdir())
        SweepRun.objects.create(run=run, index=0, name=sweep.name, sweep=sweep, status="succeeded", progress=1.0,
                                output_files=files, summary=_sweep_summary(stage, viewer_data["summaries"][stage]),
                                started=now, finished=now)
        runs[stage] = parent = run
    return runs


def _sweep_summary(stage: str, summary: dict) -> dict:
    from processing.stages import STAGES as REGISTRY

    return dict(REGISTRY[stage].sweep_outcomes(summary, 1)[0].summary)


def _url(runs, what="", **query):
    from urllib.parse import urlencode

    base = f"/projects/{runs['project'].pk}/sweeps/{runs['sweep'].pk}/viewer/{what}"
    return base + ("?" + urlencode(query) if query else "")


def _png(response):
    from PIL import Image

    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


OUTPUT = {"find_spots": "strong.refl", "index": "indexed.refl", "refine": "refined.refl",
          "integrate": "integrated.refl"}


def _table(runs, stage):
    from processing.io.refl import read_reflections

    return read_reflections(os.path.join(runs[stage].output_dir, OUTPUT[stage]))


# --- the page and the links to it ------------------------------------------------------------


def test_project_page_links_each_sweep_and_names_its_detector(client, users, viewer_project):
    client.force_login(users["alice"])
    page = client.get(f"/projects/{viewer_project['project'].pk}/").content.decode()
    assert _url(viewer_project) in page
    # the Detector column: the detector's name from the NXmx header, not an HDF5 path
    row = page[page.index('id="sweeps"'):page.index("</table>", page.index('id="sweeps"'))]
    assert "EIGER2 X 1M" in row and "/entry/instrument" not in row


def test_viewer_page_defaults_to_the_furthest_run(client, users, viewer_project):
    client.force_login(users["alice"])
    r = client.get(_url(viewer_project, image=4))
    assert r.status_code == 200
    html = r.content.decode()
    cfg = json.loads(html.split('id="viewer-config" type="application/json">')[1].split("</script>")[0])
    assert cfg["run"] == viewer_project["integrate"].pk and cfg["image"] == 4
    assert (cfg["first"], cfg["last"]) == (1, 10) and cfg["image_size"] == [1028, 1062]
    # every run of the sweep is offered, integrate first
    options = html.split('id="viewer-run"')[1].split("</select>")[0]
    order = [options.index(f'value="{viewer_project[s].pk}"') for s in ("integrate", "refine", "index", "find_spots")]
    assert order == sorted(order)


def test_reports_link_to_the_viewer(client, users, viewer_project):
    client.force_login(users["alice"])
    fs = viewer_project["find_spots"]
    report = client.get(f"/projects/{viewer_project['project'].pk}/runs/{fs.pk}/report.json").json()
    (trace,) = report["figures"][0]["data"]
    # a click on the point of image N opens the viewer at image N with this run
    assert trace["meta"]["viewer"] == _url(viewer_project) + f"?run={fs.pk}&image="
    html = client.get(f"/projects/{viewer_project['project'].pk}/runs/{viewer_project['integrate'].pk}/").content.decode()
    assert f'href="{_url(viewer_project)}?run={viewer_project["integrate"].pk}"' in html


def test_index_report_has_the_bravais_table_with_min_max_cc(client, users, viewer_project):
    import re

    client.force_login(users["alice"])
    idx = viewer_project["index"]
    report = client.get(f"/projects/{viewer_project['project'].pk}/runs/{idx.pk}/report.json").json()
    table = next(t for t in report["tables"] if t["id"] == "bravais")
    col = table["columns"].index("min/max cc")
    lattice = {r[table["columns"].index("Lattice")]: r for r in table["rows"]}
    assert set(lattice) >= {"cI", "tI", "hR", "mC", "aP"}
    assert re.fullmatch(r"-?\d\.\d{3}/-?\d\.\d{3}", lattice["cI"][col])
    lo, hi = (float(v) for v in lattice["cI"][col].split("/"))
    assert 0.5 < lo <= hi <= 1.0  # I 2 3 is the data's symmetry: its operators correlate
    assert lattice["aP"][col] is None  # shown as "—"
    html = client.get(f"/projects/{viewer_project['project'].pk}/runs/{idx.pk}/").content.decode()
    assert lattice["cI"][col] in html


# --- PNG views ---------------------------------------------------------------------------------


def test_image_png_has_the_requested_size_and_shows_spots_and_the_gap(client, users, viewer_project):
    client.force_login(users["alice"])
    r = client.get(_url(viewer_project, "image.png", image=5, w=300, h=300, lo=0, hi=50))
    im = _png(r)
    f = math.ceil(max(1028 / 300, 1062 / 300))  # 4
    assert int(r["X-Binning"]) == f and im.size == (math.ceil(1028 / f), math.ceil(1062 / f))
    assert im.mode == "P"
    levels = np.asarray(im)
    # the module gap of an Eiger 2X 1M (rows 512–549) is masked (palette entry 255)
    assert np.all(levels[(512 + f) // f:549 // f, :] == 255)
    # each block is the brightest usable pixel under it, on the 254-level scale from 0 to 50 counts:
    # at the strong spots centred on image 5 it stands out of the background
    from processing.io.expt import read_experiments
    from processing.io.images import open_imageset

    e = read_experiments(os.path.join(viewer_project["import"].output_dir, "imported.expt"))[0]
    reader = open_imageset(e.imageset, e.scan)
    raw, usable = reader.get_raw_data(4)[0], reader.get_mask(4)[0] & (reader.get_raw_data(4)[0] >= 0)
    t = _table(viewer_project, "find_spots")
    xy = t["xyzobs.px.value"][np.floor(t["xyzobs.px.value"][:, 2]) == 4, :2]
    assert len(xy) > 5
    for x, y in xy:
        bx, by = int(x) // f, int(y) // f
        block = np.where(usable, raw, -1)[by * f:(by + 1) * f, bx * f:(bx + 1) * f].max()
        assert levels[by, bx] == min(253, int(np.float32(block) * np.float32(253 / 50)))
    background = np.median(levels[levels < 254])
    assert all(levels[int(y) // f, int(x) // f] > background + 20 for x, y in xy)
    # a zoomed view: native pixels of the region asked for
    r = client.get(_url(viewer_project, "image.png", image=5, x0=100, y0=200, x1=300, y1=260, w=800, h=800))
    assert _png(r).size == (200, 60) and r["X-Region"] == "100,200,300,260" and r["X-Binning"] == "1"
    # colour maps and the mask switch give other palettes / levels, still decodable
    r = client.get(_url(viewer_project, "image.png", image=5, w=100, h=100, cmap="viridis", mask=0))
    assert _png(r).size == (math.ceil(1028 / 11), math.ceil(1062 / 11))


def test_auto_levels_and_pixel_values(client, users, viewer_project):
    from processing.io.expt import read_experiments
    from processing.io.images import open_imageset

    client.force_login(users["alice"])
    r = client.get(_url(viewer_project, "image.png", image=2, w=64, h=64))
    lo, hi = (float(v) for v in r["X-Levels"].split(","))
    e = read_experiments(os.path.join(viewer_project["import"].output_dir, "imported.expt"))[0]
    reader = open_imageset(e.imageset, e.scan)
    raw, usable = reader.get_raw_data(1)[0], reader.get_mask(1)[0]
    # automatic levels: black at 0, white at 8 × (90th percentile of the usable pixels + 1)
    t_lo, t_hi = e.detector[0].trusted_range
    sample = raw.ravel()[::7][(usable & (raw > t_lo) & (raw < t_hi)).ravel()[::7]]
    assert lo == 0 and hi == pytest.approx(8 * (np.quantile(sample, 0.9) + 1))
    y, x = np.unravel_index(np.argmax(np.where(usable, raw, -1)), raw.shape)
    # run=none: the imported (header) geometry, which ref below uses; by default the viewer takes
    # the latest run's, and index now refines the detector
    p = client.get(_url(viewer_project, "pixel.json", image=2, x=x + 0.5, y=y + 0.5, run="none")).json()
    assert p["value"] == int(raw[y, x]) and p["status"] in ("ok", "overloaded")
    # the resolution of a pixel: DIALS's d of that pixel's ray
    from processing.geometry.frames import d_spacing, pixel_to_s1

    ref = float(d_spacing(pixel_to_s1(e.detector[0], e.beam, [[x + 0.5, y + 0.5]]), e.beam.s0)[0])
    assert p["d"] == pytest.approx(ref, rel=1e-4)
    gap = client.get(_url(viewer_project, "pixel.json", image=2, x=500, y=530)).json()
    assert gap["status"] != "ok"


# --- overlays ----------------------------------------------------------------------------------


def test_overlay_of_an_integrate_run_has_shoeboxes_with_miller_indices(client, users, viewer_project):
    client.force_login(users["alice"])
    o = client.get(_url(viewer_project, "overlay.json", image=5, run=viewer_project["integrate"].pk)).json()
    assert o["run"]["stage"] == "integrate" and o["frame"] == 4
    boxes, pred = o["layers"]["shoeboxes"], o["layers"]["predicted"]
    t = _table(viewer_project, "integrate")
    on = (t["bbox"][:, 4] <= 4) & (4 < t["bbox"][:, 5])
    assert len(boxes["bbox"]) == int(on.sum()) > 20
    assert all(any(h) for h in boxes["hkl"]) and set(boxes["status"]) <= {"prf", "sum", "failed"}
    assert "prf" in boxes["status"]
    # every prediction centred on this image, with its index: the table's own xyzcal and hkl
    centred = np.floor(t["xyzcal.px"][:, 2]) == 4
    assert len(pred["xy"]) == int(centred.sum()) > 5
    ref = {tuple(h): xy for h, xy in zip(t["miller_index"][centred].tolist(), t["xyzcal.px"][centred, :2])}
    for h, xy in zip(pred["hkl"], pred["xy"]):
        assert np.allclose(ref[tuple(h)], xy, atol=0.06)
    # the resolution under a predicted spot is that reflection's d
    k = int(np.argmax(centred))
    p = client.get(_url(viewer_project, "pixel.json", image=5, x=t["xyzcal.px"][k, 0], y=t["xyzcal.px"][k, 1])).json()
    assert p["d"] == pytest.approx(float(t["d"][k]), rel=0.003)
    # rings: increasing resolution outwards, at least three, each with points on the panel
    ds = [ring["d"] for ring in o["rings"]]
    assert len(ds) >= 3 and ds == sorted(ds, reverse=True)
    assert o["beam_centre"][0] == pytest.approx(viewer_project["sweep"].beam_centre_x, abs=2.0)


def test_overlay_of_an_index_run_predicts_each_indexed_spot(client, users, viewer_project):
    client.force_login(users["alice"])
    for stage in ("index", "refine"):
        o = client.get(_url(viewer_project, "overlay.json", image=3, run=viewer_project[stage].pk)).json()
        indexed, pred = o["layers"]["indexed"], o["layers"]["predicted"]
        # (a few indexed spots observed on this image are predicted centred on the next)
        assert len(indexed["xy"]) > 10 and len(pred["xy"]) >= 0.95 * len(indexed["xy"])
        where = {tuple(h): xy for h, xy in zip(pred["hkl"], pred["xy"])}
        # the crystal model's prediction of each indexed spot: same index, within a pixel
        hits = [h for h, xy in zip(indexed["hkl"], indexed["xy"])
                if tuple(h) in where and np.hypot(*np.subtract(where[tuple(h)], xy)) < 1.0]
        assert len(hits) >= 0.9 * len(indexed["hkl"]), stage
        assert o["lattices"][0]["space_group"]


def test_overlay_of_a_find_spots_run_has_the_strong_spots_of_the_image(client, users, viewer_project):
    client.force_login(users["alice"])
    t = _table(viewer_project, "find_spots")
    for image in (1, 10):
        o = client.get(_url(viewer_project, "overlay.json", image=image, run=viewer_project["find_spots"].pk)).json()
        on = (t["bbox"][:, 4] <= image - 1) & (image - 1 < t["bbox"][:, 5])
        assert len(o["layers"]["strong"]["xy"]) == int(on.sum()) > 0
        assert set(o["layers"]) == {"strong"}
    none = client.get(_url(viewer_project, "overlay.json", image=1, run="none")).json()
    assert none["run"] is None and none["layers"]["strong"]["xy"] == []


# --- access and clear messages -----------------------------------------------------------------


def test_another_groups_user_gets_404_everywhere(client, users, viewer_project):
    client.force_login(users["carol"])
    for what in ("", "image.png", "overlay.json", "pixel.json"):
        assert client.get(_url(viewer_project, what, image=1, x=1, y=1)).status_code == 404, what
    client.logout()
    r = client.get(_url(viewer_project, "image.png", image=1))
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]
    client.force_login(users["bob"])  # lab-a: may look
    assert client.get(_url(viewer_project, "overlay.json", image=1)).status_code == 200


def test_clear_messages_for_bad_requests(client, users, viewer_project):
    client.force_login(users["alice"])
    r = client.get(_url(viewer_project, "image.png", image=11))
    assert r.status_code == 404 and r.content.decode() == "Image 11: image 11 is not in this sweep (images 1–10)"
    r = client.get(_url(viewer_project, "overlay.json", image=0))
    assert r.status_code == 404 and r.json()["error"] == "Image 0: image 0 is not in this sweep (images 1–10)"
    r = client.get(_url(viewer_project, image=99))
    assert r.status_code == 404 and "image 99 is not in this sweep (images 1–10)" in r.content.decode()
    r = client.get(_url(viewer_project, "image.png", image="five"))
    assert r.status_code == 400 and "image='five' is not a number" in r.content.decode()
    r = client.get(_url(viewer_project, "image.png", image=1, cmap="rainbow"))
    assert r.status_code == 400 and "cmap='rainbow'" in r.content.decode()
    r = client.get(_url(viewer_project, "overlay.json", image=1, run=viewer_project["import"].pk))
    assert r.status_code == 400 and "is a import run" in r.json()["error"]
    r = client.get(_url(viewer_project, "overlay.json", image=1, run=987654))
    assert r.status_code == 404 and r.json()["error"] == "No run #987654 in this project"
    r = client.get(_url(viewer_project, "pixel.json", image=1, x=5000, y=1))
    assert r.status_code == 400 and "outside the 1028×1062 panel" in r.json()["error"]
    r = client.get(_url(viewer_project, "image.png", image=1, x0=2000, x1=2100))
    assert r.status_code == 400 and "holds no pixel" in r.content.decode()


# --- in a real browser -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_viewer_in_the_browser(browser, live_server, client, users, viewer_project, tmp_path):
    """The page shows the image with the integrated shoeboxes and predictions over it; the
    pointer on a predicted spot shows its Miller index; a screenshot is kept."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .browser import login, save_screenshot, severe_errors

    login(browser, live_server, client, users["alice"])
    browser.get(live_server.url + _url(viewer_project, image=5))
    stage = browser.find_element(By.ID, "viewer-stage")
    WebDriverWait(browser, 20).until(lambda b: stage.get_attribute("data-image-loaded") == "5"
                                     and stage.get_attribute("data-overlay-loaded") == "5")
    counts = browser.find_element(By.ID, "overlay-counts").text
    assert "shoeboxes" in counts and "predicted" in counts
    save_screenshot(browser, tmp_path, "viewer_whole_image.png")
    # the image canvas holds the picture: dark (spot) and light (background) pixels
    dark = browser.execute_script("""
        var c = document.getElementById('viewer-image'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        var dark = 0, light = 0;
        for (var i = 0; i < d.length; i += 4) { if (d[i + 3] > 0 && d[i] < 60) dark++; if (d[i] > 200) light++; }
        return [dark, light];""")
    assert dark[0] > 20 and dark[1] > 10000
    # zoom in on the middle, then point at a predicted spot
    browser.find_element(By.ID, "zoom-in").click()
    WebDriverWait(browser, 20).until(lambda b: b.execute_script(
        "return window.xtalViewer.state.bitmap && window.xtalViewer.state.scale") > 0.8)
    overlay = client.get(_url(viewer_project, "overlay.json", image=5)).json()
    pred = overlay["layers"]["predicted"]
    rect = browser.execute_script("var r = document.getElementById('viewer-stage').getBoundingClientRect();"
                                  "return [r.left, r.top, r.width, r.height];")
    target = None
    for xy, hkl in zip(pred["xy"], pred["hkl"]):
        p = browser.execute_script("return window.xtalViewer.pageXY(arguments[0], arguments[1]);", *xy)
        if rect[0] + 20 < p["x"] < rect[0] + rect[2] - 20 and rect[1] + 20 < p["y"] < rect[1] + rect[3] - 20:
            target = (p, hkl)
            break
    assert target is not None, "no predicted spot in view"
    (p, hkl) = target
    ActionChains(browser).move_to_element_with_offset(stage, int(p["x"] - rect[0] - rect[2] / 2),
                                                      int(p["y"] - rect[1] - rect[3] / 2)).perform()
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "hover-hkl").text != "—")
    assert browser.find_element(By.ID, "hover-hkl").text == " ".join(str(v) for v in hkl)
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "hover-d").text.endswith("Å"))
    shot = save_screenshot(browser, tmp_path, "viewer.png")
    assert os.path.getsize(shot) > 10000
    assert not severe_errors(browser)


@pytest.mark.django_db(transaction=True)
def test_click_on_the_spots_per_image_plot_opens_that_image(browser, live_server, client, users, viewer_project):
    """The find_spots report: a click on image 7's point of the spots-per-image plot opens
    the viewer at image 7 with that run's spots."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .browser import login

    login(browser, live_server, client, users["alice"])
    fs = viewer_project["find_spots"]
    browser.get(f"{live_server.url}/projects/{viewer_project['project'].pk}/runs/{fs.pk}/")
    WebDriverWait(browser, 20).until(lambda b: b.execute_script(
        "var d = document.getElementById('figure-spots_per_image'); return !!(d && d.dataset.viewerBound);"))
    # plotly's own click event on the point of image 7 (as a click on the marker emits it)
    browser.execute_script("""var d = document.getElementById('figure-spots_per_image');
        d.emit('plotly_click', {points: [{x: 7, y: 1, data: d.data[0]}]});""")
    WebDriverWait(browser, 20).until(lambda b: "/viewer/" in b.current_url)
    assert b_url_query(browser.current_url) == {"run": str(fs.pk), "image": "7"}
    stage = browser.find_element(By.ID, "viewer-stage")
    WebDriverWait(browser, 20).until(lambda b: stage.get_attribute("data-overlay-loaded") == "7")
    assert "strong" in browser.find_element(By.ID, "overlay-counts").text


def b_url_query(url: str) -> dict:
    from urllib.parse import parse_qsl, urlparse

    return dict(parse_qsl(urlparse(url).query))
