"""`xtal warmup [parts=find_spots,integrate]`: compile the numba kernels once, after install.

Run by the Makefile's install rules: the compiled code lands in the numba cache
(``__pycache__`` beside the sources), so the first ``xtal find_spots`` is as fast as
every later one.
"""
from __future__ import annotations

import os

from ..params import from_strings
from ..warmup import WarmupParams, compile_kernels
from .command import split_args
from .main import print_help


def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_:
        print_help("warmup", WarmupParams)
        return 0
    params = from_strings(WarmupParams, words + [f"parts={f}" for f in files])
    where = os.environ.get("NUMBA_CACHE_DIR") or "__pycache__ beside the sources"
    for part, seconds in compile_kernels(params.parts).items():
        print(f"{part}: kernels compiled and cached in {seconds:.1f} s")
    print(f"numba cache: {where}")
    return 0
