"""Simulated instrument: Eiger-like detectors, beam, goniometer and scans (DIALS frame).

Eiger 2X 9M: 3108 × 3262 px of 75 µm, 3 × 6 modules of 1028 × 512 px separated by
12 px (fast) and 38 px (slow) gaps, CdTe 0.75 mm. The small "eiger1m" is 1028 × 1062 px
(two modules, one 38 px gap). One panel each (as dxtbx reads an Eiger NXmx file),
the gaps marked in the pixel mask. Parallax is on, with μ of the sensor at the
wavelength (the same attenuation table values as cctbx.eltbx).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import XtalError
from ..models import Beam, Detector, Goniometer, Panel, Scan
from ..io.attenuation import mu_at_angstrom
from ..io.images import module_gap_rectangles
from ..models.detector import PARALLAX

PIXEL_MM = 0.075
MODULE = (1028, 512)  # fast, slow
GAP = (12, 38)
LAYOUT = {"eiger9m": (3, 6), "eiger1m": (1, 2)}
NAMES = {"eiger9m": "EIGER2 XE 9M", "eiger1m": "EIGER2 X 1M"}
SENSOR = ("CdTe", 0.75)

def sensor_mu(material: str, wavelength: float) -> float:
    """μ (1/mm) of the sensor at λ, from the same table the NXmx reader uses."""
    return float(mu_at_angstrom(material, wavelength))


def image_size(kind: str) -> tuple[int, int]:
    nf, ns = LAYOUT[kind]
    return (nf * MODULE[0] + (nf - 1) * GAP[0], ns * MODULE[1] + (ns - 1) * GAP[1])


def gap_mask(kind: str) -> np.ndarray:
    """True on gap pixels, shape (slow, fast)."""
    nx, ny = image_size(kind)
    m = np.zeros((ny, nx), dtype=bool)
    nf, ns = LAYOUT[kind]
    for i in range(1, nf):
        x0 = i * (MODULE[0] + GAP[0]) - GAP[0]
        m[:, x0:x0 + GAP[0]] = True
    for j in range(1, ns):
        y0 = j * (MODULE[1] + GAP[1]) - GAP[1]
        m[y0:y0 + GAP[1], :] = True
    return m


def n_modules(kind: str) -> int:
    nf, ns = LAYOUT[kind]
    return nf * ns


def module_slices(kind: str) -> list[tuple[slice, slice]]:
    """(slow, fast) slices of every module, row by row from the top left."""
    nf, ns = LAYOUT[kind]
    return [(slice(j * (MODULE[1] + GAP[1]), j * (MODULE[1] + GAP[1]) + MODULE[1]),
             slice(i * (MODULE[0] + GAP[0]), i * (MODULE[0] + GAP[0]) + MODULE[0]))
            for j in range(ns) for i in range(nf)]


def beam_centre_px(kind: str) -> tuple[float, float]:
    nx, ny = image_size(kind)
    return (0.5013 * nx, 0.4987 * ny)


def nearest_edge_mm(kind: str) -> float:
    nx, ny = image_size(kind)
    bx, by = beam_centre_px(kind)
    return min(bx, nx - bx, by, ny - by) * PIXEL_MM


def distance_for_edge(kind: str, wavelength: float, d_edge: float) -> float:
    """Distance (mm) at which the nearest detector edge is at resolution ``d_edge``."""
    s = wavelength / (2 * d_edge)
    if s >= 1:
        raise XtalError(f"d_edge={d_edge:g}: must be more than λ/2 = {wavelength / 2:g} Å", field="d_edge")
    two_theta = 2 * math.asin(s)
    return nearest_edge_mm(kind) / math.tan(two_theta)


def make_detector(kind: str, distance: float, wavelength: float, trusted_max: float) -> Detector:
    nx, ny = image_size(kind)
    bx, by = beam_centre_px(kind)
    material, thickness = SENSOR
    panel = Panel(name=NAMES[kind], type="SENSOR_PAD", fast_axis=np.array([1.0, 0.0, 0.0]),
                  slow_axis=np.array([0.0, -1.0, 0.0]),
                  origin=np.array([-bx * PIXEL_MM, by * PIXEL_MM, -float(distance)]),
                  image_size=(nx, ny), pixel_size=(PIXEL_MM, PIXEL_MM),
                  trusted_range=(-1.0, float(trusted_max)), thickness=thickness, material=material,
                  mu=sensor_mu(material, wavelength), px_mm_strategy=PARALLAX,
                  mask=module_gap_rectangles((nx, ny), "Eiger"))
    return Detector(panels=[panel])


def make_beam(wavelength: float, divergence_deg: float) -> Beam:
    return Beam(direction=np.array([0.0, 0.0, 1.0]), wavelength=float(wavelength),
                divergence=0.0, sigma_divergence=float(divergence_deg),
                polarization_normal=np.array([0.0, 1.0, 0.0]), polarization_fraction=0.999)


def make_goniometer() -> Goniometer:
    return Goniometer(rotation_axis=np.array([1.0, 0.0, 0.0]))


def make_scan(n_images: int, start: float, width: float, exposure: float, epoch0: float) -> Scan:
    return Scan(image_range=(1, n_images), oscillation=(start, width),
                exposure_times=np.full(n_images, exposure),
                epochs=epoch0 + exposure * np.arange(n_images))


def geometry_record(beam: Beam, detector: Detector) -> dict:
    """Distance (mm), geometric beam centre (px), panel normal and wavelength (Å), for truth.json."""
    panel = detector[0]
    s0u = beam.s0 / np.linalg.norm(beam.s0)
    n = panel.normal
    hit = s0u * float(panel.origin @ n) / float(s0u @ n)
    rel = hit - panel.origin
    return {"distance_mm": float(panel.origin @ n),
            "beam_centre_px": [float(rel @ panel.fast_axis / panel.pixel_size[0]),
                               float(rel @ panel.slow_axis / panel.pixel_size[1])],
            "normal": [float(v) for v in n], "fast_axis": [float(v) for v in panel.fast_axis],
            "slow_axis": [float(v) for v in panel.slow_axis], "wavelength": float(beam.wavelength)}


def header_models(beam: Beam, detector: Detector, distance_error: float, beam_centre_error, tilt_deg: float,
                  tilt_axis_deg: float, wavelength_error: float) -> tuple[Beam, Detector]:
    """The beam and detector an NXmx header claims: the true ones with the given errors.

    The header panel is the true one turned by ``tilt_deg`` about an in-plane axis at
    ``tilt_axis_deg`` from the fast axis (towards slow), then placed so that its
    distance (origin·normal, mm) is the true distance + ``distance_error`` and the
    direct beam meets it at the true beam centre + ``beam_centre_error`` (px, fast, slow).
    """
    from scipy.spatial.transform import Rotation

    panel = detector[0]
    true = geometry_record(beam, detector)
    psi = math.radians(tilt_axis_deg)
    axis = math.cos(psi) * panel.fast_axis + math.sin(psi) * panel.slow_axis
    R = Rotation.from_rotvec(math.radians(tilt_deg) * axis / np.linalg.norm(axis)).as_matrix()
    fast, slow = R @ panel.fast_axis, R @ panel.slow_axis
    normal = np.cross(fast, slow)
    normal /= np.linalg.norm(normal)
    s0u = beam.s0 / np.linalg.norm(beam.s0)
    distance = true["distance_mm"] + distance_error
    hit = s0u * distance / float(s0u @ normal)
    bx = true["beam_centre_px"][0] + beam_centre_error[0]
    by = true["beam_centre_px"][1] + beam_centre_error[1]
    origin = hit - bx * panel.pixel_size[0] * fast - by * panel.pixel_size[1] * slow
    wavelength = beam.wavelength + wavelength_error
    if wavelength <= 0:
        raise XtalError(f"header_wavelength_error={wavelength_error:g}: the header wavelength would be "
                        f"{wavelength:g} Å", field="header_wavelength_error")
    hpanel = dataclasses.replace(panel, fast_axis=fast, slow_axis=slow, origin=origin,
                                 mu=sensor_mu(panel.material, wavelength), mask=list(panel.mask))
    hbeam = make_beam(wavelength, beam.sigma_divergence)
    return hbeam, Detector(panels=[hpanel])
