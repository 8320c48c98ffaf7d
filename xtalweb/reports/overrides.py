"""Overrides: every parameter a user set on a run or on one of its ancestors, away from
what the program would use by itself, shown on every report downstream.

A parameter counts when the run's stored value differs from the stage's default as the
run form offers it: the parameter dataclass's default (``processing.stages.STAGES[stage]
.params``), or the web default where the web registers one (index ``joint=false``) —
the value the program uses when the user leaves the field blank. ``space_group``,
``d_min`` and ``exclude_datasets`` are the overrides proper (highlighted), each with
what the program chose or would have chosen where a summary says it: cosym's
``best.analysis_would_choose``; for a d_min, the resolution the run's data reach and a
``resolution_estimate`` of the run or of any run on the line; for dropped data sets,
their sweeps' names (the program keeps every data set). Every other non-default
parameter is listed beside them.
"""

from __future__ import annotations

import dataclasses
import functools
import math

HIGHLIGHTED = ("space_group", "d_min", "exclude_datasets")


@functools.lru_cache(maxsize=None)
def _defaults_cached(stage: str) -> tuple:
    from processing.stages import STAGES

    from xtalweb.projects.stages import build_params, params_json, words_from_values

    cls = STAGES[stage].params
    base = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            base[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            v = f.default_factory()  # type: ignore[misc]
            base[f.name] = list(v) if isinstance(v, tuple) else v
    try:  # the form's defaults: the web defaults applied (fails for a stage with required fields)
        base.update(params_json(build_params(stage, words_from_values(stage, {}))))
    except Exception:
        pass
    return tuple(sorted(base.items(), key=lambda kv: kv[0]))


def defaults(stage: str) -> dict | None:
    """The stage's default parameters as stored in a run's ``parameters`` (None: not a
    stage of the registry, e.g. simulate)."""
    try:
        return dict(_defaults_cached(stage))
    except KeyError:
        return None


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def show(value) -> str:
    """A parameter's value as the command line writes it."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(show(v) for v in value) if value else "(none)"
    return str(value)


def non_default(run) -> list[tuple[str, object, object]]:
    """``(name, value, default)`` of every parameter of ``run`` away from its default."""
    if run.stage == "import":  # the import's folder is where the data are, not a choice against a default
        return []
    base = defaults(run.stage)
    if base is None:
        return []
    out = []
    for name, value in sorted((run.parameters or {}).items()):
        if name in base and not _same(value, base[name]):
            out.append((name, value, base[name]))
    return out


def _resolution_estimate(runs) -> tuple[str, object] | None:
    """``(text, run)`` of the nearest ``resolution_estimate`` in the runs' summaries."""
    for r in runs:
        est = (r.summary or {}).get("resolution_estimate")
        if est is None:
            continue
        if isinstance(est, dict):
            d = est.get("d_min")
            err = est.get("d_min_error")
            if isinstance(d, (int, float)):
                text = f"{float(d):.2f}" + (f" ± {float(err):.2f}" if isinstance(err, (int, float)) else "") + " Å"
            else:
                edge = est.get("data_d_min")
                text = "no cut (CC½ stays above its limit" + (f" to {float(edge):.2f} Å)" if isinstance(
                    edge, (int, float)) else ")")
        elif isinstance(est, (int, float)):
            text = f"{float(est):.2f} Å"
        else:
            text = str(est)
        return text, r
    return None


def _chosen(run, name: str, value, line) -> str:
    """What the program chose or would have chosen instead, where a summary says it."""
    s = run.summary or {}
    if name == "space_group":
        would = (s.get("best") or {}).get("analysis_would_choose")
        return f"the analysis alone would choose {would}" if would else ""
    if name == "d_min":
        parts = []
        reached = s.get("d_min")
        if reached is None:
            reached = (s.get("merging_statistics") or {}).get("d_min")
        if isinstance(reached, (int, float)):
            parts.append(f"the data of run #{run.pk} reach {float(reached):.2f} Å")
        res = s.get("resolution") or {}
        auto = [(k, v) for k, v in res.items() if k.startswith("d_min_") and k != "d_min_given"
                and isinstance(v, (int, float))]
        for k, v in auto:
            parts.append(f"automatic {k[len('d_min_'):]}: {float(v):.2f} Å")
        est = _resolution_estimate([run] + [r for r in reversed(line) if r.pk != run.pk])
        if est is not None:
            parts.append(f"resolution estimate {est[0]} (run #{est[1].pk})")
        return "; ".join(parts)
    if name == "exclude_datasets":
        from xtalweb.projects.lineage import excluded_of

        ids = set(value or [])
        names = [x["name"] or x["identifier"] or str(x["id"]) for x in excluded_of(run) if x["id"] in ids]
        text = "the program keeps every data set"
        return f"{text}; left out: {', '.join(names)}" if names else text
    return ""


def overrides_for(run, line=None) -> dict:
    """``{"highlighted": [...], "others": [...]}`` for the report of ``run``: each
    ``{"run", "name", "value", "default", "chosen"}`` over ``run`` and its ancestors
    (upstream first). ``line``: the ancestry if already known (see ``lineage``)."""
    if line is None:
        from xtalweb.projects.lineage import Lineage

        line = Lineage(run.project).ancestry(run.pk)
    highlighted, others = [], []
    for r in line:
        for name, value, default in non_default(r):
            item = {"run": r, "name": name, "value": show(value), "default": show(default),
                    "chosen": _chosen(r, name, value, line) if name in HIGHLIGHTED else "",
                    "here": r.pk == run.pk}
            (highlighted if name in HIGHLIGHTED else others).append(item)
    return {"highlighted": highlighted, "others": others}
