"""The simulated `tiny` set taken through the installed `xtal` console script, once per session.

Each stage runs in its own folder under one session temporary directory and reads the
previous stage's outputs by absolute path; the fixtures return the folder and the
finished process, so the tests assert on the files and on what the command printed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


def xtal_executable() -> str:
    """The `xtal` console script of the running environment (next to its python, else on PATH)."""
    beside = Path(sys.executable).with_name("xtal")
    path = str(beside) if beside.exists() else shutil.which("xtal")
    assert path, "the `xtal` console script is not installed (pip install -e .)"
    return path


def run_xtal(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``xtal args…`` in ``cwd``; stdout and stderr captured as text."""
    return subprocess.run([xtal_executable(), *args], cwd=cwd, check=False, capture_output=True, text=True,
                          timeout=600)


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``proc``, once it is known to have exited 0 (else fail, quoting its stderr)."""
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed:\n{proc.stderr[-3000:]}"
    return proc


def table_rows(text: str, header: str) -> list[list[str]]:
    """Body rows (cells stripped) of the first boxed table whose header contains ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and header in line)
    k = start
    while not lines[k].startswith(("|-", "+-")):  # the rule under the (multi-line) header
        k += 1
    rows = []
    for line in lines[k + 1:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def assert_one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    """Exit status 1 and a single stderr line containing ``message``, no traceback."""
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(err) == 1 and message in err[0], proc.stderr
    assert "Traceback" not in proc.stderr


@dataclass
class Stage:
    """One finished command: the folder it ran (and wrote) in, and its process."""

    folder: Path
    proc: subprocess.CompletedProcess

    def path(self, name: str) -> str:
        return str(self.folder / name)


@pytest.fixture(scope="session")
def tiny_spots(tmp_path_factory) -> Stage:
    """`xtal simulate preset=tiny` (3 crystals × 10 images) → `xtal import` → `xtal find_spots`."""
    folder = tmp_path_factory.mktemp("xtal_cli_tiny")
    check(run_xtal("simulate", "preset=tiny", "output_dir=sim", cwd=folder))
    masters = sorted(str(p) for p in (folder / "sim").glob("crystal_*_master.h5"))
    check(run_xtal("import", *masters, cwd=folder))
    return Stage(folder, check(run_xtal("find_spots", "imported.expt", "nproc=2", cwd=folder)))


@pytest.fixture(scope="session")
def truth(tiny_spots) -> dict:
    """truth.json of the simulation: ``crystals`` (unit_cell …) and the shared parameters."""
    return json.loads((tiny_spots.folder / "sim" / "truth.json").read_text())["truth"]


def true_cell(truth: dict, experiment) -> list[float]:
    """The true cell (Å, deg) of the crystal whose images an experiment holds (crystal_NNN_master.h5)."""
    name = os.path.basename(experiment.imageset.template)
    k = int(name.split("_")[1])
    return truth["crystals"][k]["unit_cell"]


@pytest.fixture(scope="session")
def indexed(tiny_spots, tmp_path_factory) -> Stage:
    """`xtal index` per sweep, written in the recommended Bravais setting."""
    folder = tmp_path_factory.mktemp("xtal_cli_index")
    proc = run_xtal("index", tiny_spots.path("imported.expt"), tiny_spots.path("strong.refl"), "joint=false",
                    "choose_bravais=true", "n_points=128", "nproc=2", cwd=folder)
    return Stage(folder, check(proc))


@pytest.fixture(scope="session")
def refined(indexed, tmp_path_factory) -> Stage:
    folder = tmp_path_factory.mktemp("xtal_cli_refine")
    proc = run_xtal("refine", indexed.path("indexed.expt"), indexed.path("indexed.refl"), cwd=folder)
    return Stage(folder, check(proc))


@pytest.fixture(scope="session")
def integrated(refined, tmp_path_factory) -> Stage:
    folder = tmp_path_factory.mktemp("xtal_cli_integrate")
    proc = run_xtal("integrate", refined.path("refined.expt"), refined.path("refined.refl"), "nproc=2", cwd=folder)
    return Stage(folder, check(proc))
