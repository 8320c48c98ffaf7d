"""Instances sharing one Redis, lost tasks, several workers (issue 15, parts 6 and 7).

- Each instance (one database) names its queues and result keys after its database and
  stamps its token on every task; a worker of another instance hands such a task back
  unrun — shown with two instances (two SQLite files, each with its own web process and
  worker process) made to share one queue name, as two ``make run`` did before.
- A run whose tasks vanished from Redis is re-queued once, and failed with a message the
  second time — never "queued" or "running" forever.
- Two ``celery worker`` processes on the same queues share a per-sweep run's sweeps, with
  the results of one worker.

Every test here starts real worker (and web) subprocesses (``conftest.py``) and cleans up
their processes and Redis keys whatever happens.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from django.urls import reverse

from xtalweb.projects.models import StageRun, SweepRun

from .conftest import AppProcess, WorkerProcess, purge_queues
from .helpers import wait_for_run
from .test_failures import expected_spots, post_find_spots, spots_of, wait_for


def test_default_queue_is_named_after_the_database(tmp_path):
    from xtalweb.instance import database_identity, default_queue

    a = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "a.sqlite3")}
    b = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "b.sqlite3")}
    link = tmp_path / "link.sqlite3"
    link.symlink_to(tmp_path / "a.sqlite3")
    assert default_queue(a) != default_queue(b)
    assert default_queue(a) == default_queue({**a, "NAME": str(link)})  # one file, one instance
    assert default_queue(a).startswith("xtalweb-") and len(default_queue(a)) == len("xtalweb-") + 8
    pg = {"ENGINE": "django.db.backends.postgresql", "NAME": "xtalweb", "HOST": "db-host"}
    # one PostgreSQL database reached under two host names is one instance
    assert default_queue(pg) == default_queue({**pg, "HOST": "127.0.0.1", "PORT": "5432"})
    assert default_queue(pg) != default_queue({**pg, "NAME": "xtalweb2"})
    assert database_identity(pg) == "postgresql:xtalweb"


# --- two instances, one Redis -------------------------------------------------------------------


@pytest.fixture
def two_instances(tmp_path, tiny_data, folders):
    """Instances A and B: each a SQLite file, a web process (``AppProcess``) and, once
    started, a worker process; B made to use A's queue name (``CELERY_QUEUE``), as a second
    ``make run`` did before queues were named per instance. Everything is stopped and the
    queue's keys deleted afterwards."""
    from django.conf import settings

    redis_url = settings.CELERY_BROKER_URL
    made = {"apps": [], "workers": [], "queue": None}

    def db(name):
        return str(tmp_path / f"{name}.sqlite3")

    def env_of(name, queue=None):
        env = {"DATABASE_URL": f"sqlite:///{db(name)}", "REDIS_URL": redis_url,
               "DATA_ROOTS": str(folders["data"]), "WORK_ROOT": str(tmp_path / f"work-{name}"),
               "XTALWEB_WATCHDOG_PERIOD": "0"}
        env.pop("CELERY_QUEUE", None)
        if queue:
            env["CELERY_QUEUE"] = queue
        return env

    def app(name, queue=None):
        env = env_of(name, queue)
        a = AppProcess({**env, "CELERY_QUEUE": queue or ""}, tmp_path / f"app-{name}.log").start()
        made["apps"].append(a)
        return a

    def worker(name, queue):
        w = WorkerProcess(name, [queue, f"{queue}.sweeps", f"{queue}.ensemble"], env_of(name, queue),
                          tmp_path / f"worker-{name}.log")
        made["workers"].append(w.start())
        made["queue"] = queue
        return w

    try:
        yield {"app": app, "worker": worker, "db": db, "data": str(tiny_data)}
    finally:
        for w in made["workers"]:
            w.kill()
        for a in made["apps"]:
            a.stop()
        if made["queue"]:
            purge_queues(redis_url, made["queue"])


def manifest_spots(tiny_indexed) -> dict[str, int]:
    """Spots per sweep of the session's find spots (the science called directly)."""
    import json

    manifest = json.loads((tiny_indexed / "manifest.json").read_text())
    return {s["name"]: s["stages"]["find_spots"]["summary"]["n_spots"] for s in manifest["sweeps"]}


def test_two_instances_on_one_redis_each_complete_their_own_runs(two_instances, tiny_indexed):
    """A's queue name is derived from its database; B is forced onto the same name. B's import
    is sent while only A's worker runs: A's worker refuses it — does not run it — and hands it
    over to B's private queue, where it waits until B's worker takes it. Both instances then
    run find spots at once on the shared queues; each completes its own runs in its own
    database, with the science's spots, and no worker ever ran the other instance's task."""
    from xtalweb.instance import default_queue

    queue = default_queue({"ENGINE": "django.db.backends.sqlite3", "NAME": two_instances["db"]("a")})
    a_app = two_instances["app"]("a")
    b_app = two_instances["app"]("b", queue=queue)  # B forced onto A's name
    a_worker = two_instances["worker"]("a", queue)
    info_a, info_b = a_app.call("info"), b_app.call("info")
    assert queue.startswith("xtalweb-") and info_a["queue"] == queue  # A's own name, from its database
    assert info_b["queue"] == queue
    assert info_a["token"] and info_b["token"] and info_a["token"] != info_b["token"]
    assert info_a["result_prefix"] == f"{queue}:"

    a_worker.wait_ready()
    # B's import is sent while only A's worker runs (B's worker starts once it was refused:
    # started any earlier, on a quiet machine it was ready in time to take the import itself)
    b_imp = b_app.call("project", name="tiny-b", data_root=two_instances["data"])
    a_imp = a_app.call("project", name="tiny-a", data_root=two_instances["data"])
    a_done = a_app.call("wait", run=a_imp["run"], timeout=120)
    assert a_done["status"] == "succeeded", a_done
    # B's import went to A's worker (the only one): refused, handed over to the queue that
    # only B's workers consume, where it waits for B's worker
    private = f"{queue}.i-{info_b['token']}"
    wait_for(lambda: "refused task xtalweb.projects.tasks.run_import_stage" in a_worker.text(), 20,
             "A's worker refusing B's import")
    assert f"handed over to {private}" in a_worker.text()
    b_worker = two_instances["worker"]("b", queue)
    b_worker.wait_ready()
    assert private in b_worker.text()  # "also consuming …"
    b_done = b_app.call("wait", run=b_imp["run"], timeout=120)
    assert b_done["status"] == "succeeded", b_done
    runs = {}
    for name, app, imp in (("a", a_app, a_done), ("b", b_app, b_done)):
        runs[name] = app.call("stage", project=a_imp["project"] if name == "a" else b_imp["project"],
                              stage="find_spots", parent=imp["id"])
    expected = manifest_spots(tiny_indexed)
    for name, app in (("a", a_app), ("b", b_app)):
        done = app.call("wait", run=runs[name]["run"], timeout=120)
        if done["status"] != "succeeded":
            import json
            print(f"instance {name}:", json.dumps(done, indent=1))
            print("=== worker a\n", a_worker.text(), "\n=== worker b\n", b_worker.text())
        assert done["status"] == "succeeded", done
        assert {s["name"]: s["n_spots"] for s in done["sweeps"]} == expected
    # no worker ever ran a task of the other instance (it would have found no such run)
    for w in (a_worker, b_worker):
        assert "nothing to do" not in w.text(), w.text()[-3000:]


# --- lost tasks ----------------------------------------------------------------------------------


def _delete_queue(name: str) -> None:
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(name)


@pytest.mark.django_db(transaction=True)
def test_tasks_lost_from_redis_are_requeued_once_then_the_run_fails(
        client, users, indexed_project, tiny_data, worker_processes, settings):
    """No worker yet: an import and a find-spots run wait in the queues. Redis loses them
    (the lists deleted, as a FLUSHALL or a restart without persistence would). The watchdog
    — run when the status JSON is served — finds them queued with no message left and
    queues them again, once. The import's message is lost a second time: that run fails,
    with a message that names the queue to check. A worker then completes the find spots."""
    from xtalweb.projects.watchdog import pending_messages

    settings.XTALWEB_QUEUED_GRACE = 1
    settings.XTALWEB_WATCHDOG_THROTTLE = 0
    base = worker_processes.base
    project = indexed_project["project"]
    client.force_login(users["alice"])
    response = client.post(reverse("project_new"), {"name": "second", "data_root": str(tiny_data),
                                                    "group": users["lab_a"].pk})
    assert response.status_code == 302
    imp = StageRun.objects.filter(stage="import").exclude(project=project).get()
    fs_id = post_find_spots(client, project, indexed_project["import"])
    pending = pending_messages()
    assert ("xtalweb.projects.tasks.run_import_stage", imp.pk, None) in pending
    assert {k for k in pending if k[1] == fs_id} == {("xtalweb.projects.tasks.run_sweep_unit", fs_id, u)
                                                     for u in (0, 1, 2)}

    for q in (base, f"{base}.sweeps"):  # Redis loses every message
        _delete_queue(q)
    time.sleep(1.2)
    for p in (project.pk, imp.project_id):
        client.get(reverse("project_status", args=[p]))
    imp.refresh_from_db()
    fs = StageRun.objects.get(pk=fs_id)
    assert (imp.status, imp.requeues, fs.status, fs.requeues) == ("queued", 1, "queued", 1)
    assert "[watchdog] its task was not in the task queue any more" in imp.log
    assert "[watchdog] the tasks of sweep(s) crystal_000, crystal_001, crystal_002 were not in the task queue" \
        in fs.log
    pending = pending_messages()
    assert ("xtalweb.projects.tasks.run_import_stage", imp.pk, None) in pending
    assert sum(1 for k in pending if k[1] == fs_id) == 3

    _delete_queue(base)  # the import's message is lost again
    time.sleep(1.2)
    page = client.get(reverse("project_detail", args=[imp.project_id])).content.decode()
    imp.refresh_from_db()
    assert imp.status == "failed" and "lost from the task queue twice" in imp.error, imp.log
    assert f"is running on queue {base}" in imp.error and "\n" not in imp.error
    assert "lost from the task queue twice" in page

    worker_processes("w1").wait_ready()
    fs = wait_for_run(fs_id, timeout=90)
    assert (fs.status, fs.error) == ("succeeded", ""), fs.log
    assert spots_of(fs) == expected_spots(indexed_project)


# --- several workers -----------------------------------------------------------------------------


def _digest(folder: str) -> dict[str, str]:
    out = {}
    for d, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(d, n)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_share_the_sweeps_with_the_results_of_one(
        client, users, indexed_project, worker_processes):
    """Two ``celery worker`` processes (``-n w1@%h``, ``-n w2@%h``) on the same queues: the
    three sweeps of a find-spots run are spread over both (each sweep's log names its
    worker), and the run's files are byte for byte those of the same run on one worker."""
    project, imp = indexed_project["project"], indexed_project["import"]
    w1 = worker_processes("w1")
    w2 = worker_processes("w2")
    w1.wait_ready()
    w2.wait_ready()
    client.force_login(users["alice"])
    run = wait_for_run(post_find_spots(client, project, imp), timeout=120)
    assert (run.status, run.error) == ("succeeded", ""), run.log
    ran_on = {r.name: next((h for h in (w1.hostname, w2.hostname) if f"worker {h}" in r.log), None)
              for r in run.sweep_runs.all()}
    assert set(ran_on.values()) == {w1.hostname, w2.hostname}, ran_on
    assert spots_of(run) == expected_spots(indexed_project)

    w2.stop()
    alone = wait_for_run(post_find_spots(client, project, imp), timeout=120)
    assert (alone.status, alone.error) == ("succeeded", ""), alone.log
    assert all(f"worker {w1.hostname}" in r.log for r in alone.sweep_runs.all())
    assert _digest(alone.output_dir) == _digest(run.output_dir)
    assert spots_of(alone) == spots_of(run)


@pytest.mark.django_db(transaction=True)
def test_the_periodic_check_fails_a_run_whose_worker_went_silent(indexed_project, settings):
    """What every worker runs in a thread (``watchdog.start_periodic``): a running ensemble
    run whose heartbeat stopped long ago, and a run still beating, are checked with no page
    served: the silent one is failed with its log kept, the other is left alone."""
    from datetime import timedelta

    from django.utils import timezone

    from xtalweb.projects import watchdog

    settings.XTALWEB_HEARTBEAT_TIMEOUT = 60
    project, idx = indexed_project["project"], indexed_project["index"]
    long_ago = timezone.now() - timedelta(minutes=10)
    silent = StageRun.objects.create(project=project, stage="cosym", status="running", started=long_ago,
                                     heartbeat=long_ago, log="cosym: 3 data set(s)\n")
    alive = StageRun.objects.create(project=project, stage="cosym", status="running", started=long_ago,
                                    heartbeat=timezone.now())
    for run in (silent, alive):
        SweepRun.objects.create(run=run, index=0, name="crystal_000", status="running")
    watchdog.start_periodic(period=0.2)
    try:
        wait_for(lambda: StageRun.objects.get(pk=silent.pk).status == "failed", 20, "the silent run failed",
                 interval=0.1)
    finally:
        watchdog.stop_periodic()
    silent.refresh_from_db()
    assert silent.error.startswith("The worker running this stage stopped sending its heartbeat 10 min ago")
    assert silent.log.startswith("cosym: 3 data set(s)\n") and "FAILED: The worker running" in silent.log
    assert silent.sweep_runs.get().status == "failed"
    assert StageRun.objects.get(pk=alive.pk).status == "running"
