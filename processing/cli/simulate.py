"""`xtal simulate [preset=tiny] [output_dir=DIR] [key=value…]`: data with known truth.

Presets: tiny, insulin-24, lysozyme-wedges, microcrystals (1° wedges, 2–5 lattices per
sweep) and insulin-realistic (header geometry errors, detector defects, ice, zingers,
flux jitter); any field overrides the preset (``xtal simulate -h`` lists them).
"""
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
    print(f"{'crystal':>8} {'cell a (Å)':>11} {'setting':>9} {'lattices':>8} {'flags':<24}")
    for c in crystals:
        flags = ",".join(c.get("flags", [])) or "-"
        print(f"{c['index']:>8} {c['unit_cell'][0]:>11.3f} {c.get('change_of_basis_op', ''):>9} "
              f"{c.get('n_lattices', 1):>8} {flags:<24}")
    header = summary.get("header_geometry", {}).get("errors")
    if header:
        print("Header geometry differs from the truth: " + ", ".join(f"{k} {v}" for k, v in header.items()))
    print(f"Files written to {params.output_dir}")
    return 0
