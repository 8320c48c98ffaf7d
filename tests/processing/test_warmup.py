"""`xtal warmup`: the numba kernels of spot finding run (and so are compiled and cached)
on synthetic images through the real code path."""
import numpy as np
import pytest

from processing.cli.main import main
from processing.errors import XtalError
from processing.warmup import _byte_offset, _synthetic_sweep, compile_kernels


def test_find_spots_part_finds_the_synthetic_spots():
    from processing.io.cbf import decompress_byte_offset
    from processing.spotfinding import FindSpotsParams
    from processing.spotfinding.finder import find_spots

    seconds = compile_kernels(("find_spots",))
    assert set(seconds) == {"find_spots"} and seconds["find_spots"] > 0
    experiment, reader = _synthetic_sweep()
    table, summary = find_spots(experiment, reader, FindSpotsParams())
    assert summary["n_spots"] == 25  # 25 Gaussian spots, each on all 3 images: one spot each
    values = np.array([7, -3, 1000, -200, 0], np.int32)  # one- and two-byte deltas
    assert np.array_equal(decompress_byte_offset(_byte_offset(values), len(values)), values)


def test_warmup_command(capsys):
    assert main(["warmup", "parts=find_spots"]) == 0
    out = capsys.readouterr().out
    assert "find_spots: kernels compiled and cached in" in out
    with pytest.raises(XtalError, match="unknown part"):
        compile_kernels(("spots",))


def test_ensemble_part_runs_cosym_and_scale():
    seconds = compile_kernels(("ensemble",))
    assert set(seconds) == {"ensemble"} and seconds["ensemble"] > 0
