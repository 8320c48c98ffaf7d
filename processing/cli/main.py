"""`xtal <stage> files… key=value…`: the command line, as DIALS's programs.

User errors (XtalError) end with one line on stderr and exit status 1; anything
else is an internal error and keeps its traceback.
"""
from __future__ import annotations

import os
import sys

from ..errors import XtalError

COMMANDS = {
    "import": ("processing.cli.import_", "read image headers and write imported.expt (dials.import)"),
    "find_spots": ("processing.cli.find_spots", "find strong spots on the images (dials.find_spots)"),
    "index": ("processing.cli.index", "find the lattice, assign Miller indices and refine orientation and cell (dials.index)"),
    "refine": ("processing.cli.refine", "refine beam, detector and crystal models against indexed centroids (dials.refine)"),
    "integrate": ("processing.cli.integrate", "integrate reflections: background, summation, profile fitting (dials.integrate)"),
    "show": ("processing.cli.show", "print experiment models and reflection-table summaries (dials.show)"),
    "simulate": ("processing.cli.simulate", "simulate multi-crystal rotation data with known truth"),
}


def usage() -> str:
    lines = ["usage: xtal <command> [files…] [key=value…]   (xtal <command> -h for its parameters)", ""]
    lines += [f"  {name:<12} {doc}" for name, (_, doc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"xtal: unknown command {name!r}\n{usage()}", file=sys.stderr)
        return 1
    import importlib
    import warnings
    warnings.showwarning = lambda message, category, *a, **k: print(
        f"xtal {name}: warning: {message}", file=sys.stderr)
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return module.run(rest) or 0
    except XtalError as e:
        print(f"xtal {name}: error: {e}", file=sys.stderr)
        return 1


def split_args(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """Split into (files, key=value words, wants help)."""
    files, words, help_ = [], [], False
    for a in argv:
        if a in ("-h", "--help"):
            help_ = True
        elif "=" in a and not a.startswith("/") and not a.startswith("."):
            words.append(a)
        else:
            files.append(a)
    return files, words, help_


def pop_outputs(words: list[str], **defaults: str) -> tuple[dict[str, str], list[str]]:
    """Take ``output.<name>=path`` words out of ``words``: (outputs, the other words).

    ``pop_outputs(words, experiments="indexed.expt", reflections="indexed.refl")``;
    with a single output a bare ``output=path`` names it too.
    """
    outputs, kept = dict(defaults), []
    for w in words:
        key, _, value = w.partition("=")
        key = key.strip()
        name = key.removeprefix("output.")
        if key.startswith("output.") and name in outputs:
            outputs[name] = value
        elif key == "output" and len(outputs) == 1:
            outputs[next(iter(outputs))] = value
        else:
            kept.append(w)
    return outputs, kept


def read_expt_refl(files: list[str], usage: str):
    """Exactly one experiment list and one reflection file → (experiments, reflections)."""
    from ..io.expt import read_experiments
    from ..io.refl import read_reflections

    expts = [f for f in files if f.endswith((".expt", ".json"))]
    refls = [f for f in files if f.endswith(".refl")]
    other = [f for f in files if f not in expts and f not in refls]
    if other:
        raise XtalError(f"{other[0]}: not an .expt or .refl file")
    if len(expts) != 1 or len(refls) != 1:
        raise XtalError(f"give one experiment list (.expt) and one reflection file (.refl): {usage}")
    return read_experiments(expts[0]), read_reflections(refls[0])


def write_expt_refl(experiments, table, outputs: dict[str, str]) -> None:
    """Write outputs["experiments"] and outputs["reflections"] (atomically), saying so."""
    from ..io.expt import write_experiments
    from ..io.refl import write_reflections

    for path in outputs.values():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_experiments(outputs["experiments"], experiments)
    print(f"Saving experiments to {outputs['experiments']}")
    write_reflections(outputs["reflections"], table)
    print(f"Saving reflections to {outputs['reflections']}")


def print_help(command: str, cls) -> None:
    from ..params import describe
    print(f"usage: xtal {command} [files…] [key=value…]\n\n{cls.__doc__.strip()}\n\nparameters:")
    for name, default, text in describe(cls):
        print(f"  {name} = {default}\n      {text}")


if __name__ == "__main__":
    sys.exit(main())
