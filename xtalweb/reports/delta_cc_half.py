"""The compute_delta_cchalf report, drawn from the run's stored summary only.

Tables: what the filtering did (cycles, data sets and observations kept, CC½ before and
after, the re-estimated d_min); the data sets sorted by ΔCC½ as the DIALS many-crystal
tutorial lists them (×100, as dials.compute_delta_cchalf prints them), each with its
sweep and the cycle that removed it, one checkbox each ("Scale again without these":
a new scale run from the same cosym run without the ticked data sets; those the run
removed come ticked); one row per cycle (mean, σ, cutoff, removals); in image-group
mode the image groups removed or below the cutoff inside a sweep.

Figures: ΔCC½ per data set as bars, sorted, with the cutoff line (mean − stdcutoff·σ, or
the user's cutoff) and the removed data sets in another colour, one chart per cycle; in
image-group mode the bars are per data set (the cutoff applies to image groups) and a
heat map shows ΔCC½ per data set × image group, the removed groups crossed.
"""

from __future__ import annotations

from django.urls import reverse

from .cosym import _sweep_names, _table
from .figures import _COLOURS, _num
from .registry import report

KEPT, REMOVED, REMOVED_LATER = _COLOURS[0], _COLOURS[3], _COLOURS[1]

TERMINATION = {"no_more_removed": "nothing more below the cutoff", "max_cycles": "reached max_cycles",
               "max_percent_removed": "reached max_percent_removed",
               "too_few_groups": "fewer than two data sets (groups) left"}


def pct(value, digits: int = 3):
    """A ΔCC½ or CC½ fraction ×100, as DIALS prints it; None when missing."""
    v = _num(value, 12)
    return None if v is None else round(100.0 * v, digits)


def _pct_text(value, digits: int = 3) -> str | None:
    v = pct(value, 12)
    return None if v is None else f"{v:.{digits}f}"


def _label(d: dict, names: dict) -> str:
    name = names.get(d.get("identifier"))
    return f"{d.get('id')}: {name}" if name else str(d.get("id"))


def _first_values(s: dict) -> dict[int, float | None]:
    """ΔCC½ of each data set in the first cycle (all data sets are there)."""
    out = {}
    for d in s.get("datasets") or []:
        by = d.get("delta_cc_half_by_cycle") or []
        out[int(d["id"])] = by[0] if by else d.get("delta_cc_half")
    return out


def bar_figure(fig_id: str, title: str, rows: list[dict], names: dict, cycle_of: dict, *, cutoff=None,
               mean=None, cutoff_label: str = "cutoff", cycle: int | None = None) -> dict:
    """Bars of ΔCC½ ×100, sorted from the lowest; kept / removed in this cycle / removed
    later in different colours; the cutoff (and the mean) as horizontal lines."""
    rows = sorted((r for r in rows if r.get("delta_cc_half") is not None), key=lambda r: r["delta_cc_half"])
    labels = [_label(r, names) for r in rows]
    groups = {"kept": [], "removed": [], "removed in a later cycle": []}
    for r, label in zip(rows, labels):
        c = cycle_of.get(int(r["id"]))
        if c is None:
            groups["kept"].append((r, label))
        elif cycle is None or c <= cycle:
            groups["removed"].append((r, label))
        else:
            groups["removed in a later cycle"].append((r, label))
    data = []
    for (name, items), colour in zip(groups.items(), (KEPT, REMOVED, REMOVED_LATER)):
        if not items:
            continue
        data.append({"type": "bar", "name": name, "x": [label for _, label in items],
                     "y": [pct(r["delta_cc_half"], 4) for r, _ in items], "marker": {"color": colour},
                     "customdata": [[cycle_of.get(int(r["id"]))] for r, _ in items],
                     "hovertemplate": "%{x}: ΔCC½ %{y}<extra>" + name + "</extra>"})
    shapes, annotations = [], []
    for value, name, colour, dash in ((cutoff, cutoff_label, REMOVED, "dash"), (mean, "mean", "#5f6b7a", "dot")):
        y = pct(value, 4)
        if y is None:
            continue
        shapes.append({"type": "line", "name": name, "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
                       "line": {"color": colour, "dash": dash, "width": 1.5}})
        annotations.append({"xref": "paper", "x": 1.005, "y": y, "xanchor": "left", "yanchor": "middle",
                            "text": f"{name.split(' ')[0]} {y:.3f}", "showarrow": False,
                            "font": {"color": colour, "size": 11}})
    return {"id": fig_id, "title": title, "data": data,
            "layout": {"barmode": "overlay", "margin": {"t": 30, "r": 110},
                       "legend": {"orientation": "h", "y": -0.25},
                       "xaxis": {"title": {"text": "data set"}, "type": "category",
                                 "categoryorder": "array", "categoryarray": labels},
                       "yaxis": {"title": {"text": "ΔCC½ (×100)"}, "zeroline": True},
                       "shapes": shapes, "annotations": annotations}}


def heatmap_figure(s: dict, names: dict) -> dict | None:
    """ΔCC½ ×100 per data set × image group (the first cycle's groups); removed groups crossed."""
    cycles = s.get("cycles") or []
    if not cycles:
        return None
    table = [r for r in cycles[0].get("table") or [] if r.get("image_range")]
    if not table:
        return None
    columns = sorted({tuple(r["image_range"]) for r in table})
    col_label = {c: f"{c[0]}–{c[1]}" for c in columns}
    sets = {int(d["id"]): d for d in s.get("datasets") or []}
    ids = sorted({int(r["id"]) for r in table})
    rows_label = [_label(sets.get(k, {"id": k}), names) for k in ids]
    z = [[None] * len(columns) for _ in ids]
    where = {k: n for n, k in enumerate(ids)}
    col_index = {c: n for n, c in enumerate(columns)}
    for r in table:
        z[where[int(r["id"])]][col_index[tuple(r["image_range"])]] = pct(r.get("delta_cc_half"), 4)
    removed = [(x, c["cycle"]) for c in cycles for x in c.get("removed") or [] if x.get("image_range")]
    data = [{"type": "heatmap", "name": "ΔCC½", "x": [col_label[c] for c in columns], "y": rows_label, "z": z,
             "colorscale": "RdBu", "reversescale": True, "zmid": 0,  # below 0 red, above blue
             "colorbar": {"title": {"text": "ΔCC½ ×100"}},
             "hovertemplate": "%{y}, images %{x}: ΔCC½ %{z}<extra></extra>"}]
    if removed:
        data.append({"type": "scatter", "mode": "markers", "name": "removed",
                     "x": [f"{x['image_range'][0]}–{x['image_range'][1]}" for x, _ in removed],
                     "y": [_label(sets.get(int(x["id"]), {"id": x["id"]}), names) for x, _ in removed],
                     "text": [f"cycle {c}" for _, c in removed],
                     "marker": {"symbol": "x", "size": 12, "color": "#000"},
                     "hovertemplate": "%{y}, images %{x}: removed in %{text}<extra></extra>"})
    return {"id": "delta_cc_half_groups", "title": "ΔCC½ per data set and image group", "data": data,
            "layout": {"margin": {"t": 30}, "height": max(320, 28 * len(ids) + 140),
                       "xaxis": {"title": {"text": "images"}, "type": "category", "categoryorder": "array",
                                 "categoryarray": [col_label[c] for c in columns]},
                       "yaxis": {"title": {"text": "data set"}, "type": "category", "autorange": "reversed",
                                 "automargin": True},
                       "legend": {"orientation": "h", "y": -0.2}}}


def _summary_table(s: dict) -> dict:
    res = s.get("resolution") or {}
    if res.get("available"):
        d, err = _num(res.get("d_min"), 12), _num(res.get("d_min_error"), 12)
        rec = (res.get("recommended") or {}).get("message")
        d_text = (f"{d:.2f}" + (f" ± {err:.2f}" if err is not None else "") + " Å") if d is not None else (rec or "—")
    else:
        d_text = f"not estimated: {res.get('reason') or '—'}"
    first = (s.get("cycles") or [{}])[0]
    cut_from = "cutoff=" if first.get("cutoff_from") == "cutoff" else f"mean − {s.get('stdcutoff'):g}σ"
    unit = "data sets" if s.get("mode") == "dataset" else "observations"
    last = (s.get("cycles") or [{}])[-1]
    rows = [["Mode", s.get("mode")],
            ["Cycles", f"{len(s.get('cycles') or [])} of at most {s.get('max_cycles')}: "
                       f"{TERMINATION.get(s.get('termination_reason'), s.get('termination_reason'))}"],
            ["Data sets kept", f"{s.get('n_datasets')} of {s.get('n_datasets_in')}"],
            ["Observations kept", f"{s.get('n_observations')} of {s.get('n_observations_in')}"],
            [f"Removed (% of {unit}, at most {s.get('max_percent_removed'):g})",
             _fmt_pct(last.get("percent_removed"))],
            ["CC½ before → after (×100)", f"{_pct_text(s.get('cc_half_in')) or '—'} → "
                                          f"{_pct_text(s.get('cc_half_out')) or '—'}"],
            ["Cutoff of cycle 1 (×100)", f"{_pct_text(first.get('cutoff')) or '—'} ({cut_from}; mean "
                                         f"{_pct_text(first.get('mean')) or '—'}, "
                                         f"σ {_pct_text(first.get('sd')) or '—'})"],
            ["Rescaled", "yes" if s.get("rescaled") else "no (rescale filtered.* with xtal scale)"],
            ["d_min re-estimated after filtering", d_text],
            ["Space group", s.get("space_group")]]
    return _table("filtering", "ΔCC½ filtering", ["Quantity", "Value"], rows)


def _fmt_pct(v) -> str | None:
    v = _num(v, 12)
    return None if v is None else f"{v:.1f} %"


def _datasets_table(run, s: dict, names: dict) -> dict:
    first = _first_values(s)
    multi = len(s.get("cycles") or []) > 1
    datasets = sorted(s.get("datasets") or [], key=lambda d: (first.get(int(d["id"])) is None,
                                                               first.get(int(d["id"])) or 0.0))
    rows, status = [], []
    for d in datasets:
        row = [d["id"], names.get(d.get("identifier")) or d.get("identifier"),
               _pct_text(first.get(int(d["id"])))]
        if multi:
            row.append(_pct_text(d.get("delta_cc_half")))
        row += [d.get("removed_in_cycle"), d.get("reason")]
        rows.append(row)
        status.append("bad" if d.get("removed_in_cycle") else "succeeded")
    columns = ["Data set", "Sweep", "ΔCC½ ×100" + (" (cycle 1)" if multi else "")]
    if multi:
        columns.append("ΔCC½ ×100 (last cycle it was in)")
    columns += ["Removed in cycle", "Reason"]
    table = _table("datasets", "Data sets by ΔCC½ (lowest first)", columns, rows, status,
                   note="ΔCC½ = CC½ of all data − CC½ without the data set (σ-τ, averaged over resolution shells), "
                        "×100 as dials.compute_delta_cchalf prints it: the lower, the worse the data set agrees. "
                        "Data set numbers are positions in this run's input (scaled.expt).")
    if run.status in ("succeeded", "partial") and len(rows) >= 2:
        table["select"] = {
            "action": reverse("delta_cc_half_drop", args=[run.project_id, run.pk]), "name": "exclude_datasets",
            "button": "Scale again without these",
            "option": {"name": "then_merge", "label": "then merge", "checked": True},
            "checked": [d["id"] for d in datasets if d.get("removed_in_cycle")],
            "help": "Starts a new scale run from the cosym run before this run's scale run, with the ticked data "
                    "sets added to its exclude_datasets (those this run removed come ticked); this run and its "
                    "scale run stay."}
    return table


def _cycles_table(s: dict) -> dict:
    rows = []
    for c in s.get("cycles") or []:
        removed = ", ".join(str(x["id"]) + (f" ({x['image_range'][0]}–{x['image_range'][1]})"
                                            if x.get("image_range") else "") for x in c.get("removed") or [])
        rows.append([c.get("cycle"), c.get("n_datasets"), c.get("n_groups"), c.get("n_observations"),
                     _pct_text(c.get("cc_half_before")), _pct_text(c.get("mean")), _pct_text(c.get("sd")),
                     _pct_text(c.get("cutoff")) + (" (cutoff=)" if c.get("cutoff_from") == "cutoff" else "")
                     if c.get("cutoff") is not None else None,
                     c.get("n_below_cutoff"), removed or "—", _pct_text(c.get("cc_half_after")),
                     _fmt_pct(c.get("percent_removed")), "yes" if c.get("rescaled_after") else "no"])
    return _table("cycles", "Cycles", ["Cycle", "Data sets", "Groups", "Observations", "CC½ ×100", "Mean ΔCC½",
                                       "σ", "Cutoff", "Below cutoff", "Removed", "CC½ after", "% removed",
                                       "Rescaled after"], rows,
                  note="ΔCC½ values ×100. Cutoff: mean − stdcutoff·σ of the cycle's values, or cutoff= if given; "
                       "removals stop at max_percent_removed.")


def _groups_table(s: dict, names: dict) -> dict:
    rows, status = [], []
    for c in s.get("cycles") or []:
        for x in c.get("removed") or []:
            lo, hi = x.get("image_range") or (None, None)
            rows.append([x["id"], names.get(x.get("identifier")) or x.get("identifier"), f"{lo}–{hi}",
                         _pct_text(x.get("delta_cc_half")), f"removed in cycle {c['cycle']}"])
            status.append("bad")
        for x in c.get("not_at_edge") or []:
            lo, hi = x.get("image_range") or (None, None)
            rows.append([x["id"], names.get(x.get("identifier")) or x.get("identifier"), f"{lo}–{hi}",
                         _pct_text(x.get("delta_cc_half")), f"below the cutoff in cycle {c['cycle']}, kept: "
                                                            "not at an end of its sweep"])
            status.append("succeeded")
    return _table("image_groups", "Image groups removed or below the cutoff",
                  ["Data set", "Sweep", "Images", "ΔCC½ ×100", "Outcome"], rows, status)


@report("compute_delta_cchalf")
def delta_cc_half_report(run, rows: list[dict]) -> dict:
    s = run.summary or {}
    if not s.get("datasets"):
        return {"tables": [], "figures": []}
    names = _sweep_names(run)
    cycle_of = {int(d["id"]): d.get("removed_in_cycle") for d in s["datasets"]}
    cycles = s.get("cycles") or []
    image_group = s.get("mode") == "image_group"
    tables = [_summary_table(s), _datasets_table(run, s, names), _cycles_table(s)]
    figures = []
    first = _first_values(s)
    if image_group:
        tables.append(_groups_table(s, names))
        bars = [{"id": d["id"], "identifier": d.get("identifier"), "delta_cc_half": first.get(int(d["id"]))}
                for d in s["datasets"]]
        figures.append(bar_figure("delta_cc_half", "ΔCC½ per data set (the cutoff applies to image groups: see the "
                                  "heat map)", bars, names, cycle_of))
        heat = heatmap_figure(s, names)
        if heat is not None:
            figures.append(heat)
    else:
        for c in cycles:
            label = "cutoff=" if c.get("cutoff_from") == "cutoff" else f"mean − {s.get('stdcutoff'):g}σ"
            fig_id = "delta_cc_half" if c["cycle"] == 1 else f"delta_cc_half_cycle_{c['cycle']}"
            title = "ΔCC½ per data set" + (f", cycle {c['cycle']}" if len(cycles) > 1 else "")
            figures.append(bar_figure(fig_id, title, c.get("table") or [], names, cycle_of, cutoff=c.get("cutoff"),
                                      mean=c.get("mean"), cutoff_label=f"cutoff ({label})", cycle=c["cycle"]))
    return {"tables": tables, "figures": figures}
