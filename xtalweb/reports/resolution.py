"""The estimate_resolution report, drawn from the run's stored summary only.

Tables: the recommended d_min with its uncertainty (the Fisher-z errors of the shells'
CC½ propagated through the tanh fit), and every criterion (limit, d_min, status,
message) as dials.estimate_resolution prints them. Figures: CC½ against resolution
(x = 1/d², ticks in Å) with the observed shells (open markers: left out of the fit, not
significant or outliers), the tanh fit with its ±σ band, the limit line (0.3 by
default), the cut and its interval; one figure for each other criterion in use.

The d_min slider: the summary's ``cuts`` (statistics of the same observations cut at
24 trial resolutions) go into the page as JSON; ``static/js/resolution.js`` shows the
overall and outer-shell statistics at the chosen cut at once, and moves a line on the
CC½ figure. "Merge at this d_min" posts the cut to ``steering_views.merge_at_d_min``,
which queues a merge run from the estimate's scale run with that d_min.

The scale report shows the estimate its summary carries (``resolution_estimate``) as
one table, :func:`estimate_table` (no cuts there, so no slider).
"""

from __future__ import annotations

from django.urls import reverse

from .cosym import _table
from .figures import _COLOURS, _num
from .registry import report

#: the statistics the slider shows at a cut: (key, label, format); ``d`` an integer
CUT_STATISTICS = (("completeness", "Completeness (%)", ".1f"), ("multiplicity", "Multiplicity", ".2f"),
                  ("i_over_sigma", "⟨I/σ(I)⟩", ".1f"), ("cc_half", "CC½", ".3f"), ("rpim", "Rpim", ".3f"),
                  ("rmerge", "Rmerge", ".3f"), ("n_obs", "Observations", "d"), ("n_unique", "Unique reflections", "d"))

#: what each criterion's status means, for the table's row colour
_ROW_STATUS = {"crossed": "succeeded", "last_significant_shell": "succeeded", "never_reached": "succeeded",
               "off": "skipped", "no_crossing": "bad", "too_few_shells": "bad", "no_data": "failed"}


def _fmt(x, spec: str):
    """``format(x, spec)``; None (shown "—") for a missing or non-finite value."""
    if spec == "d":
        return None if x is None else int(x)
    v = _num(x, 12)
    return None if v is None else format(v, spec)


def _d_text(d, err=None) -> str | None:
    """``1.96 ± 0.04 Å`` (``1.96 Å`` without an error); None without a d_min."""
    d = _num(d, 12)
    if d is None:
        return None
    e = _num(err, 12)
    return f"{d:.2f} ± {e:.2f} Å" if e is not None else f"{d:.2f} Å"


def _inv_d2(d) -> float | None:
    d = _num(d, 12)
    return None if d is None or d <= 0 else round(1.0 / d ** 2, 6)


def recommended_text(est: dict) -> str:
    """The recommendation in one line: ``1.96 ± 0.04 Å (cc_half limit)``, or the message."""
    rec = est.get("recommended") or {}
    text = _d_text(est.get("d_min"), est.get("d_min_error"))
    if text is None:
        return rec.get("message") or "no estimate"
    return f"{text} ({rec.get('message') or rec.get('criterion') or 'estimate'})"


def estimate_table(est: dict, id_: str = "resolution_estimate", title: str = "Resolution estimate") -> dict:
    """The recommended d_min with its uncertainty and what it rests on."""
    criteria = est.get("criteria") or {}
    cc = criteria.get("cc_half") or {}
    rows = [["Recommended d_min", recommended_text(est)]]
    interval = cc.get("d_min_interval")
    if interval and interval[0] is not None:
        hi = _fmt(interval[1], ".2f") if interval[1] is not None else "∞"
        rows.append(["CC½ cut ± 1σ (Å)", f"{_fmt(interval[0], '.2f')} – {hi}"])
    if cc.get("d_min_error_with_misfit") is not None:
        rows.append(["± with the fit's misfit (χ²/dof " + (_fmt(cc.get("chi2_per_dof"), ".2f") or "—") + ")",
                     f"{_fmt(cc['d_min_error_with_misfit'], '.2f')} Å"])
    if est.get("data_d_min") is not None:
        rows.append(["Data (Å)", f"{_fmt(est.get('data_d_max'), '.2f')} – {_fmt(est.get('data_d_min'), '.2f')}"])
    for label, key in (("Observations", "n_observations"), ("Unique reflections", "n_unique"),
                       ("Shells", "n_shells"), ("Wilson outliers left out", "n_wilson_outliers"),
                       ("Data sets", "n_datasets")):
        if est.get(key) is not None:
            rows.append([label, est[key]])
    method = est.get("method") or {}
    note = None
    if method:
        note = (f"CC½ by {method.get('cc_half_method')}, fit {method.get('cc_half_fit')}, shells "
                f"{method.get('binning_method')} (at most {method.get('nbins')}). Uncertainty: "
                f"{method.get('uncertainty') or '—'}.")
    return _table(id_, title, ["Quantity", "Value"], rows, note=note)


#: dials.estimate_resolution's order of the criteria (the stored summary's keys may come back sorted)
ORDER = ("cc_half", "isigma", "misigma", "i_mean_over_sigma_mean", "rmerge", "completeness")


def _criteria(est: dict) -> list[tuple[str, dict]]:
    items = (est.get("criteria") or {}).items()
    return sorted(items, key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0]))


def criteria_table(est: dict) -> dict:
    rows, status = [], []
    for name, c in _criteria(est):
        limit = c.get("limit")
        err = c.get("d_min_error")
        rows.append([c.get("label") or name, "—" if limit is None else f"{limit:g}",
                     _fmt(c.get("d_min"), ".2f"), None if err is None else _fmt(err, ".2f"),
                     c.get("fit"), c.get("status"), c.get("message")])
        status.append(_ROW_STATUS.get(c.get("status"), "succeeded"))
    return _table("criteria", "Resolution criteria", ["Criterion", "Limit", "d_min (Å)", "± (Å)", "Fit", "Status",
                                                      "Message"], rows, status,
                  note="The recommended d_min is the lowest resolution of the criteria that cut the data. "
                       "Set a criterion's limit in the run form to use it (None: not used).")


def _vertical(x, name, colour, dash="solid", y=(0.0, 1.0), yref_axis="y") -> dict:
    return {"type": "scatter", "mode": "lines", "name": name, "x": [x, x], "y": list(y),
            "line": {"color": colour, "dash": dash, "width": 2}, "hoverinfo": "name", "yaxis": yref_axis}


def criterion_figure(name: str, c: dict, *, slider_d=None, fig_id: str | None = None) -> dict | None:
    """One criterion's observed shells, fit, limit line and cut against 1/d² (ticks in Å).
    CC½ adds the ±σ band of the fit, the significance threshold and the cut's interval."""
    curve = c.get("curve") or {}
    s = [_num(v, 6) for v in curve.get("s") or []]
    if not s:
        return None
    observed = [_num(v, 4) for v in curve.get("observed") or []]
    fit = [_num(v, 4) for v in curve.get("fit") or []]
    used = list(curve.get("used") or [True] * len(s))
    text = [f"{float(d):.2f} Å" if d is not None else "" for d in curve.get("d") or [None] * len(s)]
    label = "CC½" if name == "cc_half" else (c.get("label") or name)
    finite = [v for v in observed + fit if v is not None]
    if name == "cc_half":
        y_range = [min(0.0, min(finite, default=0.0)) - 0.02, 1.02]
    else:
        lo, hi = min(finite + [c.get("limit") or 0.0], default=0.0), max(finite + [c.get("limit") or 0.0], default=1.0)
        pad = 0.05 * (hi - lo or 1.0)
        y_range = [lo - pad, hi + pad]
    data = []
    band = [_num(v, 4) for v in curve.get("fit_error") or []]
    if name == "cc_half" and any(b is not None for b in band):
        pairs = [(x, f, b) for x, f, b in zip(s, fit, band) if None not in (x, f, b)]
        data.append({"type": "scatter", "mode": "lines", "name": "fit + σ", "x": [p[0] for p in pairs],
                     "y": [round(p[1] + p[2], 4) for p in pairs], "line": {"width": 0, "color": _COLOURS[1]},
                     "showlegend": False, "hoverinfo": "skip"})
        data.append({"type": "scatter", "mode": "lines", "name": "fit ± σ (Fisher-z errors)",
                     "x": [p[0] for p in pairs], "y": [round(p[1] - p[2], 4) for p in pairs],
                     "line": {"width": 0, "color": _COLOURS[1]}, "fill": "tonexty",
                     "fillcolor": "rgba(255, 127, 14, 0.25)", "hoverinfo": "skip"})
    errors = [_num(v, 4) for v in curve.get("error") or []]
    obs = {"type": "scatter", "mode": "markers", "name": f"{label} observed", "x": s, "y": observed, "text": text,
           "hovertemplate": "%{text}: %{y}<extra>" + f"{label} observed" + "</extra>",
           "marker": {"color": _COLOURS[0], "size": 6,
                      "symbol": ["circle" if u else "circle-open" for u in used]}}
    if name == "cc_half" and any(e is not None for e in errors):
        obs["error_y"] = {"type": "data", "array": [e if e is not None else 0 for e in errors], "visible": True,
                          "thickness": 1, "width": 0, "color": "rgba(31, 119, 180, 0.5)"}
    data.append(obs)
    if any(f is not None for f in fit):
        data.append({"type": "scatter", "mode": "lines", "name": f"{c.get('fit') or 'fit'} fit", "x": s, "y": fit,
                     "connectgaps": True, "line": {"color": _COLOURS[1], "width": 2},
                     "hovertemplate": "%{y}<extra>fit</extra>"})
    critical = [_num(v, 4) for v in curve.get("critical") or []]
    if any(v is not None for v in critical):
        data.append({"type": "scatter", "mode": "lines", "name": "significance threshold", "x": s, "y": critical,
                     "line": {"color": "#7f7f7f", "dash": "dot", "width": 1}, "hoverinfo": "skip"})
    limit = c.get("limit")
    x_lo, x_hi = min(v for v in s if v is not None), max(v for v in s if v is not None)
    if limit is not None:
        data.append({"type": "scatter", "mode": "lines", "name": f"{label} = {limit:g}", "x": [x_lo, x_hi],
                     "y": [limit, limit], "line": {"color": _COLOURS[3], "dash": "dash", "width": 1.5},
                     "hoverinfo": "name"})
    x_cut = _inv_d2(c.get("d_min"))
    if x_cut is not None:
        data.append(_vertical(x_cut, f"cut {float(c['d_min']):.2f} Å", _COLOURS[3], y=tuple(y_range)))
    layout = {"height": 460, "margin": {"t": 30}, "legend": {"orientation": "h", "y": -0.2},
              "xaxis": _resolution_axis(s), "yaxis": {"title": {"text": label}, "range": y_range}, "shapes": []}
    interval = c.get("d_min_interval")
    if interval and interval[0] is not None:
        x0 = _inv_d2(interval[1]) if interval[1] is not None else 0.0
        layout["shapes"].append({"type": "rect", "name": "interval", "xref": "x", "yref": "paper",
                                 "x0": x0, "x1": _inv_d2(interval[0]), "y0": 0, "y1": 1, "layer": "below",
                                 "line": {"width": 0}, "fillcolor": "rgba(214, 39, 40, 0.12)"})
    x_slider = _inv_d2(slider_d)
    if x_slider is not None:
        layout["shapes"].append({"type": "line", "name": "slider", "xref": "x", "yref": "paper", "x0": x_slider,
                                 "x1": x_slider, "y0": 0, "y1": 1,
                                 "line": {"color": "#2ca02c", "dash": "dot", "width": 2}})
    return {"id": fig_id or name, "title": f"{label} against resolution"
            + (f" (limit {limit:g})" if limit is not None else ""), "data": data, "layout": layout}


def _resolution_axis(values):
    from .scale import _resolution_axis as axis

    return axis(values)


def _nearest(cuts: list[dict], d) -> int:
    """Index of the cut nearest ``d`` in 1/d² (the data's edge without a d)."""
    x = _inv_d2(d)
    if x is None:
        return len(cuts) - 1
    return min(range(len(cuts)), key=lambda k: abs(1.0 / cuts[k]["d_min"] ** 2 - x))


def _outer_text(cut: dict) -> str:
    d_max = _num((cut.get("outer") or {}).get("d_max"), 12)
    return f"{d_max:.2f} – {cut['d_min']:.2f} Å" if d_max is not None else f"to {cut['d_min']:.2f} Å"


def slider_block(run, est: dict) -> dict | None:
    """The d_min slider over the summary's cuts (lowest resolution first), starting at the
    cut nearest the recommended d_min; the merge button's form when the run can be merged."""
    cuts = sorted((c for c in est.get("cuts") or [] if _num(c.get("d_min"), 12)), key=lambda c: -c["d_min"])
    if not cuts:
        return None
    start = _nearest(cuts, est.get("d_min"))
    merge_url = None
    if run.status in ("succeeded", "partial") and run.parents.filter(stage="scale").exists():
        merge_url = reverse("merge_at_d_min", args=[run.project_id, run.pk])
    return {"template": "reports/_resolution_slider.html", "id": "d-min-slider", "cuts": cuts, "start": start,
            "start_cut": cuts[start], "start_text": format(cuts[start]["d_min"], ".2f"),
            "start_value": format(cuts[start]["d_min"], ".3f"),
            "outer_text": _outer_text(cuts[start]),
            "recommended": _d_text(est.get("d_min"), est.get("d_min_error")),
            "statistics": [{"key": k, "label": label, "format": spec,
                            "overall": _fmt((cuts[start]["overall"] or {}).get(k), spec),
                            "outer": _fmt((cuts[start]["outer"] or {}).get(k), spec)}
                           for k, label, spec in CUT_STATISTICS],
            "figure": "figure-cc_half", "merge_url": merge_url}


@report("estimate_resolution")
def estimate_resolution_report(run, rows: list[dict]) -> dict:
    est = run.summary or {}
    if not est.get("criteria"):
        return {"tables": [], "figures": []}
    slider = slider_block(run, est)
    slider_d = slider["start_cut"]["d_min"] if slider else None
    figures = []
    for name, c in _criteria(est):
        if c.get("status") == "off" or not c.get("curve"):
            continue
        fig = criterion_figure(name, c, slider_d=slider_d if name == "cc_half" else None)
        if fig is not None:
            figures.append(fig)
    out = {"tables": [estimate_table(est), criteria_table(est)], "figures": figures}
    if slider:
        out.update(panels=[slider], scripts=["js/resolution.js"])
    return out
