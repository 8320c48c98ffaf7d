"""The cluster report (issue 14), drawn from the run's stored summary only.

Tables: the clustering in numbers, the unit-cell clusters, the data sets (their groups in
each tree). Figures: the unit-cell dendrogram (NCDist, the threshold line), the
correlation and the cos-angle clustering — each a dendrogram over its heat map, rows and
columns in the dendrogram's leaf order — and the data sets' vectors in the embedding of
the correlation matrix (first two dimensions), coloured by their cos-angle group.
Branches joined below 70 % of a tree's top height share a colour (scipy's rule; the
unit-cell tree: its clusters at the threshold); a dot marks each merge node.

Click to merge: a click on a node's dot picks the node's data sets, a lasso in the
embedding picks the points inside; the bar at the foot of the window then offers "Scale
and merge these N data sets" (``static/js/cluster.js``). The candidate clusters table
(``templates/reports/_cluster_merge.html``) has that button on every row. Each posts the
identifiers to ``cluster_views.cluster_merge``; a row whose data sets were already sent
off links the scale and merge runs and the comparison with the clustered scale run.

Drawing a tree uses only its stored linkage rows and leaf order: leaf k of the order
sits at x = 5 + 10k, a node midway between its two children at its height (scipy's
dendrogram layout), so every branch is known by its node.
"""

from __future__ import annotations

from django.urls import reverse

from .cosym import _sweep_names, _table
from .figures import _COLOURS, _num
from .registry import report

GREY = "#8c959f"
#: above this many data sets the axes show no names (the hover does)
MAX_TICK_LABELS = 40
#: names listed in a node's hover before "…"
MAX_HOVER_NAMES = 12


def _colour(group: int) -> str:
    return _COLOURS[(int(group) - 1) % len(_COLOURS)]


def tree_layout(tree: dict, n: int) -> dict:
    """Positions of a stored tree (``dendrogram`` with ``linkage`` and ``leaves``): ``x`` and
    ``height`` of every node (leaves 0 … n − 1 at height 0), ``members`` (data set ids) of
    every node, and ``branches``: ``(node, child a, child b)`` per merge."""
    d = tree.get("dendrogram") or {}
    x = {leaf: 5.0 + 10.0 * k for k, leaf in enumerate(d.get("leaves") or [])}
    height = {k: 0.0 for k in range(n)}
    members = {k: [k] for k in range(n)}
    branches = []
    for k, (a, b, h, _) in enumerate(d.get("linkage") or []):
        node, a, b = n + k, int(a), int(b)
        x[node] = 0.5 * (x[a] + x[b])
        height[node] = float(h)
        members[node] = sorted(members[a] + members[b])
        branches.append((node, a, b))
    return {"x": x, "height": height, "members": members, "branches": branches}


def _names_text(ids, labels: dict) -> str:
    shown = [labels[k] for k in ids[:MAX_HOVER_NAMES]]
    return ", ".join(shown) + (f", … ({len(ids) - MAX_HOVER_NAMES} more)" if len(ids) > MAX_HOVER_NAMES else "")


def dendrogram_traces(tree: dict, n: int, labels: dict, groups: list[int], threshold: float | None,
                      unit: str, yaxis: str = "y") -> list[dict]:
    """Branches (one line trace per colour, grey above the colour threshold) and the nodes'
    dots, whose ``customdata`` are the nodes' data set ids."""
    lay = tree_layout(tree, n)
    x, h, members = lay["x"], lay["height"], lay["members"]
    lines: dict[str, tuple[list, list]] = {}
    for node, a, b in lay["branches"]:
        group = groups[members[node][0]]
        coloured = threshold is not None and h[node] < threshold and groups[members[node][-1]] == group
        colour = _colour(group) if coloured else GREY
        xs, ys = lines.setdefault(colour, ([], []))
        xs += [x[a], x[a], x[b], x[b], None]
        ys += [_num(h[a], 6), _num(h[node], 6), _num(h[node], 6), _num(h[b], 6), None]
    traces = [{"type": "scatter", "mode": "lines", "x": xs, "y": ys, "line": {"color": colour, "width": 1.6},
               "hoverinfo": "skip", "showlegend": False, "yaxis": yaxis} for colour, (xs, ys) in lines.items()]
    nodes = [node for node, _, _ in lay["branches"]]
    traces.append({
        "type": "scatter", "mode": "markers", "name": "cluster nodes", "showlegend": False, "yaxis": yaxis,
        "x": [x[node] for node in nodes], "y": [_num(h[node], 6) for node in nodes],
        "customdata": [members[node] for node in nodes],
        "text": [f"node {node}: {len(members[node])} data sets, {unit} {h[node]:.4g}<br>"
                 f"{_names_text(members[node], labels)}<br><b>click to choose these data sets</b>" for node in nodes],
        "hovertemplate": "%{text}<extra></extra>",
        "marker": {"size": 9, "color": "#fff", "line": {"color": "#1d2430", "width": 1.5}}})
    return traces


def _leaf_axis(tree: dict, labels: dict, n: int, **extra) -> dict:
    leaves = (tree.get("dendrogram") or {}).get("leaves") or []
    axis = {"range": [0, 10 * max(n, 1)], "showgrid": False, "zeroline": False,
            "tickvals": [5 + 10 * k for k in range(len(leaves))], "ticktext": [labels[k] for k in leaves],
            "showticklabels": n <= MAX_TICK_LABELS, "tickangle": -45 if n > 8 else 0, "automargin": True}
    axis.update(extra)
    return {k: v for k, v in axis.items() if v is not None}


def unit_cell_figure(forms: dict, n: int, labels: dict) -> dict | None:
    if not (forms.get("dendrogram") or {}).get("linkage"):
        return None
    top = max(r[2] for r in forms["dendrogram"]["linkage"])
    threshold = forms.get("threshold")
    data = dendrogram_traces(forms, n, labels, forms.get("groups") or [1] * n, threshold, "NCDist (Å²)")
    shapes = []
    if threshold is not None and threshold <= 1.1 * top:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": threshold, "y1": threshold,
                       "line": {"color": _COLOURS[3], "dash": "dash", "width": 1.5}})
    title = f"Unit-cell clustering (NCDist, single linkage; clusters cut at {threshold:g} Å²" + \
        ("" if shapes else f", above the whole tree ({top:.0f} Å²)") + ")"
    return {"id": "unit_cell", "title": title, "data": data,
            "layout": {"height": 380, "margin": {"t": 20, "b": 90}, "hovermode": "closest",
                       "xaxis": _leaf_axis(forms, labels, n, title={"text": "data set"}),
                       "yaxis": {"title": {"text": "NCDist (Å²)"}, "rangemode": "tozero"}, "shapes": shapes}}


def tree_and_matrix_figure(fig_id: str, title: str, tree: dict, matrix_key: str, n: int, labels: dict,
                           unit: str, z_title: str) -> dict | None:
    """A dendrogram (top) over the heat map of its matrix (rows and columns in leaf order)."""
    if not (tree.get("dendrogram") or {}).get("linkage"):
        return None
    data = dendrogram_traces(tree, n, labels, tree.get("groups") or [1] * n, tree.get("colour_threshold"), unit)
    leaves = tree["dendrogram"]["leaves"]
    matrix = tree.get(matrix_key)
    pos = [5 + 10 * k for k in range(len(leaves))]
    layout = {"hovermode": "closest", "margin": {"t": 20, "b": 90, "l": 90}, "showlegend": False,
              "yaxis": {"title": {"text": unit}, "rangemode": "tozero"}}
    if matrix:
        common = tree.get("n_common")
        text = [[f"{labels[i]} × {labels[j]}" + (f" ({common[i][j]} common reflections)" if common else "")
                 for j in leaves] for i in leaves]
        z = [[_num(matrix[i][j], 4) for j in leaves] for i in leaves]
        finite = [v for row in z for v in row if v is not None]
        lowest = min(finite) if finite and min(finite) < 1.0 else 0.0      # the colours span the values there are
        side = max(360, min(900, 16 * n))
        split = round(side / (side + 260), 4)
        data.append({"type": "heatmap", "x": pos, "y": pos, "z": z, "text": text, "xaxis": "x", "yaxis": "y2",
                     "colorscale": "Viridis", "zmax": 1.0, "zmin": lowest, "hoverongaps": False,
                     "colorbar": {"title": {"text": z_title}, "len": split - 0.03, "y": 0.0, "yanchor": "bottom"},
                     "hovertemplate": "%{text}<br>" + z_title + " %{z}<extra></extra>"})
        layout.update(height=side + 260, xaxis=_leaf_axis(tree, labels, n, anchor="y2"),
                      yaxis2=_leaf_axis(tree, labels, n, domain=[0.0, split - 0.03], autorange="reversed",
                                        tickangle=0, range=None))
        layout["yaxis"]["domain"] = [split + 0.02, 1.0]
    else:
        layout.update(height=380, xaxis=_leaf_axis(tree, labels, n, title={"text": "data set"}))
    return {"id": fig_id, "title": title, "data": data, "layout": layout}


def embedding_figure(cos: dict, n: int, labels: dict) -> dict | None:
    coords = cos.get("coordinates") or []
    if len(coords) < n or not n:
        return None
    groups = cos.get("groups") or [1] * n
    data = []
    for g in sorted(set(groups)):
        ids = [k for k in range(n) if groups[k] == g]
        data.append({"type": "scatter", "mode": "markers", "name": f"group {g}", "x": [coords[k][0] for k in ids],
                     "y": [coords[k][1] for k in ids], "customdata": ids, "text": [labels[k] for k in ids],
                     "hovertemplate": "%{text}<extra>%{fullData.name}</extra>",
                     "marker": {"size": 10, "color": _colour(g), "line": {"color": "#1d2430", "width": 0.5}}})
    lim = round(1.15 * max([abs(v) for k in range(n) for v in coords[k][:2] if v is not None] + [1e-3]), 4)
    return {"id": "embedding", "title": f"Embedding of the correlation matrix (first two of {cos.get('dimensions')} "
                                        "dimensions, the origin in the middle: angles are true): lasso data sets to "
                                        "choose them",
            "data": data,
            "layout": {"height": 480, "margin": {"t": 20}, "dragmode": "lasso", "hovermode": "closest",
                       "xaxis": {"title": {"text": "x₁"}, "zeroline": True, "range": [-lim, lim],
                                 "constrain": "domain"},
                       "yaxis": {"title": {"text": "x₂"}, "zeroline": True, "range": [-lim, lim],
                                 "scaleanchor": "x", "constrain": "domain"},
                       "legend": {"title": {"text": "cos-angle group"}}}}


def _pct(fraction, spec: str = ".1f"):
    v = _num(fraction, 12)
    return None if v is None else format(100.0 * v, spec)


def _fmt(value, spec: str):
    v = _num(value, 12)
    return None if v is None else format(v, spec)


def _summary_table(s: dict) -> dict:
    cos = s.get("cos_angle") or {}
    rows = [["Data sets", s.get("n_datasets")], ["Scaled observations", s.get("n_observations")],
            ["Space group", s.get("space_group")],
            ["Median unit cell (Å, °)", ", ".join(f"{v:.2f}" for v in s.get("unit_cell") or [])],
            ["Resolution (Å)", f"{_fmt(s.get('d_max'), '.2f')} – {_fmt(s.get('d_min'), '.2f')}"],
            ["Unit-cell clusters", len((s.get("unit_cell_clustering") or {}).get("clusters") or [])],
            ["Embedding dimensions", cos.get("dimensions")],
            ["Clusters of", s.get("cluster_method")],
            ["Candidate clusters", f"{s.get('n_listed')} listed of {s.get('n_candidates')}"],
            ["Selected (xia2.multiplex would merge)", s.get("n_selected")]]
    if s.get("no_observations"):
        rows.append(["Data sets without a usable observation", ", ".join(map(str, s["no_observations"]))])
    note = (s.get("matrices") or {}).get("note") or None
    return _table("clustering", "Clustering", ["Quantity", "Value"], rows, note=note)


def _unit_cell_table(forms: dict, labels: dict) -> dict:
    rows = [[c["cluster_id"], c["size"], ", ".join(f"{v:.2f}" for v in c["median_cell"]),
             _names_text(c["members"], labels)] for c in forms.get("clusters") or []]
    return _table("unit_cell_clusters", "Unit-cell clusters", ["Cluster", "Data sets", "Median cell (Å, °)",
                                                               "Members"], rows)


def _datasets_table(s: dict, names: dict) -> dict:
    groups = [(s.get(k) or {}).get("groups") or [] for k in ("unit_cell_clustering", "correlation", "cos_angle")]
    rows = []
    for d in s.get("datasets") or []:
        k = d["id"]
        rows.append([k, names.get(d.get("identifier")) or d.get("identifier"), d.get("n_observations"),
                     _fmt(d.get("d_min"), ".2f"), ", ".join(f"{v:.2f}" for v in d.get("unit_cell") or [])]
                    + [g[k] if k < len(g) else None for g in groups])
    return _table("datasets", "Data sets", ["Data set", "Sweep", "Observations", "d_min (Å)", "Unit cell (Å, °)",
                                            "Unit-cell cluster", "Correlation group", "Cos-angle group"], rows,
                  note="Data sets are numbered by their position in this run's input (the scale run's scaled.expt).")


def _run_link(run) -> dict:
    return {"id": run.pk, "status": run.status, "url": run.get_report_url()}


def _started(run, identifier_rows: list[list[str]]) -> tuple[str | None, list[dict | None]]:
    """The merge form's URL (None when the input runs are gone), and per row the scale (and
    merge) run already started for exactly those data sets, with the comparison link."""
    from xtalweb.projects.cluster_views import ChoiceError, excluded_for, inputs_of

    if run.status not in ("succeeded", "partial"):
        return None, [None] * len(identifier_rows)
    try:
        scale, cosym = inputs_of(run)
    except ChoiceError:
        return None, [None] * len(identifier_rows)
    made = {}
    for r in run.project.runs.filter(stage="scale", parents=cosym, pk__gt=run.pk).prefetch_related("children"):
        made.setdefault(tuple(r.parameters.get("exclude_datasets") or ()), r)
    out = []
    for identifiers in identifier_rows:
        try:
            new = made.get(excluded_for(run, scale, identifiers))
        except ChoiceError:
            new = None
        if new is None:
            out.append(None)
            continue
        merge = next((c for c in new.children.all() if c.stage == "merge"), None)
        b = merge if merge is not None and merge.status in ("succeeded", "partial") else new
        out.append({"scale": _run_link(new), "merge": _run_link(merge) if merge is not None else None,
                    "compare_url": reverse("compare_runs", args=[run.project_id]) + f"?a={scale.pk}&b={b.pk}"})
    return reverse("cluster_merge", args=[run.project_id, run.pk]), out


def merge_panel(run, s: dict, labels: dict, names: dict) -> dict:
    clusters = s.get("clusters") or []
    action, started = _started(run, [c.get("identifiers") or [] for c in clusters])
    rows = []
    for c, made in zip(clusters, started):
        rows.append({"name": c.get("name"), "node": c.get("node"), "size": c.get("size"),
                     "members": _names_text(c.get("members") or [], labels), "identifiers": c.get("identifiers") or [],
                     "height": _fmt(c.get("height"), ".3f"), "completeness": _pct(c.get("completeness")),
                     "multiplicity": _fmt(c.get("multiplicity"), ".2f"), "cc_half": _fmt(c.get("cc_half"), ".3f"),
                     "rpim": _fmt(c.get("rpim"), ".3f"), "d_min": _fmt(c.get("d_min"), ".2f"),
                     "selected": bool(c.get("selected")), "reason": c.get("reason") or "", "started": made})
    return {"template": "reports/_cluster_merge.html", "id": "cluster-merge-panel", "action": action, "rows": rows,
            "method": s.get("cluster_method"), "n_listed": s.get("n_listed"), "n_candidates": s.get("n_candidates"),
            "datasets": [{"id": d["id"], "identifier": d.get("identifier"), "name": labels[d["id"]],
                          "sweep": names.get(d.get("identifier")) or ""} for d in s.get("datasets") or []],
            "dendrograms": "figure-unit_cell figure-correlation figure-cos_angle", "embedding": "figure-embedding"}


@report("cluster")
def cluster_report(run, rows: list[dict]) -> dict:
    s = run.summary or {}
    if not s.get("datasets"):
        return {"tables": [], "figures": []}
    n = int(s["n_datasets"])
    names = _sweep_names(run)
    labels = {d["id"]: f"{d['id']}: {names.get(d.get('identifier')) or d.get('identifier')}" for d in s["datasets"]}
    figures = [unit_cell_figure(s.get("unit_cell_clustering") or {}, n, labels),
               tree_and_matrix_figure("correlation", "Correlation clustering (1 − CC of the merged intensities, "
                                      "average linkage) over the correlation matrix", s.get("correlation") or {},
                                      "correlation", n, labels, "1 − CC", "CC"),
               tree_and_matrix_figure("cos_angle", "Cos-angle clustering (1 − cos of the angles between the data "
                                      "sets' vectors, average linkage) over the cos-angle matrix",
                                      s.get("cos_angle") or {}, "cos_angle", n, labels, "1 − cos", "cos"),
               embedding_figure(s.get("cos_angle") or {}, n, labels)]
    return {"tables": [_summary_table(s), _unit_cell_table(s.get("unit_cell_clustering") or {}, labels),
                       _datasets_table(s, names)],
            "figures": [f for f in figures if f is not None],
            "panels": [merge_panel(run, s, labels, names)], "scripts": ["js/cluster.js"]}
