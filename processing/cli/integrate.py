"""`xtal integrate refined.expt refined.refl [d_min=…] [nproc=…] [profile.fitting=…]` (dials.integrate)."""
from __future__ import annotations

import os

from ..errors import XtalError
from ..integration import IntegrateParams, run_integrate
from ..io.expt import read_experiments, write_experiments
from ..io.refl import read_reflections, write_reflections
from ..params import from_strings
from .main import print_help, split_args

RULE = "-" * 80
ALIASES = {"profile.fitting": "profile_fitting", "integration.profile.fitting": "profile_fitting",
           "background.algorithm": "background_algorithm", "prediction.d_min": "d_min",
           "mp.nproc": "nproc",
           "profile.valid_foreground_threshold": "valid_foreground_threshold", "sigma_b": "sigma_b", "sigma_m": "sigma_m"}


def format_summary(summary: dict) -> str:
    out = []
    for s in summary["sweeps"]:
        pm = s["profile_model"]
        out += [RULE, f" Summary vs resolution for {s['name']}", RULE,
                f" profile model: sigma_b {pm['sigma_b']:.4f}°, sigma_m {pm['sigma_m']:.4f}°, n_sigma {pm['n_sigma']:g}",
                f" predicted {s['n_predicted']}, references {s['n_reference']} (learned {s['n_learned']}), "
                f"profile regions {s['profile_regions_used']}",
                f" integrated: sum {s['n_integrated_sum']}, prf {s['n_integrated_prf']}; failed: background "
                f"{s['n_failed_background']}, summation {s['n_failed_summation']}, prf {s['n_failed_prf']}; "
                f"overloaded {s['n_overloaded']}, bad foreground {s['n_bad_foreground']}", ""]
        head = ("d min", "d max", "# full", "# part", "# over", "# sum", "# prf", "<Ibg>", "<I/sigI> (sum)",
                "<I/sigI> (prf)", "<CC prf>")
        rows = [head] + [(f"{r['d_min']:.2f}", f"{r['d_max']:.2f}", str(r["n_full"]), str(r["n_partial"]),
                          str(r["n_overloaded"]), str(r["n_integrated_sum"]), str(r["n_integrated_prf"]),
                          f"{r['mean_background']:.2f}", f"{r['mean_ios_sum']:.2f}", f"{r['mean_ios_prf']:.2f}",
                          f"{r['mean_correlation']:.2f}") for r in s["resolution_table"]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        out.append(line)
        for k, r in enumerate(rows):
            out.append("| " + " | ".join(v.rjust(w) for v, w in zip(r, widths)) + " |")
            if k == 0:
                out.append(line)
        out.append(line)
    out.append(f"Integrated {summary['n_integrated_sum']} (sum) and {summary['n_integrated_prf']} (prf) of "
               f"{summary['n_predicted']} predicted reflections in {summary['seconds']:.1f} s")
    return "\n".join(out)


def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_:
        print_help("integrate", IntegrateParams)
        print("  output.experiments = integrated.expt\n  output.reflections = integrated.refl")
        return 0
    expt_path = "integrated.expt"
    refl_path = "integrated.refl"
    kept = []
    for w in words:
        key, _, value = w.partition("=")
        if key == "output.experiments":
            expt_path = value
        elif key == "output.reflections":
            refl_path = value
        else:
            kept.append(f"{ALIASES.get(key, key)}={value}")
    expts = [f for f in files if f.endswith(".expt") or f.endswith(".json")]
    refls = [f for f in files if f.endswith(".refl") or f.endswith(".pickle")]
    if len(expts) != 1 or len(refls) != 1:
        raise XtalError("usage: xtal integrate refined.expt refined.refl [key=value…]")
    for path in expts + refls:
        if not os.path.exists(path):
            raise XtalError(f"{path}: no such file")
    params = from_strings(IntegrateParams, kept)
    experiments = read_experiments(expts[0])
    reflections = read_reflections(refls[0])
    experiments, table, summary = run_integrate(experiments, reflections, params)
    print(format_summary(summary))
    for path in (expt_path, refl_path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_experiments(expt_path, experiments)
    write_reflections(refl_path, table)
    print(f"Saving {len(table)} reflections to {refl_path}\nSaving the experiments to {expt_path}")
    return 0
