"""DIALS ``.refl`` files (msgpack, DIALS >= 2.0) <-> ReflectionTable.

Layout, as written by dials/array_family/reflection_table_msgpack_adapter.h::

    ["dials::af::reflection_table", 1,
     {"identifiers": {id: identifier, ...},
      "nrows": N,
      "data": {column: [type_name, [n, <bin: n * element bytes>]], ...}}]

Column bytes are the C++ elements in little-endian machine order: bool 1 byte,
int int32, std::size_t uint64, double/vec2/vec3/mat3 float64 ×1/2/3/9,
int6 and Miller indices int32 ×6/×3. A ``Shoebox<>`` column is one bin blob of
per-reflection records: uint32 panel, int32 bbox[6], uint8 has_data, then (if
has_data) float32 data, int32 mask, float32 background, each nz*ny*nx values.
DIALS writes columns in sorted name order (a std::map).

``std::string`` columns: DIALS dumps the raw ``std::string`` objects (32 bytes
each with libstdc++: pointer, size, 16-byte inline buffer), so only strings of
at most 15 bytes survive a file; longer ones are lost in DIALS's own files and
give an error here. xtal does not write string columns (DIALS could not read
them back); they are left out with a warning.
"""

from __future__ import annotations

import os
import struct
import warnings
from typing import Any

import msgpack
import numpy as np

from processing.errors import XtalError
from processing.io.files import atomic_path, read_bytes
from processing.reflections.table import COLUMN_KINDS, ReflectionTable, Shoebox

__all__ = ["read_reflections", "write_reflections", "decode_reflections", "encode_reflections"]

FILETYPE = "dials::af::reflection_table"
VERSION = 1

_ELEMENT_BYTES = {
    kind: dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    for kind, (dtype, shape) in COLUMN_KINDS.items()
    if kind not in ("std::string", "Shoebox<>")
}
_SHOEBOX_HEADER = struct.Struct("<I6iB")  # panel, bbox x0 x1 y0 y1 z0 z1, has_data
_LIBSTDCXX_STRING_BYTES = 32


def read_reflections(path: str | os.PathLike[str], skip_shoebox: bool = True) -> ReflectionTable:
    """Read a DIALS msgpack ``.refl`` file.

    With ``skip_shoebox`` (default) a shoebox column is not loaded (a warning says
    so); otherwise it becomes a column of :class:`Shoebox` objects. Any problem with
    the file raises one XtalError naming the file.
    """
    name = os.fspath(path)
    return _decode(read_bytes(name, "reflection file"), skip_shoebox, name, stacklevel=4)


def write_reflections(path: str | os.PathLike[str], table: ReflectionTable) -> None:
    """Write ``table`` as a DIALS msgpack ``.refl`` file, atomically.

    The bytes go to a temporary file in the same folder, which then replaces
    ``path``; a failed write leaves any existing file untouched. Columns are packed
    and written one at a time (the same bytes as :func:`encode_reflections`), so a
    large table needs no second copy of itself in memory.
    """
    name = os.fspath(path)
    try:
        with atomic_path(name) as tmp:
            with open(tmp, "xb") as fh:
                for chunk in _encoded_parts(table):
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        raise XtalError(f"{name}: cannot write reflection file ({exc.strerror or exc})") from None


def _columns_to_write(table: ReflectionTable):
    """(name, kind, blob producer) of the columns a .refl file holds, in DIALS's order."""
    out = []
    for name in sorted(table.keys(), key=lambda s: s.encode("utf-8")):
        kind = table.kind(name)
        if kind == "std::string":
            warnings.warn(
                f"column {name!r} (std::string) not written: DIALS cannot read string "
                "columns back from a file",
                stacklevel=4,
            )
            continue
        out.append((name, kind))
    return out


def _blob(table: ReflectionTable, name: str, kind: str) -> bytes:
    arr = table[name]
    if kind == "Shoebox<>":
        return _encode_shoeboxes(arr, name)
    dtype, _shape = COLUMN_KINDS[kind]
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def _encoded_parts(table: ReflectionTable):
    """The msgpack bytes of ``[FILETYPE, VERSION, header]``, column by column."""
    packer = msgpack.Packer(use_bin_type=True)
    n = len(table)
    columns = _columns_to_write(table)
    yield packer.pack_array_header(3) + packer.pack(FILETYPE) + packer.pack(VERSION)
    yield packer.pack_map_header(3) + packer.pack("identifiers") + packer.pack(
        {int(k): str(v) for k, v in sorted(table.experiment_identifiers.items())})
    yield packer.pack("nrows") + packer.pack(n) + packer.pack("data") + packer.pack_map_header(len(columns))
    for name, kind in columns:
        blob = _blob(table, name, kind)
        yield (packer.pack(name) + packer.pack_array_header(2) + packer.pack(kind) + packer.pack_array_header(2)
               + packer.pack(n))
        yield packer.pack(blob)


# --------------------------------------------------------------------- decode
def decode_reflections(
    raw: bytes, skip_shoebox: bool = True, source: str = "<bytes>"
) -> ReflectionTable:
    """Parse the bytes of a ``.refl`` file (see module docstring); XtalError on bad input."""
    return _decode(raw, skip_shoebox, source, stacklevel=4)


def _decode(raw: bytes, skip_shoebox: bool, source: str, stacklevel: int) -> ReflectionTable:
    if len(raw) == 0:
        raise XtalError(f"{source}: file is empty, not a DIALS reflection table")
    if raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise XtalError(
            f"{source}: a pickle-format reflection file (DIALS < 2.0); only msgpack .refl "
            "files are supported"
        )
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=False, use_list=True, max_buffer_size=max(len(raw), 1)
    )
    unpacker.feed(raw)
    n_raw = len(raw)
    del raw  # the unpacker holds its own copy: keep one, not two (large tables)
    try:
        obj = unpacker.unpack()
    except msgpack.OutOfData:
        raise XtalError(f"{source}: file is truncated (msgpack data ends early)") from None
    except Exception as exc:  # malformed msgpack of any sort: one clear message
        raise XtalError(
            f"{source}: not a DIALS reflection table (unreadable msgpack: {type(exc).__name__})"
        ) from None
    if not (isinstance(obj, list) and len(obj) == 3 and obj[0] == FILETYPE):
        raise XtalError(f"{source}: not a DIALS reflection table (no '{FILETYPE}' header)")
    if unpacker.tell() != n_raw:
        raise XtalError(
            f"{source}: corrupt reflection table ({n_raw - unpacker.tell()} bytes after the end)"
        )
    del unpacker
    version, header = obj[1], obj[2]
    if isinstance(version, bool) or version != VERSION:
        raise XtalError(f"{source}: reflection table version {version!r} is not supported (expected 1)")
    if not isinstance(header, dict):
        raise XtalError(f"{source}: corrupt reflection table (header is not a map)")
    unknown = [k for k in header if k not in ("identifiers", "nrows", "data")]
    if unknown:
        raise XtalError(f"{source}: corrupt reflection table (unknown header key {unknown[0]!r})")
    nrows = header.get("nrows")
    if not _is_count(nrows):
        raise XtalError(f"{source}: corrupt reflection table (number of rows missing or invalid)")
    data = header.get("data")
    if not isinstance(data, dict):
        raise XtalError(f"{source}: corrupt reflection table (column data missing)")
    identifiers = header.get("identifiers", {})
    if not isinstance(identifiers, dict) or not all(
        _is_count(k) and isinstance(v, str) for k, v in identifiers.items()
    ):
        raise XtalError(f"{source}: corrupt reflection table (bad experiment identifiers)")

    table = ReflectionTable(nrows=nrows)
    for name in list(data):
        column = data.pop(name)  # each payload is freed once its column is decoded
        if not isinstance(name, str) or not name:
            raise XtalError(f"{source}: corrupt reflection table (column name {name!r})")
        kind, payload = _column_parts(column, name, nrows, source)
        if kind == "Shoebox<>":
            if skip_shoebox:
                warnings.warn(
                    f"{source}: column {name!r} (Shoebox<>) not loaded (skip_shoebox=True)",
                    stacklevel=stacklevel,
                )
                continue
            values = _decode_shoeboxes(payload, nrows, name, source)
        elif kind == "std::string":
            values = _decode_strings(payload, nrows, name, source)
        else:
            values = _decode_fixed(payload, nrows, kind, name, source)
        table.set_column(name, values, kind=kind)
    table.experiment_identifiers = identifiers
    return table


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _column_parts(column: Any, name: str, nrows: int, source: str) -> tuple[str, bytes]:
    """Check ``[type_name, [n, bin]]``; return (type_name, bin)."""
    if not (isinstance(column, list) and len(column) == 2 and isinstance(column[0], str)):
        raise XtalError(f"{source}: corrupt reflection table (column {name!r} is malformed)")
    kind, body = column
    if kind not in COLUMN_KINDS:
        raise XtalError(f"{source}: column {name!r} has unknown type {kind!r}")
    if not (isinstance(body, list) and len(body) == 2 and _is_count(body[0])):
        raise XtalError(f"{source}: corrupt reflection table (column {name!r} is malformed)")
    n, payload = body
    if not isinstance(payload, bytes):
        raise XtalError(f"{source}: corrupt reflection table (column {name!r} has no binary data)")
    if n != nrows:
        raise XtalError(f"{source}: column {name!r} has {n} rows but the table has {nrows}")
    return kind, payload


def _decode_fixed(payload: bytes, n: int, kind: str, name: str, source: str) -> np.ndarray:
    size = _ELEMENT_BYTES[kind]
    if len(payload) != n * size:
        raise XtalError(
            f"{source}: column {name!r} ({kind}) has {len(payload)} bytes, expected {n * size} "
            f"for {n} rows"
        )
    dtype, shape = COLUMN_KINDS[kind]
    if kind == "bool":
        return np.frombuffer(payload, dtype=np.uint8) != 0
    return np.frombuffer(payload, dtype=dtype).reshape((n,) + shape).copy()


def _decode_strings(payload: bytes, n: int, name: str, source: str) -> np.ndarray:
    """libstdc++ std::string objects -> str; only inline (<= 15 byte) strings survive."""
    if len(payload) != n * _LIBSTDCXX_STRING_BYTES:
        raise XtalError(
            f"{source}: column {name!r} (std::string) has {len(payload)} bytes; only files "
            "written by DIALS on Linux (32-byte std::string) can be read"
        )
    raw = np.frombuffer(payload, dtype=np.uint8).reshape(n, _LIBSTDCXX_STRING_BYTES)
    sizes = raw[:, 8:16].copy().view("<u8").ravel()
    if n and sizes.max() > 15:
        raise XtalError(
            f"{source}: column {name!r} (std::string) holds strings longer than 15 bytes, "
            "which DIALS stores only as memory addresses; they cannot be recovered"
        )
    out = np.empty(n, dtype=object)
    try:
        out[:] = [bytes(raw[i, 16 : 16 + sizes[i]]).decode("utf-8") for i in range(n)]
    except UnicodeDecodeError:
        raise XtalError(f"{source}: column {name!r} (std::string) is not valid UTF-8") from None
    return out


def _decode_shoeboxes(payload: bytes, n: int, name: str, source: str) -> np.ndarray:
    """Sequential records (variable length), so one pass over the reflections."""
    out = np.empty(n, dtype=object)
    end = len(payload)
    off = 0
    head = _SHOEBOX_HEADER.size
    for i in range(n):
        if off + head > end:
            raise XtalError(f"{source}: column {name!r} (Shoebox<>) is truncated at row {i}")
        panel, x0, x1, y0, y1, z0, z1, has_data = _SHOEBOX_HEADER.unpack_from(payload, off)
        off += head
        if x1 < x0 or y1 < y0 or z1 < z0:
            raise XtalError(f"{source}: column {name!r} (Shoebox<>) has an invalid bbox at row {i}")
        box = Shoebox(panel=panel, bbox=(x0, x1, y0, y1, z0, z1))
        if has_data:
            shape = (z1 - z0, y1 - y0, x1 - x0)
            count = shape[0] * shape[1] * shape[2]
            if off + 12 * count > end:
                raise XtalError(f"{source}: column {name!r} (Shoebox<>) is truncated at row {i}")
            box.data = np.frombuffer(payload, "<f4", count, off).reshape(shape).copy()
            off += 4 * count
            box.mask = np.frombuffer(payload, "<i4", count, off).reshape(shape).copy()
            off += 4 * count
            box.background = np.frombuffer(payload, "<f4", count, off).reshape(shape).copy()
            off += 4 * count
        out[i] = box
    if off != end:
        raise XtalError(f"{source}: column {name!r} (Shoebox<>) has {end - off} unexpected bytes")
    return out


# --------------------------------------------------------------------- encode
def encode_reflections(table: ReflectionTable) -> bytes:
    """The bytes of a ``.refl`` file for ``table`` (columns in DIALS's sorted order)."""
    return b"".join(_encoded_parts(table))


def _encode_shoeboxes(column: np.ndarray, name: str) -> bytes:
    parts: list[bytes] = []
    for i, box in enumerate(column):
        if not isinstance(box, Shoebox):
            raise ValueError(f"column {name!r} row {i}: not a Shoebox ({box!r})")
        x0, x1, y0, y1, z0, z1 = (int(v) for v in box.bbox)
        if x1 < x0 or y1 < y0 or z1 < z0:
            raise ValueError(f"column {name!r} row {i}: invalid bbox {box.bbox}")
        has_data = box.data is not None and box.data.size > 0
        parts.append(_SHOEBOX_HEADER.pack(int(box.panel), x0, x1, y0, y1, z0, z1, int(has_data)))
        if has_data:
            shape = box.shape
            for arr, dtype in ((box.data, "<f4"), (box.mask, "<i4"), (box.background, "<f4")):
                if arr is None or arr.shape != shape:
                    raise ValueError(f"column {name!r} row {i}: pixel arrays do not match bbox")
                parts.append(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    return b"".join(parts)
