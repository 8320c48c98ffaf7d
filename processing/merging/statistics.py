"""Merging statistics of scaled observations, as dials.scale / dials.merge report them.

Observations: scaled intensities and variances with Miller indices in the final setting
of the space group. Shells are equal volume in 1/d³ between d_max and d_min (DIALS'
default binning, 20 bins). Unless stated otherwise the statistics are for Friedel mates
merged (as in DIALS' main table); r_anom and cc_ano compare the Bijvoet mates.
Everything returned is strict JSON (Python ints/floats, None where undefined).
"""
from __future__ import annotations

import math

import gemmi
import numpy as np

from processing.merging.merge import asu_index, d_spacing, unpack_hkl, valid_observations
from processing.merging.wilson import wilson_b_from_merged

ROW_KEYS = ("d_max", "d_min", "n_obs", "n_unique", "multiplicity", "completeness",
            "mean_intensity", "i_over_sigma", "rmerge", "rmeas", "rpim", "cc_half",
            "cc_half_random", "cc_ano", "r_anom", "anom_completeness", "anom_multiplicity")

_TOL = 1e-9  # relative tolerance on the resolution limits


def _num(x) -> float | None:
    """A finite Python float, else None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _safe_div(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


# ---------------------------------------------------------------- CC½ (σ-τ) core

def sigma_tau_terms(inv: np.ndarray, n_groups: int, intensity: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group terms of the σ-τ CC½ (Assmann, Brehm & Diederichs 2016).

    inv: group number of each observation (0…n_groups−1). Returns (n, mean, var_half):
    observation count, unweighted mean intensity, and the variance of a half-data-set
    mean s²/(n/2) (s² the unbiased sample variance; NaN for n < 2).
    """
    intensity = np.asarray(intensity, dtype=np.float64)
    n = np.bincount(inv, minlength=n_groups)
    mean = _safe_div(np.bincount(inv, weights=intensity, minlength=n_groups), n)
    dev = intensity - mean[inv]
    ss = np.bincount(inv, weights=dev * dev, minlength=n_groups)
    var_half = _safe_div(ss, (n - 1) * (n / 2.0))
    var_half[n < 2] = np.nan
    return n, mean, var_half


def cc_half_from_terms(n: np.ndarray, mean: np.ndarray, var_half: np.ndarray,
                       shell: np.ndarray | None = None, n_shells: int = 1) -> np.ndarray:
    """σ-τ CC½ per shell from :func:`sigma_tau_terms` (groups with n ≥ 2 only).

    CC½ = (σ²_y − σ²_ε/2) / (σ²_y + σ²_ε/2), σ²_y the unbiased variance of the group means,
    σ²_ε the mean half-set variance. shell: shell number of each group (default all 0).
    Returns an array of n_shells values, NaN where fewer than 2 groups or undefined.
    """
    use = n >= 2
    sh = np.zeros(len(n), dtype=np.int64) if shell is None else np.asarray(shell, dtype=np.int64)
    sh, y, ve = sh[use], mean[use], var_half[use]
    cnt = np.bincount(sh, minlength=n_shells).astype(np.float64)
    ym = _safe_div(np.bincount(sh, weights=y, minlength=n_shells), cnt)
    dy = y - ym[sh]
    var_y = _safe_div(np.bincount(sh, weights=dy * dy, minlength=n_shells), cnt - 1)
    var_e = _safe_div(np.bincount(sh, weights=ve, minlength=n_shells), cnt)
    cc = _safe_div(var_y - 0.5 * var_e, var_y + 0.5 * var_e)
    cc[(cnt < 2) | ~(var_y + 0.5 * var_e > 0)] = np.nan
    return cc


def cc_half_sigma_tau(hkl_keys, intensity, variance=None) -> float | None:
    """σ-τ CC½ of observations grouped by ``hkl_keys`` (any int64 per unique reflection).

    Observations with a non-finite intensity, or a variance (if given) that is not finite
    and positive, are left out. None when fewer than two reflections have n ≥ 2.
    """
    keys = np.asarray(hkl_keys)
    intensity = np.asarray(intensity, dtype=np.float64)
    ok = np.isfinite(intensity)
    if variance is not None:
        ok &= valid_observations(intensity, variance)
    uk, inv = np.unique(keys[ok], return_inverse=True)
    terms = sigma_tau_terms(inv, len(uk), intensity[ok])
    return _num(cc_half_from_terms(*terms)[0])


# ---------------------------------------------------------------- helpers

def _pearson(x, y, shell, n_shells):
    """Pearson correlation of x and y per shell (NaN with < 2 pairs or no spread)."""
    cnt = np.bincount(shell, minlength=n_shells).astype(np.float64)
    mx = _safe_div(np.bincount(shell, weights=x, minlength=n_shells), cnt)
    my = _safe_div(np.bincount(shell, weights=y, minlength=n_shells), cnt)
    dx, dy = x - mx[shell], y - my[shell]
    sxy = np.bincount(shell, weights=dx * dy, minlength=n_shells)
    sxx = np.bincount(shell, weights=dx * dx, minlength=n_shells)
    syy = np.bincount(shell, weights=dy * dy, minlength=n_shells)
    cc = _safe_div(sxy, np.sqrt(sxx * syy))
    cc[cnt < 2] = np.nan
    return cc


def _random_halves(group: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """True for observations put in the first half: per group a random ⌊n/2⌋ or ⌈n/2⌉."""
    n = np.bincount(group, minlength=n_groups)
    order = np.argsort(group + 0.5 * rng.random(len(group)))
    start = np.cumsum(n) - n
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - start[group[order]]
    n_first = n // 2 + ((n % 2) & rng.integers(0, 2, n_groups))
    return rank < n_first[group]


def _wmean(group, n_groups, intensity, weight):
    sw = np.bincount(group, weights=weight, minlength=n_groups)
    return _safe_div(np.bincount(group, weights=weight * intensity, minlength=n_groups), sw), sw


def _shell_edges(d_max: float, d_min: float, n_bins: int) -> np.ndarray:
    """Shell boundaries in 1/d³, equal volume, from d_max to d_min."""
    return np.linspace(d_max ** -3.0, d_min ** -3.0, n_bins + 1)


def _shell_of(d: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n_bins = len(edges) - 1
    return np.clip(np.searchsorted(edges, d ** -3.0, side="right") - 1, 0, n_bins - 1)


def _possible(space_group, cell, d_max, d_min):
    """d and centric flag of every systematically allowed ASU reflection in [d_min, d_max]."""
    uc = gemmi.UnitCell(*cell)
    hkl = gemmi.make_miller_array(uc, space_group, d_min * (1 - _TOL), d_max * (1 + _TOL), True)
    hkl = np.asarray(hkl, dtype=np.int32).reshape(-1, 3)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    d = d_spacing(hkl, uc)
    keep = (d >= d_min * (1 - _TOL)) & (d <= d_max * (1 + _TOL))
    hkl, d = hkl[keep], d[keep]
    if len(hkl) == 0:
        return d, np.zeros(0, dtype=bool)
    centric = np.asarray(space_group.operations().centric_flag_array(hkl), dtype=bool)
    return d, centric


# ---------------------------------------------------------------- main entry

def merging_statistics(hkl, intensity, variance, space_group: gemmi.SpaceGroup, cell, *,
                       anomalous: bool = False, d_min: float | None = None,
                       d_max: float | None = None, n_bins: int = 20, seed: int = 0,
                       dataset=None) -> dict:
    """Merging statistics overall, in the lowest and highest shell, and per shell.

    hkl (n, 3), scaled intensity and variance per observation; cell (a, b, c, α, β, γ) in
    Å and degrees; d_min / d_max (Å) limit the data and the shells exactly (default: the
    data's range). Observations with non-finite values or variance ≤ 0 are left out.
    anomalous adds anomalous completeness and multiplicity; r_anom and cc_ano are always
    computed (None without Bijvoet pairs). seed drives the random half-set splits.
    dataset: optional id per observation; adds a "datasets" list (per-data-set counts,
    multiplicity and completeness over the whole range).

    Returns {"overall", "low", "high": row, "shells": [row…], "n_bins", "d_min", "d_max",
    "anomalous", "wilson_b"} with rows keyed by :data:`ROW_KEYS`; completeness values are
    percentages; R factors are fractions.
    """
    hkl = np.asarray(hkl).reshape(-1, 3)
    intensity = np.asarray(intensity, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    cell = tuple(float(c) for c in (cell.parameters if isinstance(cell, gemmi.UnitCell) else cell))
    ok = valid_observations(intensity, variance)
    ds = None if dataset is None else np.asarray(dataset)[ok]
    hkl, intensity, variance = hkl[ok], intensity[ok], variance[ok]

    hi, lo, g, uhkl, d, keep, plus = _within_range(hkl, space_group, cell, d_min, d_max)
    intensity, variance, plus = intensity[keep], variance[keep], plus[keep]
    if ds is not None:
        ds = ds[keep]
    n_g = len(d)

    result = {"n_bins": int(n_bins), "d_min": _num(lo), "d_max": _num(hi),
              "anomalous": bool(anomalous), "wilson_b": None}
    if n_g == 0:
        empty = _empty_row(hi, lo)
        result.update(overall=empty, low=empty, high=empty, shells=[])
        if ds is not None:
            result["datasets"] = []
        return result

    ops = space_group.operations()
    absent = np.asarray(ops.systematic_absences(uhkl), dtype=bool)
    centric = np.asarray(ops.centric_flag_array(uhkl), dtype=bool)
    eps = np.asarray(ops.epsilon_factor_without_centering_array(uhkl), dtype=np.float64)
    per = _per_unique(g, n_g, intensity, variance, plus, seed)
    per.update(absent=absent, centric=centric)

    p_d, p_centric = _possible(space_group, cell, hi, lo)
    edges = _shell_edges(hi, lo, n_bins)
    shell = _shell_of(d, edges)
    p_shell = _shell_of(p_d, edges)
    shells = _rows(per, shell, n_bins, p_shell, p_centric, anomalous)
    d_edges = edges ** (-1.0 / 3.0)
    d_edges[0], d_edges[-1] = hi, lo
    for i, row in enumerate(shells):
        row["d_max"], row["d_min"] = _num(d_edges[i]), _num(d_edges[i + 1])
    overall = _rows(per, np.zeros(n_g, dtype=np.int64), 1, np.zeros(len(p_d), dtype=np.int64),
                    p_centric, anomalous)[0]
    overall["d_max"], overall["d_min"] = _num(hi), _num(lo)

    result.update(overall=overall, low=shells[0], high=shells[-1], shells=shells,
                  wilson_b=_num(wilson_b_from_merged(per["imean"], d, epsilon=eps)))
    if ds is not None:
        result["datasets"] = _dataset_rows(ds, g, n_g, absent, len(p_d))
    return result


def _within_range(hkl, space_group, cell, d_min, d_max):
    """Unique reflections (Friedel mates merged) within d_min…d_max (Å; default: the data's).

    Returns (d_max, d_min, unique index of each kept observation, unique hkl (m, 3),
    their d (Å), mask of the kept observations, I(+) mate flag of every observation)."""
    _, plus, akey = asu_index(hkl, space_group, anomalous=True)
    ukey, inv = np.unique(akey >> 1, return_inverse=True)
    d_all = d_spacing(unpack_hkl(ukey), cell) if len(ukey) else np.zeros(0)
    hi = d_max if d_max is not None else (float(d_all.max()) if len(d_all) else None)
    lo = d_min if d_min is not None else (float(d_all.min()) if len(d_all) else None)
    if hi is None or lo is None or lo > hi:
        keep_g = np.zeros(len(ukey), dtype=bool)
    else:
        keep_g = (d_all >= lo * (1 - _TOL)) & (d_all <= hi * (1 + _TOL))
    new_index = np.cumsum(keep_g) - 1
    keep = keep_g[inv]
    return hi, lo, new_index[inv[keep]], unpack_hkl(ukey[keep_g]), d_all[keep_g], keep, plus


def _per_unique(g, n_g, intensity, variance, plus, seed) -> dict:
    """Per unique reflection: counts, weighted means, σ, deviations, σ-τ terms, random
    half-set means, and per Bijvoet mate (group 2g I+, 2g+1 I−) the anomalous terms."""
    w = 1.0 / variance
    n = np.bincount(g, minlength=n_g)
    imean, sw = _wmean(g, n_g, intensity, w)
    absdev = np.bincount(g, weights=np.abs(intensity - imean[g]), minlength=n_g)
    sum_i = np.bincount(g, weights=intensity, minlength=n_g)
    rng = np.random.default_rng(seed)
    first = _random_halves(g, n_g, rng)
    h1, _ = _wmean(g[first], n_g, intensity[first], w[first])
    h2, _ = _wmean(g[~first], n_g, intensity[~first], w[~first])
    a = 2 * g + (~plus)
    na = np.bincount(a, minlength=2 * n_g)
    ia, _ = _wmean(a, 2 * n_g, intensity, w)
    first_a = _random_halves(a, 2 * n_g, rng)
    a1, _ = _wmean(a[first_a], 2 * n_g, intensity[first_a], w[first_a])
    a2, _ = _wmean(a[~first_a], 2 * n_g, intensity[~first_a], w[~first_a])
    n_plus, n_minus = na[0::2], na[1::2]
    return dict(n=n, imean=imean, sig=1.0 / np.sqrt(sw), absdev=absdev, sum_i=sum_i,
                st=sigma_tau_terms(g, n_g, intensity), h1=h1, h2=h2, ip=ia[0::2], im=ia[1::2],
                pair=(n_plus > 0) & (n_minus > 0), pair2=(n_plus >= 2) & (n_minus >= 2),
                dano1=a1[0::2] - a1[1::2], dano2=a2[0::2] - a2[1::2],
                n_anom_unique=(n_plus > 0).astype(np.int64) + (n_minus > 0))


def _empty_row(d_max, d_min) -> dict:
    row = {k: None for k in ROW_KEYS}
    row.update(d_max=_num(d_max), d_min=_num(d_min), n_obs=0, n_unique=0)
    return row


def _rows(per: dict, shell: np.ndarray, n_shells: int, p_shell: np.ndarray,
          p_centric: np.ndarray, anomalous: bool) -> list[dict]:
    """One row of statistics per shell; shell: shell number of each unique reflection."""
    def sums(values, sel=None):
        if sel is None:
            return np.bincount(shell, weights=values, minlength=n_shells)
        return np.bincount(shell[sel], weights=values[sel], minlength=n_shells)

    n = per["n"]
    n_obs = np.bincount(shell, weights=n, minlength=n_shells)
    n_uniq = np.bincount(shell, minlength=n_shells).astype(np.float64)
    n_present = np.bincount(shell[~per["absent"]], minlength=n_shells)
    n_possible = np.bincount(p_shell, minlength=n_shells)
    n_possible_acentric = np.bincount(p_shell[~p_centric], minlength=n_shells)
    completeness = _safe_div(100.0 * n_present, n_possible)
    mean_i = _safe_div(sums(per["imean"]), n_uniq)
    i_over_sigma = _safe_div(sums(per["imean"] / per["sig"]), n_uniq)

    multi = n >= 2
    nf = n.astype(np.float64)
    den = sums(per["sum_i"], multi)
    rmerge = _safe_div(sums(per["absdev"], multi), den)
    with np.errstate(divide="ignore", invalid="ignore"):
        rmeas = _safe_div(sums(np.sqrt(nf / (nf - 1)) * per["absdev"], multi), den)
        rpim = _safe_div(sums(np.sqrt(1.0 / (nf - 1)) * per["absdev"], multi), den)
    no_multi = np.bincount(shell[multi], minlength=n_shells) == 0
    for r in (rmerge, rmeas, rpim):
        r[no_multi] = np.nan

    cc_half = cc_half_from_terms(*per["st"], shell=shell, n_shells=n_shells)
    cc_random = _pearson(per["h1"][multi], per["h2"][multi], shell[multi], n_shells)

    pair, pair2 = per["pair"], per["pair2"]
    cc_ano = _pearson(per["dano1"][pair2], per["dano2"][pair2], shell[pair2], n_shells)
    r_anom_den = sums(0.5 * (per["ip"] + per["im"]), pair)
    r_anom = _safe_div(sums(np.abs(per["ip"] - per["im"]), pair), r_anom_den)
    r_anom[(np.bincount(shell[pair], minlength=n_shells) == 0) | ~(r_anom_den > 0)] = np.nan
    if anomalous:
        n_pairs = np.bincount(shell[pair], minlength=n_shells)
        anom_completeness = _safe_div(100.0 * n_pairs, n_possible_acentric)
        anom_multiplicity = _safe_div(n_obs, sums(per["n_anom_unique"].astype(np.float64)))
    else:
        anom_completeness = anom_multiplicity = np.full(n_shells, np.nan)

    rows = []
    for i in range(n_shells):
        rows.append({
            "d_max": None, "d_min": None,
            "n_obs": int(n_obs[i]), "n_unique": int(n_uniq[i]),
            "multiplicity": _num(n_obs[i] / n_uniq[i]) if n_uniq[i] else None,
            "completeness": _num(completeness[i]),
            "mean_intensity": _num(mean_i[i]), "i_over_sigma": _num(i_over_sigma[i]),
            "rmerge": _num(rmerge[i]), "rmeas": _num(rmeas[i]), "rpim": _num(rpim[i]),
            "cc_half": _num(cc_half[i]), "cc_half_random": _num(cc_random[i]),
            "cc_ano": _num(cc_ano[i]), "r_anom": _num(r_anom[i]),
            "anom_completeness": _num(anom_completeness[i]),
            "anom_multiplicity": _num(anom_multiplicity[i]),
        })
    return rows


def _dataset_rows(ds: np.ndarray, g: np.ndarray, n_g: int, absent: np.ndarray, n_possible: int
                  ) -> list[dict]:
    """Per data set: observations, unique reflections, multiplicity, completeness (%)."""
    ids, ds_index = np.unique(ds, return_inverse=True)
    pairs = np.sort(ds_index.astype(np.int64) * n_g + g)  # np.unique without inverse is slow
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))] if len(pairs) else pairs
    pair_ds, pair_g = pairs // n_g, pairs % n_g
    n_obs = np.bincount(ds_index, minlength=len(ids))
    n_uniq = np.bincount(pair_ds, minlength=len(ids))
    n_present = np.bincount(pair_ds[~absent[pair_g]], minlength=len(ids))
    out = []
    for k, ident in enumerate(ids):
        out.append({
            "dataset": ident.item() if hasattr(ident, "item") else ident,
            "n_obs": int(n_obs[k]), "n_unique": int(n_uniq[k]),
            "multiplicity": _num(n_obs[k] / n_uniq[k]) if n_uniq[k] else None,
            "completeness": _num(100.0 * n_present[k] / n_possible) if n_possible else None,
        })
    return out


__all__ = ["merging_statistics", "cc_half_sigma_tau", "sigma_tau_terms", "cc_half_from_terms",
           "ROW_KEYS"]
