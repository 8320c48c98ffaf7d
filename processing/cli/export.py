"""`xtal export scaled.expt scaled.refl` (dials.export of scaled data): writes
scaled_unmerged.mtz (one batch range per data set) and scaled.cif (mmCIF reflections)."""
from __future__ import annotations

from .command import Command, run_command


def report(summary: dict, experiments, table, params) -> str:
    per = summary["observations_per_dataset"]
    return (f"{summary['n_observations']} scaled observations of {summary['n_datasets']} data sets "
            f"(space group {summary['space_group']}); per data set: {min(per)} – {max(per)}")


COMMAND = Command("export", "xtal export scaled.expt scaled.refl [key=value …]", report,
                  ignored=("format", "output.log"))


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
