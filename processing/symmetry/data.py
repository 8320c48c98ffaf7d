"""Each data set's intensities as cosym uses them: in one primitive reduced basis,
Friedel mates merged, normalised to E² in resolution shells.

Intensities are the integrated ones (profile fitted where flagged, else summation),
corrected for Lorentz-polarisation and detector efficiency (I·lp/qe) and, summation
intensities only, for partiality (profile fitting already estimates the full reflection;
reflections with partiality < 0.4 are left out), as DIALS prepares integrated data for
cosym and scaling.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np

from ..reflections import Flags

PARTIALITY_THRESHOLD = 0.4


@dataclass
class DataSet:
    """One data set: unique reflections in the reduced basis (P-1 asymmetric unit)."""

    index: int
    name: str
    #: (n, 3) Miller indices in the reduced basis, Friedel mates merged (h ≥ -h lexicographically)
    hkl: np.ndarray
    #: normalised intensities E² (dimensionless) and their σ
    e2: np.ndarray
    sigma: np.ndarray
    #: d-spacing (Å) and mean intensity / σ of each reflection
    d: np.ndarray
    i_over_sigma: np.ndarray
    #: change of basis T from the data set's own indexing to the reduced basis: h_red = T h
    T: np.ndarray
    excluded: str = ""
    extra: dict = field(default_factory=dict)

    def cut(self, d_min: float) -> "DataSet":
        """The reflections with d ≥ ``d_min`` (Å)."""
        keep = self.d >= d_min
        extra = {k: v[keep] for k, v in self.extra.items()}
        return DataSet(self.index, self.name, self.hkl[keep], self.e2[keep], self.sigma[keep], self.d[keep],
                       self.i_over_sigma[keep], self.T, self.excluded, extra)


def centred_to_primitive(space_group: gemmi.GroupOps | None) -> np.ndarray:
    """The Miller-index map from a centred conventional basis to a primitive one (rational)."""
    if space_group is None:
        return np.eye(3)
    sg = gemmi.find_spacegroup_by_ops(space_group)
    if sg is None or sg.centring_type() == "P":
        return np.eye(3)
    op = sg.centred_to_primitive()
    return (np.array(op.rot, dtype=float) / op.DEN).T


def select_intensities(table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(keep, I, variance, d)`` of integrated reflections, corrected (I·lp/qe, and /partiality
    where the summation intensity is used)."""
    flags = table["flags"].astype(np.uint64) if "flags" in table else np.zeros(len(table), np.uint64)
    prf = (flags & np.uint64(int(Flags.integrated_prf))) != 0
    summ = (flags & np.uint64(int(Flags.integrated_sum))) != 0
    use_prf = prf & ("intensity.prf.value" in table)
    if "intensity.prf.value" in table:
        intensity = np.where(use_prf, table["intensity.prf.value"], table["intensity.sum.value"])
        variance = np.where(use_prf, table["intensity.prf.variance"], table["intensity.sum.variance"])
    else:
        intensity = table["intensity.sum.value"].astype(float)
        variance = table["intensity.sum.variance"].astype(float)
    keep = (prf | summ) & np.isfinite(intensity) & np.isfinite(variance) & (variance > 0)
    scale = np.ones(len(table))
    if "lp" in table:
        scale = scale * table["lp"]
    if "qe" in table:
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = scale / table["qe"]
    if "partiality" in table:
        part = table["partiality"]
        keep &= part >= PARTIALITY_THRESHOLD
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(use_prf, scale, scale / part)
    keep &= np.isfinite(scale) & (scale > 0)
    with np.errstate(invalid="ignore", over="ignore"):
        return keep, intensity * scale, variance * scale ** 2, table["d"]


def friedel_canonical(hkl: np.ndarray) -> np.ndarray:
    """Each index or its Friedel mate, whichever comes first (h, then k, then l positive)."""
    hkl = np.asarray(hkl, dtype=np.int64)
    h, k, l = hkl.T
    flip = (h < 0) | ((h == 0) & (k < 0)) | ((h == 0) & (k == 0) & (l < 0))
    out = hkl.copy()
    out[flip] *= -1
    return out


def hkl_keys(hkl: np.ndarray) -> np.ndarray:
    """One int64 per index (|h|, |k|, |l| < 1024)."""
    hkl = np.asarray(hkl, dtype=np.int64) + 1024
    return (hkl[:, 0] << 22) | (hkl[:, 1] << 11) | hkl[:, 2]


def merge_unique(hkl: np.ndarray, intensity: np.ndarray, variance: np.ndarray, d: np.ndarray):
    """Inverse-variance weighted means of repeated (Friedel-merged) indices."""
    keys = hkl_keys(hkl)
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    w = 1.0 / variance
    sw = np.bincount(inv, w)
    mean = np.bincount(inv, w * intensity) / sw
    return hkl[first], mean, 1.0 / sw, d[first]


def normalise_e2(intensity: np.ndarray, variance: np.ndarray, d: np.ndarray, n_bins: int = 20):
    """E² = I / ⟨I⟩ in shells of equal counts in 1/d² (DIALS's quasi-normalisation)."""
    n = len(intensity)
    if n == 0:
        return intensity, np.sqrt(variance)
    s2 = 1.0 / d ** 2
    order = np.argsort(s2)
    bins = np.empty(n, dtype=np.int64)
    bins[order] = np.minimum(np.arange(n) * min(n_bins, max(n // 20, 1)) // n, n_bins - 1)
    count = np.bincount(bins)
    mean = np.bincount(bins, intensity) / np.maximum(count, 1)
    mean = np.where(mean > 0, mean, np.nan)
    norm = mean[bins]
    return intensity / norm, np.sqrt(variance) / norm


def prepare(index: int, name: str, table, T: np.ndarray, d_min: float | None) -> DataSet:
    """The data set's unique reflections in the reduced basis (``h_red = T h``), E²."""
    keep, intensity, variance, d = select_intensities(table)
    if d_min is not None:
        keep &= d >= d_min
    hkl = table["miller_index"][keep].astype(float) @ T.T
    ok = np.all(np.abs(hkl - np.rint(hkl)) < 1e-3, axis=1)  # centring-forbidden: none expected
    hkl = np.rint(hkl[ok]).astype(np.int64)
    intensity, variance, d = intensity[keep][ok], variance[keep][ok], d[keep][ok]
    hkl = friedel_canonical(hkl)
    hkl, mean, var, d = merge_unique(hkl, intensity, variance, d) if len(hkl) else (hkl, intensity, variance, d)
    e2, sig = normalise_e2(mean, var, d)
    good = np.isfinite(e2) & np.isfinite(sig)
    return DataSet(index, name, hkl[good], e2[good], sig[good], d[good], (mean / np.sqrt(var))[good], T,
                   extra={"intensity": mean[good], "sigma": np.sqrt(var)[good]})
