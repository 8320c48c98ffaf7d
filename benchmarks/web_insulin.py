"""An ensemble processed from the web, end to end, as a user clicks it; prints JSON.

A scratch database (SQLite unless ``--db postgresql://…``) and a real Celery worker
(a subprocess, ``--concurrency`` processes, its own queues) are started; Django's test
client then logs in and submits the project page's own forms, in the order of the DIALS
tutorial: new project on the image folder (import) → find spots → index → refine →
integrate → cosym → scale → ΔCC½, then the ΔCC½ report's "scale again without these,
then merge" with the data sets ΔCC½ removed → scale → merge, then cluster (if that stage
exists). Each step waits for its run to finish.

Reported: per stage the run's status, wall time from submit to finish, sweeps or data sets
in and out; the worker's peak memory (summed RSS of its processes, sampled every 0.5 s);
the Laue group, the data sets ΔCC½ removed, and the merged statistics; with
``--truth true.mtz`` the CC of the merged intensities with the truth.

    .venv/bin/python benchmarks/web_insulin.py --images /tmp/insulin24/data --truth /tmp/insulin24/data/true.mtz
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

FINISHED = ("succeeded", "partial", "failed")


def _setup(args, root: str) -> dict:
    os.makedirs(root, exist_ok=True)
    db = args.db if args.db != "sqlite" else f"sqlite:///{os.path.join(root, 'bench.sqlite3')}"
    env = {"DATABASE_URL": db, "DATA_ROOTS": os.path.dirname(os.path.abspath(args.images)),
           "WORK_ROOT": os.path.join(root, "work"), "CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
           "ALLOWED_HOSTS": "testserver", "DJANGO_SETTINGS_MODULE": "xtalweb.settings", "XTALWEB_DEMO": "1"}
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    if db.startswith("postgres"):
        call_command("flush", "--noinput", verbosity=0)
    call_command("migrate", "--noinput", verbosity=0)
    return env


class PeakMemory(threading.Thread):
    """Samples the summed RSS (MB) of a process and its children."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, False

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            try:
                with open(f"/proc/{p}/task/{p}/children") as f:
                    todo += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return pids

    def run(self):
        while not self.stop:
            total = 0
            for p in self._tree():
                try:
                    with open(f"/proc/{p}/status") as f:
                        total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
                except (OSError, StopIteration):
                    pass
            self.peak = max(self.peak, total / 1024)
            time.sleep(0.5)


def _wait(run_id: int, timeout: float):
    from xtalweb.projects.models import StageRun

    t_end = time.time() + timeout
    while time.time() < t_end:
        run = StageRun.objects.get(pk=run_id)
        if run.status in FINISHED:
            return run
        time.sleep(1.0)
    raise TimeoutError(f"run #{run_id} not finished after {timeout} s")


def _submit(client, project, stage: str, parent, words: str = "", timeout: float = 7200):
    """POST the project page's form of ``stage`` (defaults, all offered sweeps) and wait."""
    from xtalweb.projects.forms import StageRunForm
    from xtalweb.projects.models import StageRun

    form = StageRunForm(stage, project)
    data = {f"{stage}-parent": parent.pk, f"{stage}-words": words,
            f"{stage}-sweeps": [s["index"] for s in form.available]}
    before = set(project.runs.values_list("pk", flat=True))
    t0 = time.perf_counter()
    response = client.post(f"/projects/{project.pk}/runs/new/{stage}/", data)
    new = project.runs.exclude(pk__in=before).filter(stage=stage)
    if response.status_code != 302 or not new.exists():
        raise RuntimeError(f"{stage}: the form was refused ({response.status_code})")
    run = _wait(new.get().pk, timeout)
    return run, time.perf_counter() - t0, StageRun


def _entry(run, seconds: float) -> dict:
    s = run.summary or {}
    rows = list(run.sweep_runs.all())
    out = {"stage": run.stage, "run": run.pk, "status": run.status, "seconds": round(seconds, 1),
           "error": run.error or None}
    if rows:
        out["sweeps_in"] = len(rows)
        out["sweeps_succeeded"] = sum(r.status == "succeeded" for r in rows)
    for k in ("n_datasets_in", "n_datasets"):
        if k in s:
            out[k] = s[k]
    return out


def _sibling(name: str):
    """Another script of benchmarks/ as a module (they are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", required=True, help="the folder of the sweeps' images (the project's data)")
    ap.add_argument("--truth", default=None, help="true.mtz of a simulation: CC of the merged data with it")
    ap.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL of a scratch database")
    ap.add_argument("--index-words", default="", help="e.g. unit_cell=78,78,78,90,90,90 space_group=I23")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--root", default=None)
    args = ap.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="xtalweb-web-")
    env = _setup(args, root)

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from xtalweb.projects.models import Project, StageRun

    q = env["CELERY_QUEUE"]
    worker = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "celery"), "-A", "xtalweb", "worker",
                               "-Q", f"{q},{q}.sweeps,{q}.ensemble", f"--concurrency={args.concurrency}",
                               "--loglevel=WARNING"], env=dict(os.environ), stdout=open(os.path.join(root, "worker.log"), "w"),
                              stderr=subprocess.STDOUT)
    memory = PeakMemory(worker.pid)
    memory.start()
    result = {"database": "sqlite" if args.db == "sqlite" else "postgresql", "images": args.images,
              "concurrency": args.concurrency, "load_average_start": os.getloadavg(), "runs": []}
    try:
        user, _ = get_user_model().objects.get_or_create(username="bench")
        group, _ = Group.objects.get_or_create(name="bench-lab")
        user.groups.add(group)
        client = Client()
        client.force_login(user)
        t_all = time.perf_counter()
        response = client.post("/projects/new/", {"name": "insulin", "group": group.pk,
                                                  "data_root": os.path.abspath(args.images)})
        project = Project.objects.get(name="insulin")
        if response.status_code != 302:
            raise RuntimeError(f"new project refused: {response.status_code}")
        imp = _wait(project.runs.get(stage="import").pk, 600)
        result["runs"].append(_entry(imp, time.perf_counter() - t_all))
        parent = imp
        for stage in ("find_spots", "index", "refine", "integrate", "cosym", "scale", "compute_delta_cchalf"):
            run, seconds, _ = _submit(client, project, stage, parent, args.index_words if stage == "index" else "")
            result["runs"].append(_entry(run, seconds))
            if run.status not in StageRun.USABLE:
                raise RuntimeError(f"{stage} {run.status}: {run.error}")
            parent = run
        filt = parent
        removed = [d["id"] for d in (filt.summary or {}).get("removed") or []]
        result["delta_cc_half_removed"] = [d["identifier"] for d in (filt.summary or {}).get("removed") or []]
        t0 = time.perf_counter()
        if removed:
            before = set(project.runs.values_list("pk", flat=True))
            client.post(f"/projects/{project.pk}/runs/{filt.pk}/drop-delta-cc-half",
                        {"exclude_datasets": removed, "then_merge": "on"})
            scale = _wait(project.runs.exclude(pk__in=before).get(stage="scale").pk, 3600)
            result["runs"].append(_entry(scale, time.perf_counter() - t0))
            merge = None
            for _ in range(60):
                merge = project.runs.filter(stage="merge", parents=scale).first()
                if merge:
                    break
                time.sleep(1.0)
            if merge is None:
                raise RuntimeError("the follow-up merge was not queued")
        else:
            scale = StageRun.objects.filter(project=project, stage="scale").latest("pk")
            merge, _, _ = _submit(client, project, "merge", scale)
        merge = _wait(merge.pk, 3600)
        result["runs"].append(_entry(merge, time.perf_counter() - t0))
        result["total_seconds_to_merged"] = round(time.perf_counter() - t_all, 1)
        from processing.stages import STAGES

        if "cluster" in STAGES:
            run, seconds, _ = _submit(client, project, "cluster", scale)
            result["runs"].append(_entry(run, seconds))
        cosym = project.runs.filter(stage="cosym").latest("pk").summary or {}
        result["laue_group"] = (cosym.get("best") or {}).get("patterson_group")
        result["space_group"] = (cosym.get("best") or {}).get("space_group")
        result["merged_overall"] = {k: (merge.summary or {}).get("merging_statistics", {}).get("overall", {}).get(k)
                                    for k in ("cc_half", "rpim", "completeness", "multiplicity", "i_over_sigma",
                                              "d_min")}
        if args.truth:
            folder = scale.output_dir
            result["merged_vs_truth"] = _sibling("scale_vs_dials").cc_to_truth(
                os.path.join(folder, "scaled.expt"), os.path.join(folder, "scaled.refl"), args.truth)
    finally:
        memory.stop = True
        result["worker_peak_mb"] = round(memory.peak)
        result["load_average_end"] = os.getloadavg()
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
