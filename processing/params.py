"""Stage parameters: frozen dataclasses whose fields carry their help text.

``param(default, "help")`` declares a field; ``from_strings(cls, ["k=v", …])`` builds
the dataclass from DIALS-style ``key=value`` words (the CLI and the web forms both
use it), and ``describe(cls)`` lists every parameter with its default and help.
"""
from __future__ import annotations

import dataclasses
import types
import typing

from .errors import XtalError


def param(default, help: str):
    """A dataclass field with a default and a one-line help text."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults (parameters are frozen)")
    return dataclasses.field(default=default, metadata={"help": help})


def _convert(name: str, text: str, tp):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", ""):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(name, text, inner[0])
    if tp is bool:
        low = text.strip().lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
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
        return text
    if origin is tuple:
        parts = [p for p in text.replace(" ", ",").split(",") if p != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(name, p, args[0]) for p in parts)
        if len(parts) != len(args):
            raise XtalError(f"{name}={text}: expected {len(args)} comma-separated values")
        return tuple(_convert(name, p, a) for p, a in zip(parts, args))
    raise TypeError(f"unsupported parameter type {tp} for {name}")


def from_strings(cls, words, **overrides):
    """Build parameters ``cls`` from ``key=value`` words; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for w in words:
        if "=" not in w:
            raise XtalError(f"{w!r}: parameters are written key=value")
        key, text = w.split("=", 1)
        key = key.strip()
        if key not in fields:
            raise XtalError(f"unknown parameter {key!r}; known: {', '.join(sorted(fields))}")
        values[key] = _convert(key, text, hints[key])
    values.update(overrides)
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise XtalError(str(e)) from None


def to_json(params) -> dict:
    """Parameters as a JSON-able dict (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(params).items()}


def describe(cls) -> list[tuple[str, str, str]]:
    """(name, default, help) for every parameter."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
        rows.append((f.name, shown, f.metadata.get("help", "")))
    return rows
