"""The project overview: the whole pipeline, one entry per stage, from the project's runs.

:func:`build_overview` is a pure function of the runs (their rows, stored summaries and
SweepRun rows, as the status endpoint already loads them): it reads what the stages
stored and recomputes nothing. The project page draws it (``projects/_overview.html``)
and its poller redraws it from ``status.json`` (``static/js/project.js``).

**The stages and their order** come from the registry (``processing.stages``): the tree
its ``previous`` links make, walked from the stage without a previous one (import).
Among the stages that start from the same stage, one that later stages start from comes
first (integrate → cosym before the leaves), then those that write data the next stage
could read (``.expt``: the ΔCC½ filter), then those that write nothing (estimate
resolution), then those that write the final files (merge, export). A stage that writes
the same files as a sibling others start from (``symmetry`` beside ``cosym``) is that
sibling's alternative: shown right after it, and only when the project has run it.

**Each stage** shows its latest run (the highest id): its state (``none`` when the stage
never ran, else the run's status), progress, counts in → out (sweeps for per-sweep
stages, data sets for the ensemble stages, from their summaries), a few numbers from
the summary, what failed and why (one line each, with the sweep's or data set's name)
and where to look next (a short list of links: run the next stage, retry the failed
sweeps, the report, the merged MTZ …).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from django.urls import reverse

from .models import StageRun

logger = logging.getLogger(__name__)

NONE = "none"
#: how many failed sweeps / left-out data sets are listed (the rest: "and N more")
MAX_PROBLEMS = 4
#: a reason is cut to this many characters (the run's log and report have it all)
MAX_REASON = 180
#: at most this many numbers from the summary per stage
MAX_FACTS = 4


# --- the stages, in pipeline order, from the registry ------------------------------------------


def pipeline() -> list[dict]:
    """``[{stage, title, per_sweep, previous, alternative_of, children}]`` in pipeline order
    (see the module's note)."""
    from .stages import registry

    stages = registry()
    order = {name: k for k, name in enumerate(stages)}
    children: dict[str | None, list[str]] = {}
    for name, s in stages.items():
        parent = s.previous if s.previous in stages else None
        children.setdefault(parent, []).append(name)

    def has_children(name):
        return bool(children.get(name))

    def alternative_of(name):
        s = stages[name]
        if has_children(name) or not s.outputs:
            return None
        for other in children.get(s.previous if s.previous in stages else None, []):
            if other != name and has_children(other) and set(stages[other].outputs) == set(s.outputs):
                return other
        return None

    def kind(name):  # 0: writes data for a next stage, 1: writes nothing, 2: writes final files
        s = stages[name]
        if s.experiments_output:
            return 0
        return 1 if not s.outputs else 2

    def main_children(parent):
        kids = [c for c in children.get(parent, []) if alternative_of(c) is None]
        return sorted(kids, key=lambda c: (not has_children(c), kind(c), order[c]))

    out: list[dict] = []

    def walk(parent):
        for c in main_children(parent):
            emit(c)
            for alt in children.get(parent, []):
                if alternative_of(alt) == c:
                    emit(alt)
            walk(c)

    def emit(name):
        s = stages[name]
        out.append({"stage": name, "title": s.title, "per_sweep": bool(s.per_sweep), "previous": s.previous,
                    "alternative_of": alternative_of(name), "outputs": tuple(s.outputs),
                    "children": main_children(name)})

    walk(None)
    return out


# --- reading a run --------------------------------------------------------------------------------


class _Graph:
    """The runs by id and their parents' ids: what ``lineage.identifier_names`` walks (no queries)."""

    def __init__(self, runs: list[StageRun]):
        self.runs = {r.pk: r for r in runs}
        self.parents = {r.pk: [p.pk for p in r.parents.all() if p.pk in self.runs] for r in runs}


def _cut(text, limit: int = MAX_REASON) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return one if n == 1 else (many or one + "s")


def _facts(summary: dict) -> list[str]:
    """A few numbers the stage stored in its summary, in words."""
    s = summary if isinstance(summary, dict) else {}
    out: list[str] = []
    if _num(s.get("n_images")) and isinstance(s.get("sweeps"), list) and not _num(s.get("n_spots")):
        out.append(_count(int(s["n_images"]), "images"))  # import
    for key, word in (("n_spots", "spots"), ("n_indexed", "indexed"), ("n_used_in_refinement", "in refinement"),
                      ("n_predicted", "predicted"), ("n_integrated_prf", "profile-fitted")):
        if _num(s.get(key)):
            out.append(_count(int(s[key]), word))
    if _num(s.get("n_observations_in")) and _num(s.get("n_observations")):
        out.append(f"{int(s['n_observations_in']):,} → {int(s['n_observations']):,} observations")
    elif _num(s.get("n_observations")):
        out.append(_count(int(s["n_observations"]), "observations"))
    if _num(s.get("n_unique")):
        out.append(_count(int(s["n_unique"]), "unique reflections"))
    if not out and _num(s.get("n_reflections")):
        out.append(_count(int(s["n_reflections"]), "reflections"))
    best = s.get("best") if isinstance(s.get("best"), dict) else {}
    group = s.get("space_group") or best.get("space_group")
    if isinstance(group, str) and group:
        out.append(group)
    if _num(s.get("cc_half_in")) and _num(s.get("cc_half_out")):
        out.append(f"CC½ {s['cc_half_in']:.3f} → {s['cc_half_out']:.3f}")
    else:
        overall = (s.get("merging_statistics") or {}).get("overall") if isinstance(s.get("merging_statistics"),
                                                                                  dict) else None
        if isinstance(overall, dict) and _num(overall.get("cc_half")):
            out.append(f"CC½ {overall['cc_half']:.3f}")
    if _num(s.get("d_min")):
        err = f" ± {s['d_min_error']:.2f}" if _num(s.get("d_min_error")) else ""
        out.append(f"d_min {s['d_min']:.2f}{err} Å")
    return out[:MAX_FACTS]


def _datasets(summary: dict) -> tuple[int | None, int | None]:
    """(data sets in, data sets kept) from an ensemble stage's summary, or (None, None)."""
    s = summary if isinstance(summary, dict) else {}
    left = len([x for x in s.get("excluded") or [] if isinstance(x, dict)])
    left += len([x for x in s.get("removed") or [] if isinstance(x, dict)])
    if _num(s.get("n_datasets")):
        kept = int(s["n_datasets"])
    elif isinstance(s.get("datasets"), list):
        kept = len([d for d in s["datasets"] if not (isinstance(d, dict) and d.get("excluded"))])
    else:
        return None, None
    given = int(s["n_datasets_in"]) if _num(s.get("n_datasets_in")) else kept + left
    return given, kept


def _counts(unit: str, given: int | None, out: int | None, out_label: str) -> dict:
    """``{unit, in, out, out_label, text}``; ``text`` e.g. "3 sweeps in → 2 succeeded"."""
    def n(k):
        return f"{k:,} {_plural(k, unit, unit + 's')}"

    if given is None:
        text = f"{n(out)} {out_label}" if out is not None else ""
    elif out is None:
        text = f"{n(given)} in"
    else:
        text = f"{n(given)} in → {out:,} {out_label}"
    return {"unit": unit + "s", "in": given, "out": out, "out_label": out_label, "text": text}


def _state(run: StageRun | None) -> str:
    return NONE if run is None else run.status


def _latest(runs: list[StageRun]) -> StageRun | None:
    return max(runs, key=lambda r: r.pk) if runs else None


def _latest_usable(runs: list[StageRun]) -> StageRun | None:
    usable = [r for r in runs if r.status in StageRun.USABLE]
    return max(usable, key=lambda r: ((r.finished.timestamp() if r.finished else 0.0), r.pk)) if usable else None


def _queue(stage: str, per_sweep: bool, takes_sweeps: bool, base: str) -> str:
    from xtalweb.routing import queue_for

    task = ("run_sweep_unit" if per_sweep else "run_ensemble_stage" if takes_sweeps else "run_import_stage")
    return queue_for(f"xtalweb.projects.tasks.{task}", base)


# --- one stage ------------------------------------------------------------------------------------


def _entry(step: int, info: dict, runs_of: dict[str, list[StageRun]], graph: _Graph, titles: dict[str, str],
           base: str, other_active: list[StageRun]) -> dict:
    stage, title = info["stage"], info["title"]
    mine = runs_of.get(stage, [])
    run = _latest(mine)
    state = _state(run)
    takes_sweeps = info["previous"] is not None
    entry = {"stage": stage, "title": title, "step": step, "per_sweep": info["per_sweep"],
             "alternative_of": info["alternative_of"], "alternative_title": titles.get(info["alternative_of"] or ""),
             "state": state, "state_label": "not run" if state == NONE else state, "n_runs": len(mine), "run": None,
             "progress": None, "progress_text": "", "counts": None, "facts": [], "problems": [],
             "problems_more": 0, "error": "", "note": "", "next": []}
    if run is None:
        entry["next"] = _next_without_run(info, runs_of, titles, other_active)
        return entry

    rows = list(run.sweep_runs.all()) if takes_sweeps else []
    summary = run.summary if isinstance(run.summary, dict) else {}
    retry_url = (reverse("stagerun_retry", args=[run.project_id, run.pk])
                 if info["per_sweep"] and state in (StageRun.Status.PARTIAL, StageRun.Status.FAILED) else None)
    entry["run"] = {"id": run.pk, "status": run.status, "report_url": run.get_report_url(),
                    "log_url": run.get_log_url(), "retry_url": retry_url,
                    "finished": run.finished.isoformat() if run.finished else None}
    if state == StageRun.Status.RUNNING:
        entry["progress"] = float(run.progress or 0.0)

    ok = sum(1 for r in rows if r.status == StageRun.Status.SUCCEEDED)
    bad = [r for r in rows if r.status == StageRun.Status.FAILED]
    entry["counts"] = _counts_in_out(run, info, summary, rows, ok, bad, state)
    if rows and state in (StageRun.Status.RUNNING, StageRun.Status.QUEUED) and info["per_sweep"]:
        done = sum(1 for r in rows if r.status in (StageRun.Status.SUCCEEDED, StageRun.Status.FAILED))
        entry["progress_text"] = f"{done} of {len(rows)} {_plural(len(rows), 'sweep')} done"
    if run.status in StageRun.USABLE:
        entry["facts"] = _facts(summary)

    problems = _problems(run, info, graph, bad)
    entry["problems"] = problems[:MAX_PROBLEMS]
    entry["problems_more"] = max(0, len(problems) - MAX_PROBLEMS)
    if run.error and (state == StageRun.Status.FAILED and not problems or state == StageRun.Status.PARTIAL):
        entry["error"] = _cut(run.error)

    # made from an older run than the latest of the stage before?
    prev = info["previous"]
    if prev is not None and run.status in StageRun.USABLE:
        newest = _latest_usable(runs_of.get(prev, []))
        parents = [p for p in run.parents.all() if p.stage == prev]
        if newest is not None and parents and all(p.pk != newest.pk for p in parents):
            entry["note"] = (f"made from {titles.get(prev, prev)} run #{parents[0].pk}; "
                             f"#{newest.pk} is newer")

    entry["next"] = _next_steps(run, info, state, runs_of, titles, base, retry_url, ok)
    return entry


def _next_without_run(info, runs_of, titles, other_active) -> list[dict]:
    """Where to look next for a stage never run: its form, or what it waits for."""
    title, prev = info["title"], info["previous"]
    if prev is None:
        if other_active:  # a simulate run making the data first
            r = other_active[-1]
            return [{"text": f"waiting for {r.get_stage_display()} (run #{r.pk}) to finish",
                     "url": r.get_report_url(), "kind": "link"}]
        return []
    if _latest_usable(runs_of.get(prev, [])) is not None:
        return [{"text": f"run {title}", "url": f"#form-{info['stage']}", "kind": "form"}]
    t = titles.get(prev, prev)
    return [{"text": f"needs {'an' if t[:1].lower() in 'aeiou' else 'a'} {t} run first", "url": "", "kind": "wait"}]


def _counts_in_out(run, info, summary, rows, ok, bad, state):
    """Sweeps (per-sweep stages) or data sets (ensemble stages) in → out."""
    if info["previous"] is None:  # import: the sweeps it found
        listed = summary.get("sweeps") if isinstance(summary.get("sweeps"), list) else None
        return _counts("sweep", None, len(listed), "imported") if listed is not None else None
    if info["per_sweep"] or run.status not in StageRun.USABLE:
        finished = run.status in StageRun.USABLE or (info["per_sweep"] and state == StageRun.Status.FAILED)
        return _counts("sweep", len(rows), ok if finished else None, "succeeded")
    given, kept = _datasets(summary)
    if given is None:  # a summary without a data-set list (merge): the data sets it was given
        return _counts("data set", len(rows), ok if len(bad) else None, "kept")
    return _counts("data set", given, kept, "kept")


def _problems(run, info, graph, bad) -> list[dict]:
    """What failed or was left out, each with its one-line reason."""
    from .lineage import excluded_of

    problems: list[dict] = []
    if run.status in StageRun.USABLE and not info["per_sweep"] and info["previous"] is not None:
        for x in excluded_of(run, graph):
            name = x["name"] or x["identifier"] or (f"data set {x['id']}" if x.get("id") is not None else "")
            problems.append({"name": name, "reason": _cut(x["reason"] or "left out")})
    if not problems and info["per_sweep"]:
        for r in bad:
            problems.append({"name": r.name, "reason": _cut(r.error or "failed")})
    return problems


def _next_steps(run, info, state, runs_of, titles, base, retry_url, ok) -> list[dict]:
    """Where to look next after a run: its log, retry, downloads, the next stage, the report."""
    from .downloads import DOWNLOAD_STAGES

    stage, title, takes_sweeps = info["stage"], info["title"], info["previous"] is not None
    nxt: list[dict] = []
    first_new = next((c for c in info["children"] if not runs_of.get(c)), None)
    if state == StageRun.Status.QUEUED:
        nxt.append({"text": f"waiting for a worker on {_queue(stage, info['per_sweep'], takes_sweeps, base)}",
                    "url": "", "kind": "wait"})
    elif state == StageRun.Status.RUNNING:
        nxt.append({"text": "follow the log", "url": run.get_log_url(), "kind": "link"})
    elif state == StageRun.Status.FAILED:
        if retry_url:
            nxt.append({"text": "retry failed sweeps", "url": retry_url, "kind": "retry"})
        nxt.append({"text": "the log", "url": run.get_log_url(), "kind": "link"})
        if takes_sweeps:
            nxt.append({"text": f"rerun {title} with other parameters", "url": f"#form-{stage}", "kind": "form"})
    else:  # succeeded or partial
        if retry_url:
            nxt.append({"text": "retry failed sweeps", "url": retry_url, "kind": "retry"})
        if stage in DOWNLOAD_STAGES and run.output_dir:
            for name in info["outputs"]:
                if not name.endswith((".expt", ".refl")):
                    nxt.append({"text": f"download {name}", "kind": "download",
                                "url": reverse("stagerun_file", args=[run.project_id, run.pk, name])})
        if first_new is not None:
            text = f"run {titles.get(first_new, first_new)}"
            if state == StageRun.Status.PARTIAL and info["per_sweep"]:
                text += f" on the {ok} that succeeded"
            nxt.append({"text": text, "url": f"#form-{first_new}", "kind": "form"})
        nxt.append({"text": f"the {title} report", "url": run.get_report_url(), "kind": "link"})
    return nxt


def build_overview(runs: Iterable[StageRun], *, base_queue: str | None = None) -> dict:
    """The overview of a project from all its runs (parents and SweepRun rows prefetched):
    ``{"stages": [entry …], "n_done": …, "n_stages": …}``, strict JSON (see the module's note).

    ``base_queue`` names the Celery queue (default: the app's configured one) for the
    "waiting for a worker on …" hint of a queued run."""
    if base_queue is None:
        from xtalweb.celery import app

        base_queue = app.conf.task_default_queue
    runs = list(runs)
    graph = _Graph(runs)
    runs_of: dict[str, list[StageRun]] = {}
    for r in runs:
        runs_of.setdefault(r.stage, []).append(r)
    stages = pipeline()
    known = {s["stage"] for s in stages}
    titles = {s["stage"]: s["title"] for s in stages}
    other_active = sorted((r for r in runs if r.stage not in known and r.is_active), key=lambda r: r.pk)
    out, step = [], 0
    for info in stages:
        if info["alternative_of"] and not runs_of.get(info["stage"]):
            continue  # an alternative (symmetry beside cosym) the project never ran
        step += 1
        out.append(_entry(step, info, runs_of, graph, titles, base_queue, other_active))
    done = sum(1 for e in out if e["state"] in StageRun.USABLE)
    return {"stages": out, "n_done": done, "n_stages": len(out)}


def project_overview(project) -> dict:
    """:func:`build_overview` of every run of ``project`` (three queries)."""
    from django.db.models import Prefetch

    from .models import SweepRun

    rows = Prefetch("sweep_runs", queryset=SweepRun.objects.defer("log", "summary", "output_files"))
    parents = Prefetch("parents", queryset=StageRun.objects.defer("log", "summary", "parameters"))
    return build_overview(project.runs.defer("log").prefetch_related(rows, parents))


def safe_overview(build, *args, **kwargs) -> dict | None:
    """``build(*args)``, or None (logged) if it fails: a summary of an unexpected shape
    never takes the project page or its polled status down with it."""
    try:
        return build(*args, **kwargs)
    except Exception:
        logger.exception("the project overview could not be built")
        return None
