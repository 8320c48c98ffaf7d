"""The scale, merge and export reports, drawn from the runs' stored summaries only.

scale: the scaling summary, the merging statistics as dials.scale prints them (the
"Summary of merging statistics" with its Overall / Low / High columns and the table by
resolution bin with the overall row), the data sets (one checkbox each: "Scale again
without these" starts a new scale run from the same cosym run with those data sets in
``exclude_datasets``), the data sets left out with their reasons, the intensity choice
(profile / summation / Imid candidates and their CC½), the error model; figures of the
statistics against resolution, the scale term and relative B against rotation per data
set, each data set's absorption range, the normal probability plot of the normalised
deviations and the error model's per-bin variances before and after.

merge: the merging statistics and the columns written to merged.mtz. export: the
observations written per data set. Each report lists the run's files to download.
"""

from __future__ import annotations

from django.urls import reverse

from .cosym import _sweep_names, _table
from .figures import _COLOURS, _D_TICKS, _num
from .registry import report


def _fmt(x, spec: str):
    """``format(x, spec)``, or None (shown "—") for a missing or non-finite value."""
    v = _num(x, 12)
    return None if v is None else format(v, spec)


def _downloads(run) -> list[dict]:
    from xtalweb.projects.downloads import downloads_of

    return downloads_of(run)


# --- merging statistics ---------------------------------------------------------------------

#: the table by resolution bin, dials.scale's columns (and the random-half CC½): (title, key, format)
SHELL_COLUMNS = (("d_max", "d_max", ".2f"), ("d_min", "d_min", ".2f"), ("#obs", "n_obs", "d"),
                 ("#uniq", "n_unique", "d"), ("mult.", "multiplicity", ".2f"), ("%comp", "completeness", ".2f"),
                 ("<I>", "mean_intensity", ".1f"), ("<I/sI>", "i_over_sigma", ".1f"), ("r_mrg", "rmerge", ".3f"),
                 ("r_meas", "rmeas", ".3f"), ("r_pim", "rpim", ".3f"), ("r_anom", "r_anom", ".3f"),
                 ("cc1/2", "cc_half", ".3f"), ("cc1/2 (random half)", "cc_half_random", ".3f"),
                 ("cc_ano", "cc_ano", ".3f"))

#: the summary table, dials.scale's rows: (title, key, format)
SUMMARY_ROWS = (("High resolution limit", "d_min", ".2f"), ("Low resolution limit", "d_max", ".2f"),
                ("Completeness", "completeness", ".1f"), ("Multiplicity", "multiplicity", ".1f"),
                ("I/sigma", "i_over_sigma", ".1f"), ("Rmerge(I)", "rmerge", ".3f"), ("Rmeas(I)", "rmeas", ".3f"),
                ("Rpim(I)", "rpim", ".3f"), ("CC half", "cc_half", ".3f"),
                ("CC half (random half)", "cc_half_random", ".3f"),
                ("Anomalous completeness", "anom_completeness", ".1f"),
                ("Anomalous multiplicity", "anom_multiplicity", ".1f"),
                ("Anomalous correlation", "cc_ano", ".3f"), ("R anomalous", "r_anom", ".3f"),
                ("Total observations", "n_obs", "d"), ("Total unique", "n_unique", "d"))


def _cell(row: dict, key: str, spec: str):
    v = (row or {}).get(key)
    if spec == "d":
        return None if v is None else int(v)
    return _fmt(v, spec)


def merging_tables(stats: dict) -> list[dict]:
    """dials.scale's two tables of ``merging_statistics``: the summary (Overall, Low, High)
    and the statistics by resolution bin with the overall row last."""
    if not stats or not stats.get("overall"):
        return []
    parts = [stats.get("overall") or {}, stats.get("low") or {}, stats.get("high") or {}]
    summary = [[title] + [_cell(p, key, spec) for p in parts] for title, key, spec in SUMMARY_ROWS]
    summary.append(["Wilson B (Å²)", _fmt(stats.get("wilson_b"), ".2f"), None, None])
    shells = [[_cell(s, key, spec) for _, key, spec in SHELL_COLUMNS] for s in stats.get("shells") or []]
    status = ["succeeded"] * len(shells)
    shells.append([_cell(stats["overall"], key, spec) for _, key, spec in SHELL_COLUMNS])
    status.append("total")
    anom = " (anomalous: Friedel mates kept apart)" if stats.get("anomalous") else ""
    return [
        _table("merging_summary", "Summary of merging statistics", ["", "Overall", "Low", "High"], summary,
               note=f"{stats.get('n_bins')} resolution bins, equal in 1/d³, {_fmt(stats.get('d_max'), '.2f')}–"
                    f"{_fmt(stats.get('d_min'), '.2f')} Å{anom}. CC½ by the σ-τ method; the random-half CC½ "
                    "splits each reflection's observations at random."),
        _table("merging_shells", "Merging statistics by resolution bin", [c[0] for c in SHELL_COLUMNS], shells,
               status, note="The last row is the overall."),
    ]


def _resolution_axis(values: list[float]) -> dict:
    axis = {"title": {"text": "resolution (Å)"}}
    finite = [v for v in values if v is not None]
    if finite:
        lo, hi = min(finite), max(finite)
        ticks = []
        for d in sorted((d for d in _D_TICKS if lo * 0.8 <= 1.0 / d ** 2 <= hi * 1.2), reverse=True):
            # at least an eighth of the range between labels (small panels)
            if not ticks or 1.0 / d ** 2 - 1.0 / ticks[-1] ** 2 >= (hi - lo) / 8:
                ticks.append(d)
        axis.update({"tickvals": [_num(1.0 / d ** 2, 6) for d in ticks], "ticktext": [f"{d:g}" for d in ticks]})
    return axis


def resolution_figure(stats: dict) -> dict | None:
    """CC½, ⟨I/σ⟩, completeness, multiplicity and Rpim per shell, against 1/d² (five panels)."""
    shells = [s for s in (stats or {}).get("shells") or [] if s.get("d_min") and s.get("d_max")]
    if not shells:
        return None
    x = [_num(0.5 * (1.0 / float(s["d_max"]) ** 2 + 1.0 / float(s["d_min"]) ** 2), 6) for s in shells]
    text = [f"{float(s['d_max']):.2f}–{float(s['d_min']):.2f} Å" for s in shells]
    anom = bool(stats.get("anomalous"))
    panels = (("CC½", (("cc_half", "CC½ (σ-τ)"), ("cc_half_random", "CC½ (random half)"))
               + ((("cc_ano", "CC anomalous"),) if anom else ())),
              ("⟨I/σ(I)⟩", (("i_over_sigma", "⟨I/σ⟩"),)),
              ("completeness (%)", (("completeness", "completeness"), ("anom_completeness", "anomalous completeness"))),
              ("multiplicity", (("multiplicity", "multiplicity"), ("anom_multiplicity", "anomalous multiplicity"))),
              ("R", (("rpim", "Rpim"), ("rmerge", "Rmerge"), ("rmeas", "Rmeas"))))
    data, layout = [], {"grid": {"rows": 2, "columns": 3, "pattern": "independent", "xgap": 0.12, "ygap": 0.3},
                        "height": 640, "margin": {"t": 30}, "legend": {"orientation": "h", "y": -0.12},
                        "annotations": []}
    colour = 0
    for k, (title, series) in enumerate(panels, start=1):
        suffix = "" if k == 1 else str(k)
        for key, name in series:
            y = [_num(s.get(key), 4) for s in shells]
            if all(v is None for v in y):
                continue
            data.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": x, "y": y, "text": text,
                         "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                         "hovertemplate": "%{text}: %{y}<extra>" + name + "</extra>",
                         "line": {"color": _COLOURS[colour % len(_COLOURS)]}})
            colour += 1
        layout[f"xaxis{suffix}"] = dict(_resolution_axis(x), title={"text": "resolution (Å)"})
        layout[f"yaxis{suffix}"] = {"title": {"text": title}, "rangemode": "tozero"}
    return {"id": "statistics_resolution", "title": "Statistics against resolution", "data": data, "layout": layout}


# --- scale ----------------------------------------------------------------------------------


def _dataset_name(d: dict, names: dict) -> str:
    return names.get(d.get("identifier")) or d.get("identifier") or f"data set {d.get('id')}"


def _rotation_figure(datasets: list[dict], names: dict) -> dict | None:
    """Scale term (top) and relative B (bottom) against rotation, one colour per data set."""
    data = []
    for k, d in enumerate(x for x in datasets if x.get("curves")):
        c = d["curves"]
        colour = _COLOURS[k % len(_COLOURS)]
        label = f"{d['id']}: {_dataset_name(d, names)}"
        phi = [_num(v, 4) for v in c.get("phi") or []]
        data.append({"type": "scatter", "mode": "lines", "name": label, "legendgroup": label, "x": phi,
                     "y": [_num(v, 5) for v in c.get("scale") or []], "line": {"color": colour},
                     "xaxis": "x", "yaxis": "y", "hovertemplate": "φ %{x}°: scale %{y}<extra>" + label + "</extra>"})
        if c.get("b"):
            data.append({"type": "scatter", "mode": "lines", "name": label, "legendgroup": label, "showlegend": False,
                         "x": phi, "y": [_num(v, 4) for v in c["b"]], "line": {"color": colour, "dash": "dash"},
                         "xaxis": "x", "yaxis": "y2",
                         "hovertemplate": "φ %{x}°: B %{y} Å²<extra>" + label + "</extra>"})
    if not data:
        return None
    return {"id": "scale_rotation", "title": "Scale term and relative B against rotation", "data": data,
            "layout": {"height": 560, "margin": {"t": 30},
                       "xaxis": {"title": {"text": "rotation angle φ (°)"}, "anchor": "y2"},
                       "yaxis": {"title": {"text": "scale term"}, "domain": [0.55, 1.0]},
                       "yaxis2": {"title": {"text": "relative B (Å²)"}, "domain": [0.0, 0.45]},
                       "legend": {"title": {"text": "data set"}}}}


def _absorption_rotation_figure(datasets: list[dict], names: dict) -> dict | None:
    """Mean absorption factor of the observations against rotation, one line per data set."""
    data = []
    for k, d in enumerate(x for x in datasets if (x.get("curves") or {}).get("absorption")):
        c = d["curves"]
        label = f"{d['id']}: {_dataset_name(d, names)}"
        data.append({"type": "scatter", "mode": "lines", "name": label, "x": [_num(v, 4) for v in c["phi"]],
                     "y": [_num(v, 5) for v in c["absorption"]], "line": {"color": _COLOURS[k % len(_COLOURS)]},
                     "connectgaps": False,
                     "hovertemplate": "φ %{x}°: absorption %{y}<extra>" + label + "</extra>"})
    if not data:
        return None
    return {"id": "absorption_rotation", "title": "Absorption correction against rotation", "data": data,
            "layout": {"margin": {"t": 30}, "xaxis": {"title": {"text": "rotation angle φ (°)"}},
                       "yaxis": {"title": {"text": "mean absorption factor"}},
                       "legend": {"title": {"text": "data set"}}}}


def _absorption_figure(datasets: list[dict], names: dict) -> dict | None:
    rows = [d for d in datasets if d.get("absorption_range")]
    if not rows:
        return None
    labels = [f"{d['id']}: {_dataset_name(d, names)}" for d in rows]
    lo = [_num(d["absorption_range"][0], 4) for d in rows]
    hi = [_num(d["absorption_range"][1], 4) for d in rows]
    return {"id": "absorption", "title": "Absorption correction range per data set",
            "data": [{"type": "bar", "name": "absorption factor range", "x": labels,
                      "base": lo, "y": [None if a is None or b is None else _num(b - a, 4) for a, b in zip(lo, hi)],
                      "customdata": [[a, b] for a, b in zip(lo, hi)],
                      "hovertemplate": "%{x}: %{customdata[0]} – %{customdata[1]}<extra></extra>"}],
            "layout": {"xaxis": {"title": {"text": "data set"}, "type": "category"},
                       "yaxis": {"title": {"text": "absorption factor (min – max over the observations)"}},
                       "margin": {"t": 30},
                       "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                                   "line": {"dash": "dot", "color": "#5f6b7a"}}]}}


def _normal_probability_figure(npp: dict) -> dict | None:
    if not npp or not npp.get("expected"):
        return None
    e = [_num(v, 4) for v in npp["expected"]]
    o = [_num(v, 4) for v in npp["observed"]]
    lim = max(abs(v) for v in e if v is not None)
    return {"id": "normal_probability", "title": "Normal probability plot of the normalised deviations",
            "data": [{"type": "scatter", "mode": "markers", "name": "scaled observations", "x": e, "y": o,
                      "marker": {"size": 4, "color": _COLOURS[0]}},
                     {"type": "scatter", "mode": "lines", "name": "y = x", "x": [-lim, lim], "y": [-lim, lim],
                      "line": {"dash": "dot", "color": "#5f6b7a"}}],
            "layout": {"xaxis": {"title": {"text": "expected normal order statistic"}},
                       "yaxis": {"title": {"text": "normalised deviation δ"}, "range": [-2 * lim, 2 * lim]},
                       "margin": {"t": 30}, "legend": {"orientation": "h"}}}


def _error_model_figure(em: dict) -> dict | None:
    bins = [b for b in (em or {}).get("bins") or [] if b.get("mean_intensity") is not None]
    if not bins:
        return None
    x = [_num(b["mean_intensity"], 4) for b in bins]
    return {"id": "error_model", "title": "Error model: variance of the normalised deviations per intensity bin",
            "data": [{"type": "scatter", "mode": "lines+markers", "name": "before (σ as given)", "x": x,
                      "y": [_num(b.get("variance_before"), 4) for b in bins]},
                     {"type": "scatter", "mode": "lines+markers",
                      "name": f"after (a = {_fmt(em.get('a'), '.4f')}, b = {_fmt(em.get('b'), '.4f')})", "x": x,
                      "y": [_num(b.get("variance_after"), 4) for b in bins]}],
            "layout": {"xaxis": {"title": {"text": "mean expected intensity g·Ĩ of the bin (unscaled)"}, "type": "log"},
                       "yaxis": {"title": {"text": "variance of δ"}, "rangemode": "tozero"},
                       "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                                   "line": {"dash": "dot", "color": "#5f6b7a"}}],
                       "margin": {"t": 30}, "legend": {"orientation": "h"}}}


def _scaling_table(s: dict) -> dict:
    em = s.get("error_model") or {}
    stats = s.get("merging_statistics") or {}
    if em.get("refined"):
        em_text = f"a = {_fmt(em.get('a'), '.4f')}, b = {_fmt(em.get('b'), '.4f')} ({em.get('n')} observations)"
    else:
        em_text = f"not refined: {em.get('reason') or '—'}"
    rows = [["Space group", s.get("space_group")],
            ["Unit cell (Å, °) (median)", ", ".join(f"{float(v):.3f}" for v in s.get("unit_cell") or [])],
            ["Data sets scaled", s.get("n_datasets")],
            ["Data sets left out", len(s.get("excluded") or [])],
            ["Data sets kept as scaled before (incremental)", s.get("n_fixed")],
            ["Observations scaled", s.get("n_observations")],
            ["Outliers rejected", s.get("n_outliers")],
            ["Resolution (Å)", f"{_fmt(s.get('d_max'), '.2f')} – {_fmt(s.get('d_min'), '.2f')}"],
            ["Anomalous", "yes" if s.get("anomalous") else "no"],
            ["Intensities", f"{s.get('intensities_used')} (intensity_choice={s.get('intensity_choice')})"],
            ["Error model", em_text],
            ["Wilson B (Å²)", _fmt(stats.get("wilson_b"), ".2f")],
            ["Minimiser", f"{s.get('minimiser')}, {s.get('cycles')} cycles"]]
    if s.get("reference"):
        rows.append(["Reference", s["reference"]])
    for why, n in (s.get("rows_left_out") or {}).items():
        rows.append([f"Reflections left out: {why}", n])
    return _table("scaling", "Scaling", ["Quantity", "Value"], rows)


def _datasets_table(run, s: dict, names: dict) -> dict:
    rows, status = [], []
    for d in s.get("datasets") or []:
        ab = d.get("absorption_range")
        if "excluded" in d:
            state = f"left out: {d['excluded']}"
        else:
            state = "kept as scaled before" if d.get("fixed") else "scaled"
        rows.append([d.get("id"), _dataset_name(d, names), d.get("n_observations"), d.get("n_outliers"),
                     _fmt(d.get("mean_inverse_scale"), ".4f"), d.get("n_parameters"),
                     f"{_fmt(ab[0], '.3f')} – {_fmt(ab[1], '.3f')}" if ab else None, state])
        status.append("failed" if "excluded" in d else "succeeded")
    table = _table("datasets", "Data sets", ["Data set", "Sweep", "Observations", "Outliers", "⟨g⟩ (mean inverse "
                                             "scale)", "Parameters", "Absorption range", "Status"], rows, status)
    if any(r[6] is None for r, st in zip(rows, status) if st == "succeeded"):
        table["note"] = ("Absorption range —: no absorption surface for that data set (absorption_correction=false, "
                         "or a sweep too short for one, as dials.scale decides).")
    n_scaled = status.count("succeeded")
    if run.status in ("succeeded", "partial") and n_scaled >= 2:
        table["select"] = {"action": reverse("scale_drop", args=[run.project_id, run.pk]),
                           "name": "exclude_datasets", "button": "Scale again without these",
                           "option": {"name": "then_merge", "label": "then merge", "checked": True},
                           "help": "Starts a new scale run from the same cosym run with the ticked data sets added "
                                   "to exclude_datasets (and a merge after it); this run and its files stay."}
    return table


@report("scale", hidden={"nproc"})
def scale_report(run, rows: list[dict]) -> dict:
    s = run.summary or {}
    if not s.get("datasets"):
        return {"tables": [], "figures": [], "downloads": _downloads(run)}
    names = _sweep_names(run)
    datasets = s["datasets"]
    excluded = [[x.get("id"), names.get(x.get("identifier")) or x.get("identifier"), x.get("reason")]
                for x in s.get("excluded") or []]
    best = max((c for c in s.get("combination") or [] if c.get("cc_half") is not None),
               key=lambda c: c["cc_half"], default=None)
    combination = [[c.get("choice"), "—" if c.get("imid") is None else _fmt(c.get("imid"), "g"),
                    _fmt(c.get("cc_half"), ".5f"), "***" if c is best else ""] for c in s.get("combination") or []]
    em = s.get("error_model") or {}
    em_rows = [[_fmt(b.get("mean_intensity"), ".1f"), b.get("n"), _fmt(b.get("variance_before"), ".3f"),
                _fmt(b.get("variance_after"), ".3f")] for b in em.get("bins") or []]
    npp = s.get("normal_probability") or {}
    stats = s.get("merging_statistics") or {}
    tables = [_scaling_table(s), *merging_tables(stats), _datasets_table(run, s, names),
              _table("excluded", "Data sets left out", ["Data set", "Sweep", "Reason"], excluded,
                     ["failed"] * len(excluded))]
    if combination:
        tables.append(_table("combination", "Intensity choice (*** : used)",
                             ["Intensities", "Imid", "CC½ of the scaled data", ""], combination,
                             note="Profile-fitted and summation intensities, and their combinations with the "
                                  "summation weight rising with intensity around Imid, as dials.scale compares them."))
    tables.append(_table("error_model", "Error model σ' = a·sqrt(σ² + (b·I)²)",
                         ["Mean intensity", "Observations", "Var(δ) before", "Var(δ) after"], em_rows,
                         note=(f"a = {_fmt(em.get('a'), '.4f')}, b = {_fmt(em.get('b'), '.4f')}; "
                               "refined as dials.scale does: a from the centre (|x| < 1.5) of the normal probability "
                               "plot of the normalised deviations δ, b from δ's variance in bins of expected "
                               "intensity g·Ĩ, alternating; fitted on reflections seen twice or more with g·Ĩ > 25."
                               + (f" SD of δ after scaling: {_fmt(npp.get('sd'), '.3f')} over {npp.get('n')} "
                                  "observations." if npp.get("sd") is not None else ""))
                         if em.get("refined") else f"Not refined: {em.get('reason') or '—'}"))
    if s.get("resolution_estimate"):  # the CC½ estimate of the scaled data (dials.scale prints it)
        from .resolution import estimate_table

        tables.insert(1, estimate_table(s["resolution_estimate"]))
    figures = [f for f in (resolution_figure(stats), _rotation_figure(datasets, names),
                           _absorption_figure(datasets, names), _absorption_rotation_figure(datasets, names),
                           _normal_probability_figure(npp),
                           _error_model_figure(em)) if f is not None]
    return {"tables": tables, "figures": figures, "downloads": _downloads(run)}


# --- merge ------------------------------------------------------------------------------------

COLUMN_MEANINGS = {
    "IMEAN": "mean intensity (Friedel mates merged)", "SIGIMEAN": "σ of IMEAN",
    "I(+)": "mean intensity of I(hkl)", "SIGI(+)": "σ of I(+)", "I(-)": "mean intensity of I(−h−k−l)",
    "SIGI(-)": "σ of I(−)", "F": "amplitude (French–Wilson)", "SIGF": "σ of F",
    "F(+)": "amplitude of the + mate (French–Wilson)", "SIGF(+)": "σ of F(+)",
    "F(-)": "amplitude of the − mate (French–Wilson)", "SIGF(-)": "σ of F(−)",
    "DANO": "anomalous difference F(+) − F(−)", "SIGDANO": "σ of DANO", "N": "observations merged",
}


@report("merge")
def merge_report(run, rows: list[dict]) -> dict:
    s = run.summary or {}
    if not s.get("columns"):
        return {"tables": [], "figures": [], "downloads": _downloads(run)}
    stats = s.get("merging_statistics") or {}
    summary = [["Space group", s.get("space_group")],
               ["Unit cell (Å, °) (median)", ", ".join(f"{float(v):.3f}" for v in s.get("unit_cell") or [])],
               ["Wavelength (Å)", _fmt(s.get("wavelength"), ".5f")
                + (f" (spread {_fmt(s.get('wavelength_spread'), '.5f')})" if s.get("wavelength_spread") else "")],
               ["Resolution (Å)", f"{_fmt(s.get('d_max'), '.2f')} – {_fmt(s.get('d_min'), '.2f')}"],
               ["Observations merged", s.get("n_observations")], ["Unique reflections", s.get("n_unique")],
               ["Amplitudes (French–Wilson)",
                f"{s.get('n_f')}" if s.get("truncate") else "not written (truncate=false)"],
               ["Anomalous columns", "yes" if s.get("anomalous") else "no"],
               ["Wilson B (Å²)", _fmt(stats.get("wilson_b"), ".2f")]]
    columns = [[c, COLUMN_MEANINGS.get(c, "")] for c in s["columns"]]
    return {"tables": [_table("merged", "Merged data", ["Quantity", "Value"], summary),
                       _table("columns", "Columns written to merged.mtz", ["Column", "Content"], columns),
                       *merging_tables(stats)],
            "figures": [f for f in (resolution_figure(stats),) if f is not None],
            "downloads": _downloads(run)}


# --- export ------------------------------------------------------------------------------------


def _export_names(run, n: int) -> list[str]:
    """The names of the export's data sets (in the order of its input, scaled.expt): the
    input scale run's data sets that it kept, on the sweeps this run was given."""
    from xtalweb.projects.ensemble import sweeps_by_identifier

    scale = next((p for p in run.parents.all() if p.stage == "scale"), None)
    if scale is None:
        return [""] * n
    names = _sweep_names(scale)
    kept = [d.get("identifier") for d in (scale.summary or {}).get("datasets") or [] if "excluded" not in d]
    wanted = {r.index for r in run.sweep_runs.all()}
    by_ident = sweeps_by_identifier(scale)
    if wanted and by_ident:
        kept = [i for i in kept if by_ident.get(i) in wanted]
    if len(kept) != n:
        return [""] * n
    return [names.get(i) or i or "" for i in kept]


@report("export")
def export_report(run, rows: list[dict]) -> dict:
    s = run.summary or {}
    per = s.get("observations_per_dataset")
    if per is None:
        return {"tables": [], "figures": [], "downloads": _downloads(run)}
    names = _export_names(run, len(per))
    summary = [["Observations written", s.get("n_observations")], ["Data sets", s.get("n_datasets")],
               ["Space group", s.get("space_group")],
               ["Unit cell (Å, °) (median)", ", ".join(f"{float(v):.3f}" for v in s.get("unit_cell") or [])],
               ["MTZ project / crystal", f"{s.get('project_name')} / {s.get('crystal_name')}"]]
    counts = [[k, names[k] or None, n] for k, n in enumerate(per)]
    labels = [f"{k}: {names[k]}" if names[k] else str(k) for k in range(len(per))]
    return {"tables": [_table("export", "Exported", ["Quantity", "Value"], summary),
                       _table("per_dataset", "Observations per data set", ["Data set", "Sweep", "Observations"],
                              counts, ["succeeded" if n else "failed" for n in per],
                              note="scaled_unmerged.mtz has one batch range per data set; scaled.cif holds the same "
                                   "observations as mmCIF.")],
            "figures": [{"id": "per_dataset", "title": "Observations per data set",
                         "data": [{"type": "bar", "x": labels, "y": per, "name": "observations"}],
                         "layout": {"xaxis": {"title": {"text": "data set"}, "type": "category"},
                                    "yaxis": {"title": {"text": "observations"}}, "margin": {"t": 30}}}],
            "downloads": _downloads(run)}
