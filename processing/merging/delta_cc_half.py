"""ΔCC½: how much each data set (or image group) adds to CC½ (dials.compute_delta_cchalf).

CC½ is the σ-τ estimate of Assmann, Brehm & Diederichs (2016), as DIALS computes it
for ΔCC½: per unique reflection h with n_h ≥ 2 observations (scaled intensities,
unweighted), the mean ȳ_h and the variance of that mean s²_h/n_h; per resolution
shell (``n_bins`` shells of equal width in 1/d², DIALS's ``nbins=10``)

    σ²_y = unbiased variance of the ȳ_h,   σ²_e = mean of s²_h/n_h,
    CC½  = (σ²_y − σ²_e) / (σ²_y + σ²_e)

(the same quantity as ``statistics.cc_half_from_terms``, whose σ²_ε/2 is s²/n), and
the CC½ of the data is the mean of the shells' values weighted by their number of
reflections with n_h ≥ 2. ΔCC½ of a group (a data set, or an image range of one) is
CC½(all) − CC½(all without that group): positive for a group that helps, negative for
one that disagrees with the others (non-isomorphous, damaged, misindexed).

Which reflections the two CC½ compare (``common``). DIALS compares CC½ of all the data
with CC½ of the rest over whatever reflections each has measured twice, so a reflection
measured by the group and one other data set drops out of the second. When that other
data set is a bad one (a non-isomorphous crystal's wild, heavily rescaled intensities
at high resolution — a handful of them can dominate a shell's σ²_e), the good group is
credited with the improvement: its ΔCC½ turns strongly negative, and it can be removed
in place of the bad one (seen on simulated ensembles of 40 with 3 non-isomorphous
crystals: good data sets ranked below bad ones, and some removed instead of them; over
common reflections the bad ones were the lowest every time). With ``common=True`` (xtal's
default) both CC½ are taken over the same reflections — those still measured twice
without the group — so a group is judged only by how its observations change the
agreement on them; ``common=False`` is DIALS's calculation.

Leave-one-out in one pass (no per-group recomputation):

1. one pass over the observations gives per reflection n_h, ȳ_h and the sums of the
   deviations d = I − ȳ_h and d² (centred sums: no cancellation for strong reflections),
   and per shell the sums C, Σy, Σy², Σs²/n over reflections with n_h ≥ 2;
2. one sort of the (group, reflection) pairs gives each group's count, Σd and Σd² per
   reflection it touches; from them the reflection's n, ȳ and s² without the group
   follow in closed form, and the change of the shell sums is (new term − old term);
3. those changes, added up per (group, shell) with one ``bincount``, turn the shell
   sums of all the data into the shell sums of the data without each group (and, with
   ``common``, into those of all the data over the reflections left measured twice).

Cost: O(N log N) time for N observations (the sort of the pairs; everything else is
a few linear passes), plus O(G·B) for G groups and B shells; memory O(N + G·B).
It does not grow with G × N as a recomputation per group would (DIALS's loop), so
200 data sets cost about what 24 cost per observation.
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from processing.merging.merge import asu_index, d_spacing, unpack_hkl


@dataclass(frozen=True)
class DeltaCcHalf:
    """ΔCC½ of every group.

    ``cc_half``: CC½ of all the data; ``cc_half_with[g]``: CC½ of all the data over the
    reflections compared for group g (``cc_half`` itself unless ``common``);
    ``cc_half_without[g]``: CC½ without group g (NaN when undefined); ``delta_cc_half[g]``
    = cc_half_with[g] − cc_half_without[g];
    ``n_observations[g]``: the group's observations used; ``n_unique``: unique
    reflections; ``n_bins``: resolution shells; ``d_min``/``d_max``: their range (Å).
    """

    cc_half: float
    cc_half_with: np.ndarray
    cc_half_without: np.ndarray
    delta_cc_half: np.ndarray
    n_observations: np.ndarray
    n_unique: int
    n_bins: int
    d_min: float | None
    d_max: float | None


def _weighted_cc(count, sum_y, sum_y2, sum_e):
    """CC½ from shell sums (last axis = shells), weighted over shells by ``count``.

    Shells with fewer than two reflections or no spread (σ²_y + σ²_e ≤ 0) are left out,
    as DIALS does; NaN when no shell is left.
    """
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_y = (sum_y2 - sum_y * sum_y / count) / (count - 1.0)
        var_e = sum_e / count
        den = var_y + var_e
        cc = (var_y - var_e) / den
    ok = (count >= 2) & (den > 0) & np.isfinite(cc)
    w = np.where(ok, count, 0.0)
    total = w.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ok, cc * w, 0.0).sum(axis=-1)
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), np.nan)


def binned_cc_half(reflection: np.ndarray, intensity: np.ndarray, shell: np.ndarray, n_shells: int,
                   n_reflections: int | None = None) -> float:
    """CC½ (σ-τ, unweighted intensities) of observations, the shell mean weighted as DIALS.

    reflection: unique-reflection number of each observation (0…R−1); shell: shell of
    each unique reflection (0…n_shells−1). NaN when undefined.
    """
    reflection = np.asarray(reflection, dtype=np.int64)
    x = np.asarray(intensity, dtype=np.float64)
    n_ref = int(n_reflections if n_reflections is not None else (reflection.max() + 1 if len(reflection) else 0))
    sums = _reflection_sums(reflection, x, n_ref)
    n, mean, _, _, var_mean = sums
    valid = n >= 2
    sh = np.asarray(shell, dtype=np.int64)
    centre = _shell_centres(mean, valid, sh, n_shells)
    return float(_weighted_cc(*_shell_sums(valid, mean - centre[sh], var_mean, sh, n_shells)))


def _reflection_sums(reflection, x, n_ref):
    """Per reflection: n, mean, Σd, Σd² (d about the mean) and the variance of the mean."""
    n = np.bincount(reflection, minlength=n_ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(reflection, weights=x, minlength=n_ref) / n
    d = x - mean[reflection]
    sum_d = np.bincount(reflection, weights=d, minlength=n_ref)
    sum_d2 = np.bincount(reflection, weights=d * d, minlength=n_ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        ss = np.maximum(sum_d2 - sum_d * sum_d / n, 0.0)
        var_mean = ss / (n - 1.0) / n
    return n, mean, sum_d, sum_d2, var_mean


def _shell_centres(mean, valid, shell, n_shells):
    """Mean of the valid reflections' means per shell (the origin of y, for precision)."""
    cnt = np.bincount(shell[valid], minlength=n_shells)
    tot = np.bincount(shell[valid], weights=mean[valid], minlength=n_shells)
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)


def _shell_sums(valid, y, var_mean, shell, n_shells):
    s = shell[valid]
    return (np.bincount(s, minlength=n_shells).astype(np.float64),
            np.bincount(s, weights=y[valid], minlength=n_shells),
            np.bincount(s, weights=y[valid] ** 2, minlength=n_shells),
            np.bincount(s, weights=var_mean[valid], minlength=n_shells))


def delta_cc_half_groups(reflection: np.ndarray, intensity: np.ndarray, group: np.ndarray, shell: np.ndarray,
                         n_shells: int, n_groups: int | None = None, n_reflections: int | None = None,
                         common: bool = True) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The leave-one-out core: (CC½ of all, CC½ with each group, CC½ without each group,
    observations per group); ΔCC½ = with − without.

    reflection: unique-reflection number of each observation (0…R−1); intensity: scaled
    intensity; group: group of each observation (0…G−1); shell: shell of each unique
    reflection (0…n_shells−1). ``common``: "with" over the reflections still measured
    twice without the group (else "with" is CC½ of all, as DIALS). Vectorised; see the
    module docstring for the method.
    """
    r = np.asarray(reflection, dtype=np.int64)
    x = np.asarray(intensity, dtype=np.float64)
    g = np.asarray(group, dtype=np.int64)
    sh = np.asarray(shell, dtype=np.int64)
    n_ref = int(n_reflections if n_reflections is not None else (r.max() + 1 if len(r) else 0))
    n_grp = int(n_groups if n_groups is not None else (g.max() + 1 if len(g) else 0))
    n_obs_group = np.bincount(g, minlength=n_grp)

    n, mean, sum_d, sum_d2, var_mean = _reflection_sums(r, x, n_ref)
    valid = n >= 2
    centre = _shell_centres(mean, valid, sh, n_shells)
    y = np.where(valid, mean - centre[sh], 0.0)
    C, A, Q, E = _shell_sums(valid, y, var_mean, sh, n_shells)
    cc_all = float(_weighted_cc(C, A, Q, E))

    # each (group, reflection) pair: its count and centred sums
    pair, inv = np.unique(g * n_ref + r, return_inverse=True)
    pg, pr = pair // n_ref, pair % n_ref
    k = np.bincount(inv, minlength=len(pair))
    d = x - mean[r]
    s1 = np.bincount(inv, weights=d, minlength=len(pair))
    s2 = np.bincount(inv, weights=d * d, minlength=len(pair))
    # the reflection without the group
    n1 = n[pr] - k
    rest_d = sum_d[pr] - s1
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = rest_d / n1
        ss1 = np.maximum((sum_d2[pr] - s2) - rest_d * shift, 0.0)
        vm1 = ss1 / (n1 - 1.0) / n1
    valid1 = n1 >= 2
    y1 = np.where(valid1, y[pr] + shift, 0.0)  # mean' − centre = (mean − centre) + shift
    v0 = valid[pr]
    y0 = y[pr]
    vm0 = np.where(v0, var_mean[pr], 0.0)
    vm1 = np.where(valid1, vm1, 0.0)
    cell = pg * n_shells + sh[pr]
    size = n_grp * n_shells

    def change(new, old):
        return np.bincount(cell, weights=new - old, minlength=size).reshape(n_grp, n_shells)

    dC = change(valid1.astype(np.float64), v0.astype(np.float64))
    dA = change(y1, np.where(v0, y0, 0.0))
    dQ = change(y1 * y1, np.where(v0, y0 * y0, 0.0))
    dE = change(vm1, vm0)
    cc_without = _weighted_cc(C + dC, A + dA, Q + dQ, E + dE)
    cc_without = np.asarray(cc_without, dtype=np.float64)
    if not common:
        return cc_all, np.full(n_grp, cc_all), cc_without, n_obs_group
    # all the data, over the reflections still measured twice without the group
    lost = v0 & ~valid1
    zero = np.zeros(len(lost))
    bC = change(zero, lost.astype(np.float64))
    bA = change(zero, np.where(lost, y0, 0.0))
    bQ = change(zero, np.where(lost, y0 * y0, 0.0))
    bE = change(zero, np.where(lost, vm0, 0.0))
    cc_with = np.asarray(_weighted_cc(C + bC, A + bA, Q + bQ, E + bE), dtype=np.float64)
    return cc_all, cc_with, cc_without, n_obs_group


def resolution_shells(d: np.ndarray, n_bins: int, d_min: float | None = None, d_max: float | None = None
                      ) -> np.ndarray:
    """Shell of each d (Å): ``n_bins`` equal steps in 1/d² from d_max to d_min (DIALS's
    ResolutionBinner; values outside go to the first or last shell)."""
    d = np.asarray(d, dtype=np.float64)
    if len(d) == 0:
        return np.zeros(0, dtype=np.int64)
    lo = d_max if d_max is not None else float(d.max())
    hi = d_min if d_min is not None else float(d.min())
    x0, x1 = lo ** -2.0, hi ** -2.0
    if not x1 > x0:
        return np.zeros(len(d), dtype=np.int64)
    step = (x1 - x0) / n_bins
    return np.clip(np.floor((d ** -2.0 - x0) / step).astype(np.int64), 0, n_bins - 1)


def delta_cc_half(hkl, intensity, group, space_group: gemmi.SpaceGroup, cell, *, n_groups: int | None = None,
                  d_min: float | None = None, d_max: float | None = None, n_bins: int = 10,
                  anomalous: bool = False, common: bool = True) -> DeltaCcHalf:
    """ΔCC½ of each group of scaled observations.

    hkl (n, 3) in the space group's setting (any symmetry equivalent); intensity: scaled
    intensities (I / g); group: 0…G−1 per observation; cell (a, b, c, α, β, γ) for d.
    d_min / d_max (Å) keep d_min < d < d_max, as DIALS; ``anomalous`` keeps Friedel mates
    apart (DIALS's ΔCC½ merges them: the default). ``common``: compare over the same
    reflections (see the module docstring); False: DIALS's. Non-finite intensities are
    left out.
    """
    hkl = np.asarray(hkl).reshape(-1, 3)
    x = np.asarray(intensity, dtype=np.float64)
    grp = np.asarray(group, dtype=np.int64)
    n_grp = int(n_groups if n_groups is not None else (grp.max() + 1 if len(grp) else 0))
    ok = np.isfinite(x)
    _, _, key = asu_index(hkl[ok], space_group, anomalous=anomalous)
    ukey, inv = np.unique(key, return_inverse=True)
    d = d_spacing(unpack_hkl(ukey >> 1), cell) if len(ukey) else np.zeros(0)
    keep_r = np.ones(len(ukey), dtype=bool)
    if d_min is not None:
        keep_r &= d > d_min
    if d_max is not None:
        keep_r &= d < d_max
    new = np.cumsum(keep_r) - 1
    keep_o = keep_r[inv]
    r = new[inv[keep_o]]
    d = d[keep_r]
    xs, gs = x[ok][keep_o], grp[ok][keep_o]
    n_ref = int(keep_r.sum())
    if n_ref == 0:
        nan = np.full(n_grp, np.nan)
        return DeltaCcHalf(float("nan"), nan, nan.copy(), nan.copy(), np.bincount(gs, minlength=n_grp), 0, n_bins,
                           None, None)
    shell = resolution_shells(d, n_bins)
    cc_all, with_, without, n_obs = delta_cc_half_groups(r, xs, gs, shell, n_bins, n_grp, n_ref, common=common)
    return DeltaCcHalf(cc_all, with_, without, with_ - without, n_obs, n_ref, n_bins, float(d.min()), float(d.max()))


def image_groups(dataset: np.ndarray, image: np.ndarray, group_size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image groups as DIALS's mode=image_group: per data set, groups of ``group_size``
    images from its first observed image; a last group shorter than ``group_size`` is
    joined to the one before.

    dataset, image (1-based image number) per observation. Returns (group per
    observation, and per group: its data set, first image, last image), groups numbered
    by data set, then image.
    """
    ds = np.asarray(dataset, dtype=np.int64)
    img = np.asarray(image, dtype=np.int64)
    if len(ds) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z
    uds, dinv = np.unique(ds, return_inverse=True)
    lo = np.full(len(uds), np.iinfo(np.int64).max)
    hi = np.full(len(uds), np.iinfo(np.int64).min)
    np.minimum.at(lo, dinv, img)
    np.maximum.at(hi, dinv, img)
    span = hi - lo
    full = span // group_size
    n_per = full + 1 - ((full >= 1) & (span % group_size < group_size - 1))
    first_group = np.concatenate([[0], np.cumsum(n_per)[:-1]])
    within = np.minimum((img - lo[dinv]) // group_size, n_per[dinv] - 1)
    group = first_group[dinv] + within
    g_ds = np.repeat(uds, n_per)
    g_index = np.arange(int(n_per.sum())) - np.repeat(first_group, n_per)
    g_lo = np.repeat(lo, n_per) + g_index * group_size
    g_hi = np.where(g_index == np.repeat(n_per, n_per) - 1, np.repeat(hi, n_per), g_lo + group_size - 1)
    return group, g_ds, g_lo, g_hi


def cutoff_value(delta: np.ndarray, stdcutoff: float) -> tuple[float, float, float]:
    """(mean, σ, mean − stdcutoff·σ) of the finite ΔCC½ values; σ the population
    standard deviation, as DIALS."""
    v = np.asarray(delta, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    sd = float(np.sqrt(np.mean((v - mean) ** 2)))
    return mean, sd, mean - stdcutoff * sd


__all__ = ["DeltaCcHalf", "binned_cc_half", "cutoff_value", "delta_cc_half", "delta_cc_half_groups",
           "image_groups", "resolution_shells"]
