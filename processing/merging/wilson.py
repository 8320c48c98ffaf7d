"""Wilson B factor: straight-line fit of ln⟨I⟩ against 1/d².

⟨I⟩ = k·exp(−2B s²) with s = sinθ/λ = 1/(2d), so ln⟨I⟩ = ln k − (B/2)·(1/d²) and
B = −2 × slope (Å²). Only shells at higher resolution than ``d_max_fit`` (4.5 Å) are fitted.
"""
from __future__ import annotations

import numpy as np

from processing.merging.french_wilson import _equal_count_bins


def wilson_b(mean_intensity_by_shell, d_by_shell, d_max_fit: float = 4.5, min_shells: int = 3
             ) -> float | None:
    """Wilson B (Å²) from per-shell mean intensities and shell resolutions d (Å).

    Shells with d ≥ ``d_max_fit`` or a non-positive / non-finite ⟨I⟩ are left out;
    None when fewer than ``min_shells`` remain.
    """
    y = np.asarray(mean_intensity_by_shell, dtype=np.float64)
    d = np.asarray(d_by_shell, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(y) & np.isfinite(d) & (y > 0) & (d > 0) & (d < d_max_fit)
    if ok.sum() < min_shells:
        return None
    x = 1.0 / d[ok] ** 2
    if np.ptp(x) <= 0:
        return None
    slope, _ = np.polyfit(x, np.log(y[ok]), 1)
    return float(-2.0 * slope)


def wilson_b_from_merged(intensity, d, epsilon=None, n_bins: int = 20, d_max_fit: float = 4.5,
                         min_shells: int = 3, min_per_shell: int = 20) -> float | None:
    """Wilson B (Å²) from merged intensities and their d (Å).

    Reflections with d < ``d_max_fit`` are put in up to ``n_bins`` equal-count shells in
    1/d² (≥ ``min_per_shell`` each); ⟨I/ε⟩ per shell is fitted by :func:`wilson_b` at the
    shell's mean 1/d². None when there are too few reflections or shells.
    """
    i = np.asarray(intensity, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    eps = np.ones_like(i) if epsilon is None else np.asarray(epsilon, dtype=np.float64)
    ok = np.isfinite(i) & np.isfinite(d) & (d > 0) & (d < d_max_fit)
    n = int(ok.sum())
    nb = min(n_bins, n // min_per_shell)
    if nb < min_shells:
        return None
    x = 1.0 / d[ok] ** 2
    b = _equal_count_bins(x, nb)
    cnt = np.bincount(b, minlength=nb)
    xm = np.bincount(b, weights=x, minlength=nb) / cnt
    ym = np.bincount(b, weights=i[ok] / eps[ok], minlength=nb) / cnt
    return wilson_b(ym, 1.0 / np.sqrt(xm), d_max_fit=d_max_fit, min_shells=min_shells)


__all__ = ["wilson_b", "wilson_b_from_merged"]
