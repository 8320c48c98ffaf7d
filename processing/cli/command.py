"""The steps every ``xtal <stage>`` command takes, in order: parse → read → run → print
summary → write. The stage (parameters, run function, DIALS file names) comes from the
registry ``processing.stages``; a command module adds only what is its own: how it
prints the summary (DIALS's tables) and, where it differs, how it reads its input.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from ..errors import XtalError
from ..params import describe, from_strings, limits_text


@dataclass(frozen=True)
class Command:
    """One stage's command line.

    ``report(summary, experiments, reflections, params)`` returns the text printed after
    the run; ``read(files, params)`` returns ``(experiments, reflections)`` (default: one
    .expt and, when the stage reads one, one .refl); ``inputs(files, words)`` gives extra
    parameter values from the file arguments (import: the image paths).
    """

    stage: str
    usage: str
    report: Callable
    read: Callable | None = None
    inputs: Callable | None = None
    #: DIALS words accepted for compatibility and ignored (e.g. output.log)
    ignored: tuple[str, ...] = ()
    progress: bool = False
    #: accept ``output.json=path`` (or ``json=path``): the summary written there as strict JSON
    json_report: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def plain_summary(summary: dict, *_) -> str:
    """The summary's top-level numbers and words, one per line (a stage without tables)."""
    return "\n".join(f"{k}: {v}" for k, v in summary.items() if isinstance(v, (int, float, str)) or v is None)


def default_command(stage: str) -> Command:
    """The command of a stage whose module declares none: the registry's file names."""
    from ..stages import STAGES

    files = " ".join(STAGES[stage].inputs) or "FILES…"
    return Command(stage, f"xtal {stage} {files} [key=value …]", plain_summary)


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


def output_key(file_name: str) -> str:
    """The ``output.<key>=`` word of an output file: experiments, reflections, mtz, mmcif."""
    for suffix, key in ((".expt", "experiments"), (".refl", "reflections"), (".mtz", "mtz"), (".cif", "mmcif")):
        if file_name.endswith(suffix):
            return key
    return file_name.rsplit(".", 1)[0]


def pop_json(words: list[str]) -> tuple[str | None, list[str]]:
    """Take ``output.json=path`` / ``json=path`` out of ``words``: (path or None, the other words)."""
    path, kept = None, []
    for w in words:
        key, _, value = w.partition("=")
        if key.strip() in ("output.json", "json"):
            path = value.strip() or None
        else:
            kept.append(w)
    return path, kept


def write_json_report(path: str, summary: dict) -> str:
    """Write the summary to ``path`` as strict JSON, atomically; the line that says so."""
    import json

    from ..io.files import write_bytes_atomic

    write_bytes_atomic(path, json.dumps(summary, allow_nan=False, indent=1).encode(), "JSON report")
    return f"Saving the report to {path}"


def default_outputs(stage) -> dict[str, str]:
    """``{"experiments": "indexed.expt", "reflections": "indexed.refl"}`` (``mtz``, ``mmcif``)
    from the stage's outputs."""
    return {output_key(name): name for name in stage.outputs}


def read_expt_refl(files: list[str], usage: str, need_reflections: bool = True):
    """One experiment list (and one reflection file) → (experiments, reflections)."""
    from ..io.expt import read_experiments
    from ..io.refl import read_reflections

    expts = [f for f in files if f.endswith((".expt", ".json"))]
    refls = [f for f in files if f.endswith(".refl")]
    other = [f for f in files if f not in expts and f not in refls]
    if other:
        raise XtalError(f"{other[0]}: not an .expt or .refl file")
    if len(expts) != 1 or len(refls) != int(need_reflections):
        what = "one experiment list (.expt) and one reflection file (.refl)" if need_reflections \
            else "one experiment list (.expt)"
        raise XtalError(f"give {what}: {usage}")
    for path in expts + refls:
        if not os.path.exists(path):
            raise XtalError(f"{path}: no such file")
    return read_experiments(expts[0]), (read_reflections(refls[0]) if refls else None)


def check_output_folders(outputs: dict[str, str]) -> None:
    """Refuse before any work an output whose folder does not exist."""
    for path in outputs.values():
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise XtalError(f"output folder {folder} does not exist")


def write_outputs(experiments, reflections, outputs: dict[str, str], params=None) -> list[str]:
    """Write the outputs (each atomically); the lines that say so."""
    from ..io.outputs import write_output

    check_output_folders(outputs)
    return [write_output(path, experiments, reflections, params=params) for path in outputs.values()]


def print_help(command: Command, stage) -> None:
    print(f"usage: {command.usage}\n\n{stage.description}\n\n{stage.params.__doc__.strip()}\n\nparameters:")
    for name, default, text in describe(stage.params):
        bounds = limits_text(stage.params, name)
        print(f"  {name} = {default}\n      {text}" + (f" ({bounds})" if bounds else ""))
    for key, name in default_outputs(stage).items():
        print(f"  output.{key} = {name}")
    if command.json_report:
        print("  output.json = None\n      the summary as a JSON report (strict JSON), if a path is given")
    for note in command.notes:
        print(note)


def run_command(command: Command, argv: list[str]) -> int:
    """Parse → read → run → print summary → write, for ``command``."""
    from ..stages import STAGES

    stage = STAGES[command.stage]
    files, words, help_ = split_args(argv)
    if help_:
        print_help(command, stage)
        return 0
    outputs, words = pop_outputs(words, **default_outputs(stage))
    json_path, words = pop_json(words) if command.json_report else (None, words)
    check_output_folders(dict(outputs, **({"json": json_path} if json_path else {})))
    words = [w for w in words if w.partition("=")[0].strip() not in command.ignored]
    extra = command.inputs(files, words) if command.inputs else {}
    params = from_strings(stage.params, words, **extra)
    if command.read is not None:
        experiments, reflections = command.read(files, params)
    elif stage.inputs:
        experiments, reflections = read_expt_refl(files, command.usage,
                                                  need_reflections=any(n.endswith(".refl") for n in stage.inputs))
    else:
        experiments, reflections = None, None
    progress = (lambda f, *msg: print(f"  {msg[0]}", flush=True) if msg else None) if command.progress else None
    experiments, reflections, summary = stage.execute(experiments, reflections, params, progress=progress)
    text = command.report(summary, experiments, reflections, params)
    if text:
        print(text)
    for line in write_outputs(experiments, reflections, outputs, params):
        print(line)
    if json_path:
        print(write_json_report(json_path, summary))
    return 0
