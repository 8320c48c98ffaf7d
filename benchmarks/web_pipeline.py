"""The web's per-sweep path on a simulated ensemble, on SQLite or PostgreSQL; prints JSON.

Issue 9's scenario: a project of 12 lysozyme-like wedges (``lysozyme-wedges``,
12 crystals × 25 images × 0.2° by default) imported, then find spots → index → refine
→ integrate through the web's own task code (``per_sweep.run_unit`` for every unit,
then ``per_sweep.join_run`` — exactly what the Celery chord runs, without the
broker), with every summary stored in the database. Reports each run's status,
sweeps succeeded/failed with reasons, seconds, and whether every stored summary is
strict JSON.

    .venv/bin/python benchmarks/web_pipeline.py --db sqlite [--crystals 12 --images 25]
    .venv/bin/python benchmarks/web_pipeline.py --db postgresql://root@127.0.0.1:5432/bench
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def _setup(db: str, root: str) -> None:
    if db == "sqlite":
        db = f"sqlite:///{os.path.join(root, 'bench.sqlite3')}"
    os.environ["DATABASE_URL"] = db
    os.environ["DATA_ROOTS"] = os.path.join(root, "data")
    os.environ["WORK_ROOT"] = os.path.join(root, "work")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xtalweb.settings")
    os.environ.setdefault("XTALWEB_DEMO", "1")  # a local run: no SECRET_KEY needed
    import django
    from django.core.management import call_command

    django.setup()
    call_command("flush", "--noinput", verbosity=0) if db.startswith("postgres") else None
    call_command("migrate", "--noinput", verbosity=0)


def _run_stage(project, stage: str, parent):
    from xtalweb.projects import per_sweep, runs
    from xtalweb.projects.stages import build_params, params_json, words_from_values

    params = params_json(build_params(stage, words_from_values(stage, {})))
    run = runs.create_run(project, stage, parameters=params, parents=[parent], sweeps=runs.available_sweeps(parent))
    t0 = time.perf_counter()
    for unit in sorted(set(run.sweep_runs.values_list("unit", flat=True))):
        per_sweep.run_unit(run.pk, unit)
    per_sweep.join_run(run.pk)
    run.refresh_from_db()
    return run, time.perf_counter() - t0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL of a scratch database")
    ap.add_argument("--crystals", type=int, default=12)
    ap.add_argument("--images", type=int, default=25)
    ap.add_argument("--oscillation", type=float, default=0.2)
    ap.add_argument("--root", default=None, help="scratch folder (default: a new temporary one)")
    args = ap.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="xtalweb-bench-")
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    _setup(args.db, root)

    from django.contrib.auth import get_user_model

    from xtalweb.projects import whole_project
    from xtalweb.projects.models import Project, StageRun

    data = os.path.join(root, "data", "wedges")
    t0 = time.perf_counter()
    whole_project.simulate_into("lysozyme-wedges", data, overrides={
        "n_crystals": args.crystals, "n_images": args.images, "oscillation_width": args.oscillation})
    t_sim = time.perf_counter() - t0
    user, _ = get_user_model().objects.get_or_create(username="bench")
    project = Project.objects.create(name="wedges", owner=user, data_root=data,
                                     work_dir=os.path.join(root, "work", "wedges"))
    imp = StageRun.objects.create(project=project, stage="import", parameters={"data_root": data})
    t0 = time.perf_counter()
    whole_project.import_images(imp.pk)
    imp.refresh_from_db()
    result = {"database": "sqlite" if args.db == "sqlite" else "postgresql", "crystals": args.crystals,
              "images": args.images, "oscillation_deg": args.oscillation, "simulate_seconds": round(t_sim, 1),
              "runs": [{"stage": "import", "status": imp.status, "seconds": round(time.perf_counter() - t0, 2)}]}
    parent = imp
    for stage in ("find_spots", "index", "refine", "integrate"):
        if parent.status not in StageRun.USABLE:
            break
        run, seconds = _run_stage(project, stage, parent)
        rows = list(run.sweep_runs.order_by("index"))
        docs = [run.summary] + [r.summary for r in rows]
        strict = True
        try:
            for d in docs:
                json.dumps(d, allow_nan=False)
        except ValueError:
            strict = False
        entry = {"stage": stage, "status": run.status, "error": run.error, "seconds": round(seconds, 2),
                 "sweeps_succeeded": sum(r.status == "succeeded" for r in rows),
                 "sweeps_failed": {r.name: r.error for r in rows if r.status != "succeeded"},
                 "strict_json": strict}
        if stage == "integrate":
            per = [e for r in rows if r.status == "succeeded" for e in r.summary.get("experiments", [])]
            entry["integrated_sum_per_sweep"] = [e["n_integrated_sum"] for e in per]
            entry["null_shell_statistics"] = sum(b.get("mean_ios_sum") is None for e in per
                                                 for b in e.get("resolution_table", []))
        result["runs"].append(entry)
        parent = run
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
