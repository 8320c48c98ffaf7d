"""Report tables and plotly figures of a StageRun, from its stored summaries only.

Nothing here re-derives science: every number comes from the summary the stage
returned (kept on the StageRun and its SweepRun rows); the only computation is
presentation (spots per image = spots / images, the cell printed with its e.s.d.s by
``processing.models.format_with_sd``, DIALS's ``67.79(3)`` form).

A report is ``{"stage", "status", "tables": [...], "figures": [...]}``; a table is
``{"id", "title", "columns", "rows", "row_status"}`` and a figure is plotly's figure
JSON ``{"id", "title", "data", "layout"}`` for ``Plotly.newPlot``.
"""

from __future__ import annotations

import math


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


def find_spots_report(rows: list[dict]) -> dict:
    traces, table_rows, row_status = [], [], []
    total_images = total_spots = 0
    for r in rows:
        s = r["summary"]
        hist = s.get("histogram") or {}
        if hist.get("image"):
            traces.append({"type": "scatter", "mode": "lines+markers", "name": r["name"],
                           "x": list(hist["image"]), "y": list(hist.get("n_spots") or [])})
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
        "figures": [{"id": "spots_per_image", "title": "Spots per image",
                     "data": traces,
                     "layout": {"title": {"text": "Strong spots per image"},
                                "xaxis": {"title": {"text": "image"}},
                                "yaxis": {"title": {"text": "spots"}, "rangemode": "tozero"},
                                "legend": {"orientation": "h"}, "margin": {"t": 40}}}],
    }


# --- index ---------------------------------------------------------------------------------


def index_report(rows: list[dict]) -> dict:
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
                    "rows": table_rows, "row_status": row_status}],
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


# --- import ---------------------------------------------------------------------------------


def import_report(run) -> dict:
    rows = []
    for s in (run.summary or {}).get("sweeps") or []:
        ir = s.get("image_range") or [None, None]
        rows.append([s.get("name"), ir[0], ir[1], s.get("detector"), _num(s.get("wavelength"), 5),
                     _num(s.get("distance_mm"), 2)])
    return {"tables": [{"id": "sweeps", "title": "Imported sweeps",
                        "columns": ["Sweep", "First image", "Last image", "Detector", "λ (Å)", "Distance (mm)"],
                        "rows": rows, "row_status": ["succeeded"] * len(rows)}],
            "figures": []}


def report_for_run(run) -> dict:
    """The report of any StageRun (empty tables for stages without a report yet)."""
    if run.stage == "find_spots":
        body = find_spots_report(sweep_rows_of(run))
    elif run.stage == "index":
        body = index_report(sweep_rows_of(run))
    elif run.stage == "import":
        body = import_report(run)
    else:
        body = {"tables": [], "figures": []}
    sweeps = [{k: r[k] for k in ("index", "name", "status", "error", "progress")} for r in sweep_rows_of(run)] \
        if run.stage in ("find_spots", "index") else []
    return {"run": run.pk, "stage": run.stage, "status": run.status, "progress": run.progress,
            "error": run.error, "sweeps": sweeps, **body}
