"""Compile the numba kernels ahead of their first use (``xtal warmup``).

The kernels are ``@njit(cache=True)``: numba compiles each on its first call with a
given signature and stores the machine code beside the source (``__pycache__``, or
``NUMBA_CACHE_DIR``), so every later process loads it instead of compiling. Without a
warm-up the first ``xtal find_spots`` after an install pays those seconds. Here each
part drives the real code path on a few small synthetic images, so the signatures
compiled are those real data use (integer images arrive as int32 from every reader):

* ``find_spots``: the CBF byte-offset decoder, the dispersion threshold and the
  connected-region kernels (3-D labelling of a sweep and 2-D of stills);
* ``integrate``: the simulator's kernels and, on a 5-image simulated sweep written to
  a temporary folder, import → find_spots → index → refine → integrate
  (shoeboxes, background, summation, profile fitting);
* ``ensemble``: on 4 simulated data sets (reflection level), cosym → scale (cosym's
  pairwise correlations and embedding, scaling's outlier rejection).
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from .params import StageParams, param

PARTS = ("find_spots", "integrate", "ensemble")


@dataclass(frozen=True)
class WarmupParams(StageParams):
    """Compile the numba kernels now, so that the first real run does not (``xtal warmup``)."""

    parts: tuple[str, ...] = param(PARTS, "what to compile: find_spots (threshold, labelling, CBF decoding), "
                                          "integrate (simulator, shoeboxes, background, profile fitting) "
                                          "and/or ensemble (cosym's correlations and embedding, scaling)")


def compile_kernels(parts=PARTS, progress=None) -> dict[str, float]:
    """Run each part in ``parts`` once; ``{part: seconds}`` (the time mostly is compile
    time on a cold cache, and load time on a warm one)."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        from .errors import XtalError

        raise XtalError(f"warmup: unknown part(s) {', '.join(unknown)} (known: {', '.join(PARTS)})")
    seconds = {}
    for k, part in enumerate(parts):
        t0 = time.perf_counter()
        {"find_spots": _find_spots, "integrate": _integrate, "ensemble": _ensemble}[part]()
        seconds[part] = time.perf_counter() - t0
        if progress:
            progress((k + 1) / len(parts), part)
    return seconds


class _MemoryImages:
    """An image reader over arrays in memory (as ``open_imageset`` gives)."""

    def __init__(self, images: list[np.ndarray]):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def get_raw_data(self, i: int):
        return (self.images[i],)

    def get_mask(self, i: int = 0):
        return (np.ones(self.images[0].shape, bool),)

    def path_of(self, i: int) -> str:
        return f"<memory image {i}>"


def _synthetic_sweep(n_images: int = 3, shape=(160, 192)):
    from .models import Beam, Detector, Experiment, Goniometer, Panel, Scan
    from .models.experiment import ImageSource

    ny, nx = shape
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:ny, 0:nx]
    centres = np.stack([np.linspace(16, nx - 16, 5)[np.arange(25) % 5],
                        np.linspace(16, ny - 16, 5)[np.arange(25) // 5]], axis=1)
    images = []
    for z in range(n_images):  # 25 spots on a grid, on every image (one spot each through the sweep)
        im = rng.poisson(1.0, shape).astype(np.float64)
        for cx, cy in centres:
            im += 400.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0) * (1.0 if z % 2 else 0.6)
        images.append(np.rint(im).astype(np.int32))
    px = 0.075
    panel = Panel(name="warmup", type="SENSOR_PAD", fast_axis=[1, 0, 0], slow_axis=[0, -1, 0],
                  origin=[-nx * px / 2, ny * px / 2, -100.0], image_size=(nx, ny), pixel_size=(px, px),
                  trusted_range=(-1.0, 1e6))
    experiment = Experiment(beam=Beam(direction=[0, 0, 1], wavelength=1.0), detector=Detector([panel]),
                            goniometer=Goniometer(), scan=Scan(image_range=(1, n_images), oscillation=(0.0, 0.5)),
                            imageset=ImageSource("ImageSequence", template="warmup_#####.cbf"))
    return experiment, _MemoryImages(images)


def _byte_offset(values: np.ndarray) -> bytes:
    """CBF byte-offset encoding of small int32 values (one-byte and two-byte deltas)."""
    out = bytearray()
    prev = 0
    for v in values.tolist():
        d = v - prev
        prev = v
        if -127 <= d <= 127:
            out += int(d).to_bytes(1, "little", signed=True)
        else:
            out += b"\x80" + int(d).to_bytes(2, "little", signed=True)
    return bytes(out)


def _find_spots() -> None:
    from .io.cbf import decompress_byte_offset
    from .spotfinding import FindSpotsParams
    from .spotfinding.finder import find_spots

    values = np.array([0, 1, 5, 300, 2, -1, 0], np.int32)
    assert np.array_equal(decompress_byte_offset(_byte_offset(values), len(values)), values)
    experiment, reader = _synthetic_sweep()
    table, _ = find_spots(experiment, reader, FindSpotsParams())
    find_spots(experiment, reader, FindSpotsParams(force_2d=True))
    if len(table) == 0:
        raise RuntimeError("warmup: the synthetic sweep gave no spots")


def _integrate() -> None:
    from .importer import ImportParams
    from .indexing import IndexParams
    from .integration import IntegrateParams
    from .refinement import RefineParams
    from .simulate import SimulateParams, run_simulate
    from .spotfinding import FindSpotsParams
    from .stages import STAGES

    with tempfile.TemporaryDirectory(prefix="xtal-warmup-") as folder:
        run_simulate(SimulateParams(preset="tiny", n_crystals=1, n_images=5, output_dir=folder))
        master = sorted(f for f in os.listdir(folder) if f.endswith("_master.h5"))[0]
        experiments, _, _ = STAGES["import"].execute(None, None, ImportParams(paths=(os.path.join(folder, master),)))
        _, strong, _ = STAGES["find_spots"].execute(experiments, None, FindSpotsParams())
        indexed, refl, _ = STAGES["index"].execute(
            experiments, strong, IndexParams(unit_cell=(78.1, 78.1, 78.1, 90.0, 90.0, 90.0), space_group="I 21 3"))
        refined, refl, _ = STAGES["refine"].execute(indexed, refl, RefineParams())
        STAGES["integrate"].execute(refined, refl, IntegrateParams())


def _ensemble() -> None:
    from .io.expt import read_experiments
    from .io.refl import read_reflections
    from .scaling import ScaleParams
    from .simulate import SimulateParams, run_simulate
    from .stages import STAGES
    from .symmetry import CosymParams

    with tempfile.TemporaryDirectory(prefix="xtal-warmup-") as folder:
        run_simulate(SimulateParams(preset="tiny", mode="reflections", n_crystals=4, output_dir=folder))
        experiments = read_experiments(os.path.join(folder, "integrated.expt"))
        reflections = read_reflections(os.path.join(folder, "integrated.refl"))
        sym_e, sym_r, _ = STAGES["cosym"].execute(experiments, reflections, CosymParams(stability="false"))
        STAGES["scale"].execute(sym_e, sym_r, ScaleParams())
