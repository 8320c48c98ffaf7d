"""ReflectionTable: DIALS's reflection table as named numpy columns.

Every column has one of DIALS's column kinds (the type names of the ``.refl``
msgpack format) and as many rows as the table:

==========================  ============================  ===================
kind                        numpy                         example columns
==========================  ============================  ===================
``bool``                    (N,) bool                     entering
``int``                     (N,) int32                    id, num_pixels.*
``std::size_t``             (N,) uint64                   flags, panel
``double``                  (N,) float64                  d, intensity.sum.value
``vec2<double>``            (N, 2) float64
``vec3<double>``            (N, 3) float64                s1, xyzobs.px.value
``mat3<double>``            (N, 9) float64 (row-major)
``int6``                    (N, 6) int32                  bbox (x0,x1,y0,y1,z0,z1)
``cctbx::miller::index<>``  (N, 3) int32                  miller_index
``std::string``             (N,) object (str)
``Shoebox<>``               (N,) object (Shoebox)         shoebox
==========================  ============================  ===================

The table also carries ``experiment_identifiers``: ``{id: identifier}``, mapping
values of the ``id`` column to experiment identifier strings, as DIALS's
``table.experiment_identifiers()``. Rows with ``id == -1`` belong to no experiment.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from processing.errors import XtalError
from processing.reflections.flags import FLAG_ROWS

__all__ = [
    "COLUMN_KINDS",
    "STANDARD_COLUMN_KINDS",
    "MaskCode",
    "ReflectionTable",
    "Shoebox",
]

_F8 = np.dtype("<f8")
_I4 = np.dtype("<i4")
_U8 = np.dtype("<u8")
_B1 = np.dtype(np.bool_)
_OBJ = np.dtype(object)

COLUMN_KINDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "bool": (_B1, ()),
    "int": (_I4, ()),
    "std::size_t": (_U8, ()),
    "double": (_F8, ()),
    "vec2<double>": (_F8, (2,)),
    "vec3<double>": (_F8, (3,)),
    "mat3<double>": (_F8, (9,)),
    "int6": (_I4, (6,)),
    "cctbx::miller::index<>": (_I4, (3,)),
    "std::string": (_OBJ, ()),
    "Shoebox<>": (_OBJ, ()),
}
"""DIALS column kind -> (numpy dtype, per-row shape)."""

_V3, _MI = "vec3<double>", "cctbx::miller::index<>"
STANDARD_COLUMN_KINDS: dict[str, str] = {
    "flags": "std::size_t",
    "id": "int",
    "imageset_id": "int",
    "panel": "std::size_t",
    "partial_id": "std::size_t",
    "miller_index": _MI,
    "miller_index_asu": _MI,
    "entering": "bool",
    "bbox": "int6",
    "shoebox": "Shoebox<>",
    "s1": _V3,
    "rlp": _V3,
    "xyzcal.mm": _V3,
    "xyzcal.px": _V3,
    "xyzobs.mm.value": _V3,
    "xyzobs.mm.variance": _V3,
    "xyzobs.px.value": _V3,
    "xyzobs.px.variance": _V3,
    "n_signal": "int",
    "num_pixels.background": "int",
    "num_pixels.background_used": "int",
    "num_pixels.foreground": "int",
    "num_pixels.valid": "int",
    "d": "double",
    "lp": "double",
    "qe": "double",
    "dqe": "double",
    "zeta": "double",
    "partiality": "double",
    "profile.correlation": "double",
    "background.mean": "double",
    "background.sum.value": "double",
    "background.sum.variance": "double",
    "intensity.sum.value": "double",
    "intensity.sum.variance": "double",
    "intensity.prf.value": "double",
    "intensity.prf.variance": "double",
    "intensity.scale.value": "double",
    "intensity.scale.variance": "double",
    "inverse_scale_factor": "double",
    "inverse_scale_factor_variance": "double",
}
"""Kinds DIALS uses for its well-known column names; assignments are cast to them."""


class MaskCode:
    """Shoebox mask bits (dials.algorithms.shoebox.MaskCode)."""

    Valid = 1 << 0
    Background = 1 << 1
    Foreground = 1 << 2
    Strong = 1 << 3
    BackgroundUsed = 1 << 4
    Overlapped = 1 << 5


@dataclass(eq=False)
class Shoebox:
    """One reflection's shoebox: panel, bbox and optionally the pixel arrays.

    ``bbox`` is (x0, x1, y0, y1, z0, z1) in pixels/frames, half-open. ``data`` and
    ``background`` are float32 counts and ``mask`` int32 MaskCode bits, each of
    shape (z1 - z0, y1 - y0, x1 - x0); all three are None when DIALS stored no
    pixels (e.g. shoeboxes not yet extracted).
    """

    panel: int
    bbox: tuple[int, int, int, int, int, int]
    data: np.ndarray | None = None
    mask: np.ndarray | None = None
    background: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx) from the bounding box."""
        x0, x1, y0, y1, z0, z1 = self.bbox
        return (z1 - z0, y1 - y0, x1 - x0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Shoebox):
            return NotImplemented
        if self.panel != other.panel or tuple(self.bbox) != tuple(other.bbox):
            return False
        for a, b in (
            (self.data, other.data),
            (self.mask, other.mask),
            (self.background, other.background),
        ):
            if (a is None) != (b is None):
                return False
            if a is not None and not np.array_equal(a, b):
                return False
        return True


def _row_selection(sel: Any, nrows: int) -> np.ndarray:
    """A boolean mask of length nrows or non-negative row indices -> index array."""
    arr = np.asarray(sel)
    if arr.dtype == np.bool_:
        if arr.shape != (nrows,):
            raise ValueError(f"boolean selection has shape {arr.shape}, table has {nrows} rows")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.intp)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("selection must be a boolean mask or a 1-d array of row indices")
    if arr.min() < 0 or arr.max() >= nrows:
        raise IndexError(f"row index out of range for a table of {nrows} rows")
    return arr.astype(np.intp, copy=False)


def _infer_kind(arr: np.ndarray) -> str:
    """DIALS kind for an array without a declared kind (by dtype and shape)."""
    if arr.dtype == object or arr.dtype.kind in "US":
        if arr.ndim == 1 and arr.size and all(isinstance(v, Shoebox) for v in arr):
            return "Shoebox<>"
        return "std::string"
    if arr.ndim == 1:
        if arr.dtype == np.bool_:
            return "bool"
        if arr.dtype.kind == "u":
            return "std::size_t"
        if arr.dtype.kind == "i":
            return "int"
        if arr.dtype.kind == "f":
            return "double"
    if arr.ndim == 2:
        width = arr.shape[1]
        if arr.dtype.kind == "f" and width in (2, 3, 9):
            return {2: "vec2<double>", 3: "vec3<double>", 9: "mat3<double>"}[width]
        if arr.dtype.kind in "iu" and width in (3, 6):
            return {3: _MI, 6: "int6"}[width]
    raise ValueError(f"no DIALS column kind for an array of dtype {arr.dtype} and shape {arr.shape}")


def _coerce(name: str, values: Any, kind: str) -> np.ndarray:
    """Cast values to the numpy form of a column kind, refusing lossy casts."""
    dtype, shape = COLUMN_KINDS[kind]
    if kind == "std::string":
        items = list(values)
        if not all(isinstance(v, str) for v in items):
            raise ValueError(f"column {name!r} ({kind}) must hold str values")
        arr = np.empty(len(items), dtype=object)
        arr[:] = [str(v) for v in items]
        return arr
    if kind == "Shoebox<>":
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
        if not all(isinstance(v, Shoebox) for v in arr):
            raise ValueError(f"column {name!r} ({kind}) must hold Shoebox values")
        return arr
    arr = np.asarray(values)
    if shape and arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape((0,) + shape)
    if arr.ndim != 1 + len(shape) or arr.shape[1:] != shape:
        raise ValueError(
            f"column {name!r} ({kind}) needs rows of shape {shape}, got array of shape {arr.shape}"
        )
    src = arr.dtype.kind
    if kind == "bool":
        if src != "b":
            raise ValueError(f"column {name!r} (bool) needs a boolean array, got {arr.dtype}")
    elif dtype.kind in "iu":
        if src not in "biu":
            raise ValueError(f"column {name!r} ({kind}) needs integers, got {arr.dtype}")
        if arr.size and src != "b":
            info = np.iinfo(dtype)
            lo, hi = arr.min(), arr.max()
            if int(lo) < info.min or int(hi) > info.max:
                raise ValueError(f"column {name!r} ({kind}) values out of range [{info.min}, {info.max}]")
    elif src not in "biuf":
        raise ValueError(f"column {name!r} ({kind}) needs numbers, got {arr.dtype}")
    return arr.astype(dtype, copy=False)


def _stats(arr: np.ndarray) -> tuple[Any, Any, Any]:
    """min, max, mean (componentwise for vector columns), JSON-able."""
    if arr.dtype.kind in "iu":
        lo, hi = arr.min(axis=0), arr.max(axis=0)
        mean = arr.astype(np.float64).mean(axis=0)
        if arr.ndim == 1:
            return int(lo), int(hi), float(mean)
        return [int(v) for v in lo], [int(v) for v in hi], [float(v) for v in mean]
    lo, hi, mean = arr.min(axis=0), arr.max(axis=0), arr.mean(axis=0)
    if arr.ndim == 1:
        return float(lo), float(hi), float(mean)
    return [float(v) for v in lo], [float(v) for v in hi], [float(v) for v in mean]


class ReflectionTable:
    """Named numpy columns of equal length, plus the experiment identifier map.

    Columns are stored as given (after casting to their kind) and returned
    without copying, so ``table["flags"][i] |= x`` changes the table, as with
    DIALS's flex arrays.
    """

    def __init__(
        self,
        columns: Mapping[str, Any] | None = None,
        *,
        nrows: int | None = None,
        experiment_identifiers: Mapping[int, str] | None = None,
    ) -> None:
        """Make a table from ``{name: array}``; ``nrows`` only for a column-less table."""
        self._columns: dict[str, np.ndarray] = {}
        self._kinds: dict[str, str] = {}
        self._nrows = 0 if nrows is None else int(nrows)
        if self._nrows < 0:
            raise ValueError("nrows must be >= 0")
        self._identifiers: dict[int, str] = {}
        for name, values in (columns or {}).items():
            self[name] = values
        if nrows is not None and self._columns and self._nrows != nrows:
            raise ValueError(f"columns have {self._nrows} rows, nrows={nrows} was given")
        if experiment_identifiers:
            self.experiment_identifiers = experiment_identifiers

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._nrows

    @property
    def nrows(self) -> int:
        """Number of rows (reflections)."""
        return self._nrows

    @property
    def ncols(self) -> int:
        """Number of columns."""
        return len(self._columns)

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def keys(self) -> list[str]:
        """Column names, in insertion order."""
        return list(self._columns)

    def items(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) pairs."""
        return list(self._columns.items())

    def kind(self, name: str) -> str:
        """The DIALS kind (``.refl`` type name) of a column."""
        try:
            return self._kinds[name]
        except KeyError:
            raise KeyError(f"no column {name!r} in reflection table") from None

    def kinds(self) -> dict[str, str]:
        """{column name: DIALS kind}."""
        return dict(self._kinds)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._columns[name]
        except KeyError:
            raise KeyError(f"no column {name!r} in reflection table") from None

    def __setitem__(self, name: str, values: Any) -> None:
        self.set_column(name, values)

    def set_column(self, name: str, values: Any, kind: str | None = None) -> None:
        """Add or replace a column, cast to ``kind``.

        Without ``kind``: an existing column keeps its kind, a DIALS standard name
        (flags, id, miller_index, ...) gets DIALS's kind, anything else is inferred
        from dtype and shape. A table without columns takes its length from the
        first column; otherwise the length must equal ``len(table)``.
        """
        if not isinstance(name, str) or not name:
            raise KeyError("column names must be non-empty strings")
        if kind is None:
            kind = self._kinds.get(name) or STANDARD_COLUMN_KINDS.get(name)
        if kind is None:
            kind = _infer_kind(np.asarray(values) if not isinstance(values, np.ndarray) else values)
        if kind not in COLUMN_KINDS:
            raise ValueError(f"unknown column kind {kind!r}")
        arr = _coerce(name, values, kind)
        others = [k for k in self._columns if k != name]
        if others and len(arr) != self._nrows:
            raise ValueError(f"column {name!r} has {len(arr)} rows, table has {self._nrows}")
        self._nrows = len(arr)
        self._columns[name] = arr
        self._kinds[name] = kind

    def __delitem__(self, name: str) -> None:
        del self._columns[name]
        del self._kinds[name]

    def __repr__(self) -> str:
        return f"<ReflectionTable {self._nrows} rows, columns {self.keys()}>"

    # ------------------------------------------------------------ identifiers
    @property
    def experiment_identifiers(self) -> dict[int, str]:
        """{id column value: experiment identifier}; the live (mutable) map."""
        return self._identifiers

    @experiment_identifiers.setter
    def experiment_identifiers(self, mapping: Mapping[int, str]) -> None:
        new: dict[int, str] = {}
        for key, value in dict(mapping).items():
            if isinstance(key, bool) or int(key) != key or int(key) < 0:
                raise ValueError(f"experiment id {key!r} must be a non-negative integer")
            if not isinstance(value, str):
                raise ValueError(f"experiment identifier for id {key} must be a str")
            new[int(key)] = value
        self._identifiers.clear()
        self._identifiers.update(sorted(new.items()))

    def are_experiment_identifiers_consistent(self) -> bool:
        """True when identifiers are unique and every id >= 0 in the table has one."""
        values = list(self._identifiers.values())
        if len(set(values)) != len(values):
            return False
        if "id" in self:
            ids = set(np.unique(self["id"]).tolist()) - {-1}
            return ids <= set(self._identifiers)
        return True

    def clean_experiment_identifiers_map(self) -> None:
        """Drop identifiers whose id no longer occurs in the ``id`` column."""
        present = set(np.unique(self["id"]).tolist()) if "id" in self else set()
        for key in [k for k in self._identifiers if k not in present]:
            del self._identifiers[key]

    def reset_ids(self) -> None:
        """Renumber ids to 0..n-1 in the order of the identifier map (DIALS reset_ids).

        Rows whose id has no identifier (e.g. -1) are left unchanged.
        """
        old_keys = sorted(self._identifiers)
        if "id" in self and old_keys:
            ids = self["id"]
            lookup = np.asarray(old_keys)
            pos = np.searchsorted(lookup, ids)
            pos_clipped = np.minimum(pos, len(lookup) - 1)
            known = lookup[pos_clipped] == ids
            new_ids = ids.copy()
            new_ids[known] = pos_clipped[known]
            self._columns["id"] = new_ids.astype(_I4)
        self._identifiers = {i: self._identifiers[k] for i, k in enumerate(old_keys)}

    # -------------------------------------------------------------- selection
    def select(self, selection: Any) -> ReflectionTable:
        """A new table of the selected rows (boolean mask or row indices).

        As in DIALS, with an ``id`` column the result keeps only the identifiers
        of ids that occur in the selected rows; without one it keeps them all.
        """
        index = _row_selection(selection, self._nrows)
        out = ReflectionTable(nrows=len(index))
        for name, arr in self._columns.items():
            out._columns[name] = arr[index]
            out._kinds[name] = self._kinds[name]
        if "id" in self:
            present = set(np.unique(out._columns["id"]).tolist())
            out._identifiers = {k: v for k, v in self._identifiers.items() if k in present}
        else:
            out._identifiers = dict(self._identifiers)
        return out

    def shallow_copy(self) -> ReflectionTable:
        """A new table sharing this one's column arrays: replace columns in it, never
        write into them."""
        out = ReflectionTable(nrows=self._nrows)
        out._columns = dict(self._columns)
        out._kinds = dict(self._kinds)
        out._identifiers = dict(self._identifiers)
        return out

    def copy(self) -> ReflectionTable:
        """A deep copy (arrays copied; Shoebox objects shared)."""
        out = ReflectionTable(nrows=self._nrows)
        for name, arr in self._columns.items():
            out._columns[name] = arr.copy()
            out._kinds[name] = self._kinds[name]
        out._identifiers = dict(self._identifiers)
        return out

    def extend(self, other: ReflectionTable) -> None:
        """Append the rows of ``other`` (same columns and kinds), merging identifiers.

        An id mapped to different identifiers in the two tables, or one identifier
        under two ids, raises XtalError (DIALS: "Experiment identifiers do not
        match"); nothing is changed then. An empty table without columns takes
        ``other``'s columns. To combine tables whose ids clash (e.g. two
        single-sweep files both using id 0) use :meth:`concatenate`.
        """
        if not isinstance(other, ReflectionTable):
            raise TypeError("can only extend with a ReflectionTable")
        merged = dict(self._identifiers)
        reverse = {v: k for k, v in merged.items()}
        for key, value in other._identifiers.items():
            if key in merged and merged[key] != value:
                raise XtalError(
                    f"Experiment identifiers do not match: id {key} is {merged[key]!r} "
                    f"in one table and {value!r} in the other"
                )
            if value in reverse and reverse[value] != key:
                raise XtalError(
                    f"Experiment identifiers do not match: {value!r} has id "
                    f"{reverse[value]} in one table and {key} in the other"
                )
            merged[key] = value
            reverse[value] = key
        if not self._columns and self._nrows == 0:
            for name, arr in other._columns.items():
                self._columns[name] = arr.copy()
                self._kinds[name] = other._kinds[name]
            self._nrows = other._nrows
        else:
            if set(self._columns) != set(other._columns):
                missing = sorted(set(self._columns) ^ set(other._columns))
                raise ValueError(f"cannot extend: columns differ ({', '.join(missing)})")
            for name in self._columns:
                if self._kinds[name] != other._kinds[name]:
                    raise ValueError(
                        f"cannot extend: column {name!r} is {self._kinds[name]} here "
                        f"and {other._kinds[name]} in the other table"
                    )
            for name, arr in self._columns.items():
                self._columns[name] = np.concatenate([arr, other._columns[name]])
            self._nrows += other._nrows
        self._identifiers = dict(sorted(merged.items()))

    @classmethod
    def concatenate(cls, tables: Sequence[ReflectionTable]) -> ReflectionTable:
        """Join tables, renumbering ids so each experiment identifier gets its own id.

        Identifiers are numbered 0, 1, ... in order of first appearance (the same
        identifier in two tables shares one id). Ids without an identifier get a
        fresh id per table; -1 stays -1. Like dials.util.multi_dataset_handling's
        renumber_table_id_columns followed by extend.
        """
        out = cls()
        new_of_ident: dict[str, int] = {}
        next_id = 0
        for table in tables:
            t = table.copy()
            if "id" in t:
                ids = t["id"]
                mapping: dict[int, int] = {}
                for old in np.unique(ids).tolist():
                    if old < 0:
                        continue
                    ident = t._identifiers.get(old)
                    if ident is not None and ident in new_of_ident:
                        mapping[old] = new_of_ident[ident]
                        continue
                    mapping[old] = next_id
                    if ident is not None:
                        new_of_ident[ident] = next_id
                    next_id += 1
                for old, ident in t._identifiers.items():  # identifiers without rows
                    if old not in mapping:
                        if ident not in new_of_ident:
                            new_of_ident[ident] = next_id
                            next_id += 1
                        mapping[old] = new_of_ident[ident]
                if mapping:
                    olds = np.fromiter(mapping.keys(), dtype=np.int64)
                    news = np.fromiter(mapping.values(), dtype=np.int64)
                    order = np.argsort(olds)
                    olds, news = olds[order], news[order]
                    pos = np.clip(np.searchsorted(olds, ids), 0, len(olds) - 1)
                    hit = olds[pos] == ids
                    new_ids = ids.copy()
                    new_ids[hit] = news[pos[hit]]
                    t._columns["id"] = new_ids.astype(_I4)
                t._identifiers = {mapping[k]: v for k, v in t._identifiers.items()}
            out.extend(t)
        return out

    def split_by_experiment(self) -> list[ReflectionTable]:
        """One table per id value >= 0, in increasing id; each keeps only its identifier.

        Row order inside each table is preserved. Rows with a negative id (not
        assigned to an experiment) are left out (DIALS's split_by_experiment_id
        refuses them instead).
        """
        if "id" not in self:
            raise KeyError("split_by_experiment needs an 'id' column")
        ids = self["id"]
        keep = np.flatnonzero(ids >= 0)
        order = keep[np.argsort(ids[keep], kind="stable")]
        values, starts = np.unique(ids[order], return_index=True)
        bounds = list(starts) + [len(order)]
        return [self.select(order[bounds[i] : bounds[i + 1]]) for i in range(len(values))]

    def select_on_experiment_identifiers(self, identifiers: Iterable[str]) -> ReflectionTable:
        """A new table with the rows of the named experiments and only their identifiers.

        Identifiers not in the map are ignored with a warning, as DIALS does.
        """
        wanted = list(identifiers)
        keys = [k for k, v in self._identifiers.items() if v in wanted]
        if len(keys) != len(wanted):
            missing = sorted(set(wanted) - set(self._identifiers.values()))
            warnings.warn(f"experiment identifiers not in the table's map: {missing}", stacklevel=2)
        mask = np.isin(self["id"], keys) if "id" in self else np.zeros(self._nrows, bool)
        out = self.select(mask)
        out._identifiers = {k: v for k, v in self._identifiers.items() if k in keys}
        return out

    def remove_on_experiment_identifiers(self, identifiers: Iterable[str]) -> ReflectionTable:
        """A new table without the rows and identifiers of the named experiments."""
        drop = set(identifiers)
        keep_keys = {k for k, v in self._identifiers.items() if v not in drop}
        drop_keys = [k for k, v in self._identifiers.items() if v in drop]
        mask = ~np.isin(self["id"], drop_keys)
        out = self.select(mask)
        out._identifiers = {k: v for k, v in self._identifiers.items() if k in keep_keys}
        return out

    # ------------------------------------------------------------------ flags
    def get_flags(self, flag: int, all: bool = True) -> np.ndarray:  # noqa: A002 (DIALS name)
        """Boolean mask: rows with all bits of ``flag`` set (``all=False``: any bit)."""
        value = np.uint64(int(flag))
        masked = self["flags"] & value
        return masked == value if all else masked != 0

    def set_flags(self, selection: Any, flag: int) -> None:
        """Set the bits of ``flag`` on the selected rows (mask or indices).

        Creates a zero ``flags`` column first if there is none.
        """
        if "flags" not in self:
            self.set_column("flags", np.zeros(self._nrows, _U8))
        index = _row_selection(selection, self._nrows)
        self._columns["flags"][index] |= np.uint64(int(flag))

    def unset_flags(self, selection: Any, flag: int) -> None:
        """Clear the bits of ``flag`` on the selected rows (mask or indices)."""
        index = _row_selection(selection, self._nrows)
        self["flags"][index] &= ~np.uint64(int(flag))

    # ------------------------------------------------------------ construction
    @classmethod
    def empty(
        cls, columns: Mapping[str, str] | Iterable[str], nrows: int = 0
    ) -> ReflectionTable:
        """A table of ``nrows`` zero/empty rows with the given columns.

        ``columns`` is ``{name: kind}`` or a list of DIALS standard column names.
        Shoebox cells are None placeholders.
        """
        if not isinstance(columns, Mapping):
            names = list(columns)
            unknown = [n for n in names if n not in STANDARD_COLUMN_KINDS]
            if unknown:
                raise ValueError(f"no standard kind for columns {unknown}; pass {{name: kind}}")
            columns = {n: STANDARD_COLUMN_KINDS[n] for n in names}
        out = cls(nrows=nrows)
        for name, kind in columns.items():
            if kind not in COLUMN_KINDS:
                raise ValueError(f"unknown column kind {kind!r} for column {name!r}")
            dtype, shape = COLUMN_KINDS[kind]
            if kind == "std::string":
                arr = np.full(nrows, "", dtype=object)
            elif kind == "Shoebox<>":
                arr = np.full(nrows, None, dtype=object)
            else:
                arr = np.zeros((nrows,) + shape, dtype=dtype)
            out._columns[name] = arr
            out._kinds[name] = kind
        return out

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        """What ``dials.show show_flags=True`` prints for a reflection table, as data.

        ``{"nrows": N, "columns": [[name, min, max, mean], ...], "flags": [[flag,
        count, percent], ...]}``. Column rows are given, as in dials.show, for int,
        std::size_t and double columns (scalars) and vec3<double> and Miller index
        columns (per component); a shoebox column adds rows "summed I", "N pix" and
        "N valid foreground pix" when its pixels are loaded. Flag counts are rows
        with any bit of the flag set, in increasing flag value. Empty table: no rows.
        """
        result: dict[str, Any] = {"nrows": self._nrows, "columns": [], "flags": []}
        if self._nrows == 0:
            return result
        rows = result["columns"]
        for name in sorted(self._columns):
            kind, arr = self._kinds[name], self._columns[name]
            if kind in ("int", "std::size_t", "double", "vec3<double>", _MI):
                rows.append([name, *_stats(arr)])
            elif kind == "Shoebox<>":
                sb = _shoebox_stats(arr)
                if sb is not None:
                    rows.append([name, None, None, None])
                    for label, values in sb:
                        rows.append([label, *_stats(values)])
        if "flags" in self and self._kinds["flags"] == "std::size_t":
            flags = self["flags"]
            for flag_name, value in FLAG_ROWS:
                count = int(np.count_nonzero(flags & np.uint64(value)))
                result["flags"].append([flag_name, count, 100.0 * count / self._nrows])
        return result


def _shoebox_stats(column: np.ndarray) -> list[tuple[str, np.ndarray]] | None:
    """dials.show's shoebox rows, or None when no shoebox has pixel data."""
    if not any(sb is not None and sb.data is not None for sb in column):
        return None
    n = len(column)
    summed = np.zeros(n)
    npix = np.zeros(n)
    nvalid = np.zeros(n)
    fg = MaskCode.Valid | MaskCode.Foreground
    for i, sb in enumerate(column):  # per-shoebox arrays differ in shape
        if sb is None:
            continue
        npix[i] = float(np.prod(sb.shape))
        if sb.data is None:
            continue
        sel = (sb.mask & fg) == fg
        summed[i] = float(np.sum(sb.data[sel], dtype=np.float64) - np.sum(sb.background[sel], dtype=np.float64))
        nvalid[i] = float(np.count_nonzero(sel))
    return [("  summed I", summed), ("  N pix", npix), ("  N valid foreground pix", nvalid)]

