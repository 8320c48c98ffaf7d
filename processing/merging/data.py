"""Merged intensities: what ``merge`` makes of scaled observations and what the MTZ and
mmCIF writers take.

Miller indices are in the space group's reciprocal asymmetric unit (gemmi's ASU, the
CCP4 convention); for anomalous data I(+) is the mean of the observations whose
index maps to the ASU directly, I(−) of those that map via the Friedel mate.
Missing values (no I(−) observed, say) are NaN with N = 0; σ are standard errors of
the weighted means.
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np


@dataclass
class MergedIntensities:
    """One row per unique reflection (ASU index)."""

    #: (n, 3) int32 Miller indices in the ASU
    hkl: np.ndarray
    #: resolution of each reflection, Å
    d: np.ndarray
    #: inverse-variance weighted mean intensity over all observations (Friedel mates merged), σ
    imean: np.ndarray
    sigimean: np.ndarray
    #: number of observations merged into IMEAN
    n_obs: np.ndarray
    #: anomalous means I(+), I(−) and σ (NaN where not observed), their counts
    i_plus: np.ndarray
    sig_i_plus: np.ndarray
    n_plus: np.ndarray
    i_minus: np.ndarray
    sig_i_minus: np.ndarray
    n_minus: np.ndarray
    #: amplitudes from French & Wilson (1978), and F(+), F(−), DANO = F(+) − F(−) (NaN where not defined)
    f: np.ndarray
    sigf: np.ndarray
    f_plus: np.ndarray
    sigf_plus: np.ndarray
    f_minus: np.ndarray
    sigf_minus: np.ndarray
    dano: np.ndarray
    sigdano: np.ndarray
    space_group: gemmi.SpaceGroup
    #: unit cell (a, b, c in Å; α, β, γ in degrees)
    cell: tuple[float, float, float, float, float, float]
    wavelength: float
    anomalous: bool

    def __len__(self) -> int:
        return len(self.hkl)

    def columns(self) -> list[tuple[str, str, np.ndarray]]:
        """(label, MTZ type, values) in dials.merge's order: IMEAN SIGIMEAN N, F SIGF (when
        there are amplitudes), and for anomalous data I(±) SIGI(±) N(±), F(±) SIGF(±) DANO
        SIGDANO."""
        has_f = self.f is not None and bool(np.isfinite(np.asarray(self.f, dtype=float)).any())
        out = [("IMEAN", "J", self.imean), ("SIGIMEAN", "Q", self.sigimean), ("N", "I", self.n_obs)]
        if has_f:
            out += [("F", "F", self.f), ("SIGF", "Q", self.sigf)]
        if self.anomalous:
            out += [("I(+)", "K", self.i_plus), ("SIGI(+)", "M", self.sig_i_plus),
                    ("I(-)", "K", self.i_minus), ("SIGI(-)", "M", self.sig_i_minus),
                    ("N(+)", "I", self.n_plus), ("N(-)", "I", self.n_minus)]
            if has_f:
                out += [("F(+)", "G", self.f_plus), ("SIGF(+)", "L", self.sigf_plus),
                        ("F(-)", "G", self.f_minus), ("SIGF(-)", "L", self.sigf_minus),
                        ("DANO", "D", self.dano), ("SIGDANO", "Q", self.sigdano)]
        return out


__all__ = ["MergedIntensities"]
