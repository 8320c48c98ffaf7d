"""`xtal estimate_resolution scaled.expt scaled.refl [cc_half=0.3] [misigma=1] …` (dials.estimate_resolution).

Prints what dials.estimate_resolution prints — the Wilson outliers left out and one
"Resolution <criterion>: d_min" line per criterion — after a table of the criteria, their
limits, fits and verdicts, and the recommended d_min with the uncertainty of the CC½ cut.
Writes no file.
"""
from __future__ import annotations

from .command import Command, run_command
from .tables import num, psql_table

STATUS = {"crossed": "fit reaches the limit", "never_reached": "holds in every shell",
          "last_significant_shell": "last significant shell", "no_crossing": "fit does not reach the limit",
          "too_few_shells": "too few shells", "no_data": "no data", "off": "not used"}


def plus_minus(err: float | None) -> str:
    """" ± 0.03" (three decimals below 0.005 Å); "" without an error."""
    if err is None:
        return ""
    return f" ± {err:.2f}" if err >= 0.005 else f" ± {err:.3f}"


def resolution_line(label: str, d_min: float) -> str:
    """DIALS's line: ``Resolution cc_half:       1.52``."""
    return f"Resolution {label}:{d_min:{max(18 - len(label), 1)}.2f}"


def report(summary: dict, experiments, reflections, params) -> str:
    out = []
    if summary.get("unit_cell"):
        cell = ", ".join(f"{x:.4f}".rstrip("0").rstrip(".") for x in summary["unit_cell"])
        out.append(f"Using median unit cell across experiments : ({cell}); space group {summary.get('space_group')}")
    if params.emax is not None:
        out.append(f"Removing {summary['n_wilson_outliers']} Wilson outliers with E^2 >= {params.emax ** 2:.1f}")
    m = summary["method"]
    if summary.get("data_d_min") is not None:
        out.append(f"{summary['n_observations']} observations of {summary['n_unique']} unique reflections, "
                   f"{summary['data_d_max']:.2f}–{summary['data_d_min']:.2f} Å, in {summary['n_shells']} shells "
                   f"({m['binning_method']}); CC½ by {m['cc_half_method']}, fitted by {m['cc_half_fit']}")
    rows = []
    for c in summary["criteria"].values():
        if c["limit"] is None:
            continue
        d = num(c["d_min"], ".2f")
        if c["criterion"] == "cc_half" and c.get("d_min_error") is not None:
            d += plus_minus(c["d_min_error"])
        rows.append([c["label"], num(c["limit"], "g"), d, c.get("fit") or "", STATUS.get(c["status"], c["status"])])
    if rows:
        out += ["", psql_table(["Criterion", "Limit", "d_min (Å)", "Fit", "Verdict"], rows, align="left"), ""]
    for c in summary["criteria"].values():
        if c["limit"] is None:
            continue
        if c["d_min"] is not None:
            out.append(resolution_line(c["label"], c["d_min"]))
        elif c["status"] == "never_reached" and summary.get("data_d_min") is not None:
            out.append(resolution_line(c["label"], summary["data_d_min"]) + "  (the data's edge: no cut)")
        else:
            out.append(f"Resolution fit against {c['criterion']} gave no limit: {c['message']}")
    cc = summary["criteria"].get("cc_half") or {}
    if cc.get("parameters") and "s0" in cc["parameters"]:
        p = cc["parameters"]
        line = f"CC½ fit: ½(1 − tanh((s − {p['s0']:.4f})/{p['r']:.4f})), s = 1/d²; {cc['n_shells_fitted']} shells"
        if cc.get("d_min_error") is not None:
            lo, hi = cc["d_min_interval"]
            line += (f"; d_min {cc['d_min']:.3f} ± {cc['d_min_error']:.3f} Å (1σ from the shells' Fisher-z errors: "
                     f"{num(lo, '.3f')}–{num(hi, '.3f')} Å)")
        out.append(line)
    rec = summary["recommended"]
    if rec["d_min"] is not None:
        err = plus_minus(rec.get("d_min_error"))
        out.append(f"Recommended d_min: {rec['d_min']:.2f}{err} Å ({rec['message']})")
    else:
        out.append(f"Recommended d_min: none ({rec['message']})")
    return "\n".join(out)


COMMAND = Command("estimate_resolution", "xtal estimate_resolution scaled.expt scaled.refl [key=value …]", report,
                  ignored=("output.html", "output.log", "output.json"))


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
