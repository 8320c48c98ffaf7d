"""The basic error model of dials.scale (Beilsten-Edmands et al. 2020, Acta D76, 385),

    σ'² = a² (σ² + (b·g Ĩ_h)²),

fitted as DIALS fits it to the normalised deviations δ = sqrt(n_h/(n_h − 1))·(I − g Ĩ_h)/σ'
of the observations that are not outliers, in reflections (Friedel mates apart) seen at
least twice, with mean I/σ² above 0.85, expected intensity g Ĩ_h above ``min_Ih`` and a
spread within max(50, max Ĩ/40) times their σ². a and b alternate until a moves by less
than 1 %: a is scaled by the slope of the central part (|x| < 1.5) of the normal
probability plot of δ, so that the bulk has unit spread whatever the tails (a
non-isomorphous crystal) do; b minimises Σ w_k ((½ − v_k)² + 1/v_k − 5/4) over 10 bins of
g Ĩ_h (log-spaced, widened to a minimum count), v_k the variance of δ in the bin, w_k its
mean intensity. Too few deviations (< 250): the starting model (1, 0.02) stays; a failed
fit: b alone at a = 1.

One departure: DIALS puts the observation's own intensity in the b term; here it is its
expected intensity g Ĩ_h (as Aimless's SDcorrection uses ⟨I⟩), so that a weighted mean is
not pulled down by down-weighting the observations that happen to be high — with a
non-isomorphous crystal in the ensemble that bias costs CC to the truth."""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import ndtr, ndtri

MIN_REFLECTIONS = 250
N_BINS = 10
MIN_IH = 25.0
#: DIALS's starting model (BasicErrorModel's defaults)
START = (1.0, 0.02)
CENTRAL_CUTOFF = 1.5


def apply(variance: np.ndarray, expected: np.ndarray, a: float, b: float) -> np.ndarray:
    """σ'² = a² (σ² + (b·I)²), I the observation's expected (unscaled) intensity g·Ĩ_h."""
    return a * a * (variance + (b * expected) ** 2)


def deviations(group, n_groups, intensity, variance, a=1.0, b=0.0, mean=None):
    """δ of every observation (scaled intensity and variance, a and b on top) and the
    reflections' weighted means (NaN for reflections seen once)."""
    w = 1.0 / variance
    n = np.bincount(group, minlength=n_groups)
    if mean is None:
        mean = np.bincount(group, w * intensity, n_groups) / np.maximum(np.bincount(group, w, n_groups), 1e-300)
    m = mean[group]
    nh = n[group]
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.sqrt(nh / (nh - 1)) * (intensity - m) / np.sqrt(apply(variance, m, a, b))
    delta[nh < 2] = np.nan
    return delta, mean


def usable(group, n_groups, intensity, variance, g, min_ih=MIN_IH):
    """DIALS's filter_unsuitable_reflections: (mask of the observations the model is fitted
    on, Ĩ_h of each observation); Ĩ_h from all observations given, weights 1/σ²."""
    w = 1.0 / variance
    with np.errstate(invalid="ignore", divide="ignore"):
        ih = (np.bincount(group, w * g * intensity, n_groups) / np.bincount(group, w * g * g, n_groups))[group]
        n = np.bincount(group, minlength=n_groups)
        i_over_var = np.bincount(group, intensity / variance, n_groups) / n
    keep = (i_over_var > 0.85)[group] & (ih * g > min_ih) & (n[group] > 1) & (intensity > 0.001)
    keep &= np.bincount(group[keep], minlength=n_groups)[group] > 1
    # reflections whose spread is far beyond their σ (misindexed, overlapped, …)
    gk = group[keep]
    nk = np.bincount(gk, minlength=n_groups).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.bincount(gk, (intensity[keep] / g[keep] - ih[keep]) ** 2, n_groups) / (nk - 1)
        sigma2 = np.bincount(gk, variance[keep] / g[keep] ** 2, n_groups) / nk
        limit = max(50.0, float(np.max(ih[keep])) / 40.0) if keep.any() else 50.0
        keep &= (spread / sigma2 < limit)[group]
    return keep, ih


def intensity_bins(expected: np.ndarray, n_bins: int = N_BINS, min_required: int = MIN_REFLECTIONS):
    """DIALS's ErrorModelBinner: bins of the expected intensity g·Ĩ, log-spaced from the
    largest down, each widened to at least ``min_per_bin`` (and too thin ones dropped).
    Returns (observation index, bin label) pairs."""
    n = len(expected)
    down = np.sort(expected)[::-1]
    imax, imin = float(down[0]), float(down[-1])
    spacing = (math.log(imax) - math.log(max(1.0, imin))) / n_bins
    bounds = [imax] + [math.exp(math.log(imax) - i * spacing) for i in range(1, n_bins + 1)]
    bounds[-1] = imin - 0.01
    if n > 100 * min_required:
        min_required = int(n / 100.0)
    min_per_bin = min(min_required, int(n / (3.0 * n_bins)))
    members, n_cumul = [], 0
    for i in range(n_bins):
        sel = (expected <= bounds[i]) & (expected > bounds[i + 1])
        count = int(sel.sum())
        if count < min_per_bin and n_cumul + min_per_bin < n:  # widen the bin downwards
            bounds[i + 1] = float(down[n_cumul + min_per_bin])
            sel = (expected <= bounds[i]) & (expected > bounds[i + 1])
            count = int(sel.sum())
        if count >= min_per_bin - 5 and count > 0:
            members.append(np.flatnonzero(sel))
        n_cumul += count
    labels = np.repeat(np.arange(len(members)), [len(m) for m in members])
    return (np.concatenate(members) if members else np.zeros(0, np.int64)), labels


class _Fit:
    """The deviations of the usable observations as a function of (a, b)."""

    def __init__(self, group, intensity, variance, g, ih, n_bins):
        n = np.bincount(group)[group]
        # I − g·Ĩ_h has variance σ'²·(n − 1)/n (Ĩ_h includes I): sqrt(n/(n − 1)) gives δ unit variance.
        # DIALS's calc_deltahl multiplies by sqrt((n − 1)/n) instead, so its a comes out ≈ (n − 1)/n
        # of the true one (0.75 at n = 4 on data with known σ) and its σ are too small.
        self.numerator = np.sqrt(n / (n - 1)) * (intensity - g * ih)
        self.variance, self.i2 = variance, (g * ih) ** 2
        index, label = intensity_bins(g * ih, n_bins)
        self.count = np.bincount(label)
        self.n_bins = len(self.count)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        # the binned observations contiguous by bin: sums over a bin are one reduceat
        self.binned = self.numerator[index], self.variance[index], self.i2[index]
        self.weight = np.add.reduceat((g * ih)[index], self.start) / self.count  # mean intensity
        # the central part of the normal probability plot: expected order statistics
        size = len(intensity)
        self.lo = math.ceil(ndtr(-CENTRAL_CUTOFF) * size - 0.5)
        self.hi = math.ceil(ndtr(CENTRAL_CUTOFF) * size - 0.5)
        self.x = ndtri((np.arange(self.lo, self.hi) + 0.5) / size)

    def delta(self, a, b):
        return self.numerator / (a * np.sqrt(self.variance + b * b * self.i2))

    def bin_variances(self, a, b):
        num, var, i2 = self.binned
        d = num / (a * np.sqrt(var + b * b * i2))
        mean = np.add.reduceat(d, self.start) / self.count
        return np.add.reduceat(d * d, self.start) / self.count - mean ** 2

    def slope(self, a, b):
        """Slope of the central part of the normal probability plot of δ."""
        y = np.sort(self.delta(a, b))[self.lo:self.hi]
        x = self.x - self.x.mean()
        return float(np.dot(x, y - y.mean()) / np.dot(x, x))

    def refine_b(self, a, b):
        """b minimising Σ w_k ((½ − v_k)² + 1/v_k − 5/4) / Σ w_k (DIALS's ErrorModelTargetB)."""
        def target(x):
            v = np.maximum(self.bin_variances(a, x), 1e-12)
            return float(np.sum(self.weight * ((0.5 - v) ** 2 + 1.0 / v - 1.25)) / np.sum(self.weight))

        best = minimize_scalar(target, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-5})
        return float(best.x) if best.fun <= target(b) else b


def refine_error_model(group, n_groups, intensity, variance, g, start=START, min_ih=MIN_IH,
                       n_bins=N_BINS) -> dict:
    """``{"a", "b", "n", "refined", "bins"}`` (or ``"reason"``) for unscaled intensities and
    variances, their inverse scale factors ``g`` and reflection ``group`` (Friedel mates apart)."""
    a, b = start
    keep, ih = usable(group, n_groups, intensity, variance, g, min_ih)
    n_use = int(keep.sum())
    if n_use < MIN_REFLECTIONS:
        return {"a": a, "b": b, "n": n_use, "refined": False,
                "reason": f"too few reflections ({n_use} < {MIN_REFLECTIONS}) with mean intensity above {min_ih:g} "
                          f"seen twice or more; a = {a:g}, b = {b:g} kept"}
    _, grp = np.unique(group[keep], return_inverse=True)
    fit = _Fit(grp.ravel(), intensity[keep], variance[keep], g[keep], ih[keep], n_bins)
    history, converged = [], False
    for _ in range(20):
        a *= fit.slope(a, b)
        history.append(a)
        b = fit.refine_b(a, b)
        if len(history) > 1 and (history[-2] <= 0 or abs((history[-2] - history[-1]) / history[-2]) < 0.01):
            converged = True
            break
    note = None
    if converged and a > 0.4:
        a *= fit.slope(a, b)
    else:  # as DIALS: the two-parameter fit failed; b alone at a = 1
        a, b = 1.0, fit.refine_b(1.0, START[1])
        note = "the two-parameter fit did not converge: b refined at a = 1, as DIALS"
    before, after = fit.bin_variances(1.0, 0.0), fit.bin_variances(a, b)
    npp = normal_probability(fit.delta(a, b))
    bins = [{"mean_intensity": float(m), "n": int(c), "variance_before": float(v0), "variance_after": float(v1)}
            for m, c, v0, v1 in zip(fit.weight, fit.count, before, after)]
    out = {"a": float(a), "b": float(b), "n": n_use, "refined": True, "min_Ih": min_ih, "bins": bins,
           "normal_probability": npp}
    return {**out, "note": note} if note else out


def normal_probability(delta: np.ndarray, n_points: int = 1000) -> dict:
    """The normal probability plot of ``delta`` (at most ``n_points`` order statistics against
    their expected normal values), its SD and size; empty without finite deviations."""
    delta = np.sort(delta[np.isfinite(delta)])
    if not len(delta):
        return {}
    pick = np.unique(np.linspace(0, len(delta) - 1, min(len(delta), n_points)).astype(int))
    return {"expected": ndtri((pick + 0.5) / len(delta)), "observed": delta[pick], "sd": float(np.std(delta)),
            "n": int(len(delta))}


__all__ = ["START", "apply", "deviations", "intensity_bins", "normal_probability", "refine_error_model", "usable"]
