"""Fixtures of the web tests: users and groups, data/work folders, a real Celery worker.

Run with a real PostgreSQL and Redis, as the Makefile does:

    DATABASE_URL=postgresql://root@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/pytest tests/web

Every task this session sends goes to queues of its own (``xtalweb-test-<random>`` and
its ``.sweeps`` and ``.ensemble`` queues, ``xtalweb.routing``), so a worker of ``make run``
(or another test session) never sees them, and the session's worker never sees theirs.
The worker runs in a thread of the test process
(``celery.contrib.testing.worker.start_worker``), consuming those queues from Redis: it
shares the test database and the ``settings`` overrides of the running test.
"""

from __future__ import annotations

import uuid

import pytest

from .helpers import SMARGON_CBF

TEST_QUEUE = f"xtalweb-test-{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(items):
    """Tests that run stages through the real Celery worker are marked ``worker``: the
    Makefile runs them a second time on SQLite, the ``make run`` default."""
    for item in items:
        if "celery_worker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.worker)


@pytest.fixture(scope="session", autouse=True)
def _celery_test_queue():
    """Route every task of this session to the session's own queues (the routing derives
    ``<queue>.sweeps`` and ``<queue>.ensemble`` from the default queue); drop them afterwards."""
    from xtalweb.celery import app
    from xtalweb.routing import queue_names

    app.conf.task_default_queue = TEST_QUEUE
    app.amqp.__dict__.pop("queues", None)  # rebuilt from the new default on next use
    yield TEST_QUEUE
    try:
        with app.connection_for_write() as conn:
            client = conn.default_channel.client
            for q in queue_names(TEST_QUEUE):
                client.delete(q, f"_kombu.binding.{q}", f"_kombu.binding_permanent.{q}")
    except Exception:  # Redis gone: nothing to clean
        pass


@pytest.fixture(scope="session")
def celery_worker(_celery_test_queue, django_db_setup, django_db_blocker):
    """A real Celery worker (solo pool, in a thread) consuming the session's queues (all
    three, as the worker of ``make run`` does)."""
    from celery.contrib.testing import tasks as _ping_task  # noqa: F401  registers celery.ping
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connection, connections

    from xtalweb.celery import app
    from xtalweb.routing import queue_names

    if connection.vendor not in ("postgresql", "sqlite"):
        pytest.fail(f"the worker tests run on PostgreSQL or SQLite, not {connection.vendor}")
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.fail("the worker tests need a file SQLite database (settings: DATABASES TEST NAME)")

    def close_worker_connections(**kwargs):
        # runs in the worker thread: close its own (thread-local) connections, so that
        # flushing or dropping the test database is never blocked by them
        connections.close_all()

    task_postrun.connect(close_worker_connections, weak=False)
    try:
        with start_worker(
            app,
            pool="solo",
            concurrency=1,
            perform_ping_check=True,
            ping_task_timeout=20.0,
            shutdown_timeout=60.0,
            loglevel="WARNING",
            queues=list(queue_names(_celery_test_queue)),
        ) as worker:
            yield worker
    finally:
        task_postrun.disconnect(close_worker_connections)


@pytest.fixture
def folders(tmp_path, settings):
    """DATA_ROOTS = [tmp/data], WORK_ROOT = tmp/work, and a folder tmp/outside."""
    data = tmp_path / "data"
    work = tmp_path / "work"
    outside = tmp_path / "outside"
    for d in (data, work, outside):
        d.mkdir()
    settings.DATA_ROOTS = [str(data)]
    settings.WORK_ROOT = str(work)
    return {"data": data, "work": work, "outside": outside}


@pytest.fixture
def users(django_user_model):
    """alice and bob in lab-a, carol in lab-b."""
    from django.contrib.auth.models import Group

    lab_a = Group.objects.create(name="lab-a")
    lab_b = Group.objects.create(name="lab-b")
    alice = django_user_model.objects.create_user("alice", password="pw-alice")
    bob = django_user_model.objects.create_user("bob", password="pw-bob")
    carol = django_user_model.objects.create_user("carol", password="pw-carol")
    alice.groups.add(lab_a)
    bob.groups.add(lab_a)
    carol.groups.add(lab_b)
    return {"alice": alice, "bob": bob, "carol": carol, "lab_a": lab_a, "lab_b": lab_b}


@pytest.fixture
def smargon_cbf():
    if not SMARGON_CBF.exists():
        pytest.skip(f"real data not available: {SMARGON_CBF}")
    return SMARGON_CBF


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The simulator's ``tiny`` preset (3 crystals × 10 images, NXmx), made once per session
    through ``whole_project.simulate_into`` (the same function the demo command and the
    simulate task use)."""
    from xtalweb.projects.whole_project import simulate_into

    target = tmp_path_factory.mktemp("simulated") / "tiny"
    try:
        simulate_into("tiny", str(target))
    except ImportError as exc:  # the simulator is not there yet
        pytest.skip(f"processing.simulate is not available: {exc}")
    return target


@pytest.fixture
def tiny_data(tiny_dataset, folders):
    """A copy of the tiny data set inside this test's data root: ``data/tiny``."""
    import shutil

    dst = folders["data"] / "tiny"
    shutil.copytree(tiny_dataset, dst)
    return dst


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The users fixture makes three users per test: hash their passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def tiny_indexed(tiny_dataset, tmp_path_factory):
    """import → find_spots → index of the tiny set, once per session, by the science called
    directly with the web's default parameters (index joint=false: one sweep at a time, as
    the web's tasks do; but n_points=128 for speed), written in the layout of the web's run folders:
    ``001_import/imported.expt``, ``002_find_spots/{strong.refl,sweeps/…}``,
    ``003_index/{indexed.expt,indexed.refl,sweeps/<nnn>_<name>.expt/.refl}``, plus
    ``manifest.json`` with the summaries. Image paths point into ``tiny_dataset``; the
    ``indexed_project`` fixture copies it all into a test's own folders."""
    import json
    import os

    from processing.io.expt import write_experiments
    from processing.io.images import open_imageset
    from processing.io.refl import write_reflections
    from processing.models import ExperimentList
    from processing.importer import ImportParams, run_import
    from processing.reflections import ReflectionTable
    from processing.spotfinding import find_spots

    from processing.indexing import run_index

    from xtalweb.projects.stages import build_params, params_json, words_from_values

    root = tmp_path_factory.mktemp("tiny_indexed")
    files = sorted(str(p) for p in tiny_dataset.iterdir() if p.name.endswith("_master.h5"))
    experiments, imp_summary = run_import(ImportParams(paths=tuple(files)))
    for sub in ("001_import", "002_find_spots/sweeps", "003_index/sweeps"):
        os.makedirs(root / sub)
    write_experiments(str(root / "001_import" / "imported.expt"), experiments)
    fs_params = build_params("find_spots", words_from_values("find_spots", {}))
    # n_points=128: a coarser FFT grid, twice as fast on these 10-image sweeps, same lattices
    idx_params = build_params("index", words_from_values("index", {"n_points": "128"}))
    sweeps = []
    spots_tables, idx_expts, idx_tables = [], ExperimentList(), []
    for k, (e, s) in enumerate(zip(experiments, imp_summary["sweeps"])):
        stem = f"{k:03d}_{s['name']}"
        spots, fs_summary = find_spots(e, open_imageset(e.imageset, e.scan), fs_params, experiment_id=k)
        fs_file = str(root / "002_find_spots" / "sweeps" / f"{stem}.refl")
        write_reflections(fs_file, spots)
        spots_tables.append(spots)
        out_e, out_r, idx_summary = run_index(ExperimentList([e]), spots, idx_params)
        idx_stem = str(root / "003_index" / "sweeps" / stem)
        write_experiments(idx_stem + ".expt", out_e)
        write_reflections(idx_stem + ".refl", out_r)
        idx_expts.extend(out_e)
        idx_tables.append(out_r)
        r = dict(idx_summary["sweeps"][0])
        r.pop("traceback", None)
        r["sweep"] = k
        sweeps.append({"index": k, "name": s["name"], "stages": {
                       "find_spots": {"summary": {k2: v for k2, v in fs_summary.items()
                                                  if k2 in ("n_spots", "n_images", "histogram")},
                                      "files": [fs_file]},
                       "index": {"summary": r, "files": [idx_stem + ".expt", idx_stem + ".refl"]}}})
    write_reflections(str(root / "002_find_spots" / "strong.refl"), ReflectionTable.concatenate(spots_tables))
    write_experiments(str(root / "003_index" / "indexed.expt"), idx_expts)
    write_reflections(str(root / "003_index" / "indexed.refl"), ReflectionTable.concatenate(idx_tables))
    manifest = {"dataset": str(tiny_dataset), "root": str(root), "import": imp_summary,
                "find_spots_parameters": params_json(fs_params), "index_parameters": params_json(idx_params),
                "sweeps": sweeps}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def indexed_project(tiny_indexed, tiny_data, folders, users):
    """alice's project (lab-a) on this test's copy of the tiny data, with succeeded import,
    find_spots and index runs (rows and folders as the worker leaves them) from the
    session's ``tiny_indexed``: ``{"project", "import", "find_spots", "index"}``."""
    import json
    import os
    import shutil

    from django.utils import timezone

    from xtalweb.projects.models import Project, StageRun, Sweep, SweepRun
    from xtalweb.projects.whole_project import sweep_from_summary

    manifest = json.loads((tiny_indexed / "manifest.json").read_text())
    project = Project.objects.create(name="tiny", owner=users["alice"], group=users["lab_a"],
                                     data_root=str(tiny_data))
    work = folders["work"] / str(project.pk)
    project.work_dir = str(work)
    project.save()

    def moved(text: str) -> str:  # the session's paths → this test's copies
        return text.replace(manifest["root"], str(work)).replace(manifest["dataset"], str(tiny_data))

    for sub in ("001_import", "002_find_spots", "003_index"):
        shutil.copytree(tiny_indexed / sub, work / sub)
    for d, _, names in os.walk(work):
        for n in names:
            if n.endswith(".expt"):
                path = os.path.join(d, n)
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(moved(text))
    manifest = json.loads(moved(json.dumps(manifest)))
    now = timezone.now()
    Sweep.objects.bulk_create([sweep_from_summary(project, s, True) for s in manifest["import"]["sweeps"]])
    imp = StageRun.objects.create(project=project, stage="import", status="succeeded", progress=1.0,
                                  output_dir=str(work / "001_import"), summary=manifest["import"],
                                  parameters={"data_root": str(tiny_data)}, started=now, finished=now)
    runs = {"project": project, "import": imp}
    parent = imp
    for stage, folder in (("find_spots", "002_find_spots"), ("index", "003_index")):
        run = StageRun.objects.create(project=project, stage=stage, status="succeeded", progress=1.0,
                                      output_dir=str(work / folder), parameters=manifest[f"{stage}_parameters"],
                                      summary={"n_sweeps": 3, "n_succeeded": 3, "n_failed": 0},
                                      started=now, finished=now)
        run.parents.add(parent)
        sweep_rows = {s.name: s for s in project.sweeps.all()}
        for s in manifest["sweeps"]:
            SweepRun.objects.create(run=run, index=s["index"], name=s["name"], sweep=sweep_rows[s["name"]],
                                    unit=s["index"], status="succeeded", progress=1.0,
                                    summary=s["stages"][stage]["summary"],
                                    output_files=s["stages"][stage]["files"],
                                    started=now, finished=now)
        runs[stage] = run
        parent = run
    return runs
