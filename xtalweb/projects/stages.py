"""The stages the web app runs, and how their parameters are built.

Each stage names its parameter dataclass in ``processing`` (found lazily: the web
process imports the science only when a form or a task needs it), the stage whose
latest succeeded run is its default parent, whether it fans out one task per sweep,
and the DIALS-named files it writes.

Parameters are always built by the stage's own dataclass through
``processing.params.from_strings`` (the same path as ``xtal <stage> key=value``), so
the web form accepts exactly what the command line accepts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageDef:
    name: str
    title: str
    #: "module:Class" of the parameter dataclass
    params: str
    #: stage whose succeeded run is the input (the default parent)
    previous: str | None
    per_sweep: bool
    outputs: tuple[str, ...]
    #: fields left out of the web form (e.g. nproc: a Celery worker scales by fan-out,
    #: and a daemonic prefork worker may not start processes of its own)
    hidden: frozenset[str] = field(default_factory=frozenset)
    #: web defaults that differ from the dataclass default, with the reason
    web_defaults: dict[str, tuple[str, str]] = field(default_factory=dict)


STAGE_DEFS: dict[str, StageDef] = {
    "find_spots": StageDef(
        name="find_spots",
        title="find spots",
        params="processing.spotfinding:FindSpotsParams",
        previous="import",
        per_sweep=True,
        outputs=("strong.refl",),
        hidden=frozenset({"nproc"}),
    ),
    "index": StageDef(
        name="index",
        title="index",
        params="processing.indexing:IndexParams",
        previous="find_spots",
        per_sweep=True,
        outputs=("indexed.expt", "indexed.refl"),
        hidden=frozenset({"nproc"}),
        web_defaults={
            "joint": ("false", "xtalweb indexes each crystal on its own (one task per sweep); "
                               "true indexes all selected sweeps together as one crystal (DIALS's default)"),
        },
    ),
    "refine": StageDef(
        name="refine",
        title="refine",
        params="processing.refinement:RefineParams",
        previous="index",
        per_sweep=True,
        outputs=("refined.expt", "refined.refl"),
    ),
    "integrate": StageDef(
        name="integrate",
        title="integrate",
        params="processing.integration:IntegrateParams",
        previous="refine",
        per_sweep=True,
        outputs=("integrated.expt", "integrated.refl"),
        hidden=frozenset({"nproc"}),
    ),
}

#: stages with a run form on the project page, in pipeline order
FORM_STAGES = tuple(STAGE_DEFS)


def is_per_sweep(stage: str) -> bool:
    d = STAGE_DEFS.get(stage)
    return bool(d and d.per_sweep)


def params_class(stage: str):
    """The stage's parameter dataclass (imports the science)."""
    module, _, name = STAGE_DEFS[stage].params.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ParamField:
    name: str
    default: str  # as shown in the form (the web default where there is one)
    help: str


def form_fields(stage: str) -> list[ParamField]:
    """The form's fields: ``processing.params.describe`` minus the hidden ones."""
    from processing.params import describe

    d = STAGE_DEFS[stage]
    out = []
    for name, default, help_text in describe(params_class(stage)):
        if name in d.hidden:
            continue
        if name in d.web_defaults:
            default, why = d.web_defaults[name]
            help_text = f"{help_text} [web default {default}: {why}]"
        out.append(ParamField(name, default, help_text))
    return out


class ParamsError(ValueError):
    """Invalid parameters: ``field`` (or None) and the one-line message."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _field_of(message: str, names) -> str | None:
    text = message.strip()
    for name in sorted(names, key=len, reverse=True):
        if text.startswith((f"{name}=", f"{name} ", f"{name}:", f"'{name}'")) or f"parameter {name!r}" in text:
            return name
    return None


def words_from_values(stage: str, values: dict[str, str]) -> list[str]:
    """``key=value`` words for the fields whose text differs from the dataclass default.

    A blank field means its default; web defaults are applied unless overridden.
    """
    from processing.params import describe

    d = STAGE_DEFS[stage]
    defaults = {name: default for name, default, _ in describe(params_class(stage))}
    words = []
    for name, default in defaults.items():
        if name in d.hidden:
            continue
        text = values.get(name)
        text = "" if text is None else str(text).strip()
        if text == "":
            text = d.web_defaults[name][0] if name in d.web_defaults else default
        if text != default:
            words.append(f"{name}={text}")
    return words


def build_params(stage: str, words: list[str]):
    """The stage's parameter dataclass from ``key=value`` words, validated.

    Raises :class:`ParamsError` with the science's own one-line message.
    """
    from processing.errors import XtalError
    from processing.params import from_strings

    cls = params_class(stage)
    names = [w.split("=", 1)[0].strip() for w in words]
    try:
        params = from_strings(cls, list(words))
    except (XtalError, ValueError, TypeError) as exc:
        message = " ".join(str(exc).split()) or "invalid parameters"
        raise ParamsError(message, _field_of(message, names)) from None
    _check_extra(stage, params)
    return params


def _check_extra(stage: str, params) -> None:
    """Checks the stage itself makes before any work (so they are form errors too)."""
    if stage == "index" and (getattr(params, "unit_cell", None) is not None or getattr(params, "space_group", None)):
        try:
            from processing.indexing.known_cell import TargetSymmetry
        except ImportError:  # pragma: no cover - the science moved; the task reports it then
            return
        from processing.errors import XtalError

        try:
            TargetSymmetry.make(params.unit_cell, params.space_group)
        except (XtalError, ValueError) as exc:
            message = " ".join(str(exc).split())
            field_name = "space_group" if "space group" in message else "unit_cell"
            raise ParamsError(message, field_name) from None


def params_json(params) -> dict:
    from processing.params import to_json

    return to_json(params)


# --- summaries for the polled status endpoint ---------------------------------------

_BULKY_SWEEP_KEYS = ("per_image", "histogram", "hot_pixels", "lattices", "time", "traceback",
                    "resolution_table", "macrocycles", "initial_rmsds_by_experiment")


def compact_sweep_summary(summary):
    if not isinstance(summary, dict):
        return summary
    out = {k: v for k, v in summary.items() if k not in _BULKY_SWEEP_KEYS}
    if isinstance(out.get("experiments"), list):  # integrate: one summary per experiment of the sweep
        out["experiments"] = [compact_sweep_summary(e) for e in out["experiments"]]
    return out


def compact_summary(summary):
    if not isinstance(summary, dict) or not isinstance(summary.get("sweeps"), list):
        return summary
    out = dict(summary)
    out["sweeps"] = [compact_sweep_summary(s) for s in summary["sweeps"]]
    return out
