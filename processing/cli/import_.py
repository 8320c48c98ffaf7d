"""`xtal import FILES… [image_range=a,b] [output.experiments=imported.expt]` (dials.import)."""
from __future__ import annotations

from .command import Command, run_command

RULE = "-" * 80


def report(summary: dict, experiments, reflections, params) -> str:
    out = [RULE, f"  format: {summary['format']}", f"  num images: {summary['n_images']}", "  sequences:",
           f"    still:    {len(experiments) - summary['n_sweeps']}", f"    sweep:    {summary['n_sweeps']}",
           f"  num stills: {summary['n_stills']}", RULE]
    for s in summary["sweeps"]:
        a, b = s["image_range"]
        out.append(f"  {s['name']}: images {a}–{b}, oscillation {s['oscillation'][0]:g}° + {s['oscillation'][1]:g}°, "
                   f"λ {s['wavelength']:.5f} Å, beam centre ({s['beam_centre_px'][0]:.2f}, "
                   f"{s['beam_centre_px'][1]:.2f}) px, distance {s['distance_mm']:.2f} mm")
    return "\n".join(out)


COMMAND = Command("import", "xtal import FILES… [image_range=a,b] [output.experiments=imported.expt]", report,
                  inputs=lambda files, words: {"paths": tuple(files)})


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
