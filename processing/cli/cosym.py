"""`xtal cosym integrated.expt integrated.refl [space_group=…] [d_min=…] [seed=…]` (dials.cosym).

Prints dials.cosym's tables — the score of every lattice operation, the subgroups,
the best solution and the reindexing operator of each data set — and writes
symmetrized.expt/.refl.
"""
from __future__ import annotations

from .command import Command, run_command
from .tables import num, psql_table


def _operators(summary: dict) -> str:
    rows = [[f"{o['likelihood']:.3f}", f"{o['z_cc']:.2f}", f"{o['cc']:.2f}", "***" if o["in_best"] else "",
             o["operator"]] for o in summary["operators"]]
    return psql_table(["likelihood", "Z-CC", "CC", "", "Operator"], rows)


def _subgroups(summary: dict) -> str:
    rows = [[r["patterson_group"], "***" if k == 0 else "", f"{r['likelihood']:.3f}", f"{r['z_cc_net']:.2f}",
             f"{r['z_cc_for']:.2f}", f"{r['z_cc_against']:.2f}", r["reindex_operator"]]
            for k, r in enumerate(summary["subgroups"][:12])]
    return psql_table(["Patterson group", "", "Likelihood", "NetZcc", "Zcc+", "Zcc-", "Reindex operator"], rows)


def _screw_axes(summary: dict) -> str:
    """dials.symmetry's systematic-absence tables: each screw axis, then each space group's score."""
    axes = [[a["axis"], f"{a['score']:.3f}", a["n_expected_present"], a["n_expected_absent"],
             num(a["mean_i_over_sigma_present"], ".3f"), num(a["mean_i_over_sigma_absent"], ".3f"),
             num(a["z_score"], ".2f"), a["verdict"]] for a in summary["screw_axes"]]
    groups = [[g["space_group"], f"{g['score']:.4f}", "***" if g["chosen"] else ""]
              for g in summary.get("space_groups", []) if "score" in g]
    return "\n".join([psql_table(["Screw axis", "Score", "No. present", "No. absent", "<I/sig> present",
                                   "<I/sig> absent", "z absent", "Verdict"], axes), "",
                      psql_table(["Space group", "Score", ""], groups)])


def _resolution(summary: dict, params) -> list[str]:
    res = summary.get("resolution") or {}
    if res.get("d_min_given") is not None or "d_min_cc_half" not in res:
        return []
    return [f"Automatic d_min: ⟨I⟩/⟨σ⟩ < {params.min_i_mean_over_sigma_mean:g} from "
            f"{num(res.get('d_min_i_mean_over_sigma_mean'), '.2f')} Å, CC½ < {params.min_cc_half:g} from "
            f"{num(res.get('d_min_cc_half'), '.2f')} Å (— : never)", ""]


def report(summary: dict, experiments, reflections, params) -> str:
    best = summary["best"]
    cell = ", ".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in best["unit_cell"])
    by_op: dict[str, list[int]] = {}
    for k, d in enumerate(summary["datasets"]):
        by_op.setdefault(d["operator"], []).append(k)
    embedding = f"embedding in {summary['dimensions']} dimensions; " if summary.get("dimensions") else ""
    out = [f"Lattice group: {summary['lattice_group']} ({summary['n_operations']} operations); "
           f"{embedding}d_min {num(summary['d_min'])} Å", "",
           *_resolution(summary, params), _operators(summary), "", _subgroups(summary), "",
           f"Best solution: {best['patterson_group']}", f"Space group: {best['space_group']}",
           f"Unit cell: ({cell})", f"Reindex operator: {best['reindex_operator']}",
           f"Laue group probability: {best['probability']:.3f}",
           f"Laue group confidence: {best['confidence']:.3f}"]
    if best.get("user_space_group"):
        out.append(f"space_group={best['user_space_group']} given: used"
                   + (f" (the analysis alone would choose {best['analysis_would_choose']})"
                      if best.get("analysis_would_choose") != best["patterson_group"] else ""))
    if summary.get("reference"):
        ref = summary["reference"]
        out.append(f"Reference {ref['path']} ({ref['column']}): setting {ref['chosen']} chosen; CC with the "
                   "reference: " + ", ".join(f"{r['operator']} {num(r['cc'], '.3f')} ({r['n']} reflections)"
                                             for r in ref["settings"]))
    if summary.get("screw_axes"):
        out += ["", _screw_axes(summary), ""]
    if summary.get("absences_note"):
        out.append(summary["absences_note"])
    out.append("Reindexing operators:")
    out += [f"{op}: {ids}" for op, ids in sorted(by_op.items())]
    st = summary.get("stability") or {}
    if st.get("runs"):
        out.append("Stability (the analysis rerun): " + "; ".join(
            f"{r['run']} ({r['n_datasets']} data sets): Laue group {'same' if r['laue_group_same'] else 'DIFFERENT'}, "
            f"operators {100 * r['operators_agree']:.0f} % agree" for r in st["runs"]))
        shaky = [k for k, v in st["operator_agreement"].items() if v < 1]
        if shaky:
            out.append("Data sets whose operator changed between reruns: " + ", ".join(shaky))
    elif st.get("skipped"):
        out.append(f"Stability check skipped: {st['skipped']}")
    for x in summary["excluded"]:
        out.append(f"Left out: data set {x['id']} ({x['identifier']}): {x['reason']}")
    return "\n".join(out)


COMMAND = Command("cosym", "xtal cosym integrated.expt integrated.refl [key=value …]", report)


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
