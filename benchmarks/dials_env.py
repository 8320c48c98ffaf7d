"""The environment for running DIALS 3.12 (Debian) on xtal's files from a benchmark.

Debian's DIALS has no HDF5 filter plugins, so it reads bitshuffle-LZ4 NeXus only with
hdf5plugin's plugin folder on HDF5_PLUGIN_PATH. xtal's own child processes run
``sys.executable``, where ``processing`` is installed.
"""
from __future__ import annotations

import os


def dials_env() -> dict[str, str]:
    env = dict(os.environ)
    try:
        import hdf5plugin
        env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    except ImportError:
        pass
    return env
