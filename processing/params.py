"""Stage parameters: frozen dataclasses whose fields carry their help text and limits.

``param(default, "help", ge=…, gt=…, le=…, lt=…, choices=…, aliases=…)`` declares a
field. A stage's parameter class derives from :class:`StageParams`, so every field's
limits are checked when it is built; the class's own ``__post_init__`` holds only the
rules between fields. ``from_strings(cls, ["k=v", …])`` builds the dataclass from
DIALS-style ``key=value`` words, full DIALS paths included (the CLI and the web forms
both use it); ``describe(cls)`` lists every parameter with its default and help, and
``limits(cls, name)`` / ``limits_text(cls, name)`` give a field's limits.
"""
from __future__ import annotations

import dataclasses
import numbers
import operator
import types
import typing

from .errors import XtalError

BOUNDS = {"ge": (operator.ge, "≥"), "gt": (operator.gt, ">"), "le": (operator.le, "≤"), "lt": (operator.lt, "<")}
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def param(default, help: str, *, ge=None, gt=None, le=None, lt=None, choices=None, aliases=()):
    """A dataclass field with a default, a one-line help text and its limits.

    ``ge``/``gt``/``le``/``lt`` bound a number (every element of a tuple); ``choices``
    lists the allowed values of a string (of every element of a tuple of strings);
    None values are never checked. ``aliases`` are DIALS parameter paths whose last
    word is not the field name (``"threshold.algorithm"``); ``from_strings`` accepts
    them exactly or as the end of a longer path.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults (parameters are frozen)")
    meta = {"help": help, "aliases": (aliases,) if isinstance(aliases, str) else tuple(aliases)}
    for key, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)):
        if bound is not None:
            meta[key] = bound
    if choices is not None:
        meta["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=meta)


def _fields(cls_or_params) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls_or_params)}


def limits(cls, name: str) -> dict:
    """The limits of field ``name`` of ``cls`` (class or instance): a dict with any of
    ``ge``, ``gt``, ``le``, ``lt`` (numbers) and ``choices`` (a tuple); {} if none."""
    meta = _fields(cls)[name].metadata
    return {k: meta[k] for k in (*BOUNDS, "choices") if k in meta}


def _number(v) -> str:
    return str(v) if isinstance(v, numbers.Integral) else f"{v:g}"


def _bounds_text(lim: dict) -> str:
    return " and ".join(f"{BOUNDS[k][1]} {_number(lim[k])}" for k in BOUNDS if k in lim)


def limits_text(cls, name: str) -> str:
    """The limits of a field as a form shows them: ``"≥ 0 and ≤ 1"``, ``"one of glm, simple"``
    or ``""``."""
    lim = limits(cls, name)
    parts = [_bounds_text(lim)] if any(k in lim for k in BOUNDS) else []
    if "choices" in lim:
        parts.append("one of " + ", ".join(map(str, lim["choices"])))
    return "; ".join(parts)


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _limit_error(name: str, value, lim: dict) -> str | None:
    """The one-line message if ``value`` breaks the limits ``lim``, else None."""
    if value is None or not lim:
        return None
    items = value if isinstance(value, tuple) else (value,)
    if "choices" in lim:
        for v in items:
            if v not in lim["choices"]:
                return f"{name}={v}: must be one of {', '.join(map(str, lim['choices']))}"
    numeric = [v for v in items if isinstance(v, numbers.Real) and not isinstance(v, bool)]
    for key, (ok, _) in BOUNDS.items():
        if key in lim and not all(ok(v, lim[key]) for v in numeric):  # `not ok` also catches NaN
            each = "each value " if isinstance(value, tuple) else ""
            return f"{name}={_shown(value)}: {each}must be {_bounds_text(lim)}"
    return None


def check_limits(params) -> None:
    """Check every field of the dataclass instance ``params`` against its limits.

    Raises :class:`XtalError` (``field`` = the field's name) with a one-line message
    such as ``gain=-1: must be > 0``.
    """
    for f in dataclasses.fields(params):
        message = _limit_error(f.name, getattr(params, f.name), limits(params, f.name))
        if message:
            raise XtalError(message, field=f.name)


class StageParams:
    """Base of a stage's parameter dataclass: the fields' limits are checked on construction.

    A subclass's own ``__post_init__`` (rules between fields) runs after the checks.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is None:
            return

        def __post_init__(self):
            check_limits(self)
            own(self)

        __post_init__.__doc__ = own.__doc__
        cls.__post_init__ = __post_init__

    def __post_init__(self):
        check_limits(self)


def resolve_key(cls, key: str) -> str | None:
    """The field of ``cls`` that the parameter ``key`` names, or None.

    An exact field name wins; else a declared alias, matching the whole key or its
    end after a dot (the longest such alias); else the key's last dotted word if it
    is a field name (``spotfinder.threshold.dispersion.gain`` → ``gain``).
    """
    fields = _fields(cls)
    if key in fields:
        return key
    best = None
    for f in fields.values():
        for alias in f.metadata.get("aliases", ()):
            if (key == alias or key.endswith("." + alias)) and (best is None or len(alias) > len(best[0])):
                best = (alias, f.name)
    if best is not None:
        return best[1]
    leaf = key.rsplit(".", 1)[-1]
    return leaf if leaf in fields else None


def _choice(name: str, text: str, choices) -> str:
    """``text`` as one of ``choices``: exact, else ignoring case (DIALS writes True, Auto)."""
    if choices is None or text in choices:
        return text
    low = text.strip().lower()
    for c in choices:
        if isinstance(c, str) and c.lower() == low:
            return c
    if "true" in choices and "false" in choices and low in _TRUE + _FALSE:
        return "true" if low in _TRUE else "false"
    return text  # the limits check reports it


def _convert(name: str, text: str, tp, choices=None):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "", "auto"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(name, text, inner[0], choices)
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise XtalError(f"{name}={text}: expected true or false")
    if tp in (int, float):
        try:
            value = tp(text)
        except ValueError:
            raise XtalError(f"{name}={text}: expected {'an integer' if tp is int else 'a number'}") from None
        if tp is float and value != value:
            raise XtalError(f"{name}={text}: not a number")
        return value
    if tp is str:
        return _choice(name, text, choices)
    if origin is tuple:
        parts = [p for p in text.replace(" ", ",").split(",") if p != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(name, p, args[0], choices) for p in parts)
        if len(parts) != len(args):
            raise XtalError(f"{name}={text}: expected {len(args)} comma-separated values")
        return tuple(_convert(name, p, a, choices) for p, a in zip(parts, args))
    raise TypeError(f"unsupported parameter type {tp} for {name}")


def from_strings(cls, words, **overrides):
    """Build parameters ``cls`` from ``key=value`` words; unknown keys are an error.

    Keys are field names or DIALS paths (see :func:`resolve_key`); ``auto`` (or
    ``None``) means None for an optional field. Every error is an
    :class:`XtalError` whose ``field`` is the field at fault (the key as written
    when it names no field).
    """
    hints = typing.get_type_hints(cls)
    fields = _fields(cls)
    values = {}
    for w in words:
        if "=" not in w:
            raise XtalError(f"{w!r}: parameters are written key=value")
        key, text = w.split("=", 1)
        key = key.strip()
        name = resolve_key(cls, key)
        if name is None:
            raise XtalError(f"unknown parameter {key!r}; known: {', '.join(sorted(fields))}", field=key)
        try:
            values[name] = _convert(key, text, hints[name], fields[name].metadata.get("choices"))
        except XtalError as e:
            raise XtalError(str(e), field=name) from None
    values.update(overrides)
    try:
        params = cls(**values)
    except XtalError:
        raise
    except (ValueError, TypeError) as e:
        raise XtalError(str(e)) from None
    if not isinstance(params, StageParams):  # a plain dataclass: check its limits here
        check_limits(params)
    return params


def to_json(params) -> dict:
    """Parameters as a JSON-able dict (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(params).items()}


def describe(cls) -> list[tuple[str, str, str]]:
    """(name, default, help) for every parameter (:func:`limits_text` adds the limits)."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
        rows.append((f.name, shown, f.metadata.get("help", "")))
    return rows
