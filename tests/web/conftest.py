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

Tests that need real processes (a worker to kill, two workers, two instances, a Redis to
restart) start them here: ``worker_processes`` (``celery worker`` subprocesses on the test
database and queues of their own), :class:`WorkerProcess` and :class:`AppProcess` (an
instance's web side in a process of its own, ``python -m tests.web.conftest``). Each is
killed, and its queues and result keys deleted from Redis, whatever the test's outcome.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .helpers import SMARGON_CBF

TEST_QUEUE = f"xtalweb-test-{uuid.uuid4().hex[:12]}"

# The in-thread workers of the tests run no periodic watchdog (xtalweb/projects/watchdog.py):
# it would judge the runs tests make by hand. Tests call the watchdog themselves.
os.environ["XTALWEB_WATCHDOG_PERIOD"] = "0"
# The worker processes the tests start run at the tests' priority (no nice).
os.environ["XTALWEB_WORKER_NICE"] = "0"


def pytest_collection_modifyitems(items):
    """Tests that run stages through the real Celery worker are marked ``worker``: the
    Makefile runs them a second time on SQLite, the ``make run`` default (but for those
    that drive a browser, marked ``browser``: what the page does does not hang on the
    database)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "celery_worker" in names:
            item.add_marker(pytest.mark.worker)
        if "browser" in names:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session", autouse=True)
def _celery_test_queue():
    """Route every task of this session to the session's own queues (the routing derives
    ``<queue>.sweeps`` and ``<queue>.ensemble`` from the default queue); drop them afterwards."""
    from xtalweb.celery import app
    from xtalweb.instance import use_queue

    use_queue(app, TEST_QUEUE)  # queues and result keys of this session's own
    yield TEST_QUEUE
    purge_queues(app.conf.broker_url, TEST_QUEUE)


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


# --- Celery workers as real subprocesses (test_failures.py, test_instances.py) -------------

REPO = Path(__file__).resolve().parents[2]


def purge_queues(redis_url: str, base: str, results: bool = True) -> None:
    """Delete the queues named ``base`` (and ``.sweeps``, ``.ensemble``) from Redis, the
    messages of those queues that workers hold unacknowledged, and (``results``) the result
    keys under ``base:``. Never raises (Redis gone: nothing to clean)."""
    import json

    import redis

    from xtalweb.routing import queue_names

    names = set(queue_names(base))
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        for q in list(names):  # and the instances' private queues, <queue>.i-<token>
            for pattern in (f"{q}.i-*", f"_kombu.binding.{q}.i-*"):
                names |= {k.decode().replace("_kombu.binding.", "", 1)
                          for k in client.scan_iter(match=pattern, count=1000)}
        for q in names:
            client.delete(q, f"_kombu.binding.{q}", f"_kombu.binding_permanent.{q}")
        for tag, raw in client.hgetall("unacked").items():
            try:
                if json.loads(raw)[2] in names:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)
            except (ValueError, IndexError, TypeError):
                pass
        if results:
            for key in client.scan_iter(match=f"{base}:*", count=1000):
                client.delete(key)
    except Exception:
        pass


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for ``settings.database_from_url`` naming the same database (the test database)."""
    from urllib.parse import quote

    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{os.path.abspath(str(settings_dict['NAME']))}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgresql://{auth}{host}{port}/{quote(str(settings_dict['NAME']))}"


class WorkerProcess:
    """``celery -A xtalweb worker -n <name>@%h`` as a subprocess in its own process group,
    its output in ``log``. ``env`` is added to this process's environment."""

    def __init__(self, name: str, queues, env: dict, log: Path, concurrency: int = 1, pool: str = "prefork"):
        self.name, self.queues, self.log = name, list(queues), Path(log)
        self.env = {**os.environ, **{k: str(v) for k, v in env.items()}}
        self.concurrency, self.pool = concurrency, pool
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"worker {self.name} is running already")
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [celery, "-A", "xtalweb", "worker", "-Q", ",".join(self.queues), "-n", f"{self.name}@%h",
             f"--concurrency={self.concurrency}", "-P", self.pool, "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=str(REPO), env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        return self

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.text():
                return self
            if self.proc.poll() is not None:
                pytest.fail(f"worker {self.name} exited ({self.proc.returncode}):\n{self.text()[-3000:]}")
            time.sleep(0.1)
        pytest.fail(f"worker {self.name} not ready after {timeout:.0f} s:\n{self.text()[-3000:]}")

    @property
    def hostname(self) -> str:
        import socket

        return f"{self.name}@{socket.gethostname()}"

    def pool_pids(self) -> list[int]:
        """The pids of the worker's pool processes (children of its main process)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool (its process group, even if the
        main process is gone already)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, timeout: float = 10.0) -> None:
        """Warm shutdown (SIGTERM); SIGKILL after ``timeout`` s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


@pytest.fixture
def worker_processes(transactional_db, settings, tmp_path):
    """Start real ``celery worker`` subprocesses on the test database, on queues of their
    own: ``start(name, base=None, **env)`` → a started :class:`WorkerProcess`
    (``.wait_ready()`` it). This process sends its tasks to the same queues (``base``,
    default ``<session queue>-p<random>``) while the test runs. Every worker is killed and
    the queues and their result keys deleted afterwards, whatever happened."""
    from django.db import connection

    from xtalweb.celery import app
    from xtalweb.instance import use_queue
    from xtalweb.routing import queue_names

    base = f"{TEST_QUEUE}-p{uuid.uuid4().hex[:6]}"
    started: list[WorkerProcess] = []
    url = database_url(connection.settings_dict)

    def start(name: str, queues=None, later: bool = False, **env) -> WorkerProcess:
        """A worker named ``name``, started now (``later``: by the test, with ``.start()``)."""
        full = {"DATABASE_URL": url, "REDIS_URL": settings.CELERY_BROKER_URL, "CELERY_QUEUE": base,
                "DATA_ROOTS": os.pathsep.join(str(p) for p in settings.DATA_ROOTS),
                "WORK_ROOT": str(settings.WORK_ROOT), "XTALWEB_WATCHDOG_PERIOD": "0", "XTALWEB_WORKER_NICE": "0",
                **env}
        w = WorkerProcess(name, queues or queue_names(base), full, tmp_path / f"worker-{name}.log")
        started.append(w)
        return w if later else w.start()

    start.base = base
    start.workers = started
    use_queue(app, base)
    try:
        yield start
    finally:
        for w in started:
            w.kill()
        use_queue(app, TEST_QUEUE)
        purge_queues(settings.CELERY_BROKER_URL, base)


# --- a web app instance as a subprocess (test_instances.py, test_failures.py) ---------------

class AppProcess:
    """One xtalweb instance's web side in a process of its own (``python -m
    tests.web.conftest``): its database (``DATABASE_URL``, migrated at start), Django's test
    client submitting the project page's forms as a browser does, dispatching through the
    instance's own Celery producer. Commands go in as JSON lines (:meth:`call`)."""

    def __init__(self, env: dict, log: Path):
        self.env = {**os.environ, **{k: str(v) for k, v in env.items()}}
        self.log = Path(log)
        self.proc: subprocess.Popen | None = None

    def start(self) -> AppProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        err = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.web.conftest"], cwd=str(REPO), env=self.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                     bufsize=1, start_new_session=True)
        err.close()
        return self

    def call(self, op: str, **kw):
        import json

        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"the app process exited ({self.proc.poll()}):\n{self.log.read_text()[-3000:]}")
        answer = json.loads(line)
        if "failure" in answer:
            pytest.fail(f"app {op}: {answer['failure']}\n{self.log.read_text()[-3000:]}")
        return answer

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


def _app_main() -> None:  # pragma: no cover - runs in the subprocess of AppProcess
    """The command loop of :class:`AppProcess`."""
    import json
    import traceback

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xtalweb.settings_test")
    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.test import Client

    from xtalweb.instance import token
    from xtalweb.projects.models import Project, StageRun

    call_command("migrate", "--noinput", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="alice")
    group, _ = Group.objects.get_or_create(name="lab-a")
    user.groups.add(group)
    client = Client()
    client.force_login(user)

    def run_dict(run):
        return {"id": run.pk, "stage": run.stage, "status": run.status, "error": run.error,
                "requeues": run.requeues, "log": run.log[-4000:],
                "sweeps": [{"name": s.name, "status": s.status, "error": s.error,
                            "n_spots": (s.summary or {}).get("n_spots")} for s in run.sweep_runs.all()]}

    def handle(cmd):
        op = cmd["op"]
        if op == "info":
            return {"token": token(), "queue": settings.CELERY_TASK_DEFAULT_QUEUE,
                    "result_prefix": __import__("xtalweb.celery").celery.app.conf
                    .result_backend_transport_options.get("global_keyprefix")}
        if op == "project":
            r = client.post("/projects/new/", {"name": cmd["name"], "group": group.pk, "data_root": cmd["data_root"]})
            if r.status_code != 302:
                return {"failure": f"new project: {r.status_code} {r.content[:2000]!r}"}
            project = Project.objects.filter(name=cmd["name"]).latest("pk")
            return {"project": project.pk, "run": project.runs.get(stage="import").pk}
        if op == "stage":
            project = Project.objects.get(pk=cmd["project"])
            stage, parent = cmd["stage"], StageRun.objects.get(pk=cmd["parent"])
            sweeps = ([str(s.index) for s in parent.sweep_runs.filter(status="succeeded")] if parent.sweep_runs.exists()
                      else [str(k) for k in range(len(parent.summary["sweeps"]))])
            before = set(project.runs.values_list("pk", flat=True))
            r = client.post(f"/projects/{project.pk}/runs/new/{stage}/",
                            {f"{stage}-parent": parent.pk, f"{stage}-sweeps": sweeps})
            if r.status_code != 302:
                return {"failure": f"{stage}: {r.status_code} {r.content[:2000]!r}"}
            (run_id,) = set(project.runs.values_list("pk", flat=True)) - before
            return {"run": run_id}
        if op == "run":
            return run_dict(StageRun.objects.get(pk=cmd["run"]))
        if op == "wait":
            deadline = time.monotonic() + float(cmd.get("timeout", 120))
            while True:
                run = StageRun.objects.get(pk=cmd["run"])
                if run.status in ("succeeded", "partial", "failed") or time.monotonic() > deadline:
                    return run_dict(run)
                time.sleep(0.2)
        if op == "status":
            r = client.get(f"/projects/{cmd['project']}/status.json")
            return {"code": r.status_code, "runs": [{"id": x["id"], "status": x["status"], "error": x["error"]}
                                                    for x in r.json()["runs"]]}
        return {"failure": f"unknown op {op}"}

    for line in sys.stdin:
        try:
            answer = handle(json.loads(line))
        except Exception:
            answer = {"failure": traceback.format_exc()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _app_main()
