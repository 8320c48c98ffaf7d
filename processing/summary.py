"""Stage summaries as strict JSON: what a stage returns is what the web stores.

Statistics of an empty shell (or of a column with no finite value) are ``None`` —
JSON ``null``, shown as "—" in tables and as a gap in plots — never NaN or ±inf,
which strict JSON (PostgreSQL's jsonb, SQLite's ``JSON_VALID``, browsers'
``JSON.parse``) refuses.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def finite_or_none(value) -> float | None:
    """``float(value)``, or None when it is missing, NaN or ±inf."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def finite_mean(values) -> float | None:
    """Mean of the finite entries of ``values``; None when there are none."""
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def json_ready(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts.

    numpy scalars and arrays become Python numbers and lists, tuples become lists,
    non-finite floats become None; dict keys become strings. Anything else that JSON
    cannot hold raises TypeError (a bug in the summary builder, not a user error).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        return finite_or_none(obj)
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_ready(v) for v in obj.tolist()]
    raise TypeError(f"{type(obj).__name__} is not JSON-able in a stage summary")
