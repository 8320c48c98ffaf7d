"""Steering pages of a project (issue 13): the run history as a graph, two runs side
by side, and the fate of every data set (per project and per run).

Every view goes through :func:`permissions.get_project_for_user` (404 for anyone
outside the project's owner and group). The pages draw only what the runs stored:
StageRun.parents, parameters, summaries and SweepRun rows (``lineage.py``); the
overrides come from ``xtalweb.reports.overrides``.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from xtalweb.reports.overrides import HIGHLIGHTED, non_default, show

from .lineage import (KEPT, NOT_GIVEN, OUT, Lineage, fate_table, excluded_of, given_and_left,
                      leave_out_warnings, run_datasets)
from .models import StageRun
from .permissions import get_project_for_user

# --- the graph -------------------------------------------------------------------------------------

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 176, 60, 26, 44, 14


def key_result(run: StageRun) -> str:
    """One line of the run's result for its node: space group, CC½ and d_min, …"""
    s = run.summary or {}
    stats = s.get("merging_statistics") or {}
    overall = stats.get("overall") or {}
    if overall.get("cc_half") is not None:
        d = stats.get("d_min") or s.get("d_min")
        return f"CC½ {overall['cc_half']:.3f}" + (f" · {float(d):.2f} Å" if isinstance(d, (int, float)) else "")
    best = s.get("best") or {}
    if best.get("space_group"):
        return str(best["space_group"])
    if isinstance(s.get("sweeps"), list) and run.stage == "import":
        return f"{len(s['sweeps'])} sweeps"
    return ""


def datasets_text(run: StageRun, lin: Lineage | None = None) -> str:
    given, left = given_and_left(run, lin)
    if not given:
        return ""
    if run.is_active:
        return f"{given} data sets"
    return f"{given - left}/{given} kept"


def history_graph(lin: Lineage, main: set[int]) -> dict:
    """Nodes placed top-down by depth (longest path from the first run), each level
    ordered by its parents' positions; edges parent → child as SVG paths."""
    levels: dict[int, list[int]] = {}
    for pk in lin.runs:
        levels.setdefault(lin.depth(pk), []).append(pk)
    slot: dict[int, float] = {}
    for d in sorted(levels):
        def bary(pk):
            ps = [slot[p] for p in lin.parents[pk] if p in slot]
            return (sum(ps) / len(ps) if ps else -1.0, pk)
        levels[d].sort(key=bary)
        for k, pk in enumerate(levels[d]):
            slot[pk] = k
    widest = max((len(v) for v in levels.values()), default=0)
    width = 2 * PAD + widest * NODE_W + max(widest - 1, 0) * GAP_X
    height = 2 * PAD + len(levels) * NODE_H + max(len(levels) - 1, 0) * GAP_Y
    nodes, pos = [], {}
    for d, pks in sorted(levels.items()):
        row_w = len(pks) * NODE_W + (len(pks) - 1) * GAP_X
        x0 = PAD + (width - 2 * PAD - row_w) / 2
        for k, pk in enumerate(pks):
            run = lin.runs[pk]
            x, y = x0 + k * (NODE_W + GAP_X), PAD + d * (NODE_H + GAP_Y)
            pos[pk] = (x, y)
            nodes.append({"id": pk, "stage": run.stage, "title": run.get_stage_display(), "status": run.status,
                          "url": run.get_report_url(), "parents": lin.parents[pk], "depth": d,
                          "x": int(round(x)), "y": int(round(y)), "main": pk in main,
                          "line2": " · ".join(filter(None, (run.status, datasets_text(run, lin)))),
                          "line3": key_result(run),
                          "tooltip": "; ".join(filter(None, (
                              f"{run.get_stage_display()} #{pk}: {run.status}",
                              run.error,
                              ", ".join(f"{n}={show(v)}" for n, v, _ in non_default(run)))))})
    edges = []
    for p, c in lin.edges():
        (px, py), (cx, cy) = pos[p], pos[c]
        x1, y1, x2, y2 = px + NODE_W / 2, py + NODE_H, cx + NODE_W / 2, cy
        ym = (y1 + y2) / 2
        edges.append({"parent": p, "child": c, "main": p in main and c in main,
                      "d": f"M{x1:.1f},{y1:.1f} C{x1:.1f},{ym:.1f} {x2:.1f},{ym:.1f} {x2:.1f},{y2 - 4:.1f}"})
    return {"nodes": nodes, "edges": edges, "width": round(width), "height": round(height),
            "node_w": NODE_W, "node_h": NODE_H}


def _default_pair(lin: Lineage) -> tuple[int | None, int | None]:
    """The runs preselected for comparison: the latest finished run and the run of the same
    stage before it (else its parent)."""
    done = [r for r in lin.runs.values() if not r.is_active]
    if not done:
        return None, None
    b = max(done, key=lambda r: r.pk)
    same = [r for r in done if r.stage == b.stage and r.pk < b.pk]
    if same:
        return max(same, key=lambda r: r.pk).pk, b.pk
    return (lin.parents[b.pk][-1] if lin.parents[b.pk] else None), b.pk


@login_required
@require_GET
def project_history(request, pk: int):
    project = get_project_for_user(request, pk)
    lin = Lineage(project)
    end = lin.main_end()
    main = {r.pk for r in lin.line(end)}
    graph = history_graph(lin, main)
    a, b = _default_pair(lin)
    rows = []
    for run in sorted(lin.runs.values(), key=lambda r: r.pk, reverse=True):
        rows.append({"run": run, "parents": lin.parents[run.pk], "children": lin.children[run.pk],
                     "datasets": datasets_text(run, lin), "result": key_result(run), "main": run.pk in main,
                     "params": [(n, show(v), n in HIGHLIGHTED) for n, v, _ in non_default(run)]})
    data = {"nodes": [{k: n[k] for k in ("id", "stage", "status", "parents", "depth", "main")}
                      for n in graph["nodes"]],
            "edges": [[e["parent"], e["child"]] for e in graph["edges"]]}
    return render(request, "projects/history.html",
                  {"project": project, "graph": graph, "graph_data": data, "rows": rows, "a": a, "b": b,
                   "end": end})


# --- two runs side by side -----------------------------------------------------------------------


def _relation(lin: Lineage, a: StageRun, b: StageRun) -> str:
    if a.pk == b.pk:
        return "The same run twice."
    up_a = {r.pk for r in lin.ancestry(a.pk)}
    up_b = {r.pk for r in lin.ancestry(b.pk)}
    if a.pk in up_b:
        return f"Run #{b.pk} starts from run #{a.pk} (downstream of it)."
    if b.pk in up_a:
        return f"Run #{a.pk} starts from run #{b.pk} (downstream of it)."
    common = up_a & up_b
    if not common:
        return "The two runs share no input run."
    nearest = [pk for pk in common if not any(c in common for c in lin.children[pk])]
    nearest.sort(key=lambda pk: (-lin.depth(pk), pk))
    names = ", ".join(f"#{pk} ({lin.runs[pk].get_stage_display()})" for pk in nearest)
    return f"Both runs start from {names}: they branch there."


def _param_rows(a: StageRun, b: StageRun) -> tuple[list[dict], int]:
    from xtalweb.reports.overrides import defaults

    pa, pb = a.parameters or {}, b.parameters or {}
    da, db = defaults(a.stage) or {}, defaults(b.stage) or {}
    rows, same = [], 0
    for name in sorted(set(pa) | set(pb)):
        va, vb = pa.get(name, ...), pb.get(name, ...)
        if va is not ... and vb is not ... and show(va) == show(vb):
            same += 1
            continue
        default = da.get(name, db.get(name, ...))
        rows.append({"name": name, "a": "—" if va is ... else show(va), "b": "—" if vb is ... else show(vb),
                     "default": "" if default is ... else show(default), "key": name in HIGHLIGHTED})
    return rows, same


def _dataset_rows(project, a: StageRun, b: StageRun, lin: Lineage) -> list[dict]:
    sa, sb = run_datasets(a, lin) or {}, run_datasets(b, lin) or {}
    order = list(project.sweeps.order_by("id").values_list("name", flat=True))
    for run in (a, b):
        order += [r.name for r in sorted(run.sweep_runs.all(), key=lambda r: r.index)]
        listed = [] if run.sweep_runs.all() else ((run.summary or {}).get("sweeps") or [])
        for s in listed:
            if isinstance(s, dict) and s.get("name"):
                order.append(s["name"])
    names = list(dict.fromkeys(order))

    def cell(states, name):
        st = states.get(name)
        if st is None:
            return {"state": "absent", "mark": "—", "reason": "not given to this run"}
        mark = {KEPT: "✓", OUT: "✗"}.get(st.state, "…")
        return {"state": st.state, "mark": mark, "reason": st.reason or st.partly}

    rows = []
    for name in names:
        if name not in sa and name not in sb:
            continue
        ca, cb = cell(sa, name), cell(sb, name)
        rows.append({"name": name, "a": ca, "b": cb, "differs": ca["state"] != cb["state"]})
    # left out by a summary under an identifier no sweep name maps (e.g. another lattice)
    for side, run in (("a", a), ("b", b)):
        for x in excluded_of(run, lin):
            if x["name"] and any(r["name"] == x["name"] for r in rows):
                continue
            label = x["name"] or f"data set {x['id']} ({x['identifier']})"
            row = {"name": label, "a": {"state": "absent", "mark": "", "reason": ""},
                   "b": {"state": "absent", "mark": "", "reason": ""}, "differs": True}
            row[side] = {"state": OUT, "mark": "✗", "reason": x["reason"]}
            rows.append(row)
    return rows


def _scalars(summary: dict) -> dict:
    return {k: v for k, v in (summary or {}).items()
            if isinstance(v, (str, int, float, bool)) or v is None}


def _summary_rows(a: StageRun, b: StageRun) -> list[dict]:
    xa, xb = _scalars(a.summary), _scalars(b.summary)
    rows = []
    for k in sorted(set(xa) | set(xb)):
        va, vb = xa.get(k, ...), xb.get(k, ...)
        if all(v is None or v is ... for v in (va, vb)):
            continue

        def fmt(v):
            if v is ...:
                return "—"
            if isinstance(v, float):
                return f"{v:.4g}"
            return show(v)
        rows.append({"name": k, "a": fmt(va), "b": fmt(vb), "differs": fmt(va) != fmt(vb)})
    return rows


def _merging_rows(stats_a: dict, stats_b: dict) -> list[list]:
    from xtalweb.reports.scale import SUMMARY_ROWS, _cell

    parts = [(s.get("overall") or {}, s.get("low") or {}, s.get("high") or {}) if s else None
             for s in (stats_a, stats_b)]
    rows = []
    for title, key, spec in SUMMARY_ROWS:
        row = [title]
        for k in range(3):  # overall, low, high: A then B
            for p in parts:
                if p is not None:
                    row.append(_cell(p[k], key, spec))
        rows.append(row)
    return rows


def _overlay_figure(a: StageRun, b: StageRun) -> dict | None:
    """CC½ (left) and ⟨I/σ⟩ (right) against resolution, both runs overlaid."""
    from xtalweb.reports.figures import _num
    from xtalweb.reports.scale import _resolution_axis

    data, xs = [], []
    for run, colour, dash in ((a, "#1f77b4", "solid"), (b, "#ff7f0e", "dash")):
        stats = (run.summary or {}).get("merging_statistics") or {}
        shells = [s for s in stats.get("shells") or [] if s.get("d_min") and s.get("d_max")]
        if not shells:
            continue
        x = [_num(0.5 * (1.0 / float(s["d_max"]) ** 2 + 1.0 / float(s["d_min"]) ** 2), 6) for s in shells]
        xs += x
        text = [f"{float(s['d_max']):.2f}–{float(s['d_min']):.2f} Å" for s in shells]
        label = f"#{run.pk} {run.get_stage_display()}"
        for key, name, axis in (("cc_half", "CC½", ""), ("i_over_sigma", "⟨I/σ⟩", "2")):
            data.append({"type": "scatter", "mode": "lines+markers", "name": f"{label}: {name}",
                         "legendgroup": label, "x": x, "y": [_num(s.get(key), 4) for s in shells], "text": text,
                         "xaxis": f"x{axis}", "yaxis": f"y{axis}",
                         "hovertemplate": "%{text}: %{y}<extra>" + f"{label}: {name}" + "</extra>",
                         "line": {"color": colour, "dash": dash}})
    if not data:
        return None
    axis = _resolution_axis(xs)
    return {"id": "compare_resolution", "title": "CC½ and ⟨I/σ⟩ against resolution", "data": data,
            "layout": {"grid": {"rows": 1, "columns": 2, "pattern": "independent", "xgap": 0.12},
                       "height": 460, "margin": {"t": 70, "b": 60},
                       "legend": {"orientation": "h", "x": 0, "y": 1.2, "yanchor": "bottom"},
                       "xaxis": dict(axis), "xaxis2": dict(axis),
                       "yaxis": {"title": {"text": "CC½ (σ-τ)"}}, "yaxis2": {"title": {"text": "⟨I/σ(I)⟩"},
                                                                           "rangemode": "tozero"}}}


def _run_or_404(project, value) -> StageRun:
    try:
        run_id = int(value)
    except (TypeError, ValueError):
        raise Http404("No such run") from None
    return get_object_or_404(StageRun.objects.only("pk"), pk=run_id, project=project)


@login_required
@require_GET
def compare_runs(request, pk: int):
    project = get_project_for_user(request, pk)
    if not request.GET.get("a") or not request.GET.get("b"):
        messages.info(request, "Pick two runs to compare (A and B).")
        return redirect("project_history", pk=project.pk)
    a, b = _run_or_404(project, request.GET["a"]), _run_or_404(project, request.GET["b"])
    lin = Lineage(project)
    a, b = lin.runs[a.pk], lin.runs[b.pk]
    params, n_same = _param_rows(a, b)
    datasets = _dataset_rows(project, a, b, lin)
    stats_a = (a.summary or {}).get("merging_statistics") or {}
    stats_b = (b.summary or {}).get("merging_statistics") or {}
    stats_a, stats_b = (stats_a if stats_a.get("overall") else None), (stats_b if stats_b.get("overall") else None)
    merging_cols = [r for r, s in ((a, stats_a), (b, stats_b)) if s]
    figure = _overlay_figure(a, b)
    counts = []
    for run in (a, b):
        given, left = given_and_left(run, lin)
        counts.append({"run": run, "given": given, "left": left, "kept": given - left})
    return render(request, "projects/compare.html", {
        "project": project, "a": a, "b": b, "relation": _relation(lin, a, b), "params": params, "n_same": n_same,
        "datasets": datasets, "n_differ": sum(1 for r in datasets if r["differs"]), "counts": counts,
        "summary_rows": _summary_rows(a, b),
        "merging_rows": _merging_rows(stats_a, stats_b) if merging_cols else [], "merging_cols": merging_cols,
        "figures": [figure] if figure else [],
        "runs": sorted(lin.runs.values(), key=lambda r: r.pk, reverse=True),
    })


# --- the fate of every data set ------------------------------------------------------------------


def _fate_context(project, lin: Lineage, table, **extra) -> dict:
    n_out = {}
    for k, col in enumerate(table.columns):
        n_out[k] = sum(1 for row in table.rows if row.cells[k].state in (OUT, NOT_GIVEN))
    columns = [{"col": c, "n_out": n_out[k],
                "n_kept": sum(1 for row in table.rows if row.cells[k].state == KEPT)}
               for k, c in enumerate(table.columns)]
    return {"project": project, "table": table, "columns": columns, **extra}


@login_required
@require_GET
def project_datasets(request, pk: int):
    project = get_project_for_user(request, pk)
    lin = Lineage(project)
    end = lin.main_end()
    line = lin.line(end)
    table = fate_table(project, line, placeholders=True, lin=lin)
    others = [r for r in lin.leaves() if end is None or r.pk != end.pk]
    return render(request, "projects/datasets.html", _fate_context(
        project, lin, table, end=end, others=others, warnings=leave_out_warnings(line, lin=lin), run=None))


@login_required
@require_GET
def run_datasets_view(request, pk: int, run_id: int):
    project = get_project_for_user(request, pk)
    run = get_object_or_404(StageRun, pk=run_id, project=project)
    lin = Lineage(project)
    line = lin.line(lin.runs[run.pk])
    table = fate_table(project, line, lin=lin)
    return render(request, "projects/datasets.html", _fate_context(
        project, lin, table, end=lin.runs[run.pk], others=[], warnings=leave_out_warnings(line, lin=lin), run=run,
        project_url=reverse("project_datasets", args=[project.pk])))
