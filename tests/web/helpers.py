"""Helpers shared by the web tests (fixtures live in conftest.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REAL_IMAGES = REPO.parent / "shared" / "data" / "real" / "images"
SMARGON_CBF = REAL_IMAGES / "DLS_I03_smargon_0001.cbf"


def copy_image(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    shutil.copyfile(src, dst)
    return dst


def wait_for_run(run_id: int, timeout: float = 180.0):
    """Poll the database until the StageRun has finished; return it."""
    from xtalweb.projects.models import StageRun

    deadline = time.monotonic() + timeout
    while True:
        run = StageRun.objects.get(pk=run_id)
        if run.status in (StageRun.Status.SUCCEEDED, StageRun.Status.PARTIAL, StageRun.Status.FAILED):
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"StageRun {run_id} still {run.status} after {timeout:.0f} s (progress {run.progress})")
        time.sleep(0.2)
