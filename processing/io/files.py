"""Reading whole files and writing them atomically, with one clear error each."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

from ..errors import XtalError


def read_bytes(path: str | os.PathLike[str], what: str) -> bytes:
    """The file's bytes; a missing, unreadable or folder path is an XtalError naming ``what``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise XtalError(f"{name}: no such {what}") from None
    except IsADirectoryError:
        raise XtalError(f"{name}: is a directory, not a {what}") from None
    except OSError as exc:
        raise XtalError(f"{name}: cannot read {what} ({exc.strerror or exc})") from None


@contextmanager
def atomic_path(path: str | os.PathLike[str]):
    """Yield a temporary name beside ``path``; on success it replaces ``path``.

    On any failure the temporary file is removed and an existing ``path`` is untouched.
    """
    name = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(name))
    tmp = os.path.join(folder, f".{os.path.basename(name)}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, name)
    finally:
        if os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, what: str) -> None:
    """Write ``data`` to ``path`` atomically (synced before the rename)."""
    name = os.fspath(path)
    try:
        with atomic_path(name) as tmp:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        raise XtalError(f"{name}: cannot write {what} ({exc.strerror or exc})") from None
