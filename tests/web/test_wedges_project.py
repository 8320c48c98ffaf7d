"""A project that is not ``tiny``, as a new user makes it (issue 9): simulated
``lysozyme-wedges`` (P 4₃2₁2 on an Eiger 2X 9M, cut to 3 crystals × 4 images) from the
new-project form, then find spots → index → refine → integrate from the project page
through the real worker. Every sweep must succeed at every stage, every summary must be
strict JSON, and the pages must show no NaN. Runs on PostgreSQL and (``-m worker``) on
SQLite, the ``make run`` default."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from xtalweb.projects.models import Project

from .helpers import wait_for_run

pytestmark = [pytest.mark.usefixtures("celery_worker"), pytest.mark.django_db(transaction=True)]

N_CRYSTALS, N_IMAGES = 3, 4


@pytest.fixture(scope="session")
def wedges_dataset(tmp_path_factory):
    from xtalweb.projects.whole_project import simulate_into

    target = tmp_path_factory.mktemp("simulated") / "lysozyme-wedges"
    simulate_into("lysozyme-wedges", str(target), overrides={"n_crystals": N_CRYSTALS, "n_images": N_IMAGES})
    return target


def run_stage(client, project, stage, parent) -> object:
    sweeps = list(parent.sweep_runs.filter(status="succeeded").values_list("index", flat=True)) \
        if parent.stage != "import" else list(range(len(parent.summary["sweeps"])))
    data = {f"{stage}-parent": parent.pk, f"{stage}-sweeps": [str(k) for k in sweeps]}
    before = set(project.runs.values_list("pk", flat=True))
    response = client.post(reverse("stagerun_new", args=[project.pk, stage]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    (run_id,) = set(project.runs.values_list("pk", flat=True)) - before
    return wait_for_run(run_id, timeout=300)


def test_wedges_project_integrates_every_sweep(client, users, folders, wedges_dataset):
    import shutil

    data = folders["data"] / "wedges"
    shutil.copytree(wedges_dataset, data)
    client.force_login(users["alice"])
    response = client.post(reverse("project_new"), {"name": "wedges", "data_root": str(data),
                                                    "group": users["lab_a"].pk})
    assert response.status_code == 302
    project = Project.objects.get(name="wedges")
    run = wait_for_run(project.runs.get().pk)
    assert run.status == "succeeded" and run.summary["n_sweeps"] == N_CRYSTALS, run.log

    for stage in ("find_spots", "index", "refine", "integrate"):
        run = run_stage(client, project, stage, run)
        rows = list(run.sweep_runs.order_by("index"))
        assert (run.status, run.error) == ("succeeded", ""), run.log + "".join(r.log for r in rows)
        assert [r.status for r in rows] == ["succeeded"] * N_CRYSTALS
        for doc in [run.summary] + [r.summary for r in rows]:
            json.dumps(doc, allow_nan=False)

    # ~700 reflections per 0.4° wedge to 1.6 Å; nearly all integrated by summation
    for r in rows:
        (e,) = r.summary["experiments"]
        assert e["n_predicted"] > 500 and e["n_integrated_sum"] > 0.85 * e["n_predicted"], e
    assert run.summary["n_experiments"] == N_CRYSTALS
    for url in (reverse("project_status", args=[project.pk]),
                reverse("stagerun_report_json", args=[project.pk, run.pk])):
        text = client.get(url).content.decode()
        assert "NaN" not in text and "Infinity" not in text
        json.loads(text)
    page = client.get(reverse("stagerun_report", args=[project.pk, run.pk])).content.decode()
    assert re.search(r"\bnan\b", page, re.IGNORECASE) is None
