"""Narrow multi-lattice wedges of spot centroids with known truth (no images).

Several crystals of one form (cubic insulin, I 21 3) in the beam at once, rotated
through a 1° wedge on a small Eiger-like panel. Each spot's φ centroid is the mean
of its Gaussian rocking curve truncated to the scan (so spots cut by the wedge's
ends are biased, as partials are), plus noise; spots are the strongest of each
lattice by a random (Wilson-like) intensity times the recorded fraction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from processing.geometry.prediction import predict_rotation
from processing.models import (
    Beam,
    Detector,
    Experiment,
    ExperimentList,
    Goniometer,
    Panel,
    Scan,
)
from processing.models.crystal import b_matrix
from processing.models.experiment import ImageSource
from processing.reflections import Flags, ReflectionTable

INSULIN = (78.1, 78.1, 78.1, 90.0, 90.0, 90.0)


@dataclass
class Wedge:
    experiments: ExperimentList
    table: ReflectionTable
    lattice: np.ndarray  # true lattice of each spot (−1: a random spot)
    A: list  # true A = U·B of each lattice (Å⁻¹, lab frame at φ = 0)
    cells: list


def small_eiger(n_images=10, osc=0.1, distance=100.0) -> Experiment:
    """A 1028×1062 px, 75 µm panel at ``distance`` mm (edge ≈ 2.7 Å at 0.9763 Å)."""
    nx, ny, px = 1028, 1062, 0.075
    panel = Panel(name="Eiger 1M", fast_axis=[1, 0, 0], slow_axis=[0, -1, 0],
                  origin=[-nx * px / 2 + 1.1, ny * px / 2 - 0.7, -distance], image_size=(nx, ny),
                  pixel_size=(px, px))
    return Experiment(beam=Beam(direction=[0, 0, 1], wavelength=0.9763), detector=Detector([panel]),
                      goniometer=Goniometer(), scan=Scan(image_range=(1, n_images), oscillation=(30.0, osc)),
                      imageset=ImageSource("ImageSequence", template="/nonexistent/wedge_#####.cbf"))


def _pdf(t):
    return np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


def make_wedge(n_lattices=2, n_spots=(150, 110, 80, 120, 100), n_images=10, osc=0.1, seed=0, n_random=0,
               noise_px=0.3, noise_z=0.15, sigma_phi_deg=0.12, cell_jitter=0.002,
               cell=INSULIN, space_group="I 21 3") -> Wedge:
    """A wedge of ``n_lattices`` crystals (``n_spots[k]`` spots each) and ``n_random`` random spots."""
    rng = np.random.default_rng(seed)
    e = small_eiger(n_images, osc)
    xyz, lat, As, cells = [], [], [], []
    for k in range(n_lattices):
        f = 1 + cell_jitter * rng.normal()
        c = (cell[0] * f, cell[1] * f, cell[2] * f) + tuple(cell[3:])
        A = random_rotation(rng) @ b_matrix(c)
        p = predict_rotation(A, e.beam, e.detector, e.goniometer, e.scan, d_min=2.0, space_group=space_group,
                             margin_deg=1.0)
        z = p["xyzcal.px"][:, 2]
        sig = np.clip(np.radians(sigma_phi_deg) / np.maximum(np.abs(p["zeta"]), 0.05) / np.radians(osc), 0.3, 20)
        a_, b_ = (0 - z) / sig, (n_images - z) / sig
        frac = ndtr(b_) - ndtr(a_)
        z_obs = z + sig * (_pdf(a_) - _pdf(b_)) / np.maximum(frac, 1e-12)  # truncated-Gaussian mean
        strength = rng.exponential(1.0, len(z)) * frac * np.exp(-20.0 / (4 * p["d"] ** 2))
        order = np.argsort(-strength)[: n_spots[k % len(n_spots)]]
        order = order[frac[order] > 0.05]
        q = p["xyzcal.px"][order].copy()
        q[:, 2] = z_obs[order]
        q[:, :2] += rng.normal(0, noise_px, (len(q), 2))
        q[:, 2] += rng.normal(0, noise_z, len(q))
        xyz.append(q)
        lat.append(np.full(len(q), k))
        As.append(A)
        cells.append(c)
    if n_random:
        nx, ny = e.detector[0].image_size
        xyz.append(np.column_stack([rng.uniform(0, nx, n_random), rng.uniform(0, ny, n_random),
                                    rng.uniform(0, n_images, n_random)]))
        lat.append(np.full(n_random, -1))
    xyz = np.vstack(xyz) if xyz else np.zeros((0, 3))
    lat = np.concatenate(lat) if lat else np.zeros(0, int)
    n = len(xyz)
    t = ReflectionTable({"xyzobs.px.value": xyz, "xyzobs.px.variance": np.tile([0.09, 0.09, 0.04], (n, 1)),
                         "panel": np.zeros(n, np.uint64), "id": np.zeros(n, np.int32),
                         "flags": np.full(n, int(Flags.strong), np.uint64)})
    t.experiment_identifiers = {0: e.identifier}
    return Wedge(ExperimentList([e]), t, lat, As, cells)
