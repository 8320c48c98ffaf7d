"""`xtal show FILES…`: experiment models and reflection tables, as dials.show prints them."""
from __future__ import annotations

import numpy as np

from ..errors import XtalError
from ..io.expt import read_experiments
from ..models import Experiment, format_with_sd
from .command import split_args
from .tables import psql_table


def _v(x, fmt="{:g}") -> str:
    return "{" + ",".join(fmt.format(float(v)) for v in np.ravel(x)) + "}"


def _m3(m) -> str:
    rows = [", ".join(f"{v: .4f}" for v in r) for r in np.asarray(m).reshape(3, 3)]
    return "{{" + "},\n                {".join(rows) + "}}"


def format_experiment(k: int, e: Experiment) -> str:
    out = [f"Experiment {k}:", f"Experiment identifier: {e.identifier}"]
    if e.imageset is not None:
        out.append(f"Image template: {e.imageset.template or ', '.join(e.imageset.paths)}")
    if e.detector is not None:
        out.append("Detector:")
        for p in e.detector:
            out += [
                "Panel:", f"  name: {p.name}", f"  type: {p.type}", f"  identifier: {p.identifier}",
                f"  pixel_size:{_v(p.pixel_size)}", f"  image_size: {_v(p.image_size)}",
                f"  trusted_range: {_v(p.trusted_range)}", f"  thickness: {p.thickness:g}",
                f"  material: {p.material}", f"  mu: {p.mu:g}", f"  gain: {p.gain:g}",
                f"  pedestal: {p.pedestal:g}", f"  fast_axis: {_v(p.fast_axis)}",
                f"  slow_axis: {_v(p.slow_axis)}", f"  origin: {_v(p.origin)}",
                f"  distance: {p.distance:g}", f"  pixel to millimeter strategy: {p.px_mm_strategy}",
            ]
            if p.px_mm_strategy.startswith("Parallax"):
                out += [f"    mu: {p.mu:g}", f"    t0: {p.thickness:g}"]
            out.append("")
        if e.beam is not None:
            out.append(f"Max resolution (at corners): {e.detector.get_max_resolution(e.beam.s0):f}")
            out.append("")
    if e.beam is not None:
        b = e.beam
        out += ["Beam:", f"    wavelength: {b.wavelength:g}",
                f"    sample to source direction : {_v(b.direction)}",
                f"    divergence: {b.divergence:g}", f"    sigma divergence: {b.sigma_divergence:g}",
                f"    polarization normal: {_v(b.polarization_normal)}",
                f"    polarization fraction: {b.polarization_fraction:g}",
                f"    flux: {b.flux:g}", f"    transmission: {b.transmission:g}", ""]
        if e.detector is not None:
            p = e.detector[0]
            mm = p.get_beam_centre(b.s0)
            px = p.get_beam_centre_px(b.s0)
            out += ["Beam centre: ", f"    mm: ({mm[0]:.2f},{mm[1]:.2f})", f"    px: ({px[0]:.2f},{px[1]:.2f})", ""]
    if e.scan is not None:
        s = e.scan
        out += ["Scan:", f"    number of images:   {s.num_images}",
                f"    image range:   {_v(s.image_range)}",
                f"    oscillation:   {_v(s.oscillation)}",
                f"    exposure time: {s.exposure_times[0]:g}" if s.num_images else "", ""]
    if e.goniometer is not None:
        g = e.goniometer
        out += ["Goniometer:", f"    Rotation axis:   {_v(g.rotation_axis)}",
                f"    Fixed rotation:  {_v(g.fixed_rotation)}",
                f"    Setting rotation:{_v(g.setting_rotation)}"]
        if g.axes is not None:
            for i, (axis, name) in enumerate(zip(g.axes, g.names)):
                out.append(f"    Axis #{i} ({name}):  {_v(axis)}")
            out.append("    Angles: " + ",".join(f"{a:g}" for a in g.angles))
            out.append(f"    scan axis: #{g.scan_axis} ({g.names[g.scan_axis]})")
        out.append("")
    if e.crystal is not None:
        c = e.crystal
        sd = c.cell_parameter_sd()
        cell = (", ".join(format_with_sd(v, s) for v, s in zip(c.unit_cell, sd)) if sd is not None
                else ", ".join(f"{v:.3f}" for v in c.unit_cell))
        out += ["Crystal:", f"    Unit cell: {cell}", f"    Space group: {c.space_group_symbol}",
                f"    U matrix:  {_m3(c.U)}", f"    B matrix:  {_m3(c.B)}",
                f"    A = UB:    {_m3(c.A)}", ""]
    return "\n".join(out)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(_cell(x) for x in v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.2f}" if abs(v) < 1e5 else f"{v:.4e}"


def format_reflections(path: str, table) -> str:
    """The column table and flag counts of ``dials.show show_flags=True``."""
    s = table.summary()
    out = [path, f"Reflection list contains {s['nrows']} reflections"]
    if s["columns"]:
        out.append(psql_table(["Column", "min", "max", "mean"],
                              [(name, _cell(lo), _cell(hi), _cell(mean)) for name, lo, hi, mean in s["columns"]],
                              align="left"))
    if s["flags"]:
        out.append("Reflection flags:")
        out.append(psql_table(["Flag", "Count", "%"],
                              [(name, str(count), f"{pct:.1f}") for name, count, pct in s["flags"]], align="left"))
    if table.experiment_identifiers:
        out.append("Experiment identifiers: " +
                   ", ".join(f"{k}: {v}" for k, v in sorted(table.experiment_identifiers.items())))
    return "\n".join(out)


def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_ or not files:
        print("usage: xtal show FILES… (.expt and .refl)")
        return 0 if help_ else 1
    if words:
        raise XtalError(f"xtal show takes no parameters (got {' '.join(words)})")
    for path in files:
        if path.endswith(".refl"):
            from ..io.refl import read_reflections
            print(format_reflections(path, read_reflections(path)))
        else:
            for k, e in enumerate(read_experiments(path)):
                print(format_experiment(k, e))
    return 0
