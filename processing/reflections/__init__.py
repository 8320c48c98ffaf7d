"""Reflection tables: named numpy columns with DIALS's kinds, flag bits and selections."""

from processing.reflections.flags import FLAG_ROWS, Flags
from processing.reflections.table import (
    COLUMN_KINDS,
    STANDARD_COLUMN_KINDS,
    MaskCode,
    ReflectionTable,
    Shoebox,
)

__all__ = [
    "COLUMN_KINDS",
    "FLAG_ROWS",
    "Flags",
    "MaskCode",
    "ReflectionTable",
    "STANDARD_COLUMN_KINDS",
    "Shoebox",
]
