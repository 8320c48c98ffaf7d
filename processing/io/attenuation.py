"""Linear X-ray attenuation coefficients of detector sensor materials.

µ (1/mm) = (µ/ρ)(E) · ρ / 10, with µ/ρ the NIST total mass attenuation coefficient
(with coherent scattering; J. H. Hubbell & S. M. Seltzer, NIST X-ray Mass Attenuation
Coefficients, tables 3 and 4 — the same data cctbx.eltbx.attenuation_coefficient
uses) interpolated log–log between tabulated energies. Absorption edges are
tabulated twice (below / above the edge); an energy exactly on an edge takes the
value above it, as cctbx does.
"""
from __future__ import annotations

import numpy as np

from ..errors import XtalError

# keV·Å
HC_KEV_ANGSTROM = 12.398419843320026

# material: (density g/cm³, [(energy MeV, µ/ρ cm²/g), ...]) for 3–200 keV
_NIST: dict[str, tuple[float, list[tuple[float, float]]]] = {
    "Si": (2.33, [
        (0.003, 978.4), (0.004, 452.9), (0.005, 245.0), (0.006, 147.0), (0.008, 64.68),
        (0.01, 33.89), (0.015, 10.34), (0.02, 4.464), (0.03, 1.436), (0.04, 0.7012),
        (0.05, 0.4385), (0.06, 0.3207), (0.08, 0.2228), (0.1, 0.1835), (0.15, 0.1448),
        (0.2, 0.1275)]),
    "Ge": (5.323, [
        (0.003, 961.3), (0.004, 449.7), (0.005, 247.2), (0.006, 150.9), (0.008, 68.9),
        (0.01, 37.42), (0.0111031, 28.11), (0.0111031, 198.1), (0.015, 91.52),
        (0.02, 42.22), (0.03, 13.85), (0.04, 6.207), (0.05, 3.335), (0.06, 2.023),
        (0.08, 0.9501), (0.1, 0.555), (0.15, 0.2491), (0.2, 0.1661)]),
    "GaAs": (5.32, [
        (0.003, 970.2), (0.004, 453.9), (0.005, 249.5), (0.006, 152.4), (0.008, 69.6),
        (0.01, 37.8), (0.0103671, 34.25), (0.0103671, 126.0), (0.0110916, 105.9),
        (0.0118667, 88.99), (0.0118667, 168.5), (0.015, 92.2), (0.02, 42.58),
        (0.03, 13.97), (0.04, 6.262), (0.05, 3.365), (0.06, 2.042), (0.08, 0.9587),
        (0.1, 0.5598), (0.15, 0.2509), (0.2, 0.1671)]),
    "CdTe": (6.2, [
        (0.003, 614.6), (0.003537, 406.4), (0.003537, 778.7), (0.003631, 730.0),
        (0.003727, 684.0), (0.003727, 860.1), (0.004, 723.0), (0.004018, 715.1),
        (0.004018, 793.4), (0.004177, 722.1), (0.004341, 656.2), (0.004341, 932.8),
        (0.004475, 873.9), (0.004612, 813.5), (0.004612, 943.8), (0.004773, 870.2),
        (0.004939, 799.9), (0.004939, 865.3), (0.005, 839.2), (0.006, 528.6),
        (0.008, 249.2), (0.01, 138.1), (0.015, 46.57), (0.02, 21.44), (0.026711, 9.834),
        (0.026711, 29.43), (0.03, 21.82), (0.031814, 18.73), (0.031814, 34.92),
        (0.04, 19.3), (0.05, 10.67), (0.06, 6.542), (0.08, 3.019), (0.1, 1.671),
        (0.15, 0.6071), (0.2, 0.3246)]),
}

_ALIASES = {"si": "Si", "silicon": "Si", "ge": "Ge", "germanium": "Ge",
            "gaas": "GaAs", "cdte": "CdTe"}

MATERIALS = tuple(_NIST)


def canonical_material(name: str) -> str:
    """'Silicon' → 'Si' etc.; XtalError for a material without a table."""
    key = _ALIASES.get(str(name).strip().lower())
    if key is None:
        raise XtalError(f"unknown sensor material {name!r} (known: {', '.join(MATERIALS)})")
    return key


def mass_attenuation(material: str, energy_kev: float) -> float:
    """µ/ρ (cm²/g) at a photon energy (keV), log–log interpolated."""
    density, table = _NIST[canonical_material(material)]
    e = np.array([t[0] for t in table]) * 1000.0
    m = np.array([t[1] for t in table])
    if not (e[0] <= energy_kev <= e[-1]):
        raise XtalError(f"photon energy {energy_kev:.3f} keV outside the attenuation table "
                        f"({e[0]:.0f}–{e[-1]:.0f} keV) for {material}")
    # the last tabulated point with energy <= E: at an edge this is the upper branch
    i = int(np.searchsorted(e, energy_kev, side="right")) - 1
    i = min(i, len(e) - 2)
    e0, e1, m0, m1 = e[i], e[i + 1], m[i], m[i + 1]
    if e1 == e0:
        return float(m1)
    f = np.log(energy_kev / e0) / np.log(e1 / e0)
    return float(np.exp(np.log(m0) + f * (np.log(m1) - np.log(m0))))


def density(material: str) -> float:
    """Density (g/cm³) used with the NIST table."""
    return _NIST[canonical_material(material)][0]


def mu_at_angstrom(material: str, wavelength: float) -> float:
    """Linear attenuation coefficient µ (1/mm) of a sensor material at λ (Å)."""
    if not wavelength > 0:
        raise XtalError(f"wavelength must be positive, got {wavelength}")
    energy = HC_KEV_ANGSTROM / wavelength
    return mass_attenuation(material, energy) * density(material) / 10.0
