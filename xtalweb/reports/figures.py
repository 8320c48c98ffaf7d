"""Report tables and plotly figures of a StageRun, from its stored summaries only.

Nothing here re-derives science: every number comes from the summary the stage
returned (kept on the StageRun and its SweepRun rows); the only computation is
presentation (spots per image = spots / images, the cell printed with its e.s.d.s by
``processing.models.format_with_sd``, DIALS's ``67.79(3)`` form, a sweep's overall
⟨I/σ⟩ as the count-weighted mean of its resolution bins, and the rule that marks a
badly refined experiment, :data:`RMSD_RULE`).

A report is ``{"stage", "status", "tables": [...], "figures": [...]}``; a table is
``{"id", "title", "columns", "rows", "row_status"}`` (optionally a ``note`` shown under
it and ``highlights``: the rows marked ``bad`` with their reasons) and a figure is plotly's figure
JSON ``{"id", "title", "data", "layout"}`` for ``Plotly.newPlot``.
"""

from __future__ import annotations

import math

from .registry import REPORTS, report


def sweep_rows_of(run) -> list[dict]:
    """Per-sweep summaries ``{index, name, status, error, progress, summary}`` of ``run``:
    the SweepRun rows (live while the run goes on), else the run's stored summary."""
    rows = [{"index": s.index, "name": s.name, "status": s.status, "error": s.error,
             "progress": s.progress, "summary": s.summary or {}} for s in run.sweep_runs.all()]
    if rows:
        return rows
    out = []
    for k, s in enumerate((run.summary or {}).get("sweeps") or []):
        s = dict(s)
        out.append({"index": s.pop("index", k), "name": s.pop("name", f"sweep {k}"),
                    "status": s.pop("status", run.status), "error": s.pop("error", ""),
                    "progress": 1.0, "summary": s})
    return out


def _num(x, digits: int):
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, digits) if math.isfinite(v) else None


def cell_with_sd(cell, sd) -> str:
    """``67.79(3), 67.80(2), …`` — DIALS's way (``format_with_sd``); without e.s.d.s two decimals."""
    if not cell:
        return ""
    if sd and len(sd) == len(cell):
        from processing.models import format_with_sd

        return ", ".join(format_with_sd(float(v), float(e)) for v, e in zip(cell, sd))
    return ", ".join(f"{float(v):.2f}" for v in cell)


# --- find_spots ----------------------------------------------------------------------


@report("find_spots", hidden={"nproc"})
def find_spots_report(run, rows: list[dict]) -> dict:
    traces, table_rows, row_status = [], [], []
    total_images = total_spots = 0
    viewer = viewer_urls(run)
    for r in rows:
        s = r["summary"]
        hist = s.get("histogram") or {}
        if hist.get("image"):
            traces.append({"type": "scatter", "mode": "lines+markers", "name": r["name"],
                           "x": list(hist["image"]), "y": list(hist.get("n_spots") or [])})
            if viewer.get(r["index"]):  # static/js/viewer_links.js: a click opens that image
                traces[-1]["meta"] = {"viewer": viewer[r["index"]] + "&image="}
        n_images, n_spots = s.get("n_images"), s.get("n_spots")
        if r["status"] == "succeeded" and n_images:
            total_images += int(n_images)
            total_spots += int(n_spots or 0)
        per = (n_spots / n_images) if (n_images and n_spots is not None) else None
        table_rows.append([r["name"], n_images, n_spots, _num(per, 1), r["status"], r["error"]])
        row_status.append(r["status"])
    if total_images:
        table_rows.append(["all succeeded sweeps", total_images, total_spots,
                           _num(total_spots / total_images, 1), "", ""])
        row_status.append("total")
    return {
        "tables": [{"id": "spots", "title": "Strong spots",
                    "columns": ["Sweep", "Images", "Spots", "Spots/image", "Status", "Message"],
                    "rows": table_rows, "row_status": row_status}],
        "scripts": ["js/viewer_links.js"],
        "figures": [{"id": "spots_per_image", "title": "Spots per image (click a point to see that image)",
                     "data": traces,
                     "layout": {"title": {"text": "Strong spots per image"},
                                "xaxis": {"title": {"text": "image"}},
                                "yaxis": {"title": {"text": "spots"}, "rangemode": "tozero"},
                                "legend": {"orientation": "h"}, "margin": {"t": 40}}}],
    }


# --- index ---------------------------------------------------------------------------------


def _check_index_symmetry(params) -> None:
    """The known cell and space group fit each other (index checks it before any work)."""
    if params.unit_cell is not None or params.space_group:
        from processing.indexing.known_cell import TargetSymmetry

        TargetSymmetry.make(params.unit_cell, params.space_group)


@report("index", hidden={"nproc"}, check=_check_index_symmetry, web_defaults={
    "joint": ("false", "xtalweb indexes each crystal on its own (one task per sweep); "
                       "true indexes all selected sweeps together as one crystal (DIALS's default)")})
def index_report(run, rows: list[dict]) -> dict:
    table_rows, row_status = [], []
    names, cells, sds = [], [], []
    for r in rows:
        s = r["summary"]
        cell = s.get("unit_cell")
        sd = s.get("unit_cell_sd")
        ok = r["status"] == "succeeded" and cell
        table_rows.append([
            r["name"],
            _num(s.get("percent_indexed"), 1) if ok else None,
            cell_with_sd(cell, sd) if ok else "",
            s.get("space_group") or "" if ok else "",
            _num(s.get("rmsd_x_px"), 3) if ok else None,
            _num(s.get("rmsd_y_px"), 3) if ok else None,
            _num(s.get("rmsd_z_images"), 3) if ok else None,
            r["status"],
            r["error"] or ("" if ok else s.get("reason", "")),
        ])
        row_status.append(r["status"])
        if ok:
            names.append(r["name"])
            cells.append([float(v) for v in cell])
            sds.append([float(v) for v in sd] if sd and len(sd) == 6 else None)

    def traces(cols, labels):
        out = []
        for c, label in zip(cols, labels):
            t = {"type": "scatter", "mode": "markers", "name": label, "x": names,
                 "y": [cell[c] for cell in cells]}
            if any(sd is not None for sd in sds):
                t["error_y"] = {"type": "data", "array": [sd[c] if sd else 0.0 for sd in sds], "visible": True}
            out.append(t)
        return out

    hist = [{"type": "histogram", "name": label, "x": [cell[c] for cell in cells], "opacity": 0.6}
            for c, label in zip(range(3), ("a", "b", "c"))]
    return {
        "tables": [{"id": "indexing", "title": "Indexing per sweep",
                    "columns": ["Sweep", "% indexed", "Unit cell (Å, °)", "Space group", "RMSD X (px)",
                                "RMSD Y (px)", "RMSD Z (images)", "Status", "Message"],
                    "rows": table_rows, "row_status": row_status},
                   bravais_table(rows)],
        "figures": [
            {"id": "cell_lengths", "title": "Unit cell lengths per sweep",
             "data": traces(range(3), ("a", "b", "c")),
             "layout": {"title": {"text": "a, b, c per sweep"}, "xaxis": {"title": {"text": "sweep"}},
                        "yaxis": {"title": {"text": "Å"}}, "margin": {"t": 40}}},
            {"id": "cell_angles", "title": "Unit cell angles per sweep",
             "data": traces(range(3, 6), ("α", "β", "γ")),
             "layout": {"title": {"text": "α, β, γ per sweep"}, "xaxis": {"title": {"text": "sweep"}},
                        "yaxis": {"title": {"text": "°"}}, "margin": {"t": 40}}},
            {"id": "cell_histogram", "title": "Unit cell lengths: histogram",
             "data": hist,
             "layout": {"title": {"text": "Histogram of a, b, c"}, "barmode": "overlay",
                        "xaxis": {"title": {"text": "Å"}}, "yaxis": {"title": {"text": "sweeps"}},
                        "margin": {"t": 40}}},
        ],
    }


def bravais_table(rows: list[dict]) -> dict:
    """Each indexed sweep's Bravais settings (its first lattice), as dials.index prints
    them: metric fit, rmsd, min/max cc of the strong spots' I/σ under the setting's
    operators ("—" for aP or too few symmetry-related pairs), #spots, cell, cb_op."""
    from processing.cli.index import min_max_cc

    out, status = [], []
    for r in rows:
        lattices = (r["summary"] or {}).get("lattices") or []
        if r["status"] != "succeeded" or not lattices:
            continue
        for b in lattices[0].get("bravais_settings") or []:
            cc = min_max_cc(b)
            out.append([r["name"], ("* " if b.get("recommended") else "") + str(b.get("solution")),
                        _num(b.get("metric_fit"), 4), _num(b.get("rmsd"), 3), None if cc == "-/-" else cc,
                        b.get("nspots"), b.get("bravais"), ", ".join(f"{float(v):.2f}" for v in b.get("unit_cell") or []),
                        _num(b.get("volume"), 0), b.get("cb_op")])
            status.append("succeeded")
    return {"id": "bravais", "title": "Bravais settings (first lattice of each sweep)",
            "columns": ["Sweep", "Solution", "Metric fit (°)", "rmsd (mm)", "min/max cc", "#spots", "Lattice",
                        "Unit cell (Å, °)", "Volume (Å³)", "cb_op"],
            "rows": out, "row_status": status,
            "note": "* = recommended (DIALS's rules: rmsd against the aP setting's, metric fit, min cc). min/max cc: "
                    "the lowest and highest correlation of the strong spots' I/σ between indices related by each "
                    "operator of the setting's lowest-symmetry space group (with more than 10 pairs)."}


# --- refine ----------------------------------------------------------------------------------

#: a sweep is "badly refined" when an RMSD exceeds one of these absolute limits …
RMSD_LIMIT_PX = 0.5
RMSD_LIMIT_IMAGES = 0.5
#: … or is more than this many times the ensemble's median of that RMSD (with ≥ 3 experiments)
RMSD_MEDIAN_FACTOR = 2.0
RMSD_MEDIAN_MIN_EXPERIMENTS = 3
RMSD_RULE = (f"A row is highlighted (badly refined) when RMSD_X or RMSD_Y is above {RMSD_LIMIT_PX:g} px, "
             f"RMSD_Z is above {RMSD_LIMIT_IMAGES:g} images, or any of the three is more than "
             f"{RMSD_MEDIAN_FACTOR:g}× the median of that column over the ensemble "
             f"(the median rule needs at least {RMSD_MEDIAN_MIN_EXPERIMENTS} experiments).")


def _sig(x, digits: int = 5):
    """``x`` to ``digits`` significant figures (DIALS prints the RMSD table with ``%.5g``)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return float(f"{v:.{digits}g}") if math.isfinite(v) else None


def experiment_ids(run, rows: list[dict]) -> dict[str, int]:
    """identifier → "Exp id": the position in the merged output (stored by the join);
    while the run goes on, the order the join will give (succeeded sweeps in order)."""
    stored = (run.summary or {}).get("experiments")
    if isinstance(stored, list) and stored:
        return {e["identifier"]: int(e["id"]) for e in stored if e.get("identifier")}
    out: dict[str, int] = {}
    for r in rows:
        if r["status"] != "succeeded":
            continue
        for ident in r["summary"].get("identifiers") or []:
            out.setdefault(ident, len(out))
    return out


def badly_refined(rmsd_rows: list[dict]) -> dict[int, list[str]]:
    """Exp id → reasons, by :data:`RMSD_RULE`."""
    import statistics

    cols = (("rmsd_x_px", "RMSD_X", RMSD_LIMIT_PX, "px"), ("rmsd_y_px", "RMSD_Y", RMSD_LIMIT_PX, "px"),
            ("rmsd_z_images", "RMSD_Z", RMSD_LIMIT_IMAGES, "images"))
    medians = {}
    if len(rmsd_rows) >= RMSD_MEDIAN_MIN_EXPERIMENTS:
        for key, *_ in cols:
            values = [float(r[key]) for r in rmsd_rows if r.get(key) is not None]
            if values:
                medians[key] = statistics.median(values)
    out: dict[int, list[str]] = {}
    for r in rmsd_rows:
        reasons = []
        for key, label, limit, unit in cols:
            v = r.get(key)
            if v is None:
                continue
            v = float(v)
            if v > limit:
                reasons.append(f"{label} {v:.5g} {unit} > {limit:g} {unit}")
            m = medians.get(key)
            if m is not None and m > 0 and v > RMSD_MEDIAN_FACTOR * m:
                reasons.append(f"{label} {v:.5g} {unit} > {RMSD_MEDIAN_FACTOR:g}× median {m:.5g} {unit}")
        if reasons:
            out[r["exp_id"]] = reasons
    return out


def rmsd_rows_of(run, rows: list[dict]) -> list[dict]:
    """The "RMSDs by experiment" rows with merged Exp ids, in Exp id order."""
    ids = experiment_ids(run, rows)
    out = []
    for r in rows:
        if r["status"] != "succeeded":
            continue
        idents = r["summary"].get("identifiers") or []
        for x in r["summary"].get("rmsds_by_experiment") or []:
            k = int(x.get("experiment", 0))
            ident = idents[k] if k < len(idents) else None
            exp_id = ids.get(ident) if ident is not None else None
            out.append({"exp_id": exp_id, "sweep": r["name"], "nref": x.get("nref"),
                        "rmsd_x_px": x.get("rmsd_x_px"), "rmsd_y_px": x.get("rmsd_y_px"),
                        "rmsd_z_images": x.get("rmsd_z_images")})
    out.sort(key=lambda x: (x["exp_id"] is None, x["exp_id"] if x["exp_id"] is not None else 0))
    return out


@report("refine")
def refine_report(run, rows: list[dict]) -> dict:
    rmsd = rmsd_rows_of(run, rows)
    bad = badly_refined(rmsd)
    table_rows = [[x["exp_id"], x["nref"], _sig(x["rmsd_x_px"]), _sig(x["rmsd_y_px"]), _sig(x["rmsd_z_images"])]
                  for x in rmsd]
    row_status = ["bad" if x["exp_id"] in bad else "succeeded" for x in rmsd]
    highlights = [{"exp_id": x["exp_id"], "sweep": x["sweep"], "reasons": bad[x["exp_id"]]}
                  for x in rmsd if x["exp_id"] in bad]

    ids = experiment_ids(run, rows)
    cell_rows, cell_status = [], []
    names, cells, sds = [], [], []
    for r in rows:
        s = r["summary"]
        idents = s.get("identifiers") or []
        crystals = s.get("crystals") or []
        if r["status"] != "succeeded" or not crystals:
            cell_rows.append([None, r["name"], "", "", r["status"], r["error"]])
            cell_status.append(r["status"] if r["status"] != "succeeded" else "failed")
            continue
        failed = {int(f.get("experiment", -1)): f.get("message", "") for f in s.get("failed") or []}
        for c in crystals:
            k = int(c.get("experiment", 0))
            ident = idents[k] if k < len(idents) else None
            exp_id = ids.get(ident)
            name = r["name"] if len(crystals) == 1 else f"{r['name']} (lattice {k + 1})"
            ok = bool(c.get("refined", True))
            cell_rows.append([exp_id, name, cell_with_sd(c.get("unit_cell"), c.get("unit_cell_sd")),
                              c.get("space_group") or "", "succeeded" if ok else "not refined",
                              "" if ok else failed.get(k, "")])
            cell_status.append("bad" if exp_id in bad else ("succeeded" if ok else "failed"))
            if ok and c.get("unit_cell"):
                names.append(f"{exp_id}: {name}" if exp_id is not None else name)
                cells.append([float(v) for v in c["unit_cell"]])
                sd = c.get("unit_cell_sd")
                sds.append([float(v) for v in sd] if sd and len(sd) == 6 else None)

    x = [str(r[0]) for r in table_rows]
    rmsd_fig = {"id": "rmsds", "title": "RMSDs by experiment",
                "data": [{"type": "bar", "name": label, "x": x, "y": [r[c] for r in table_rows]}
                         for c, label in ((2, "RMSD_X (px)"), (3, "RMSD_Y (px)"), (4, "RMSD_Z (images)"))],
                "layout": {"title": {"text": "RMSDs by experiment"}, "barmode": "group",
                           "xaxis": {"title": {"text": "Exp id"}, "type": "category"},
                           "yaxis": {"title": {"text": "RMSD (px or images)"}, "rangemode": "tozero"},
                           "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": RMSD_LIMIT_PX,
                                       "y1": RMSD_LIMIT_PX, "line": {"dash": "dot", "color": "#cf222e"}}],
                           "legend": {"orientation": "h"}, "margin": {"t": 40}}}

    def cell_traces(cols, labels):
        out = []
        for c, label in zip(cols, labels):
            t = {"type": "scatter", "mode": "markers", "name": label, "x": names, "y": [cell[c] for cell in cells]}
            if any(sd is not None for sd in sds):
                t["error_y"] = {"type": "data", "array": [sd[c] if sd else 0.0 for sd in sds], "visible": True}
            out.append(t)
        return out

    return {
        "tables": [
            {"id": "rmsds", "title": "RMSDs by experiment",
             "columns": ["Exp id", "Nref", "RMSD_X (px)", "RMSD_Y (px)", "RMSD_Z (images)"],
             "rows": table_rows, "row_status": row_status, "note": RMSD_RULE, "highlights": highlights},
            {"id": "cells", "title": "Refined unit cells",
             "columns": ["Exp id", "Sweep", "Unit cell (Å, °)", "Space group", "Status", "Message"],
             "rows": cell_rows, "row_status": cell_status},
        ],
        "figures": [
            rmsd_fig,
            {"id": "cell_lengths", "title": "Refined cell lengths per experiment",
             "data": cell_traces(range(3), ("a", "b", "c")),
             "layout": {"title": {"text": "a, b, c per experiment"}, "xaxis": {"title": {"text": "experiment"}},
                        "yaxis": {"title": {"text": "Å"}}, "margin": {"t": 40}}},
        ],
    }


# --- integrate -----------------------------------------------------------------------------

_D_TICKS = (20.0, 10.0, 6.0, 5.0, 4.0, 3.5, 3.0, 2.5, 2.2, 2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9, 0.8)
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


def _weighted_mean(table: list[dict], n_key: str, mean_key: str):
    """The mean over all reflections from the per-bin means (the bins partition them)."""
    bins = [b for b in table if b.get(mean_key) is not None and int(b.get(n_key) or 0) > 0]
    n = sum(int(b[n_key]) for b in bins)
    if not n:
        return None
    return sum(int(b[n_key]) * float(b[mean_key]) for b in bins) / n


@report("integrate", hidden={"nproc"})
def integrate_report(run, rows: list[dict]) -> dict:
    ids = experiment_ids(run, rows)
    table_rows, row_status, traces = [], [], []
    all_inv_d2 = []
    k_colour = 0
    for r in rows:
        s = r["summary"]
        experiments = s.get("experiments") or []
        idents = s.get("identifiers") or []
        if r["status"] != "succeeded" or not experiments:
            table_rows.append([None, r["name"], None, None, None, None, None, None, None, None, r["status"], r["error"]])
            row_status.append(r["status"] if r["status"] != "succeeded" else "failed")
            continue
        for k, e in enumerate(experiments):
            name = r["name"] if len(experiments) == 1 else f"{r['name']} (lattice {k + 1})"
            ident = e.get("identifier") or (idents[k] if k < len(idents) else None)
            pm = e.get("profile_model") or {}
            res = e.get("resolution_table") or []
            table_rows.append([
                ids.get(ident), name, e.get("n_predicted"), e.get("n_integrated_sum"), e.get("n_integrated_prf"),
                e.get("n_failed_summation"),
                _num(_weighted_mean(res, "n_integrated_sum", "mean_ios_sum"), 2),
                _num(_weighted_mean(res, "n_integrated_prf", "mean_ios_prf"), 2),
                _num(pm.get("sigma_b"), 4), _num(pm.get("sigma_m"), 4), r["status"], r["error"],
            ])
            row_status.append(r["status"])
            if res:
                colour = _COLOURS[k_colour % len(_COLOURS)]
                k_colour += 1
                # bin centres in 1/d² (the bins are equal-volume shells in 1/d³)
                x = [0.5 * (1.0 / float(b["d_max"]) ** 2 + 1.0 / float(b["d_min"]) ** 2) for b in res]
                all_inv_d2.extend(x)
                text = [f"{float(b['d_max']):.2f}–{float(b['d_min']):.2f} Å" for b in res]
                for kind, key, dash in (("sum", "mean_ios_sum", "solid"), ("prf", "mean_ios_prf", "dash")):
                    traces.append({"type": "scatter", "mode": "lines+markers", "name": f"{name} {kind}",
                                   "legendgroup": name, "x": [_num(v, 6) for v in x],
                                   "y": [_num(b.get(key), 3) for b in res], "text": text,
                                   "hovertemplate": "%{text}: ⟨I/σ⟩ %{y}<extra>%{fullData.name}</extra>",
                                   "line": {"color": colour, "dash": dash}})
    xaxis = {"title": {"text": "resolution (Å)"}}
    if all_inv_d2:
        lo, hi = min(all_inv_d2), max(all_inv_d2)
        ticks = [d for d in _D_TICKS if lo * 0.8 <= 1.0 / d ** 2 <= hi * 1.2]
        xaxis.update({"tickvals": [_num(1.0 / d ** 2, 6) for d in ticks], "ticktext": [f"{d:g}" for d in ticks]})
    return {
        "tables": [{"id": "integration", "title": "Integration summary",
                    "columns": ["Exp id", "Sweep", "Predicted", "Integrated (sum)", "Integrated (prf)", "Failed",
                                "⟨I/σ⟩ (sum)", "⟨I/σ⟩ (prf)", "σ_b (°)", "σ_m (°)", "Status", "Message"],
                    "rows": table_rows, "row_status": row_status,
                    "note": "Failed: predicted reflections that summation could not integrate (bad background "
                            "or foreground). ⟨I/σ⟩ is the mean over the integrated reflections; σ_b and σ_m "
                            "are the sweep's profile model (gaussian_rs)."}],
        "figures": [{"id": "ios_resolution", "title": "⟨I/σ⟩ against resolution",
                     "data": traces,
                     "layout": {"title": {"text": "⟨I/σ⟩ per resolution bin (solid: summation, dashed: "
                                                  "profile fitting)"},
                                "xaxis": xaxis, "yaxis": {"title": {"text": "⟨I/σ(I)⟩"}, "rangemode": "tozero"},
                                "legend": {"orientation": "h"}, "margin": {"t": 40}}}],
    }


# --- import ---------------------------------------------------------------------------------


@report("import")
def import_report(run, rows: list[dict]) -> dict:
    rows = []
    for s in (run.summary or {}).get("sweeps") or []:
        ir = s.get("image_range") or [None, None]
        rows.append([s.get("name"), ir[0], ir[1], s.get("detector"), _num(s.get("wavelength"), 5),
                     _num(s.get("distance_mm"), 2)])
    return {"tables": [{"id": "sweeps", "title": "Imported sweeps",
                        "columns": ["Sweep", "First image", "Last image", "Detector", "λ (Å)", "Distance (mm)"],
                        "rows": rows, "row_status": ["succeeded"] * len(rows)}],
            "figures": []}


def viewer_urls(run) -> dict[int, str]:
    """sweep index → the image viewer of that sweep with this run's results (``…?run=N``),
    for the sweeps that succeeded in a run of the viewer's stages."""
    from xtalweb.projects.viewer_views import VIEWER_STAGES, viewer_url

    if run.stage not in VIEWER_STAGES:
        return {}
    return {s.index: viewer_url(run.project_id, s.sweep_id, run.pk) for s in run.sweep_runs.all()
            if s.sweep_id is not None and s.status == "succeeded"}


def _viewer_panel(run, rows: list[dict]) -> dict | None:
    urls = viewer_urls(run)
    links = [{"name": r["name"], "url": urls[r["index"]]} for r in rows if r["index"] in urls]
    return {"template": "reports/_viewer_links.html", "id": "viewer-links", "links": links} if links else None


def report_for_run(run) -> dict:
    """The report of any StageRun, drawn by its stage's registered builder."""
    rows = sweep_rows_of(run)
    body = REPORTS[run.stage].build(run, rows) if run.stage in REPORTS else {"tables": [], "figures": []}
    panel = _viewer_panel(run, rows)
    if panel:
        body = dict(body, panels=[panel] + list(body.get("panels") or []))
    sweeps = [{k: r[k] for k in ("index", "name", "status", "error", "progress")} for r in rows] \
        if run.sweep_runs.exists() else []
    return {"run": run.pk, "stage": run.stage, "status": run.status, "progress": run.progress,
            "error": run.error, "sweeps": sweeps, **body}
