"""Reflection-level mode: the truth rendered straight to an integrated-like table.

For each crystal the same prediction as the image mode (a numba pre-filter keeps
only indices that cross the Ewald sphere inside the wedge, then
``predict_rotation``), and per reflection the expected counts

    E = k · g · I(h) · L · P · qe · partiality,

with g the crystal's scale × a smooth per-image scale (drift and a slow sinusoid
in φ) × an absorption-like smooth function of the scattered direction × decay
(``exp(−2 B(z) s²)``, with B rising with image number on damaged crystals).
Variances are Poisson (signal + background under the foreground, plus the
background estimate's own error); the observations scatter by the error model
``a·√(σ² + (b·E)²)``, and a fraction are made outliers (×3 to ×10). Summation and
profile-fitted values are drawn independently (profile fitting with 0.8× the
variance). Columns and flags are DIALS's, so cosym/scaling can read it.
"""
from __future__ import annotations

import math

import gemmi
import numpy as np
from numba import njit
from scipy.special import ndtr

from ..geometry.prediction import generate_indices, predict_rotation
from ..models.goniometer import axis_angle_matrix
from ..reflections import Flags, ReflectionTable
from . import render
from .truth import (
    I_SCALE,
    TrueIntensities,
    canonical_keys,
    point_group_index_ops,
    structure_factors,
    wilson_scale,
)

N_FOREGROUND = 25.0  # foreground pixels per image of a spot
N_BACKGROUND = 150.0  # background pixels used per spot


@njit(cache=True)
def _crossing_mask(h, M, Mmid, s0p, e, lo, hi):  # pragma: no cover (numba)
    """True for indices whose reciprocal-lattice point crosses the sphere at φ∈[lo, hi].

    ``Mmid`` = R(φ_mid)·M: a point at distance δ from the sphere at the middle of the
    wedge cannot reach it by rotating ±Δ/2 if |δ| > |r⊥|·Δ/2 (cheap rejection).
    """
    n = h.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    two_pi = 2.0 * math.pi
    half = 0.5 * (hi - lo) * 1.001 + 1e-9
    s0len = math.sqrt(s0p[0] ** 2 + s0p[1] ** 2 + s0p[2] ** 2)
    for i in range(n):
        r0 = M[0, 0] * h[i, 0] + M[0, 1] * h[i, 1] + M[0, 2] * h[i, 2]
        r1 = M[1, 0] * h[i, 0] + M[1, 1] * h[i, 1] + M[1, 2] * h[i, 2]
        r2 = M[2, 0] * h[i, 0] + M[2, 1] * h[i, 1] + M[2, 2] * h[i, 2]
        rp = r0 * e[0] + r1 * e[1] + r2 * e[2]
        if half < 1.5:
            v0 = Mmid[0, 0] * h[i, 0] + Mmid[0, 1] * h[i, 1] + Mmid[0, 2] * h[i, 2] + s0p[0]
            v1 = Mmid[1, 0] * h[i, 0] + Mmid[1, 1] * h[i, 1] + Mmid[1, 2] * h[i, 2] + s0p[1]
            v2 = Mmid[2, 0] * h[i, 0] + Mmid[2, 1] * h[i, 1] + Mmid[2, 2] * h[i, 2] + s0p[2]
            dist = abs(math.sqrt(v0 * v0 + v1 * v1 + v2 * v2) - s0len)
            rperp = math.sqrt(max(r0 * r0 + r1 * r1 + r2 * r2 - rp * rp, 0.0))
            if dist > rperp * half:
                continue
        p0 = r0 - rp * e[0]
        p1 = r1 - rp * e[1]
        p2 = r2 - rp * e[2]
        x0 = e[1] * r2 - e[2] * r1
        x1 = e[2] * r0 - e[0] * r2
        x2 = e[0] * r1 - e[1] * r0
        a = p0 * s0p[0] + p1 * s0p[1] + p2 * s0p[2]
        b = x0 * s0p[0] + x1 * s0p[1] + x2 * s0p[2]
        c = -(0.5 * (r0 * r0 + r1 * r1 + r2 * r2) + rp * (e[0] * s0p[0] + e[1] * s0p[1] + e[2] * s0p[2]))
        rho = math.sqrt(a * a + b * b)
        if rho <= 0.0 or abs(c) > rho:
            continue
        base = math.atan2(b, a)
        delta = math.acos(c / rho)
        for phi in (base + delta, base - delta):
            p = lo + ((phi - lo) % two_pi)
            if p <= hi:
                out[i] = True
    return out


def perturbed_intensities(structure, d_min: float, h: np.ndarray) -> np.ndarray:
    """I(h) of ``structure`` as ``true_intensities(structure, d_min).lookup(h)`` gives it (0 for
    absent or beyond d_min), with structure factors only of the asymmetric-unit reflections
    ``h`` maps to: a non-isomorphous crystal's few thousand, not the whole unique set."""
    uc = gemmi.UnitCell(*structure.cell)
    asu = np.array(gemmi.make_miller_array(uc, structure.space_group, d_min * (1 - 1e-9)), dtype=np.int32)
    ops = point_group_index_ops(structure.space_group)
    asu_keys = canonical_keys(asu, ops)
    order = np.argsort(asu_keys)
    asu_keys = asu_keys[order]
    keys = canonical_keys(h, ops)
    pos = np.clip(np.searchsorted(asu_keys, keys), 0, max(len(asu_keys) - 1, 0))
    found = asu_keys[pos] == keys if len(asu_keys) else np.zeros(len(keys), bool)
    need, inv = np.unique(order[pos[found]], return_inverse=True)
    intensity = np.abs(structure_factors(structure, asu[need])) ** 2 / wilson_scale(structure) * I_SCALE
    out = np.zeros(len(keys))
    out[found] = intensity[inv.ravel()]
    return out


def _smooth_direction_factor(s1u: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Absorption-like smooth variation over scattered directions (low-order terms)."""
    x, y, z = s1u.T
    return np.exp(coef[0] * x + coef[1] * y + coef[2] * (x * y) + coef[3] * (x * x - y * y))


def simulate_reflections(p, truth: TrueIntensities, structure, crystals, experiments, d_min: float,
                         rng: np.random.Generator) -> tuple[ReflectionTable, dict]:
    """One integrated-like ReflectionTable for all crystals (id = crystal index)."""
    expt0 = experiments[0]
    panel = expt0.detector[0]
    beam = expt0.beam
    shadow = render.beamstop_shadow(panel, beam)
    bg_map = render.background_map(panel, beam, p.background) * shadow
    h_all = generate_indices(truth.cell, d_min, truth.space_group).astype(np.float64)
    k_base = p.signal / I_SCALE
    tables = []
    n_images = p.n_images
    width = p.oscillation_width
    for c, expt in zip(crystals, experiments):
        g = expt.goniometer
        A = c.A
        s0p = g.setting_rotation.T @ beam.s0
        e = g.rotation_axis / np.linalg.norm(g.rotation_axis)
        lo, hi = (math.radians(x) for x in expt.scan.oscillation_range)
        M = g.fixed_rotation @ A
        Mmid = axis_angle_matrix(e, 0.5 * (lo + hi)) @ M
        cand = _crossing_mask(h_all, M, Mmid, s0p, e, lo, hi)
        pred = predict_rotation(A, beam, expt.detector, g, expt.scan, d_min=d_min,
                                miller_indices=h_all[cand].astype(np.int32))
        n = len(pred["d"])
        if n == 0:
            continue
        h_ref = pred["miller_index"] @ c.setting_op.T
        stol2 = 0.25 / pred["d"] ** 2
        if "non_isomorphous" in c.flags:
            st2 = structure.perturbed(np.random.default_rng(c.seed), 0.35, 1.02)
            intensity = perturbed_intensities(st2, d_min * 0.98, h_ref)
        else:
            intensity = truth.lookup(h_ref)
        intensity = intensity * np.exp(-2.0 * c.b_extra * stol2)
        exposure_rel = c.exposure_time / p.exposure_time
        sm = render.spot_model(pred, panel, beam, intensity, k_base * c.scale * exposure_rel,
                               p.mosaicity, p.beam_divergence, width, shadow)
        z = pred["xyzcal.px"][:, 2]
        sig_z = sm["sigma_z"]
        partiality = ndtr((n_images - z) / sig_z) - ndtr((0.0 - z) / sig_z)
        # per-image smooth scale, absorption-like surface, decay
        r = np.random.default_rng(c.seed)
        drift = 1.0 + 0.05 * r.normal() * (z / max(n_images, 1)) \
            + 0.03 * np.sin(2 * np.pi * z / max(n_images, 1) + r.uniform(0, 2 * np.pi))
        s1u = pred["s1"] / np.linalg.norm(pred["s1"], axis=1, keepdims=True)
        absorb = _smooth_direction_factor(s1u, r.normal(0, 0.05, size=4))
        decay = np.ones(n)
        if "damaged" in c.flags:
            decay = (1 - p.damage_decay_per_image) ** z * np.exp(-2 * p.damage_b_per_image * z * stol2)
        expected = sm["counts_full"] * drift * absorb * decay * partiality
        ix = np.clip(pred["xyzcal.px"][:, 0].astype(int), 0, bg_map.shape[1] - 1)
        iy = np.clip(pred["xyzcal.px"][:, 1].astype(int), 0, bg_map.shape[0] - 1)
        n_img_spanned = np.maximum(1.0, 2 * 2.5 * sig_z * np.minimum(partiality, 1.0))
        bg = bg_map[iy, ix].astype(float) * exposure_rel * N_FOREGROUND * n_img_spanned
        var_sum = np.maximum(expected, 0) + bg * (1 + N_FOREGROUND / N_BACKGROUND)
        var_prf = 0.8 * var_sum
        a, b = p.error_model_a, p.error_model_b
        i_sum = expected + a * np.sqrt(var_sum + (b * expected) ** 2) * r.normal(size=n)
        # profile fitting estimates the full reflection from the part recorded (as DIALS's):
        # the partial's value and error scaled up by 1/partiality
        p_fit = np.maximum(partiality, 1e-3)
        i_prf = (expected + a * np.sqrt(var_prf + (b * expected) ** 2) * r.normal(size=n)) / p_fit
        var_prf = var_prf / p_fit ** 2
        outlier = r.random(n) < p.outlier_fraction
        factor = r.uniform(3, 10, size=int(outlier.sum()))
        i_sum[outlier] = np.abs(i_sum[outlier]) * factor + 5 * np.sqrt(var_sum[outlier])
        i_prf[outlier] = np.abs(i_prf[outlier]) * factor + 5 * np.sqrt(var_prf[outlier])
        xyzobs = pred["xyzcal.px"] + r.normal(size=(n, 3)) * np.array([0.25, 0.25, 0.15])
        flags = int(Flags.predicted | Flags.indexed | Flags.integrated_sum | Flags.integrated_prf)
        cols = {
            "miller_index": pred["miller_index"], "id": np.full(n, c.index, dtype=np.int32),
            "panel": pred["panel"], "s1": pred["s1"], "entering": pred["entering"],
            "xyzcal.px": pred["xyzcal.px"], "xyzcal.mm": pred["xyzcal.mm"],
            "xyzobs.px.value": xyzobs, "xyzobs.px.variance": np.tile([0.0625, 0.0625, 0.0225], (n, 1)),
            "intensity.sum.value": i_sum, "intensity.sum.variance": var_sum,
            "intensity.prf.value": i_prf, "intensity.prf.variance": var_prf,
            "background.mean": bg / (N_FOREGROUND * n_img_spanned),
            "partiality": partiality, "d": pred["d"], "lp": sm["lp"], "qe": sm["qe"],
            "zeta": pred["zeta"], "flags": np.full(n, flags, dtype=np.uint64),
            "intensity.true.value": expected, "outlier.true": outlier,
        }
        tables.append(cols)
    table = ReflectionTable(experiment_identifiers={c.index: c.identifier for c in crystals})
    for k in list(tables[0]):  # column by column, each crystal's piece freed once joined
        table[k] = np.concatenate([t.pop(k) for t in tables])
    ios = table["intensity.sum.value"] / np.sqrt(table["intensity.sum.variance"])
    summary = {"n_reflections": int(len(table)), "mean_i_over_sigma_sum": float(np.mean(ios)),
               "n_outliers": int(table["outlier.true"].sum())}
    return table, summary
