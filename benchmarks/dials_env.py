"""The environment for running DIALS 3.12 (Debian) on xtal's files from a benchmark.

Debian's DIALS has no HDF5 filter plugins, so it reads bitshuffle-LZ4 NeXus only with
hdf5plugin's plugin folder on HDF5_PLUGIN_PATH; the repository goes on PYTHONPATH for
helper scripts that import ``processing``.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dials_env() -> dict[str, str]:
    env = dict(os.environ)
    try:
        import hdf5plugin
        env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    except ImportError:
        pass
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
