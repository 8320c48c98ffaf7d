"""The image files of a project's data folder, for the import stage."""

from __future__ import annotations

import os
import re

from .permissions import DataPathError, data_roots, is_inside

#: file names the import stage picks up
CBF_SUFFIXES = (".cbf",)
NEXUS_SUFFIXES = (".nxs",)
HDF5_SUFFIXES = (".h5", ".hdf5")
_EIGER_DATA_FILE = re.compile(r"_data_\d+\.(h5|hdf5)$", re.IGNORECASE)


def _is_nxmx(path: str) -> bool:
    """Whether an HDF5 file that is not called *_master.h5 is an NXmx (master) file.

    A file h5py cannot open is kept, so that the import stage reports it clearly rather
    than it being skipped silently.
    """
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        return True
    try:
        with h5py.File(path, "r") as f:
            for item in f.values():
                attrs = getattr(item, "attrs", {})
                nx_class = attrs.get("NX_class", b"")
                nx_class = nx_class.decode() if isinstance(nx_class, bytes) else str(nx_class)
                if nx_class != "NXentry":
                    continue
                definition = item.get("definition") if hasattr(item, "get") else None
                if definition is None:
                    return True  # an NXentry without definition: let the reader decide
                value = definition[()]
                value = value.decode() if isinstance(value, bytes) else str(value)
                return value.strip() == "NXmx"
    except Exception:
        return True
    return False


def find_image_files(root: str) -> list[str]:
    """Image files below ``root``: ``*.cbf``, ``*.nxs``, ``*_master.h5`` and NXmx ``*.h5``.

    Eiger data files (``*_data_000001.h5``) are left to their master file. Hidden files
    and folders are skipped; symlinked folders are not followed, and a file whose real
    path leaves the data roots raises :class:`DataPathError`.
    """
    roots = data_roots()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            lower = name.lower()
            path = os.path.join(dirpath, name)
            if lower.endswith(CBF_SUFFIXES) or lower.endswith(NEXUS_SUFFIXES):
                pass
            elif lower.endswith(HDF5_SUFFIXES):
                if lower.endswith(("_master.h5", "_master.hdf5")):
                    pass
                elif _EIGER_DATA_FILE.search(lower) or not _is_nxmx(path):
                    continue
            else:
                continue
            real = os.path.realpath(path)
            if not any(is_inside(real, r) for r in roots):
                raise DataPathError(f"{path} links to {real}, which is outside the allowed data roots")
            found.append(path)
    return found
