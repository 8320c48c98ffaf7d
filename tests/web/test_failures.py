"""Failures (issue 15, part 5): a worker killed mid-stage, Redis restarted, two users at
once, a task that raises, a full disk and an unwritable work folder — each ends in a run
marked failed with one clear message, its log kept, no half-written output shown as a
result, and a rerun that succeeds.

The kill and restart tests start real ``celery worker`` subprocesses (``conftest.py``,
``worker_processes``) on the test database; the others use the session's in-thread worker.
"""

from __future__ import annotations

import html
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from django.urls import reverse

from xtalweb.projects.models import StageRun, SweepRun

from .helpers import wait_for_run

FINISHED = ("succeeded", "partial", "failed")


def post_find_spots(client, project, parent, sweeps=(0, 1, 2)) -> int:
    """The project page's find-spots form (defaults) on ``sweeps``; the new run's id."""
    before = set(project.runs.values_list("pk", flat=True))
    response = client.post(reverse("stagerun_new", args=[project.pk, "find_spots"]),
                           {"find_spots-parent": parent.pk, "find_spots-sweeps": [str(k) for k in sweeps]})
    assert response.status_code == 302, response.content.decode()[:3000]
    (run_id,) = set(project.runs.values_list("pk", flat=True)) - before
    return run_id


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"not within {timeout:.0f} s: {what}")


def spots_of(run) -> dict[str, int]:
    return {r.name: r.summary.get("n_spots") for r in run.sweep_runs.filter(status="succeeded")}


def expected_spots(indexed_project) -> dict[str, int]:
    """Spots per sweep of the session's find_spots, the science called directly (same defaults)."""
    return {r.name: r.summary["n_spots"] for r in indexed_project["find_spots"].sweep_runs.all()}


# --- a worker killed mid-stage ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_killed_pool_process_fails_its_sweep_with_its_log_and_a_retry_succeeds(
        client, users, indexed_project, worker_processes):
    """SIGKILL the worker process running sweep crystal_000's find spots: that sweep fails at
    once with the signal (not "running" forever, not run again and again), its log is kept,
    the other two go on in a fresh pool process; the run is partial and its merged
    strong.refl holds only the two good sweeps. "Retry failed sweeps" then succeeds, with
    the spots of the science."""
    from processing.io.refl import read_reflections

    project, imp = indexed_project["project"], indexed_project["import"]
    worker = worker_processes("w1", XTALWEB_HEARTBEAT_PERIOD="0.5").wait_ready()
    client.force_login(users["alice"])
    run_id = post_find_spots(client, project, imp)

    row = wait_for(lambda: SweepRun.objects.filter(run_id=run_id, index=0, status="running").first(), 60,
                   "sweep crystal_000 running")
    (pid,) = wait_for(worker.pool_pids, 10, "the worker's pool process")
    os.kill(pid, signal.SIGKILL)

    run = wait_for_run(run_id, timeout=90)
    rows = {r.name: r for r in run.sweep_runs.all()}
    killed = rows["crystal_000"]
    assert (run.status, run.error) == ("partial", "1 of 3 sweeps failed"), (run.log, killed.error)
    assert killed.status == "failed" and "killed (signal 9 (SIGKILL))" in killed.error, killed.error
    assert "\n" not in killed.error and killed.output_files == []
    assert [rows[n].status for n in ("crystal_001", "crystal_002")] == ["succeeded", "succeeded"]
    # its log is kept, and says what happened
    log = client.get(reverse("stagerun_log", args=[project.pk, run.pk])).content.decode()
    assert "=== sweep crystal_000 (experiment 0): failed ===" in log and f"FAILED: {killed.error}" in log
    # the page shows the message; no half-written output is a result: strong.refl has sweeps 1 and 2
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert html.escape(killed.error) in page
    strong = read_reflections(os.path.join(run.output_dir, "strong.refl"))
    assert sorted(set(strong["id"].tolist())) == [1, 2]
    expected = expected_spots(indexed_project)
    assert len(strong) == expected["crystal_001"] + expected["crystal_002"]
    assert "WorkerLostError" in worker.text() or "exited prematurely" in worker.text()

    # a rerun of the killed sweep succeeds, with the science's spots
    response = client.post(reverse("stagerun_retry", args=[project.pk, run.pk]))
    assert response.status_code == 302
    run = wait_for_run(run_id, timeout=90)
    assert (run.status, run.error) == ("succeeded", ""), run.log
    assert spots_of(run) == expected
    strong = read_reflections(os.path.join(run.output_dir, "strong.refl"))
    assert np.unique(strong["id"]).tolist() == [0, 1, 2] and len(strong) == sum(expected.values())


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_found_by_its_heartbeat_and_the_run_ends(
        client, users, indexed_project, worker_processes, settings):
    """SIGKILL a whole worker (main process and pool) mid-sweep: nothing in Celery notices
    (the message waits unacknowledged in Redis for the 12 h visibility timeout). The
    sweep's heartbeat goes silent and the watchdog, run when the status JSON is served,
    fails it with a message; the sweeps still queued wait for a worker, and when another
    one has processed them the watchdog sends the join the dead worker's chord never will:
    the run ends (partial), and a retry succeeds."""
    settings.XTALWEB_HEARTBEAT_TIMEOUT = 3
    settings.XTALWEB_QUEUED_GRACE = 2
    settings.XTALWEB_WATCHDOG_THROTTLE = 0
    project, imp = indexed_project["project"], indexed_project["import"]
    fast = {"XTALWEB_HEARTBEAT_PERIOD": "0.3"}
    first = worker_processes("w1", **fast).wait_ready()
    second = worker_processes("w2", later=True, **fast)  # started once the first is killed
    client.force_login(users["alice"])
    status_url = reverse("project_status", args=[project.pk])
    run_id = post_find_spots(client, project, imp)
    wait_for(lambda: SweepRun.objects.filter(run_id=run_id, index=0, status="running").exists(), 60,
             "sweep crystal_000 running")
    first.kill()
    second.start()

    def row0():
        client.get(status_url)  # the watchdog runs when the status is served
        r = SweepRun.objects.get(run_id=run_id, index=0)
        return r if r.status == "failed" else None

    dead = wait_for(row0, 30, "the silent sweep failed", interval=0.3)
    assert "stopped sending its heartbeat" in dead.error and "\n" not in dead.error, dead.error
    assert dead.output_files == []

    second.wait_ready()

    def finished():
        client.get(status_url)
        r = StageRun.objects.get(pk=run_id)
        return r if r.status in FINISHED else None

    run = wait_for(finished, 90, "the run finished", interval=0.3)
    assert (run.status, run.error) == ("partial", "1 of 3 sweeps failed"), run.log
    assert "[watchdog] every sweep has finished" in run.log, run.log  # the join the watchdog sent
    status = client.get(status_url).json()
    entry = next(r for r in status["runs"] if r["id"] == run_id)
    assert [s["status"] for s in entry["sweeps"]] == ["failed", "succeeded", "succeeded"]
    assert "stopped sending its heartbeat" in entry["sweeps"][0]["error"]

    assert client.post(reverse("stagerun_retry", args=[project.pk, run_id])).status_code == 302
    run = wait_for_run(run_id, timeout=90)
    assert (run.status, run.error) == ("succeeded", ""), run.log
    assert spots_of(run) == expected_spots(indexed_project)


# --- Redis restarted while idle -----------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own (its own port, no persistence), so that restarting
    it disturbs no other test session sharing the machine's Redis."""

    def __init__(self, port: int, log):
        self.port, self.log, self.proc = port, log, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        out = open(self.log, "ab")
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no"], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_for(lambda: self._ping(client), 20, "redis-server answering", interval=0.1)
        return self

    @staticmethod
    def _ping(client) -> bool:
        try:
            return bool(client.ping())
        except Exception:
            return False

    def shutdown(self) -> None:
        """``redis-cli shutdown nosave``: Redis goes away with everything it held."""
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, timeout=10)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_redis_restarted_while_idle_the_app_and_the_worker_recover(tmp_path, tiny_data, folders, tiny_indexed):
    """An instance (a web process and a worker process) on a Redis of its own: a run
    succeeds; Redis is shut down (``shutdown nosave``) and started again while nothing runs;
    the same web process then queues find spots through the same (now stale) connections
    and the same worker runs it: both reconnected by themselves."""
    import json
    import shutil

    from xtalweb.instance import default_queue
    from xtalweb.routing import queue_names

    from .conftest import AppProcess, WorkerProcess

    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server is not installed")
    redis_server = RedisServer(_free_port(), tmp_path / "redis.log").start()
    db = tmp_path / "restart.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{db}", "REDIS_URL": redis_server.url, "CELERY_QUEUE": "",
           "DATA_ROOTS": str(folders["data"]), "WORK_ROOT": str(tmp_path / "work"), "XTALWEB_WATCHDOG_PERIOD": "0"}
    queue = default_queue({"ENGINE": "django.db.backends.sqlite3", "NAME": str(db)})
    app = AppProcess(env, tmp_path / "app.log").start()
    worker = WorkerProcess("w1", queue_names(queue), env, tmp_path / "worker.log").start()
    try:
        assert app.call("info")["queue"] == queue
        worker.wait_ready()
        imp = app.call("project", name="tiny", data_root=str(tiny_data))
        done = app.call("wait", run=imp["run"], timeout=120)
        assert done["status"] == "succeeded", done

        redis_server.shutdown()
        assert app.call("status", project=imp["project"])["code"] == 200  # pages need no Redis
        redis_server.start()

        fs = app.call("stage", project=imp["project"], stage="find_spots", parent=done["id"])
        done = app.call("wait", run=fs["run"], timeout=120)
        assert done["status"] == "succeeded", (done, worker.text()[-3000:])
        manifest = json.loads((tiny_indexed / "manifest.json").read_text())
        assert {s["name"]: s["n_spots"] for s in done["sweeps"]} == {
            s["name"]: s["stages"]["find_spots"]["summary"]["n_spots"] for s in manifest["sweeps"]}
        assert worker.proc.poll() is None  # the same worker process
    finally:
        worker.kill()
        app.stop()
        redis_server.shutdown()


# --- two users at once --------------------------------------------------------------------------


def _at_once(*calls):
    """Run the calls in threads released together; their results in order."""
    from django.db import connections

    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)
    errors = []

    def go(k, call):
        try:
            barrier.wait(10)
            results[k] = call()
        except Exception as exc:  # re-raised below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=go, args=(k, c)) for k, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


@pytest.mark.usefixtures("celery_worker")
@pytest.mark.django_db(transaction=True)
def test_two_users_starting_runs_on_one_project_at_once_get_consistent_results(
        users, indexed_project, tiny_data, tiny_dataset):
    """alice and bob (one lab group) submit find spots on the same project at the same moment:
    two runs, two folders, the same spots in both, byte for byte. One sweep's images are
    missing, so both runs are partial; restored, both press "retry failed sweeps" at once:
    exactly one retry is queued, the other is told the run is running, and the run ends
    succeeded once."""
    import shutil

    from django.test import Client

    project, imp = indexed_project["project"], indexed_project["import"]
    clients = {}
    for name in ("alice", "bob"):
        clients[name] = Client()
        clients[name].force_login(users[name])
    missing = tiny_data / "crystal_001_data_000001.h5"
    os.remove(missing)

    def submit(name):
        return clients[name].post(reverse("stagerun_new", args=[project.pk, "find_spots"]),
                                  {"find_spots-parent": imp.pk, "find_spots-sweeps": ["0", "1", "2"]}).status_code

    assert _at_once(lambda: submit("alice"), lambda: submit("bob")) == [302, 302]
    new = list(project.runs.filter(stage="find_spots").exclude(pk=indexed_project["find_spots"].pk).order_by("pk"))
    assert len(new) == 2
    a, b = (wait_for_run(r.pk, timeout=120) for r in new)
    assert (a.status, b.status) == ("partial", "partial"), (a.log, b.log)
    assert a.output_dir != b.output_dir and os.path.isdir(a.output_dir) and os.path.isdir(b.output_dir)
    assert spots_of(a) == spots_of(b) and set(spots_of(a)) == {"crystal_000", "crystal_002"}
    for f in ("strong.refl", "sweeps/000_crystal_000.refl", "sweeps/002_crystal_002.refl"):
        assert open(os.path.join(a.output_dir, f), "rb").read() == open(os.path.join(b.output_dir, f), "rb").read()

    shutil.copyfile(tiny_dataset / missing.name, missing)
    url = reverse("stagerun_retry", args=[project.pk, a.pk])
    answers = _at_once(lambda: clients["alice"].post(url, follow=True).content.decode(),
                       lambda: clients["bob"].post(url, follow=True).content.decode())
    # the flash messages only: the page also shows a running run's last log line, which may
    # say "Retrying …" too
    notes = [t[t.find('<ul class="messages">'):].split("</ul>")[0] if '<ul class="messages">' in t else ""
             for t in answers]
    queued = [t for t in notes if "Retrying 1 failed sweep(s)" in t]
    refused = [t for t in notes if "only a partial or failed run has sweeps to retry" in t]
    assert (len(queued), len(refused)) == (1, 1), [html.unescape(t)[:200] for t in answers]
    a = wait_for_run(a.pk, timeout=120)
    assert (a.status, a.error) == ("succeeded", ""), a.log
    assert a.log.count("Retrying 1 failed sweep(s)") == 1
    assert spots_of(a) == expected_spots(indexed_project)


# --- a task that raises ---------------------------------------------------------------------------


@pytest.mark.usefixtures("celery_worker")
@pytest.mark.django_db(transaction=True)
def test_a_task_that_raises_shows_its_message_on_the_page(client, users, indexed_project, monkeypatch):
    """An exception the stage does not expect, in a sweep's work and in a task itself (the
    join): the run is failed — not left running — and the exception's message is on the
    project page; the traceback is in the run's log."""
    from xtalweb.projects import per_sweep

    project, imp = indexed_project["project"], indexed_project["import"]
    client.force_login(users["alice"])

    def broken_inputs(*args, **kwargs):
        raise ValueError("the detector mask has 3 dimensions, expected 2")

    monkeypatch.setattr(per_sweep, "sweep_inputs", broken_inputs)
    run = wait_for_run(post_find_spots(client, project, imp, sweeps=(0,)), timeout=60)
    assert run.status == "failed"
    assert "the detector mask has 3 dimensions, expected 2" in run.error and "ValueError" in run.error, run.error
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert html.escape(run.sweep_runs.get().error) in page
    log = client.get(reverse("stagerun_log", args=[project.pk, run.pk])).content.decode()
    assert "Traceback (most recent call last)" in log and "broken_inputs" in log
    monkeypatch.undo()

    def broken_join(run_id):
        raise RuntimeError("the merged table is not writable by this user")

    monkeypatch.setattr(per_sweep, "join_run", broken_join)
    run = wait_for_run(post_find_spots(client, project, imp, sweeps=(0,)), timeout=60)
    assert run.status == "failed", run.log
    assert run.error == ("The run's join task failed: RuntimeError: the merged table is not writable by this user"), \
        run.error
    page = client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert html.escape(run.error) in page
    assert "Traceback (most recent call last)" in run.log and "broken_join" in run.log


# --- a full disk, an unwritable work folder -------------------------------------------------------


def _mount(*args) -> bool:
    import shutil

    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.usefixtures("celery_worker")
@pytest.mark.django_db(transaction=True)
def test_a_full_disk_or_an_unwritable_work_folder_gives_one_clear_message(
        client, users, indexed_project, tmp_path, monkeypatch):
    """The project's work folder read-only, then on a disk with no room (a 64 KiB tmpfs):
    each run fails with one line that says what is wrong and where — no traceback, no
    "internal error" — and with room again the rerun succeeds."""
    import errno

    project, imp = indexed_project["project"], indexed_project["import"]
    client.force_login(users["alice"])
    work = project.work_dir

    # unwritable: a read-only bind mount of the work folder (root), or no write permission
    if _mount("--bind", work, work):
        assert _mount("-o", "remount,bind,ro", work, work) or pytest.skip("no read-only remount")
        cleanup = lambda: _umount(work)  # noqa: E731
    elif os.geteuid() != 0:
        os.chmod(work, 0o555)
        cleanup = lambda: os.chmod(work, 0o755)  # noqa: E731
    else:
        pytest.skip("cannot make a folder unwritable for root here (no mount)")
    try:
        run = wait_for_run(post_find_spots(client, project, imp), timeout=60)
    finally:
        cleanup()
    assert run.status == "failed"
    assert run.error.startswith(f"Cannot write into {work}/004_find_spots (") and "\n" not in run.error, run.error
    assert "must be writable by the workers" in run.error and "Internal error" not in run.error
    assert html.escape(run.error) in client.get(reverse("project_detail", args=[project.pk])).content.decode()
    assert [r.status for r in run.sweep_runs.all()] == ["failed"] * 3

    # a full disk: the work folder on a tmpfs of 64 KiB (or, without mount, fsync says ENOSPC)
    small = tmp_path / "small"
    small.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small))
    if not mounted:
        def no_space(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", no_space)
    try:
        type(project).objects.filter(pk=project.pk).update(work_dir=str(small / "work"))
        run = wait_for_run(post_find_spots(client, project, imp, sweeps=(0,)), timeout=60)
    finally:
        monkeypatch.undo()
        if mounted:
            _umount(small)
    assert run.status == "failed"
    assert "No space left on device" in run.error and "\n" not in run.error, run.error
    assert "Traceback" not in run.error and "Internal error" not in run.error
    row = run.sweep_runs.get()
    assert row.output_files == [] and html.escape(row.error) in client.get(
        reverse("project_detail", args=[project.pk])).content.decode()

    # room again: the rerun succeeds
    type(project).objects.filter(pk=project.pk).update(work_dir=work)
    run = wait_for_run(post_find_spots(client, project, imp), timeout=90)
    assert (run.status, run.error) == ("succeeded", ""), run.log
    assert spots_of(run) == expected_spots(indexed_project)
