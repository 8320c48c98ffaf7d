"""`xtal merge scaled.expt scaled.refl [d_min=…] [anomalous=…] [truncate=…]` (dials.merge).

Prints the merging statistics and writes merged.mtz (IMEAN/SIGIMEAN, I(+)/I(−),
F/SIGF by French–Wilson, F(+)/F(−), DANO/SIGDANO, N)."""
from __future__ import annotations

from .command import Command, run_command
from .merging_table import format_merging_table


def report(summary: dict, experiments, merged, params) -> str:
    cell = ", ".join(f"{x:.4f}".rstrip("0").rstrip(".") for x in summary["unit_cell"])
    out = [f"{summary['n_observations']} observations merged into {summary['n_unique']} unique reflections",
           f"Space group {summary['space_group']}, unit cell ({cell}), wavelength {summary['wavelength']:.5f} Å",
           f"Columns: {' '.join(summary['columns'])}", ""]
    out += format_merging_table(summary["merging_statistics"])
    return "\n".join(out)


COMMAND = Command("merge", "xtal merge scaled.expt scaled.refl [key=value …]", report,
                  ignored=("output.html", "output.log", "output.json"))


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
