"""Per-sweep stages end to end: the run form → a Celery chord (one task per sweep, a
join) on a real worker → processing.spotfinding / processing.indexing → SweepRun rows,
merged DIALS files, reports. Data: the simulator's ``tiny`` set (3 crystals × 10 images)."""

from __future__ import annotations

import hashlib
import html
import os
import re

import numpy as np
import pytest
from django.urls import reverse

from xtalweb.projects.models import Project, StageRun

from .helpers import wait_for_run

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]


def imported_project(client, users, data_root, name="tiny") -> tuple[Project, StageRun]:
    client.force_login(users["alice"])
    response = client.post(reverse("project_new"),
                           {"name": name, "data_root": str(data_root), "group": users["lab_a"].pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    project = Project.objects.get(name=name)
    run = wait_for_run(project.runs.get().pk)
    assert run.status == "succeeded", run.log
    return project, run


def post_stage(client, project, stage, params=None, parent=None, sweeps=None):
    data = {f"{stage}-{k}": v for k, v in (params or {}).items()}
    if parent is None:
        parent = project.runs.filter(stage={"find_spots": "import", "index": "find_spots"}[stage],
                                     status__in=("succeeded", "partial")).order_by("-finished", "-id").first()
    data[f"{stage}-parent"] = parent.pk
    if sweeps is None:
        sweeps = list(parent.sweep_runs.filter(status="succeeded").values_list("index", flat=True)) \
            if parent.stage != "import" else list(range(len(parent.summary["sweeps"])))
    data[f"{stage}-sweeps"] = [str(k) for k in sweeps]
    return client.post(reverse("stagerun_new", args=[project.pk, stage]), data)


def run_stage(client, project, stage, params=None, **kw) -> StageRun:
    before = set(project.runs.values_list("pk", flat=True))
    response = post_stage(client, project, stage, params, **kw)
    assert response.status_code == 302, response.content.decode()[:3000]
    (run_id,) = set(project.runs.values_list("pk", flat=True)) - before
    return wait_for_run(run_id)


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def tree_digest(folder) -> dict[str, str]:
    return {os.path.relpath(os.path.join(d, f), folder): sha(os.path.join(d, f))
            for d, _, fs in os.walk(folder) for f in fs}


def direct_spot_counts(import_run, **params) -> list[int]:
    """The science called directly, as `xtal find_spots` would: spots per sweep."""
    from processing.io.expt import read_experiments
    from processing.io.images import open_imageset
    from processing.params import from_strings
    from processing.spotfinding import FindSpotsParams, find_spots

    p = from_strings(FindSpotsParams, [f"{k}={v}" for k, v in params.items()])
    experiments = read_experiments(os.path.join(import_run.output_dir, "imported.expt"))
    return [find_spots(e, open_imageset(e.imageset, e.scan), p)[1]["n_spots"] for e in experiments]


def test_find_spots_matches_the_science_and_a_rerun_keeps_the_old_folder(client, users, tiny_data):
    from processing.io.refl import read_reflections

    project, imp = imported_project(client, users, tiny_data)
    assert [s.name for s in project.sweeps.all()] == ["crystal_000", "crystal_001", "crystal_002"]

    run = run_stage(client, project, "find_spots")
    assert (run.status, run.error) == ("succeeded", ""), run.log
    assert run.output_dir == os.path.join(project.work_dir, "002_find_spots")
    assert list(run.parents.all()) == [imp]
    rows = list(run.sweep_runs.all())
    assert [(r.index, r.name, r.status, r.progress) for r in rows] == [
        (0, "crystal_000", "succeeded", 1.0), (1, "crystal_001", "succeeded", 1.0),
        (2, "crystal_002", "succeeded", 1.0)]

    # the worker's per-sweep counts are those of the science called directly
    counts = [r.summary["n_spots"] for r in rows]
    assert counts == direct_spot_counts(imp)
    assert all(c > 100 for c in counts)
    assert [len(r.summary["histogram"]["n_spots"]) for r in rows] == [10, 10, 10]
    assert [sum(r.summary["histogram"]["n_spots"]) for r in rows] == counts

    # merged strong.refl: every sweep's spots, ids = the import's experiment ids
    strong = read_reflections(os.path.join(run.output_dir, "strong.refl"))
    assert len(strong) == sum(counts) == run.summary["n_spots"]
    ids, n = np.unique(strong["id"], return_counts=True)
    assert ids.tolist() == [0, 1, 2] and n.tolist() == counts
    assert run.summary["n_succeeded"] == 3 and run.summary["n_failed"] == 0

    # the live status JSON carries the sweeps' states, the report JSON their numbers
    status = client.get(reverse("project_status", args=[project.pk])).json()
    fs = next(r for r in status["runs"] if r["id"] == run.pk)
    assert [(s["name"], s["status"], s["progress"]) for s in fs["sweeps"]] == [
        ("crystal_000", "succeeded", 1.0), ("crystal_001", "succeeded", 1.0), ("crystal_002", "succeeded", 1.0)]
    assert "summary" not in fs and "summary" not in fs["sweeps"][0]  # the polled JSON stays small
    report = client.get(reverse("stagerun_report_json", args=[project.pk, run.pk])).json()
    table = report["tables"][0]
    assert table["columns"][:4] == ["Sweep", "Images", "Spots", "Spots/image"]
    assert [row[:4] for row in table["rows"][:3]] == [
        [name, 10, c, round(c / 10, 1)] for name, c in zip(["crystal_000", "crystal_001", "crystal_002"], counts)]
    assert table["rows"][3][:3] == ["all succeeded sweeps", 30, sum(counts)]
    (fig,) = report["figures"]
    assert [t["name"] for t in fig["data"]] == ["crystal_000", "crystal_001", "crystal_002"]
    assert [sum(t["y"]) for t in fig["data"]] == counts
    assert fig["data"][0]["x"] == list(range(1, 11))
    page = client.get(reverse("stagerun_report", args=[project.pk, run.pk])).content.decode()
    assert reverse("plotly_js") in page and f">{counts[1]}<" in page

    # a rerun with other parameters: a new folder, the first one byte for byte as it was
    before = tree_digest(run.output_dir)
    assert sorted(before) == ["strong.refl", "sweeps/000_crystal_000.refl", "sweeps/001_crystal_001.refl",
                              "sweeps/002_crystal_002.refl"]
    rerun = run_stage(client, project, "find_spots", {"sigma_strong": "6", "min_spot_size": "4"}, parent=imp)
    assert rerun.status == "succeeded", rerun.log
    assert rerun.output_dir == os.path.join(project.work_dir, "003_find_spots")
    assert tree_digest(run.output_dir) == before
    assert rerun.parameters["sigma_strong"] == 6.0 and rerun.parameters["min_spot_size"] == 4
    assert run.parameters["sigma_strong"] == 3.0
    new_counts = [r.summary["n_spots"] for r in rerun.sweep_runs.all()]
    assert all(a < b for a, b in zip(new_counts, counts)), (new_counts, counts)
    assert len(read_reflections(os.path.join(rerun.output_dir, "strong.refl"))) == sum(new_counts)


def test_broken_sweep_fails_alone_and_index_reports_cells(client, users, tiny_data):
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections
    from processing.models import format_with_sd

    project, imp = imported_project(client, users, tiny_data)
    os.remove(tiny_data / "crystal_001_data_000001.h5")  # the images of sweep 1 are gone

    run = run_stage(client, project, "find_spots")
    # issue 9: a run with a failed sweep is "partial", not "succeeded"
    assert (run.status, run.error) == ("partial", "1 of 3 sweeps failed"), run.log
    rows = {r.name: r for r in run.sweep_runs.all()}
    bad = rows["crystal_001"]
    assert bad.status == "failed"
    assert bad.error and "\n" not in bad.error and "Traceback" not in bad.error
    assert not bad.error.startswith("Internal error"), bad.log
    assert [rows[n].status for n in ("crystal_000", "crystal_002")] == ["succeeded", "succeeded"]
    strong = read_reflections(os.path.join(run.output_dir, "strong.refl"))
    assert sorted(set(strong["id"].tolist())) == [0, 2]
    assert len(strong) == rows["crystal_000"].summary["n_spots"] + rows["crystal_002"].summary["n_spots"]
    expts = read_experiments(os.path.join(imp.output_dir, "imported.expt"))
    assert set(strong.experiment_identifiers.values()) == {expts[0].identifier, expts[2].identifier}
    assert (run.summary["n_succeeded"], run.summary["n_failed"]) == (2, 1)
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert html.escape(bad.error) in page
    log = client.get(reverse("stagerun_log", args=[project.pk, run.pk])).content.decode()
    assert "=== sweep crystal_001 (experiment 1): failed ===" in log and f"FAILED: {bad.error}" in log
    assert "Sweep crystal_001 failed" in log.split("=== join ===")[1]

    # index (one task per sweep) on top: only the two good sweeps are offered
    form_page = client.get(reverse("stagerun_new", args=[project.pk, "index"])).content.decode()  # the card's form
    assert 'name="index-sweeps" value="0"' in form_page and 'name="index-sweeps" value="1"' not in form_page
    idx = run_stage(client, project, "index")
    assert (idx.status, idx.error) == ("succeeded", ""), idx.log
    assert idx.parameters["joint"] is False
    sweeps = list(idx.sweep_runs.all())
    assert [(s.name, s.status) for s in sweeps] == [("crystal_000", "succeeded"), ("crystal_002", "succeeded")]
    out_expts = read_experiments(os.path.join(idx.output_dir, "indexed.expt"))
    out_refl = read_reflections(os.path.join(idx.output_dir, "indexed.refl"))
    assert len(out_expts) == 2 and all(e.crystal is not None for e in out_expts)
    assert out_refl.experiment_identifiers == {0: out_expts[0].identifier, 1: out_expts[1].identifier}
    assert [e.identifier for e in out_expts] == [expts[0].identifier, expts[2].identifier]
    n_indexed = [int(((out_refl["id"] == k)).sum()) for k in (0, 1)]
    assert n_indexed == [s.summary["n_indexed"] for s in sweeps]
    for s in sweeps:
        assert s.summary["percent_indexed"] > 90
        assert len(s.summary["unit_cell"]) == 6

    report = client.get(reverse("stagerun_report_json", args=[project.pk, idx.pk])).json()
    table = report["tables"][0]
    assert table["columns"][:4] == ["Sweep", "% indexed", "Unit cell (Å, °)", "Space group"]
    for row, s in zip(table["rows"], sweeps):
        cell = ", ".join(format_with_sd(v, e) for v, e in zip(s.summary["unit_cell"], s.summary["unit_cell_sd"]))
        assert row[2] == cell
        assert re.match(r"^\d+\.\d+\(\d+\), ", row[2]), row[2]  # DIALS's 67.79(3) form
        assert row[1] == round(s.summary["percent_indexed"], 1)
        assert row[4] == round(s.summary["rmsd_x_px"], 3)
    lengths = next(f for f in report["figures"] if f["id"] == "cell_lengths")
    assert [t["name"] for t in lengths["data"]] == ["a", "b", "c"]
    assert lengths["data"][0]["y"] == [s.summary["unit_cell"][0] for s in sweeps]

    # every sweep failing fails the run with the one-line reasons, and leaves no folder
    fail = run_stage(client, project, "index", {"min_spots": "100000"})
    assert fail.status == "failed"
    assert fail.error.startswith("All 2 sweep(s) failed")
    assert "crystal_000: too few spots" in fail.error and "crystal_002: too few spots" in fail.error
    assert "\n" not in fail.error
    assert fail.output_dir == ""
    assert not os.path.exists(os.path.join(project.work_dir, "004_index"))
    report = client.get(reverse("stagerun_report_json", args=[project.pk, fail.pk])).json()
    assert [r[-2] for r in report["tables"][0]["rows"]] == ["failed", "failed"]
    assert report["tables"][0]["row_status"] == ["failed", "failed"]
