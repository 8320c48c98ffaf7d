"""`xtal symmetry integrated.expt integrated.refl [space_group=…] [d_min=…]` (dials.symmetry).

The same tables as `xtal cosym` (operations, subgroups, best solution, space groups by
systematic absences) for one sweep or several indexed in one setting.
"""
from __future__ import annotations

from .command import Command, run_command
from .cosym import report

COMMAND = Command("symmetry", "xtal symmetry integrated.expt integrated.refl [key=value …]", report)


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
