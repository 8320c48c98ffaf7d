"""Resolution limits from merging statistics in fine shells, as dials.estimate_resolution
(DIALS 3.12) estimates them; pure numpy/scipy + gemmi, no I/O.

The method (DIALS's, re-implemented):

* Wilson outliers leave first: observations whose quasi-normalised intensity
  E² = I / ⟨I/ε⟩(d) is ≥ emax² (⟨I/ε⟩ in 10–20 equal steps of 1/d², negative I taken as 0,
  interpolated linearly in 1/d between the steps' centres).
* Shells: ``counting_sorted`` — the distinct d-spacings of the observed reflections,
  sorted, cut into min(nbins, round(n_distinct / reflections_per_bin)) shells of about
  equal counts (DIALS's default: at most 100 shells of at least 10 d-spacings); or
  ``volume`` — equal reciprocal volume.
* Per shell: CC½ (σ-τ, Assmann et al. 2016, or the Pearson CC between weighted means of
  random halves), its critical value at ``cc_half_significance_level`` (one-sided t-test
  of a correlation), unmerged ⟨I/σ⟩, merged ⟨I/σ⟩ and ⟨I⟩/⟨σ⟩ (inverse-variance weighted
  means, σ = 1/√Σw), Rmerge and completeness (a fraction).
* Each criterion is a curve fitted against s = 1/d² at the shells' high-resolution edges
  (unweighted least squares): CC½ by ½(1 − tanh((s − s0)/r)) over the shells where it is
  positive and significant, refitted once without residual outliers beyond 6 interquartile
  ranges (Tukey's hinges) — xtal refits only when that drops at most 10 % of the shells: on a
  near-1 plateau the interquartile range is tiny and DIALS's rule drops a whole steep falloff,
  leaving the cut to an extrapolation from the plateau; I/σ-like criteria by a degree-6 polynomial in s fitted to
  log y; Rmerge to log(1/y); completeness to y. The limit is where the fitted curve reaches
  the criterion (CC½: s = s0 + r·atanh(1 − 2·cc_half); the others: first crossing from low
  resolution, linear between shells).
* A criterion met in every shell gives no limit (d_min None, status ``never_reached``: the
  data end first). DIALS reports the data's edge in that case; for CC½ whose last shells
  were dropped as not significant that edge is the last significant shell, which is kept
  here as the limit (status ``last_significant_shell``).

Uncertainty of the CC½ limit (xtal's addition): each shell's CC½ has a Fisher-z standard
error 1/√(n − 3) (n: reflections with ≥ 2 observations), i.e. σ(CC½) = (1 − CC½²)/√(n − 3).
These are propagated *linearly* through the unweighted least-squares fit: Cov(θ) =
(JᵀJ)⁻¹ Jᵀ diag(σ²) J (JᵀJ)⁻¹ with J = ∂f/∂θ at the fitted shells, then
σ(s_cut) = ‖∂s_cut/∂θ‖_Cov with ∂s_cut/∂θ = −(∂f/∂θ)/(∂f/∂s) at the cut, and
σ(d) = ½ s^(−3/2) σ(s). The fit's ± band at each shell comes from the same covariance.
(On insulin-24 this matches refits of 300 curves perturbed within the Fisher-z errors to
1 %.) The curve's misfit beyond those errors is not in ``d_min_error``; ``chi2_per_dof``
measures it and ``d_min_error_with_misfit`` scales the error by √max(1, χ²/dof).

Everything returned is strict JSON (Python numbers, None where undefined).
"""
from __future__ import annotations

import math

import gemmi
import numpy as np
from scipy import optimize
from scipy import stats as sps

from processing.merging.merge import asu_index, d_spacing, unpack_hkl, valid_observations
from processing.merging.resolution_params import EstimateResolutionParams
from processing.merging.statistics import (_pearson, _possible, _random_halves, _safe_div, _wmean,
                                           cc_half_from_terms, sigma_tau_terms)
from processing.summary import json_ready

#: the criteria in DIALS's order, with the shell statistic each one fits
CRITERIA = {
    "cc_half": "cc_half",
    "isigma": "unmerged_i_over_sigma_mean",
    "misigma": "i_over_sigma_mean",
    "i_mean_over_sigma_mean": "i_mean_over_sigi_mean",
    "rmerge": "rmerge",
    "completeness": "completeness",
}
#: the names dials.estimate_resolution prints ("Resolution Mn(I/sig): 1.52")
LABELS = {"cc_half": "cc_half", "isigma": "I/sig", "misigma": "Mn(I/sig)",
          "i_mean_over_sigma_mean": "Mn(I)/Mn(sig)", "rmerge": "rmerge", "completeness": "completeness"}
#: criteria whose statistic must stay *below* the limit
LOWER_IS_BETTER = {"rmerge"}
DEGREE = 6            # polynomial degree of DIALS's fits
IQR_MULTIPLIER = 6.0  # DIALS's residual-outlier cut of the tanh fit
#: xtal's guard on that cut: no refit when it would drop more than this fraction of the shells
MAX_OUTLIER_FRACTION = 0.1
_TOL = 1e-10          # cctbx's d-spacing tolerance of the counting_sorted binner


# ---------------------------------------------------------------- Wilson outliers

def wilson_outliers(intensity: np.ndarray, s: np.ndarray, epsilon: np.ndarray, emax: float) -> np.ndarray:
    """True for observations with quasi-normalised E² = I/N(s) ≥ emax² (DIALS's emax filter).

    N(s): mean of max(I, 0)/ε in 10, 15 or 20 equal steps of s = 1/d² (by the number of
    observations), interpolated linearly in 1/d between the steps' centres.
    """
    n = len(intensity)
    if n == 0:
        return np.zeros(0, dtype=bool)
    n_steps = 20 if n > 20000 else (15 if n > 15000 else 10)
    lo, hi = float(s.min()), float(s.max())
    span = hi - lo
    lo, hi = lo - span * 1e-6, hi + span * 1e-6
    if not hi > lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    edges = lo + (hi - lo) * np.arange(n_steps + 1) / n_steps
    b = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, n_steps - 1)
    cnt = np.bincount(b, minlength=n_steps)
    mean = _safe_div(np.bincount(b, weights=np.maximum(intensity, 0.0) / epsilon, minlength=n_steps), cnt)
    mean[cnt == 0] = 0.0
    centres = 0.5 * (np.sqrt(np.maximum(edges[:-1], 0)) + np.sqrt(edges[1:]))
    x = np.sqrt(s)
    if n_steps == 1:
        norm = np.full(n, mean[0])
    else:
        left = np.where(x < centres[b], b - 1, b)
        right = np.minimum(np.maximum(left, 0) + 1, n_steps - 1)
        left = right - 1
        t = (x - centres[left]) / (centres[right] - centres[left])
        norm = mean[left] + t * (mean[right] - mean[left])
    with np.errstate(divide="ignore", invalid="ignore"):
        e2 = intensity / norm
    return np.isfinite(e2) & (norm > 0) & (e2 >= emax * emax)


# ---------------------------------------------------------------- shells

def _iround(x: float) -> int:
    return int(math.floor(x + 0.5))


def counting_sorted_limits(s_values: np.ndarray, nbins: int, reflections_per_bin: int) -> np.ndarray:
    """Shell limits in s = 1/d² (ascending, n_shells + 1 values) as cctbx's counting_sorted
    binner: distinct s values (within 1e-10) split into shells of about equal counts."""
    s = np.sort(np.asarray(s_values, dtype=np.float64))
    s = s[np.concatenate(([True], np.diff(s) > _TOL))]
    n_bins = max(1, _iround(len(s) / float(reflections_per_bin)))
    n_bins = min(nbins, n_bins, len(s))
    per_bin = len(s) / float(n_bins)
    limits = [max(0.0, s[0] * (1 - _TOL))]
    last = len(s) - 1
    for i in range(1, n_bins):
        j = _iround(i * per_bin)
        limits.append(s[j] * (1 - _TOL))
        if j == last:
            break
    limits.append(s[-1] * (1 + _TOL))
    return np.asarray(limits)


def volume_limits(s_values: np.ndarray, nbins: int) -> np.ndarray:
    """Shell limits in s = 1/d² for shells of equal reciprocal volume over the data's range."""
    s = np.asarray(s_values, dtype=np.float64)
    lo, hi = float(s.min()) * (1 - _TOL), float(s.max()) * (1 + _TOL)
    return np.linspace(lo ** 1.5, hi ** 1.5, nbins + 1) ** (2.0 / 3.0)


def _shell_of(s: np.ndarray, limits: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(limits, s, side="right") - 1, 0, len(limits) - 2)


def critical_cc(n: np.ndarray, level: float) -> np.ndarray:
    """One-sided critical value of a correlation from n pairs at significance ``level``
    (t-test with n − 2 degrees of freedom); 0 where n ≤ 2."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros(len(n))
    ok = n > 2
    t = sps.t.ppf(1.0 - level, n[ok] - 2)
    out[ok] = t / np.sqrt(n[ok] - 2 + t * t)
    return out


def _unique_within_limits(hkl, intensity, variance, space_group, cell, params):
    """Observations grouped by unique reflection within d_min…d_max, without 000 and
    (with ``emax``) Wilson outliers. Returns (group of each kept observation, their I,
    their variance, d (Å) and hkl of each group, number of Wilson outliers), or None
    when nothing is left."""
    _, _, key = asu_index(hkl, space_group, anomalous=params.anomalous)
    ukey, inv = np.unique(key, return_inverse=True)
    uhkl = unpack_hkl(ukey >> 1)
    d_u = d_spacing(uhkl, cell)
    keep_u = np.ones(len(ukey), dtype=bool)
    if params.d_min is not None:
        keep_u &= d_u >= params.d_min * (1 - 1e-9)
    if params.d_max is not None:
        keep_u &= d_u <= params.d_max * (1 + 1e-9)
    keep_u &= ~np.all(uhkl == 0, axis=1)
    obs = keep_u[inv]
    n_wilson = 0
    if params.emax is not None and obs.any():
        eps_u = np.asarray(space_group.operations().epsilon_factor_without_centering_array(uhkl),
                           dtype=np.float64)
        out = wilson_outliers(intensity[obs], 1.0 / d_u[inv[obs]] ** 2, eps_u[inv[obs]], params.emax)
        n_wilson = int(out.sum())
        idx = np.flatnonzero(obs)
        obs[idx[out]] = False
    if not obs.any():
        return None
    used_u = np.zeros(len(ukey), dtype=bool)  # renumber the groups that keep observations
    used_u[inv[obs]] = True
    new = np.cumsum(used_u) - 1
    return new[inv[obs]], intensity[obs], variance[obs], d_u[used_u], uhkl[used_u], n_wilson


def _expected_by_shell(space_group, cell, limits, anomalous: bool) -> np.ndarray:
    """Possible unique reflections (Bijvoet mates apart when anomalous) in each shell of
    ``limits`` (edges in 1/d², Å⁻²)."""
    n_sh = len(limits) - 1
    s_lo, s_hi = limits[0], limits[-1]
    p_d, p_centric = _possible(space_group, cell, 1.0 / math.sqrt(s_lo) if s_lo > 0 else 1e6,
                               1.0 / math.sqrt(s_hi))
    p_s = 1.0 / p_d ** 2 if len(p_d) else np.zeros(0)
    inside = (p_s >= s_lo) & (p_s <= s_hi)
    p_shell = _shell_of(p_s[inside], limits)
    expected = np.bincount(p_shell, minlength=n_sh).astype(np.float64)
    if anomalous:
        expected += np.bincount(p_shell[~p_centric[inside]], minlength=n_sh)
    return expected


def _random_half_cc(g, n_g, intensity, w, multi, sh, n_sh, seed) -> np.ndarray:
    """CC½ by shell between the weighted means of random half-sets (reflections measured
    at least twice)."""
    rng = np.random.default_rng(seed)
    first = _random_halves(g, n_g, rng)
    h1, _ = _wmean(g[first], n_g, intensity[first], w[first])
    h2, _ = _wmean(g[~first], n_g, intensity[~first], w[~first])
    return _pearson(h1[multi], h2[multi], sh[multi], n_sh)


def shell_statistics(hkl, intensity, variance, space_group: gemmi.SpaceGroup, cell,
                     params: EstimateResolutionParams) -> dict:
    """Observations → the shells' statistics (arrays) the criteria are fitted to.

    Returns {"s": high-resolution edge of each shell (1/d²), "d_max", "d_min", the
    statistics by shell (NaN where undefined), "n_pairs", "cc_half_n", "n_observations",
    "n_unique", "n_wilson_outliers", "data_d_min", "data_d_max"}; {} with no usable data.
    """
    hkl = np.asarray(hkl).reshape(-1, 3)
    intensity = np.asarray(intensity, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    cell = tuple(float(c) for c in (cell.parameters if isinstance(cell, gemmi.UnitCell) else cell))
    ok = valid_observations(intensity, variance)
    hkl, intensity, variance = hkl[ok], intensity[ok], variance[ok]
    if len(hkl) == 0:
        return {}
    grouped = _unique_within_limits(hkl, intensity, variance, space_group, cell, params)
    if grouped is None:
        return {}
    g, intensity, variance, d, uhkl, n_wilson = grouped
    n_g = len(d)
    s_g = 1.0 / d ** 2

    if params.binning_method == "volume":
        limits = volume_limits(s_g, params.nbins)
    else:
        limits = counting_sorted_limits(s_g, params.nbins, params.reflections_per_bin)
    n_sh = len(limits) - 1
    sh = _shell_of(s_g, limits)
    sh_obs = sh[g]

    # per unique reflection
    w = 1.0 / variance
    n = np.bincount(g, minlength=n_g)
    imean, sw = _wmean(g, n_g, intensity, w)
    sig = 1.0 / np.sqrt(sw)
    absdev = np.bincount(g, weights=np.abs(intensity - imean[g]), minlength=n_g)
    sum_i = np.bincount(g, weights=intensity, minlength=n_g)
    multi = n >= 2

    # per shell
    count = lambda sel=None, weights=None: np.bincount(  # noqa: E731
        sh if sel is None else sh[sel], weights=None if weights is None else
        (weights if sel is None else weights[sel]), minlength=n_sh).astype(np.float64)
    n_obs = np.bincount(sh_obs, minlength=n_sh).astype(np.float64)
    n_unique = count()
    n_pairs = count(multi)
    unmerged_isig = _safe_div(np.bincount(sh_obs, weights=intensity / np.sqrt(variance), minlength=n_sh), n_obs)
    merged_isig = _safe_div(count(weights=imean / sig), n_unique)
    i_mean_over_sigi_mean = _safe_div(_safe_div(count(weights=imean), n_unique),
                                      _safe_div(count(weights=sig), n_unique))
    rmerge = _safe_div(count(multi, absdev), count(multi, sum_i))
    rmerge[n_pairs == 0] = np.nan

    absent = np.asarray(space_group.operations().systematic_absences(uhkl), dtype=bool)
    completeness = np.minimum(_safe_div(count(~absent), _expected_by_shell(space_group, cell, limits,
                                                                           params.anomalous)), 1.0)
    if params.cc_half_method == "sigma_tau":
        cc_half = cc_half_from_terms(*sigma_tau_terms(g, n_g, intensity), shell=sh, n_shells=n_sh)
        cc_n = n_unique  # cctbx tests the σ-τ CC½ with the number of merged reflections
    else:
        cc_half = _random_half_cc(g, n_g, intensity, w, multi, sh, n_sh, params.seed)
        cc_n = n_pairs
    with np.errstate(divide="ignore", invalid="ignore"):
        cc_error = np.where(n_pairs > 3, (1.0 - cc_half ** 2) / np.sqrt(np.maximum(n_pairs - 3, 1)), np.nan)
    edges_d = 1.0 / np.sqrt(limits)
    return {
        "limits": limits, "s": limits[1:], "d_max": edges_d[:-1], "d_min": edges_d[1:],
        "n_obs": n_obs, "n_unique": n_unique, "n_pairs": n_pairs,
        "multiplicity": _safe_div(n_obs, n_unique), "completeness": completeness,
        "cc_half": cc_half, "cc_half_error": cc_error, "cc_half_n": cc_n,
        "unmerged_i_over_sigma_mean": unmerged_isig, "i_over_sigma_mean": merged_isig,
        "i_mean_over_sigi_mean": i_mean_over_sigi_mean, "rmerge": rmerge,
        "n_observations": int(len(intensity)), "n_unique_total": int(n_g), "n_wilson_outliers": n_wilson,
        "data_d_min": float(d.min()), "data_d_max": float(d.max()),
    }


# ---------------------------------------------------------------- fitted curves

class TanhCurve:
    """½(1 − tanh((s − s0)/r)), r > 0: falls from 1 to 0 around s0."""

    name = "tanh"

    def __init__(self, s0: float, r: float):
        self.theta = np.array([s0, r], dtype=np.float64)

    def __call__(self, s):
        s0, r = self.theta
        return 0.5 * (1.0 - np.tanh((np.asarray(s, dtype=np.float64) - s0) / r))

    def jacobian(self, s) -> np.ndarray:
        """∂f/∂(s0, r), shape (n, 2)."""
        s0, r = self.theta
        z = (np.asarray(s, dtype=np.float64) - s0) / r
        sech2 = 1.0 - np.tanh(z) ** 2
        return np.stack([0.5 * sech2 / r, 0.5 * sech2 * z / r], axis=-1)

    def slope(self, s):
        s0, r = self.theta
        z = (np.asarray(s, dtype=np.float64) - s0) / r
        return -0.5 * (1.0 - np.tanh(z) ** 2) / r

    def crossing(self, t: float, lo: float, hi: float) -> float | None:
        """s where the curve equals t, if within [lo, hi]."""
        if not 0.0 < t < 1.0:
            return None
        s0, r = self.theta
        s = s0 + r * math.atanh(1.0 - 2.0 * t)
        return s if lo <= s <= hi else None


class PolynomialCurve:
    """exp/identity of a polynomial in s (``transform``: "log", "log_inverse" or "linear")."""

    name = "polynomial"

    def __init__(self, poly: np.polynomial.Polynomial, transform: str = "linear"):
        self.poly = poly
        self.transform = transform
        self.theta = poly.coef.copy()

    def _outer(self, v):
        if self.transform == "log":
            return np.exp(v)
        if self.transform == "log_inverse":
            return np.exp(-v)
        return v

    def __call__(self, s):
        with np.errstate(over="ignore"):
            return self._outer(self.poly(np.asarray(s, dtype=np.float64)))

    def _chain(self, s):
        y = self(s)
        return {"log": y, "log_inverse": -y}.get(self.transform, np.ones_like(y))

    def jacobian(self, s) -> np.ndarray:
        off, scl = self.poly.mapparms()
        u = off + scl * np.asarray(s, dtype=np.float64)
        powers = np.stack([u ** k for k in range(len(self.theta))], axis=-1)
        return powers * self._chain(s)[..., None]

    def slope(self, s):
        return self.poly.deriv()(np.asarray(s, dtype=np.float64)) * self._chain(s)

    def crossing(self, t: float, lo: float, hi: float, grid: np.ndarray | None = None) -> float | None:
        """First s (from low resolution) where the curve crosses t, linear between ``grid`` points."""
        x = np.asarray(grid if grid is not None else np.linspace(lo, hi, 200), dtype=np.float64)
        y = self(x) - t
        hit = np.flatnonzero(y[:-1] * y[1:] < 0)
        if len(hit) == 0:
            return None
        j = hit[0]
        return float(x[j] + (0 - y[j]) * (x[j + 1] - x[j]) / (y[j + 1] - y[j]))


def _tukey_hinges(v: np.ndarray) -> tuple[float, float]:
    """Lower and upper hinges of Tukey's five-number summary (R's fivenum)."""
    v = np.sort(v)
    n = len(v)
    lower = v[: n // 2 + 1] if n % 2 else v[: n // 2]
    upper = v[n // 2:]
    m = len(lower)
    if m % 2:
        return float(lower[m // 2]), float(upper[m // 2])
    return float(0.5 * (lower[m // 2] + lower[m // 2 - 1])), float(0.5 * (upper[m // 2] + upper[m // 2 - 1]))


def _fit_tanh_once(x: np.ndarray, y: np.ndarray) -> TanhCurve:
    """Least-squares tanh curve: the best of a grid over (s0, r), then refined."""
    span = float(x.max() - x.min()) or max(float(x.max()), 1e-3)
    s0_grid = np.linspace(x.min() - span, x.max() + 2 * span, 121)
    r_grid = span * np.geomspace(1e-3, 10.0, 50)
    z = (x[None, None, :] - s0_grid[:, None, None]) / r_grid[None, :, None]
    sse = ((y[None, None, :] - 0.5 * (1.0 - np.tanh(z))) ** 2).sum(axis=-1)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    curve = TanhCurve(s0_grid[i], r_grid[j])

    def residuals(theta):
        curve.theta = theta
        return curve(x) - y

    def jac(theta):
        curve.theta = theta
        return curve.jacobian(x)

    lo = [x.min() - 10 * span, span * 1e-6]
    hi = [x.max() + 10 * span, span * 100.0]
    start = np.clip(curve.theta, lo, hi)
    res = optimize.least_squares(residuals, start, jac=jac, bounds=(lo, hi), method="trf",
                                 x_scale=[span, span], xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return TanhCurve(*res.x)


def fit_tanh(x: np.ndarray, y: np.ndarray, iqr_multiplier: float | None = IQR_MULTIPLIER,
             max_outlier_fraction: float = MAX_OUTLIER_FRACTION) -> tuple[TanhCurve, np.ndarray]:
    """DIALS's tanh fit: least squares, then once more without residual outliers beyond
    ``iqr_multiplier`` interquartile ranges — unless more than ``max_outlier_fraction`` of
    the points would go (xtal's guard: then the residuals are the curve's misfit, not
    outliers). Returns (curve, the points used)."""
    used = np.ones(len(x), dtype=bool)
    curve = _fit_tanh_once(x, y)
    if iqr_multiplier:
        dy = y - curve(x)
        q1, q3 = _tukey_hinges(dy)
        cut = iqr_multiplier * (q3 - q1)
        out = (dy > q3 + cut) | (dy < q1 - cut)
        if out.any() and out.sum() <= max_outlier_fraction * len(x) and (~out).sum() >= 3:
            used = ~out
            curve = _fit_tanh_once(x[used], y[used])
    return curve, used


def fit_polynomial(x: np.ndarray, y: np.ndarray, transform: str = "linear", degree: int = DEGREE
                   ) -> PolynomialCurve:
    """Least-squares polynomial of ``degree`` (fewer with few points) in s to y, log y or log 1/y."""
    v = {"log": np.log(y), "log_inverse": -np.log(y)}.get(transform, y)
    poly = np.polynomial.Polynomial.fit(x, v, deg=min(degree, len(x) - 1))
    return PolynomialCurve(poly, transform)


def propagate(curve, x: np.ndarray, sigma_y: np.ndarray, s_cut: float | None
              ) -> tuple[np.ndarray | None, float | None, np.ndarray]:
    """Linear propagation of independent errors σ_y of the fitted points through an
    unweighted least-squares fit: (Cov θ, σ of the cut in s, σ of the curve at x)."""
    J = curve.jacobian(x)
    ok = np.isfinite(sigma_y)
    if ok.sum() < J.shape[1]:
        return None, None, np.full(len(x), np.nan)
    J, sy = J[ok], sigma_y[ok]
    a = np.linalg.pinv(J.T @ J)
    cov = a @ (J.T * sy ** 2) @ J @ a
    band = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", curve.jacobian(x), cov, curve.jacobian(x)), 0.0))
    sigma_s = None
    if s_cut is not None:
        slope = float(curve.slope(s_cut))
        if slope != 0 and np.isfinite(slope):
            grad = -curve.jacobian(np.array([s_cut]))[0] / slope
            sigma_s = float(math.sqrt(max(grad @ cov @ grad, 0.0)))
    return cov, sigma_s, band


# ---------------------------------------------------------------- criteria

def _none_list(a) -> list:
    return [None if v is None or not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64)]


def _criterion(name: str, limit: float | None, shells: dict, params: EstimateResolutionParams) -> dict:
    """Fit one criterion: its d_min (or None), status, message and curve for plots."""
    metric = CRITERIA[name]
    out = {"criterion": name, "label": LABELS[name], "metric": metric, "limit": limit, "d_min": None,
           "status": "off", "message": "not used", "fit": None}
    if limit is None:
        return out
    s = shells["s"]
    y = shells[metric]
    use = np.isfinite(y) & (y > 0)
    significant = None
    if name == "cc_half" and params.cc_half_significance_level is not None:
        critical = critical_cc(shells["cc_half_n"], params.cc_half_significance_level)
        significant = np.isfinite(y) & (y > critical)
        use &= significant
    lower_better = name in LOWER_IS_BETTER
    tanh = name == "cc_half" and params.cc_half_fit == "tanh"
    out["fit"] = "tanh" if tanh else {"rmerge": "polynomial of log(1/y)", "completeness": "polynomial",
                                      "cc_half": "polynomial"}.get(name, "polynomial of log(y)")
    curve_points = {"s": _none_list(s), "d": _none_list(shells["d_min"]), "observed": _none_list(y),
                    "fit": [None] * len(s), "used": [bool(u) for u in use]}
    out["curve"] = curve_points
    if use.sum() < 3:
        out.update(status="too_few_shells", message=f"{int(use.sum())} usable shells: no fit")
        return out
    x, yy = s[use], y[use]
    if tanh:
        curve, kept = fit_tanh(x, yy, params.cc_half_iqr_multiplier)
        s_cut = curve.crossing(limit, float(x.min()), float(x.max()))
        out["parameters"] = {"s0": float(curve.theta[0]), "r": float(curve.theta[1])}
    else:
        transform = "log_inverse" if name == "rmerge" else ("linear" if name in ("completeness", "cc_half")
                                                            else "log")
        curve = fit_polynomial(x, yy, transform)
        kept = np.ones(len(x), dtype=bool)
        s_cut = curve.crossing(limit, float(x.min()), float(x.max()), grid=x)
        out["parameters"] = {"coefficients": [float(c) for c in curve.poly.convert().coef]}
    used_idx = np.flatnonzero(use)
    used = np.zeros(len(s), dtype=bool)
    used[used_idx[kept]] = True
    curve_points["used"] = [bool(u) for u in used]
    fit_all = np.full(len(s), np.nan)
    fit_all[use] = curve(x)
    curve_points["fit"] = _none_list(fit_all)
    out["n_shells_fitted"] = int(used.sum())

    passes = (yy < limit) if lower_better else (yy > limit)
    edge = 1.0 / math.sqrt(float(x.max()))
    if passes.all():
        beyond = s > x.max() * (1 + 1e-12)
        if name == "cc_half" and beyond.any():
            out.update(d_min=edge, status="last_significant_shell",
                       message=f"CC½ > {limit:g} in every significant shell; the shells beyond "
                               f"{edge:.2f} Å are not significant")
        else:
            out.update(status="never_reached",
                       message=f"the criterion holds in every shell: the data end first, at {edge:.2f} Å")
    elif s_cut is None:
        y_edge = float(curve(x.max()))
        ok_edge = (y_edge < limit) if lower_better else (y_edge > limit)
        out.update(status="no_crossing",
                   message="the fit " + ("stays within the limit to the data's edge"
                                         if ok_edge else "is beyond the limit in every shell"))
    else:
        out.update(d_min=1.0 / math.sqrt(s_cut), status="crossed",
                   message=f"the fit reaches {limit:g} at {1.0 / math.sqrt(s_cut):.2f} Å")
    out["s_cut"] = s_cut

    if name == "cc_half":
        err = shells["cc_half_error"][use]
        sigma_fit = np.where(kept, err, np.nan)
        _, sigma_s, band = propagate(curve, x, sigma_fit, s_cut)
        z = ((yy - curve(x)) / sigma_fit)[np.isfinite(sigma_fit)]
        # misfit beyond the Fisher-z errors (not in d_min_error): χ² per degree of freedom
        out["chi2_per_dof"] = float((z ** 2).sum() / (len(z) - 2)) if len(z) > 2 else None
        out["d_min_error_with_misfit"] = None
        band_all = np.full(len(s), np.nan)
        band_all[use] = band
        curve_points["fit_error"] = _none_list(band_all)
        curve_points["error"] = _none_list(shells["cc_half_error"])
        if significant is not None:
            curve_points["critical"] = _none_list(critical)
            curve_points["significant"] = [bool(v) for v in significant]
        out["d_min_error"] = None
        out["d_min_interval"] = None
        if s_cut is not None and sigma_s is not None and out["status"] == "crossed":
            out["d_min_error"] = 0.5 * s_cut ** -1.5 * sigma_s
            if out["chi2_per_dof"] is not None:  # the same, scaled by the misfit when χ²/dof > 1
                out["d_min_error_with_misfit"] = out["d_min_error"] * math.sqrt(max(1.0, out["chi2_per_dof"]))
            lo_s, hi_s = s_cut - sigma_s, s_cut + sigma_s
            out["d_min_interval"] = [1.0 / math.sqrt(hi_s), (1.0 / math.sqrt(lo_s)) if lo_s > 0 else None]
    return out


def _empty_result(params: EstimateResolutionParams, reason: str) -> dict:
    criteria = {}
    for name in CRITERIA:
        limit = getattr(params, name)
        criteria[name] = {"criterion": name, "label": LABELS[name], "metric": CRITERIA[name], "limit": limit,
                          "d_min": None, "status": "off" if limit is None else "no_data", "message": reason,
                          "fit": None}
    return {"method": _method(params), "n_observations": 0, "n_unique": 0, "n_wilson_outliers": 0,
            "n_shells": 0, "data_d_min": None, "data_d_max": None, "shells": [], "criteria": criteria,
            "recommended": {"criterion": None, "d_min": None, "d_min_error": None, "message": reason},
            "d_min": None, "d_min_error": None}


def _method(params: EstimateResolutionParams) -> dict:
    return {"cc_half_method": params.cc_half_method, "cc_half_fit": params.cc_half_fit,
            "cc_half_significance_level": params.cc_half_significance_level,
            "cc_half_iqr_multiplier": params.cc_half_iqr_multiplier,
            "binning_method": params.binning_method, "nbins": params.nbins,
            "reflections_per_bin": params.reflections_per_bin, "emax": params.emax, "anomalous": params.anomalous,
            "uncertainty": "Fisher-z errors of the shells' CC½, (1 − CC½²)/√(n − 3), propagated linearly "
                           "through the least-squares fit to the cut"}


def estimate_resolution(hkl, intensity, variance, space_group: gemmi.SpaceGroup, cell,
                        params: EstimateResolutionParams | None = None) -> dict:
    """Resolution limits of scaled, unmerged observations by each criterion of ``params``.

    hkl (n, 3) in the setting of ``space_group``, scaled intensities and variances; cell
    (a, b, c, α, β, γ). Returns a strict-JSON dict::

        {"d_min": recommended d_min or None, "d_min_error": its ± (Å, CC½ only),
         "recommended": {"criterion", "d_min", "d_min_error", "message"},
         "criteria": {name: {"limit", "d_min", "status", "message", "fit", "curve": {"s", "d",
                      "observed", "fit", "used", …}, …}},   # cc_half adds d_min_error,
                                                            # d_min_interval, parameters
         "shells": [{"d_max", "d_min", "s", "n_obs", "n_unique", "cc_half", …}],
         "n_observations", "n_unique", "n_wilson_outliers", "n_shells", "data_d_min",
         "data_d_max", "method"}

    The recommended limit is the lowest resolution among the criteria that give one (as
    dials.estimate_resolution's documentation says; by default CC½ alone). d_min None: no
    criterion cuts the data (every shell passes, or no fit).
    """
    params = params or EstimateResolutionParams()
    shells = shell_statistics(hkl, intensity, variance, space_group, cell, params)
    if not shells:
        return json_ready(_empty_result(params, "no usable observations"))
    criteria = {name: _criterion(name, getattr(params, name), shells, params) for name in CRITERIA}
    rows = []
    for i in range(len(shells["s"])):
        row = {"d_max": shells["d_max"][i], "d_min": shells["d_min"][i], "s": shells["s"][i],
               "n_obs": int(shells["n_obs"][i]), "n_unique": int(shells["n_unique"][i]),
               "n_pairs": int(shells["n_pairs"][i])}
        for key in ("multiplicity", "completeness", "cc_half", "cc_half_error", "unmerged_i_over_sigma_mean",
                    "i_over_sigma_mean", "i_mean_over_sigi_mean", "rmerge"):
            row[key] = shells[key][i]
        rows.append(row)
    found = [(c["d_min"], name) for name, c in criteria.items() if c["d_min"] is not None]
    if found:
        d_min, name = max(found)
        err = criteria[name].get("d_min_error")
        rec = {"criterion": name, "d_min": d_min, "d_min_error": err,
               "message": f"{LABELS[name]} limit" + (f" (the lowest resolution of {len(found)} criteria)"
                                                     if len(found) > 1 else "")}
    else:
        active = [n for n, c in criteria.items() if c["limit"] is not None]
        rec = {"criterion": None, "d_min": None, "d_min_error": None,
               "message": "no criterion cuts the data: keep all of it" if active else "no criterion is set"}
    result = {"method": _method(params), "n_observations": shells["n_observations"],
              "n_unique": shells["n_unique_total"], "n_wilson_outliers": shells["n_wilson_outliers"],
              "n_shells": len(rows), "data_d_min": shells["data_d_min"], "data_d_max": shells["data_d_max"],
              "shells": rows, "criteria": criteria, "recommended": rec,
              "d_min": rec["d_min"], "d_min_error": rec["d_min_error"]}
    return json_ready(result)


__all__ = ["estimate_resolution", "shell_statistics", "fit_tanh", "fit_polynomial", "propagate",
           "wilson_outliers", "counting_sorted_limits", "critical_cc", "TanhCurve", "PolynomialCurve",
           "CRITERIA", "LABELS", "EstimateResolutionParams"]
