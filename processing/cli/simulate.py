"""`xtal simulate [preset=tiny] [output_dir=DIR] [key=value…]`: data with known truth."""
from __future__ import annotations

from ..params import from_strings
from ..simulate import PRESETS, SimulateParams, run_simulate
from .command import split_args
from .main import print_help


def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_:
        print_help("simulate", SimulateParams)
        print("\npresets: " + ", ".join(PRESETS))
        return 0
    if files:
        words.append(f"output_dir={files[0]}")
    params = from_strings(SimulateParams, words)
    _, summary = run_simulate(params)
    crystals = summary.get("crystals", [])
    print(f"Simulated {len(crystals)} crystal(s), preset {summary['preset']}, mode {summary['mode']}: "
          f"{summary['space_group']} {', '.join(f'{v:g}' for v in summary['unit_cell'])}")
    print(f"{'crystal':>8} {'cell a (Å)':>11} {'setting':>9} {'flags':<24}")
    for c in crystals:
        flags = ",".join(c.get("flags", [])) or "-"
        print(f"{c['index']:>8} {c['unit_cell'][0]:>11.3f} {c.get('change_of_basis_op', ''):>9} {flags:<24}")
    print(f"Files written to {params.output_dir}")
    return 0
