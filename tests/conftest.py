"""Shared fixtures: paths to the real reference data (tests skip when absent)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real").resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL.is_dir():
        pytest.skip("../shared/data/real is absent")
    return REAL


@pytest.fixture(scope="session")
def tiny_seed1(tmp_path_factory):
    """The simulator's ``tiny`` preset (3 crystals × 10 images, seed 1), written once per
    session and shared: ``(folder, files, summary)``. Tests only read it."""
    from processing.simulate import SimulateParams, run_simulate

    out = tmp_path_factory.mktemp("tiny_seed1")
    files, summary = run_simulate(SimulateParams(preset="tiny", output_dir=str(out), seed=1))
    return out, files, summary
