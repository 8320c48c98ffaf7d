"""Merge scaled observations into unique reflections (IMEAN, I(+), I(−), F, DANO).

Observations are scaled intensities (I_obs / g) with variances (var / g²) and Miller
indices in the final setting of the space group; any symmetry equivalent is allowed.
Indices are mapped to gemmi's reciprocal ASU (the CCP4 convention) with a vectorised
re-implementation of ``gemmi.ReciprocalAsu.to_asu`` (same index, same ISYM).
"""
from __future__ import annotations

import gemmi
import numpy as np

from processing.merging.data import MergedIntensities
from processing.merging.french_wilson import french_wilson, wilson_prior

# gemmi's ASU conditions (ReciprocalAsu.condition_str(), reference setting) as numpy tests.
# Every condition is homogeneous in (h, k, l), so indices scaled by a positive factor
# (the 24 of gemmi's change-of-basis matrices) give the same answer.
_ASU_CONDITIONS = {
    "l>0 or (l=0 and (h>0 or (h=0 and k>=0)))":
        lambda h, k, l: (l > 0) | ((l == 0) & ((h > 0) | ((h == 0) & (k >= 0)))),
    "k>=0 and (l>0 or (l=0 and h>=0))":
        lambda h, k, l: (k >= 0) & ((l > 0) | ((l == 0) & (h >= 0))),
    "h>=0 and k>=0 and l>=0":
        lambda h, k, l: (h >= 0) & (k >= 0) & (l >= 0),
    "l>=0 and ((h>=0 and k>0) or (h=0 and k=0))":
        lambda h, k, l: (l >= 0) & (((h >= 0) & (k > 0)) | ((h == 0) & (k == 0))),
    "h>=k and k>=0 and l>=0":
        lambda h, k, l: (h >= k) & (k >= 0) & (l >= 0),
    "(h>=0 and k>0) or (h=0 and k=0 and l>=0)":
        lambda h, k, l: ((h >= 0) & (k > 0)) | ((h == 0) & (k == 0) & (l >= 0)),
    "h>=k and k>=0 and (k>0 or l>=0)":
        lambda h, k, l: (h >= k) & (k >= 0) & ((k > 0) | (l >= 0)),
    "h>=k and k>=0 and (h>k or l>=0)":
        lambda h, k, l: (h >= k) & (k >= 0) & ((h > k) | (l >= 0)),
    "h>=0 and ((l>=h and k>h) or (l=h and k=h))":
        lambda h, k, l: (h >= 0) & (((l >= h) & (k > h)) | ((l == h) & (k == h))),
    "k>=l and l>=h and h>=0":
        lambda h, k, l: (k >= l) & (l >= h) & (h >= 0),
}

_OFFSET = 512  # packed keys hold |h|, |k|, |l| < 512


def pack_hkl(hkl: np.ndarray) -> np.ndarray:
    """Miller indices (n, 3) packed into one int64 per row (order: h, then k, then l)."""
    h = np.asarray(hkl, dtype=np.int64)
    if h.size and np.abs(h).max() >= _OFFSET:
        raise ValueError(f"Miller index out of range (|h|, |k|, |l| must be < {_OFFSET})")
    return ((h[:, 0] + _OFFSET) << 20) | ((h[:, 1] + _OFFSET) << 10) | (h[:, 2] + _OFFSET)


def unpack_hkl(key: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_hkl`: (n, 3) int32."""
    key = np.asarray(key, dtype=np.int64)
    out = np.empty((len(key), 3), dtype=np.int32)
    out[:, 0] = (key >> 20) - _OFFSET
    out[:, 1] = ((key >> 10) & 1023) - _OFFSET
    out[:, 2] = (key & 1023) - _OFFSET
    return out


def _map_unique_to_asu(hkl: np.ndarray, space_group: gemmi.SpaceGroup
                       ) -> tuple[np.ndarray, np.ndarray]:
    """ASU index and ISYM for distinct Miller indices (n, 3)."""
    ops = space_group.operations()
    asu = gemmi.ReciprocalAsu(space_group)
    cond = _ASU_CONDITIONS.get(asu.condition_str())
    n = len(hkl)
    if cond is None:  # not expected: fall back on gemmi one reflection at a time
        res = [asu.to_asu([int(x) for x in row], ops) for row in hkl]
        return (np.array([r[0] for r in res], dtype=np.int32).reshape(n, 3),
                np.array([r[1] for r in res], dtype=np.int32))
    basis = np.array(space_group.basisop.rot, dtype=np.int64)  # to the reference setting, ×24
    h = np.asarray(hkl, dtype=np.int64)
    out = np.zeros((n, 3), dtype=np.int32)
    isym = np.zeros(n, dtype=np.int32)
    todo = np.arange(n)
    for k, op in enumerate(ops.sym_ops):
        if len(todo) == 0:
            break
        rot = np.array(op.rot, dtype=np.int64) // op.DEN
        cand = h[todo] @ rot
        for sign, code in ((1, 2 * k + 1), (-1, 2 * k + 2)):
            c = sign * cand
            t = c @ basis
            ok = cond(t[:, 0], t[:, 1], t[:, 2])
            if ok.any():
                idx = todo[ok]
                out[idx] = c[ok]
                isym[idx] = code
                todo = todo[~ok]
                cand = cand[~ok]
                if len(todo) == 0:
                    break
    if len(todo):
        raise RuntimeError("ASU mapping failed for some Miller indices")
    return out, isym


def _asu_map(hkl: np.ndarray, space_group: gemmi.SpaceGroup
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASU index, ISYM and centric flag of each row of hkl (work done once per distinct index)."""
    hkl = np.asarray(hkl).reshape(-1, 3)
    if len(hkl) == 0:
        return (np.zeros((0, 3), dtype=np.int32), np.zeros(0, dtype=np.int32),
                np.zeros(0, dtype=bool))
    keys, inv = np.unique(pack_hkl(hkl), return_inverse=True)
    raw = unpack_hkl(keys)
    asu_u, isym_u = _map_unique_to_asu(raw, space_group)
    centric_u = np.asarray(space_group.operations().centric_flag_array(raw), dtype=bool)
    return asu_u[inv], isym_u[inv], centric_u[inv]


def map_to_asu(hkl: np.ndarray, space_group: gemmi.SpaceGroup) -> tuple[np.ndarray, np.ndarray]:
    """Map Miller indices (n, 3) to gemmi's reciprocal ASU.

    Returns (asu_hkl (n, 3) int32, isym (n,) int32) exactly as gemmi's
    ``ReciprocalAsu.to_asu``: isym = 2k+1 when hkl·R_k is in the ASU, 2k+2 when −hkl·R_k is
    (k over ``operations().sym_ops``; odd = I(+), even = I(−) for acentric reflections).
    """
    asu, isym, _ = _asu_map(hkl, space_group)
    return asu, isym


def asu_index(hkl: np.ndarray, space_group: gemmi.SpaceGroup, anomalous: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASU index, I(+) flag and group key of each observation.

    Returns (asu_hkl (n, 3) int32, plus (n,) bool, key (n,) int64). ``plus`` is True for
    observations of I(+) (odd ISYM) and for every centric reflection (centrics go to I(+)
    only, as in DIALS). ``key`` = 2·pack(asu_hkl) + (anomalous and not plus): one value per
    unique reflection (per Bijvoet mate when ``anomalous``); ``key // 2`` unpacks to the
    ASU index with :func:`unpack_hkl`.
    """
    asu, isym, centric = _asu_map(hkl, space_group)
    plus = (isym % 2 == 1) | centric
    key = 2 * pack_hkl(asu)
    if anomalous:
        key = key + (~plus).astype(np.int64)
    return asu, plus, key


def d_spacing(hkl: np.ndarray, cell) -> np.ndarray:
    """Resolution d (Å) of Miller indices (n, 3) for a cell (a, b, c, α, β, γ)."""
    uc = cell if isinstance(cell, gemmi.UnitCell) else gemmi.UnitCell(*cell)
    hkl = np.asarray(hkl).reshape(-1, 3)
    if len(hkl) == 0:
        return np.zeros(0)
    d = uc.calculate_d_array(np.ascontiguousarray(hkl, dtype=np.int32))
    return np.asarray(d, dtype=np.float64)


def valid_observations(intensity: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Observations usable for merging: finite intensity, finite positive variance."""
    intensity = np.asarray(intensity, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    return np.isfinite(intensity) & np.isfinite(variance) & (variance > 0)


def weighted_means(inv: np.ndarray, n_groups: int, intensity: np.ndarray, variance: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean per group, its σ = 1/√Σw, and the counts (NaN where empty)."""
    w = 1.0 / variance
    sw = np.bincount(inv, weights=w, minlength=n_groups)
    swi = np.bincount(inv, weights=w * intensity, minlength=n_groups)
    n = np.bincount(inv, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, swi / sw, np.nan)
        sig = np.where(n > 0, 1.0 / np.sqrt(sw), np.nan)
    return mean, sig, n


def merge_intensities(hkl, intensity, variance, space_group: gemmi.SpaceGroup, cell,
                      wavelength: float, anomalous: bool = False) -> MergedIntensities:
    """Merge scaled observations into one row per unique ASU reflection.

    IMEAN is the inverse-variance weighted mean over all observations (Friedel mates
    merged), σ = 1/√Σw; I(+) and I(−) are the same means over each Bijvoet mate
    (centric reflections: I(+) only, I(−) NaN). F, F(+), F(−) come from French & Wilson
    with a Wilson prior taken from IMEAN; DANO = F(+) − F(−), SIGDANO = √(σF(+)² + σF(−)²)
    where both exist. Observations with non-finite values or variance ≤ 0 are left out.
    Rows are sorted by ASU index. I(+)/I(−) are filled whatever ``anomalous`` says; the
    flag is recorded for the writers.
    """
    hkl = np.asarray(hkl).reshape(-1, 3)
    intensity = np.asarray(intensity, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    ok = valid_observations(intensity, variance)
    hkl, intensity, variance = hkl[ok], intensity[ok], variance[ok]
    asu, plus, key = asu_index(hkl, space_group, anomalous=False)
    ukey, inv = np.unique(key, return_inverse=True)
    nu = len(ukey)
    uhkl = unpack_hkl(ukey // 2)
    d = d_spacing(uhkl, cell)
    ops = space_group.operations()
    if nu:
        centric = np.asarray(ops.centric_flag_array(uhkl), dtype=bool)
        eps = np.asarray(ops.epsilon_factor_without_centering_array(uhkl), dtype=np.float64)
    else:
        centric = np.zeros(0, dtype=bool)
        eps = np.ones(0)

    imean, sigimean, n_obs = weighted_means(inv, nu, intensity, variance)
    p = plus
    ip, sip, n_plus = weighted_means(inv[p], nu, intensity[p], variance[p])
    im, sim, n_minus = weighted_means(inv[~p], nu, intensity[~p], variance[~p])

    prior = wilson_prior(imean, d, epsilon=eps)
    f, sigf = french_wilson(imean, sigimean, d, centric, epsilon=eps, prior=prior)
    fp, sigfp = french_wilson(ip, sip, d, centric, epsilon=eps, prior=prior)
    fm, sigfm = french_wilson(im, sim, d, centric, epsilon=eps, prior=prior)
    both = np.isfinite(fp) & np.isfinite(fm)
    dano = np.where(both, fp - fm, np.nan)
    sigdano = np.where(both, np.sqrt(sigfp ** 2 + sigfm ** 2), np.nan)

    uc = cell if isinstance(cell, gemmi.UnitCell) else gemmi.UnitCell(*cell)
    return MergedIntensities(
        hkl=uhkl, d=d, imean=imean, sigimean=sigimean, n_obs=n_obs.astype(np.int32),
        i_plus=ip, sig_i_plus=sip, n_plus=n_plus.astype(np.int32),
        i_minus=im, sig_i_minus=sim, n_minus=n_minus.astype(np.int32),
        f=f, sigf=sigf, f_plus=fp, sigf_plus=sigfp, f_minus=fm, sigf_minus=sigfm,
        dano=dano, sigdano=sigdano, space_group=space_group,
        cell=tuple(float(x) for x in uc.parameters), wavelength=float(wavelength),
        anomalous=bool(anomalous),
    )


__all__ = ["merge_intensities", "asu_index", "map_to_asu", "pack_hkl", "unpack_hkl", "d_spacing",
           "weighted_means", "valid_observations"]
