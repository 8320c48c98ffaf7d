"""The cosym report: operator and subgroup scores, best solution, per-data-set
reindexing, excluded data sets, the space groups the absences allow, and the embedding
(one point per data set, coloured by its operator, hover names the sweep)."""

from __future__ import annotations

import os

from .figures import _COLOURS, _num
from .registry import report


def _sweep_names(run) -> dict[str, str]:
    """Experiment identifier → sweep name, from the nearest input run that maps them."""
    todo, seen = list(run.parents.all()), set()
    while todo:
        r = todo.pop(0)
        if r.pk in seen:
            continue
        seen.add(r.pk)
        exps = (r.summary or {}).get("experiments")
        if exps:
            return {e.get("identifier"): e.get("name") or "" for e in exps}
        todo.extend(r.parents.all())
    return {}


def _table(id_, title, columns, rows, status=None, note=None) -> dict:
    out = {"id": id_, "title": title, "columns": columns, "rows": rows,
           "row_status": status or ["succeeded"] * len(rows)}
    if note:
        out["note"] = note
    return out


def _embedding(summary: dict, names: dict) -> dict:
    traces = []
    ops = sorted({d["operator"] for d in summary.get("datasets", [])})
    for k, op in enumerate(ops):
        sets = [d for d in summary["datasets"] if d["operator"] == op]
        traces.append({"type": "scatter", "mode": "markers", "name": op,
                       "x": [d["coordinates"][0] for d in sets], "y": [d["coordinates"][1] for d in sets],
                       "text": [f"{names.get(d['identifier']) or d['identifier']} (data set {d['id']})" for d in sets],
                       "hovertemplate": "%{text}<extra>%{fullData.name}</extra>",
                       "marker": {"color": _COLOURS[k % len(_COLOURS)], "size": 9}})
    return {"id": "embedding", "title": "Embedding (first two dimensions)", "data": traces,
            "layout": {"xaxis": {"title": {"text": "x₁"}, "zeroline": True},
                       "yaxis": {"title": {"text": "x₂"}, "scaleanchor": "x"},
                       "legend": {"title": {"text": "reindexing operator"}}, "margin": {"t": 30}}}


def _functional(summary: dict) -> dict:
    f = summary.get("functional") or {}
    dims = sorted(f, key=int)
    return {"id": "functional", "title": "Cosym functional against dimensions",
            "data": [{"type": "scatter", "mode": "lines+markers", "x": [int(d) for d in dims],
                      "y": [f[d] for d in dims], "name": "Φ"}],
            "layout": {"xaxis": {"title": {"text": "dimensions"}, "dtick": 1},
                       "yaxis": {"title": {"text": "functional Φ"}}, "margin": {"t": 30},
                       "shapes": [{"type": "line", "x0": summary.get("dimensions"), "x1": summary.get("dimensions"),
                                   "yref": "paper", "y0": 0, "y1": 1, "line": {"dash": "dot"}}]}}


@report("symmetry")
@report("cosym")
def cosym_report(run, rows: list[dict]) -> dict:
    s = run.summary or {}
    if not s.get("best"):
        return {"tables": [], "figures": []}
    names = _sweep_names(run)
    best = s["best"]
    chosen = [["Best solution", best["patterson_group"]], ["Space group", best["space_group"]],
              ["Unit cell (Å, °)", ", ".join(f"{v:.3f}" for v in best["unit_cell"])],
              ["Reindex operator", best["reindex_operator"]],
              ["Laue group probability", _num(best["probability"], 3)],
              ["Laue group confidence", _num(best["confidence"], 3)],
              ["Lattice group", f"{s.get('lattice_group')} ({s.get('n_operations')} operations)"],
              ["Embedding dimensions", s.get("dimensions")], ["d_min (Å)", _num(s.get("d_min"), 2)]]
    if best.get("user_space_group"):
        would = best.get("analysis_would_choose")
        chosen.append(["Given space_group", best["user_space_group"]
                       + (f" — the analysis alone would choose {would}" if would != best["patterson_group"] else "")])
    if s.get("reference"):
        ref = s["reference"]
        chosen.append(["Reference", f"{os.path.basename(ref['path'])} ({ref['column']}): setting {ref['chosen']}, "
                       + ", ".join(f"CC {_num(r['cc'], 3)} for {r['operator']}" for r in ref["settings"])])
    operators = [[_num(o["likelihood"], 3), _num(o["z_cc"], 2), _num(o["cc"], 2), "***" if o["in_best"] else "",
                  o["operator"]] for o in s["operators"]]
    subgroups = [[r["patterson_group"], _num(r["likelihood"], 3), _num(r["z_cc_net"], 2), _num(r["z_cc_for"], 2),
                  _num(r["z_cc_against"], 2), r["reindex_operator"]] for r in s["subgroups"][:15]]
    datasets = [[d["id"], names.get(d["identifier"]) or d["identifier"], d["operator"], d["n_reflections"]]
                for d in s["datasets"]]
    excluded = [[x["id"], names.get(x["identifier"]) or x["identifier"], x["reason"]] for x in s["excluded"]]
    groups = [[g["space_group"], g["n_absent"], _num(g["mean_i_over_sigma_absent"], 2), "***" if g["chosen"] else ""]
              for g in s.get("space_groups", [])]
    screws = [[a["axis"], a["n_expected_absent"], a["n_expected_present"], _num(a["mean_i_over_sigma_absent"], 2),
               _num(a["mean_i_over_sigma_present"], 2), _num(a["z_score"], 2), _num(a["score"], 3), a["verdict"]]
              for a in s.get("screw_axes", [])]
    st = s.get("stability") or {}
    stability = [[r["run"], r["n_datasets"], "same" if r["laue_group_same"] else "different",
                  f"{100 * r['operators_agree']:.0f} %"] for r in st.get("runs", [])]
    shaky = [k for k, v in (st.get("operator_agreement") or {}).items() if v < 1]
    note = st.get("skipped") and f"Skipped: {st['skipped']}" or (
        f"Operators changed between reruns for: {', '.join(names.get(k) or k for k in shaky)}" if shaky
        else "Every data set kept its operator in every rerun.")
    return {
        "tables": [
            _table("best", "Best solution", ["Quantity", "Value"], chosen),
            _table("operators", "Lattice operations (*** : in the best solution)",
                   ["Likelihood", "Z-CC", "CC", "", "Operator"], operators),
            _table("subgroups", "Subgroups", ["Patterson group", "Likelihood", "NetZcc", "Zcc+", "Zcc−",
                                              "Reindex operator"], subgroups),
            _table("reindexing", "Reindexing of each data set", ["Data set", "Sweep", "Operator", "Reflections"],
                   datasets),
            _table("stability", "Stability: the analysis rerun on halves and with another seed",
                   ["Rerun", "Data sets", "Laue group", "Operators agreeing"], stability,
                   ["succeeded" if r[2] == "same" else "failed" for r in stability], note=note),
            _table("excluded", "Data sets left out", ["Data set", "Sweep", "Reason"], excluded,
                   ["failed"] * len(excluded)),
            _table("space_groups", "Space groups by systematic absences",
                   ["Space group", "Absent reflections", "⟨I/σ⟩ of absent", ""], groups,
                   note=s.get("absences_note") or None),
            *([_table("screw_axes", "Screw axes (dials.symmetry's direct test)",
                      ["Screw axis", "Expected absent", "Expected present", "⟨I/σ⟩ absent", "⟨I/σ⟩ present",
                       "z (absent)", "Score", "Verdict"], screws)]
              if screws else []),
        ],
        "figures": [_embedding(s, names), _functional(s)] if s.get("dimensions") else [],
    }
