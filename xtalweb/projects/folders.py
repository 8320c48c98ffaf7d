"""Run folders under a project's work directory: one new folder per StageRun,
``<work_dir>/<nnn>_<stage>/``, per-sweep files in its ``sweeps/``."""

from __future__ import annotations

import os
import re
import shutil

_RUN_DIR = re.compile(r"^(\d+)_")


def new_output_dir(work_dir: str, stage: str) -> str:
    """Create and return the next free ``<work_dir>/<nnn>_<stage>`` folder.

    ``os.mkdir`` is atomic, so two workers sharing the storage never get the same one.
    """
    os.makedirs(work_dir, exist_ok=True)
    while True:
        numbers = [int(m.group(1)) for m in map(_RUN_DIR.match, os.listdir(work_dir)) if m]
        path = os.path.join(work_dir, f"{max(numbers, default=0) + 1:03d}_{stage}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path


def holds_files(path: str | None) -> bool:
    """Whether the folder ``path`` holds any file (in any subfolder)."""
    if not path or not os.path.isdir(path):
        return False
    return any(names for _, _, names in os.walk(path))


def remove(path: str | None) -> None:
    """Remove a run folder; never one of an approved run (``review.LockedError``)."""
    from .review import assert_not_locked

    if path and os.path.isdir(path):
        assert_not_locked(path)
        shutil.rmtree(path, ignore_errors=True)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "sweep"


def sweep_path(output_dir: str, index: int, name: str, suffix: str) -> str:
    """``<output_dir>/sweeps/<nnn>_<name><suffix>``: one sweep's file in a run folder."""
    return os.path.join(output_dir, "sweeps", f"{index:03d}_{safe_name(name)}{suffix}")
