"""`xtal integrate refined.expt refined.refl [d_min=…] [nproc=…] [profile.fitting=…]` (dials.integrate)."""
from __future__ import annotations

from .command import Command, run_command
from .tables import num

RULE = "-" * 80


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
                f"overloaded {s['n_overloaded']}, bad foreground {s['n_bad_foreground']}; "
                f"spike pixels left out {s.get('n_spike_pixels', 0)}", ""]
        head = ("d min", "d max", "# full", "# part", "# over", "# sum", "# prf", "<Ibg>", "<I/sigI> (sum)",
                "<I/sigI> (prf)", "<CC prf>")
        rows = [head] + [(f"{r['d_min']:.2f}", f"{r['d_max']:.2f}", str(r["n_full"]), str(r["n_partial"]),
                          str(r["n_overloaded"]), str(r["n_integrated_sum"]), str(r["n_integrated_prf"]),
                          num(r["mean_background"]), num(r["mean_ios_sum"]), num(r["mean_ios_prf"]),
                          num(r["mean_correlation"])) for r in s["resolution_table"]]
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


COMMAND = Command("integrate", "xtal integrate refined.expt refined.refl [key=value …]",
                  lambda summary, *_: format_summary(summary))


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
