"""`xtal import FILES… [image_range=a,b] [output.experiments=imported.expt]`."""
from __future__ import annotations

import os

from ..io.expt import write_experiments
from ..params import from_strings
from ..pipeline import ImportParams, run_import
from .main import pop_outputs, print_help, split_args

RULE = "-" * 80


def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_:
        print_help("import", ImportParams)
        print("  output = imported.expt\n      where to write the experiment list")
        return 0
    outputs, kept = pop_outputs(words, experiments="imported.expt")
    output = outputs["experiments"]
    params = from_strings(ImportParams, kept, paths=tuple(files))
    experiments, summary = run_import(params)
    print(RULE)
    print(f"  format: {summary['format']}")
    print(f"  num images: {summary['n_images']}")
    print("  sequences:")
    print(f"    still:    {len(experiments) - summary['n_sweeps']}")
    print(f"    sweep:    {summary['n_sweeps']}")
    print(f"  num stills: {summary['n_stills']}")
    print(RULE)
    for s in summary["sweeps"]:
        a, b = s["image_range"]
        print(f"  {s['name']}: images {a}–{b}, oscillation {s['oscillation'][0]:g}° + {s['oscillation'][1]:g}°, "
              f"λ {s['wavelength']:.5f} Å, beam centre ({s['beam_centre_px'][0]:.2f}, {s['beam_centre_px'][1]:.2f}) px, "
              f"distance {s['distance_mm']:.2f} mm")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    write_experiments(output, experiments)
    print(f"Writing experiments to {output}")
    return 0
