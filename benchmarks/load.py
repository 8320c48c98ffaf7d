"""Page latency while the web app processes: 3 projects at once, 20 clients polling; prints JSON.

A scratch database (SQLite unless ``--db postgresql://…``), the simulated ``tiny`` data set
(3 crystals × 10 images, ``whole_project.simulate_into``), a real Celery worker
(subprocess, ``--concurrency`` processes, queues of its own) and a real web server
(gunicorn with ``xtalweb/gunicorn_conf.py``, or ``--server runserver``) on 127.0.0.1.

Three projects are created and processed at the same time, each by a thread that submits
the project page's own forms with Django's test client (new project → import, then find
spots → index → refine → integrate → cosym → scale → merge, each when the previous run has
finished), as users would. Meanwhile ``--clients`` simulated browsers poll the server over
HTTP, each in a loop: the project page (every tenth round), its status JSON (what the
page polls every 2 s; sending back the ETag of its last answer for that project, as the
page does, so an unchanged status is a bodiless 304 — ``--no-etag`` not to) and, every
third round, a report (a finished run's report page or its JSON), ``--think`` seconds apart. Before they start, each server process gets a few
unmeasured requests (warm-up: its first request imports the views and the stage
registry; ``warmup_max_ms``). The loop is bounded: it stops when every project has its
merge (or a run failed) or after ``--max-seconds``, whichever comes first.

Reported: per page kind and overall p50/p95/max latency (ms), request counts and bytes
received (any status other than 200, or 304 to a conditional poll, is counted as an
error; ``not_modified``: the 304s), and the processing: tasks run (one per
unit of a per-sweep run plus its join, one per other run) and runs finished per minute,
wall time from the first submit to the last finish.

    .venv/bin/python benchmarks/load.py
    .venv/bin/python benchmarks/load.py --db postgresql://root@127.0.0.1:5432/h15 --clients 20
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

STAGES = ("find_spots", "index", "refine", "integrate", "cosym", "scale", "merge")
FINISHED = ("succeeded", "partial", "failed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(args, root: str) -> dict:
    db = args.db if args.db != "sqlite" else f"sqlite:///{os.path.join(root, 'load.sqlite3')}"
    env = {"DATABASE_URL": db, "DATA_ROOTS": os.path.join(root, "data"), "WORK_ROOT": os.path.join(root, "work"),
           "CELERY_QUEUE": f"bench-load-{uuid.uuid4().hex[:8]}", "XTALWEB_DEMO": "1",
           "DJANGO_SETTINGS_MODULE": "xtalweb.settings", "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    os.makedirs(env["DATA_ROOTS"], exist_ok=True)
    os.makedirs(env["WORK_ROOT"], exist_ok=True)
    sys.path.insert(0, REPO)
    import django
    from django.core.management import call_command

    django.setup()
    if db.startswith("postgres"):
        call_command("flush", "--noinput", verbosity=0)
    call_command("migrate", "--noinput", verbosity=0)
    return env


def _start(cmd: list[str], log: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass


def _wait_port(port: int, proc: subprocess.Popen, log: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"the web server exited: {open(log).read()[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError("the web server did not start")


class Pipeline(threading.Thread):
    """One project through the forms: new project (import), then each stage of ``stages``
    on the previous run, once it has finished."""

    def __init__(self, user, group, name: str, data_root: str, stages, deadline: float):
        super().__init__(daemon=True)
        self.user, self.group, self.name, self.data_root = user, group, name, data_root
        self.stages, self.deadline = stages, deadline
        self.project_id = None
        self.entries: list[dict] = []
        self.error = None
        self.started = self.finished = None

    def _wait(self, run_id: int):
        from xtalweb.projects.models import StageRun

        while time.time() < self.deadline:
            run = StageRun.objects.get(pk=run_id)
            if run.status in FINISHED:
                return run
            time.sleep(0.5)
        raise TimeoutError(f"run #{run_id} not finished within the time bound")

    def run(self) -> None:
        from django.db import connections
        from django.test import Client

        from xtalweb.projects.forms import StageRunForm
        from xtalweb.projects.models import Project

        client = Client()
        client.force_login(self.user)
        self.started = time.time()
        try:
            r = client.post("/projects/new/", {"name": self.name, "group": self.group.pk, "data_root": self.data_root})
            if r.status_code != 302:
                raise RuntimeError(f"new project: {r.status_code}")
            project = Project.objects.filter(name=self.name).latest("pk")
            self.project_id = project.pk
            t0 = time.time()
            parent = self._wait(project.runs.get(stage="import").pk)
            self.entries.append({"stage": "import", "status": parent.status, "seconds": round(time.time() - t0, 1)})
            for stage in self.stages:
                if parent.status not in ("succeeded", "partial"):
                    break
                form = StageRunForm(stage, project)
                before = set(project.runs.values_list("pk", flat=True))
                t0 = time.time()
                r = client.post(f"/projects/{project.pk}/runs/new/{stage}/",
                                {f"{stage}-parent": parent.pk, f"{stage}-sweeps": [s["index"] for s in form.available]})
                new = project.runs.exclude(pk__in=before).filter(stage=stage)
                if r.status_code != 302 or not new.exists():
                    raise RuntimeError(f"{stage}: the form was refused ({r.status_code})")
                parent = self._wait(new.get().pk)
                self.entries.append({"stage": stage, "status": parent.status, "seconds": round(time.time() - t0, 1),
                                     **({"error": parent.error} if parent.error else {})})
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished = time.time()
            connections.close_all()


class Poller(threading.Thread):
    """A browser polling the server: project page, status JSON, now and then a report."""

    def __init__(self, port: int, cookie: str, projects: list[int], think: float, stop: threading.Event, seed: int,
                 etag: bool = True):
        super().__init__(daemon=True)
        self.port, self.cookie, self.projects, self.think, self.stop = port, cookie, projects, think, stop
        self.rng = random.Random(seed)
        self.use_etag = etag
        self.etags: dict[str, str] = {}  # path → the ETag of its last answer
        self.bodies: dict[str, bytes] = {}  # path → its last body (what a 304 means)
        #: (kind, ms, HTTP status, bytes received)
        self.samples: list[tuple[str, float, int, int]] = []

    def get(self, kind: str, path: str, conditional: bool = False) -> bytes:
        headers = {"Cookie": self.cookie, "Host": "127.0.0.1"}
        if conditional and self.use_etag and path in self.etags:
            headers["If-None-Match"] = self.etags[path]
        t0 = time.perf_counter()
        status, body = 0, b""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            status = response.status
            etag = response.getheader("ETag")
            conn.close()
        except Exception:
            status, etag = -1, None
        self.samples.append((kind, (time.perf_counter() - t0) * 1000.0, status, len(body)))
        if status == 304 and "If-None-Match" in headers:
            return self.bodies.get(path, b"")
        if status == 200 and conditional and etag:
            self.etags[path], self.bodies[path] = etag, body
        return body if status == 200 else b""

    def run(self) -> None:
        rounds = 0
        while not self.stop.is_set():
            pid = self.rng.choice(self.projects)
            if rounds % 10 == 0:
                self.get("project_page", f"/projects/{pid}/")
            body = self.get("status_json", f"/projects/{pid}/status.json", conditional=True)
            if rounds % 3 == 2 and body:
                done = [r for r in json.loads(body).get("runs", []) if r.get("status") in ("succeeded", "partial")]
                if done:
                    run = self.rng.choice(done)
                    if self.rng.random() < 0.5:
                        self.get("report_page", f"/projects/{pid}/runs/{run['id']}/")
                    else:
                        self.get("report_json", f"/projects/{pid}/runs/{run['id']}/report.json")
            rounds += 1
            self.stop.wait(self.think)


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    values = sorted(values)
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"n": len(values), "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "max_ms": round(values[-1], 1)}


def _task_count(project_ids: list[int]) -> tuple[int, int, int]:
    """(tasks, runs finished, sweep units) of the projects' runs."""
    from xtalweb.projects.models import StageRun
    from xtalweb.projects.stages import is_per_sweep

    tasks = runs = units = 0
    for run in StageRun.objects.filter(project_id__in=project_ids, status__in=FINISHED):
        runs += 1
        if is_per_sweep(run.stage):
            n = len(set(run.sweep_runs.values_list("unit", flat=True)))
            units += n
            tasks += n + 1
        else:
            tasks += 1
    return tasks, runs, units


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL of a scratch database (flushed)")
    ap.add_argument("--projects", type=int, default=3)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--think", type=float, default=2.0,
                    help="seconds between a client's requests (the project page polls every 2 s)")
    ap.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    ap.add_argument("--server", choices=("gunicorn", "runserver"), default="gunicorn")
    ap.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (4 threads each)")
    ap.add_argument("--stages", default=",".join(STAGES), help="stages after the import, in order")
    ap.add_argument("--max-seconds", type=float, default=420.0, help="the bound: stop after this long")
    ap.add_argument("--no-etag", action="store_true",
                    help="poll status.json without If-None-Match (as the page did before it sent the ETag back)")
    ap.add_argument("--root", default=None)
    args = ap.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="xtalweb-load-")
    env = _setup(args, root)
    stages = tuple(s for s in args.stages.split(",") if s)

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connections
    from django.test import Client

    from xtalweb.projects.whole_project import simulate_into

    data = os.path.join(env["DATA_ROOTS"], "tiny")
    simulate_into("tiny", data)
    folders = []
    for k in range(args.projects):  # each project its own copy of the images, as separate crystals would be
        folder = os.path.join(env["DATA_ROOTS"], f"tiny-{k + 1}")
        if not os.path.isdir(folder):
            shutil.copytree(data, folder)
        folders.append(folder)

    q = env["CELERY_QUEUE"]
    bin_dir = os.path.dirname(sys.executable)
    worker_log, web_log = os.path.join(root, "worker.log"), os.path.join(root, "web.log")
    worker = _start([os.path.join(bin_dir, "celery"), "-A", "xtalweb", "worker", "-Q", f"{q},{q}.sweeps,{q}.ensemble",
                     f"--concurrency={args.concurrency}", "--loglevel=WARNING", "--without-gossip",
                     "--without-mingle", "--without-heartbeat", "-n", "load@%h"], worker_log, {})
    port = _free_port()
    if args.server == "gunicorn":
        web = _start([os.path.join(bin_dir, "gunicorn"), "-c", "python:xtalweb.gunicorn_conf"], web_log,
                     {"GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(args.web_workers)})
    else:
        web = _start([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], web_log, {})
    result = {"database": "sqlite" if args.db == "sqlite" else "postgresql", "server": args.server,
              "web_workers": args.web_workers if args.server == "gunicorn" else 1,
              "celery_concurrency": args.concurrency, "projects": args.projects, "clients": args.clients,
              "think_seconds": args.think, "stages": ["import", *stages], "cpus": os.cpu_count(),
              "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    stop = threading.Event()
    try:
        _wait_port(port, web, web_log)
        user, _ = get_user_model().objects.get_or_create(username="load")
        group, _ = Group.objects.get_or_create(name="load-lab")
        user.groups.add(group)
        browser = Client()
        browser.force_login(user)
        cookie = f"sessionid={browser.cookies['sessionid'].value}"
        deadline = time.time() + args.max_seconds
        tag = uuid.uuid4().hex[:4]
        pipelines = [Pipeline(user, group, f"load-{tag}-{k + 1}", folders[k], stages, deadline)
                     for k in range(args.projects)]
        t_start = time.time()
        for p in pipelines:
            p.start()
        while any(p.project_id is None and p.is_alive() for p in pipelines):
            time.sleep(0.1)
        ids = [p.project_id for p in pipelines if p.project_id is not None]
        # warm-up (not measured): every server process imports its views and the stage
        # registry on its first requests, as a server that has run for a while has
        warm = Poller(port, cookie, ids, 0.0, threading.Event(), seed=-1)
        threads = [threading.Thread(target=warm.get, args=("warmup", path)) for _ in range(2 * args.web_workers)
                   for path in (f"/projects/{ids[0]}/", f"/projects/{ids[0]}/status.json")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        result["warmup_max_ms"] = round(max((ms for _, ms, *_ in warm.samples), default=0.0), 1)
        pollers = [Poller(port, cookie, ids, args.think, stop, seed=k, etag=not args.no_etag)
                   for k in range(args.clients)]
        for p in pollers:
            p.start()
        for p in pipelines:
            p.join(max(0.0, deadline - time.time()) + 5)
        stop.set()
        for p in pollers:
            p.join(35)
        t_end = max([p.finished or time.time() for p in pipelines])
        samples = [s for p in pollers for s in p.samples]
        by_kind: dict[str, list[tuple[float, int, int]]] = {}
        for kind, ms, status, size in samples:
            by_kind.setdefault(kind, []).append((ms, status, size))

        def stats(rows):
            return {**_percentiles([ms for ms, _, _ in rows]), "not_modified": sum(1 for _, st, _ in rows if st == 304),
                    "kb_received": round(sum(size for *_, size in rows) / 1024, 1),
                    "errors": sum(1 for _, st, _ in rows if st not in (200, 304))}

        result["etag"] = not args.no_etag
        result["latency"] = {"all": stats([s[1:] for s in samples]),
                             **{k: stats(v) for k, v in sorted(by_kind.items())}}
        result["requests_per_second"] = round(len(samples) / max(t_end - t_start, 1e-9), 1)
        tasks, runs, units = _task_count(ids)
        minutes = max(t_end - t_start, 1e-9) / 60.0
        result["processing"] = {"wall_seconds": round(t_end - t_start, 1), "tasks": tasks, "runs_finished": runs,
                                "sweep_units": units, "tasks_per_minute": round(tasks / minutes, 1),
                                "runs_per_minute": round(runs / minutes, 1),
                                "bounded_stop": time.time() >= deadline}
        result["projects_detail"] = [{"project": p.project_id, "error": p.error, "runs": p.entries}
                                     for p in pipelines]
        p95 = result["latency"]["all"].get("p95_ms")
        result["target_p95_under_200ms"] = bool(p95 is not None and p95 < 200)
    finally:
        stop.set()
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        _stop(web)
        _stop(worker)
        connections.close_all()
        try:
            import redis

            from django.conf import settings

            client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
            # the queues (and the workers' private ones, <queue>.i-<token>), their bindings, the results
            for key in client.scan_iter(match=f"*{q}*", count=1000):
                client.delete(key)
        except Exception:
            pass
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
