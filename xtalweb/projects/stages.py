"""The stages as the web app sees them: the science's registry (``processing.stages``)
plus what is the web's own — fields a form hides and web defaults with their reasons —
registered beside each stage's report (``xtalweb.reports``).

Parameters are always built by the stage's own dataclass through
``processing.params.from_strings`` (the same path as ``xtal <stage> key=value``), so a
form accepts exactly what the command line accepts, DIALS's aliases included, and an
error names the field it is about (``XtalError.field``).
"""

from __future__ import annotations

from dataclasses import dataclass


def registry() -> dict:
    """``processing.stages.STAGES`` (imports the science)."""
    from processing.stages import STAGES

    return STAGES


def web_options(stage: str):
    """The stage's web registration (report, hidden fields, web defaults)."""
    from xtalweb.reports.registry import REPORTS

    return REPORTS[stage]


def form_stages() -> tuple[str, ...]:
    """Stages with a run form on the project page, in pipeline order: every stage that
    starts from another stage's run."""
    return tuple(name for name, s in registry().items() if s.previous is not None)


def is_per_sweep(stage: str) -> bool:
    s = registry().get(stage)
    return bool(s and s.per_sweep)


def takes_sweeps(stage: str) -> bool:
    """Whether a run of ``stage`` works on sweeps chosen in its form (SweepRun rows): every
    stage that starts from another stage's run, per sweep or on the ensemble."""
    s = registry().get(stage)
    return bool(s and s.previous is not None)


def previous_stage(stage: str) -> str | None:
    return registry()[stage].previous


def title(stage: str) -> str:
    return registry()[stage].title


def params_class(stage: str):
    """The stage's parameter dataclass."""
    return registry()[stage].params


@dataclass(frozen=True)
class ParamField:
    name: str
    default: str  # as shown in the form (the web default where there is one)
    help: str


def form_fields(stage: str) -> list[ParamField]:
    """The form's fields: ``processing.params.describe`` minus the hidden ones, with the
    limits in the help text."""
    from processing.params import describe, limits_text

    web = web_options(stage)
    cls = params_class(stage)
    out = []
    for name, default, help_text in describe(cls):
        if name in web.hidden:
            continue
        bounds = limits_text(cls, name)
        if bounds:
            help_text = f"{help_text} ({bounds})"
        if name in web.web_defaults:
            default, why = web.web_defaults[name]
            help_text = f"{help_text} [web default {default}: {why}]"
        out.append(ParamField(name, default, help_text))
    return out


class ParamsError(ValueError):
    """Invalid parameters: ``field`` (or None) and the one-line message."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def words_from_values(stage: str, values: dict[str, str]) -> list[str]:
    """``key=value`` words for the fields whose text differs from the dataclass default.

    A blank field means its default; web defaults are applied unless overridden.
    """
    from processing.params import describe

    web = web_options(stage)
    words = []
    for name, default, _ in describe(params_class(stage)):
        if name in web.hidden:
            continue
        text = values.get(name)
        text = "" if text is None else str(text).strip()
        if text == "":
            text = web.web_defaults[name][0] if name in web.web_defaults else default
        if text != default:
            words.append(f"{name}={text}")
    return words


def build_params(stage: str, words: list[str]):
    """The stage's parameter dataclass from ``key=value`` words, validated, with the
    checks the stage makes before any work (``web_options(stage).check``).

    Raises :class:`ParamsError` with the science's own one-line message and field.
    """
    from processing.errors import XtalError
    from processing.params import from_strings

    try:
        params = from_strings(params_class(stage), list(words))
        check = web_options(stage).check
        if check is not None:
            check(params)
    except XtalError as exc:
        raise ParamsError(" ".join(str(exc).split()) or "invalid parameters", exc.field) from None
    return params


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
