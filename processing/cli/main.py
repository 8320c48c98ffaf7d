"""`xtal <command> files… key=value…`: the command line, as DIALS's programs.

The stage commands are the registry's stages (``processing.stages``), each with its
module here (``processing.cli.<stage>``; ``import_`` for import) declaring its
:class:`~processing.cli.command.Command`; ``show`` and ``simulate`` are tools.
User errors (XtalError) end with one line on stderr and exit status 1; anything else
is an internal error and keeps its traceback.
"""
from __future__ import annotations

import importlib
import keyword
import sys

from ..errors import XtalError
from .command import run_command

#: commands that are not pipeline stages: (module, one line)
TOOLS = {
    "show": ("processing.cli.show", "print experiment models and reflection-table summaries (dials.show)"),
    "simulate": ("processing.cli.simulate", "simulate multi-crystal rotation data with known truth"),
    "multiplex": ("processing.cli.multiplex", "many crystals to merged clusters: crystal forms, cosym, scale, "
                  "ΔCC½, intensity clustering, each cluster merged (xia2.multiplex)"),
    "run": ("processing.cli.run", "images to merged intensities in one command: every stage, sweeps in parallel"),
    "warmup": ("processing.cli.warmup", "compile the numba kernels now (after install), so the first run is fast"),
}


def stage_module(stage: str) -> str:
    """The module of a stage's command (``import`` is a keyword: ``import_``)."""
    return f"processing.cli.{stage}_" if keyword.iskeyword(stage) else f"processing.cli.{stage}"


def stage_command(stage: str):
    """The stage's :class:`Command`: its module's ``COMMAND`` (DIALS's tables), or, for a
    stage without one, the registry's defaults with a plain summary."""
    from .command import default_command

    try:
        module = importlib.import_module(stage_module(stage))
    except ModuleNotFoundError as exc:
        if exc.name != stage_module(stage):
            raise
        return default_command(stage)
    return module.COMMAND


def commands() -> dict[str, tuple[str, str]]:
    """Every command: ``{name: (module, one line)}``, the stages first in pipeline order."""
    from ..stages import STAGES

    out = {name: (stage_module(name), s.description) for name, s in STAGES.items()}
    out.update(TOOLS)
    return out


def usage() -> str:
    lines = ["usage: xtal <command> [files…] [key=value…]   (xtal <command> -h for its parameters)", ""]
    lines += [f"  {name:<12} {doc}" for name, (_, doc) in commands().items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    table = commands()
    if name not in table:
        print(f"xtal: unknown command {name!r}\n{usage()}", file=sys.stderr)
        return 1
    import warnings
    warnings.showwarning = lambda message, category, *a, **k: print(
        f"xtal {name}: warning: {message}", file=sys.stderr)
    try:
        if name not in TOOLS:
            return run_command(stage_command(name), rest) or 0
        return importlib.import_module(table[name][0]).run(rest) or 0
    except XtalError as e:
        print(f"xtal {name}: error: {e}", file=sys.stderr)
        return 1


def print_help(command: str, cls) -> None:
    """Help of a tool: its parameters with defaults, help and limits."""
    from ..params import describe, limits_text

    print(f"usage: xtal {command} [files…] [key=value…]\n\n{cls.__doc__.strip()}\n\nparameters:")
    for name, default, text in describe(cls):
        bounds = limits_text(cls, name)
        print(f"  {name} = {default}\n      {text}" + (f" ({bounds})" if bounds else ""))


if __name__ == "__main__":
    sys.exit(main())
