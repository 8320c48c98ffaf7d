"""Named starting points for ``xtal simulate`` (``preset=…``).

Each preset gives a value for every ``SimulateParams`` field that can be ``None``.
"""
from __future__ import annotations

_COMMON = dict(
    mode="images", start_angle=0.0, exposure_time=0.01, d_min=None, distance=None,
    mosaicity=0.05, beam_divergence=0.02, cell_jitter=0.002, b_factor=20.0,
    b_factor_jitter=2.0, scale_jitter=0.2, n_atoms=300, model=None, n_weak=0,
    n_non_isomorphous=0, n_damaged=0, n_second_lattice=0, alt_setting_fraction=0.5,
    damage_b_per_image=0.2, damage_decay_per_image=0.002, saturation_value=1_000_000,
    error_model_a=1.2, error_model_b=0.03, outlier_fraction=0.002,
)

PRESETS: dict[str, dict] = {
    # 3 crystals × 10 images, Eiger-like 1M: seconds; for tests and the web demo
    "tiny": dict(_COMMON, n_crystals=3, n_images=10, oscillation_width=0.5,
                 space_group="I 21 3", unit_cell=(78.1, 78.1, 78.1, 90.0, 90.0, 90.0),
                 detector="eiger1m", wavelength=0.9763, d_edge=2.0, signal=20000.0,
                 background=1.0, n_atoms=150),
    # the DIALS multi-crystal tutorial: 24 × 5° of cubic insulin on an Eiger 2X 9M (i24)
    "insulin-24": dict(_COMMON, n_crystals=24, n_images=50, oscillation_width=0.1,
                       space_group="I 21 3", unit_cell=(78.1, 78.1, 78.1, 90.0, 90.0, 90.0),
                       detector="eiger9m", wavelength=0.9763, d_edge=1.5, signal=30000.0,
                       background=0.3, b_factor=15.0, n_atoms=200, n_weak=1,
                       n_non_isomorphous=1, n_damaged=1, n_second_lattice=0),
    # tetragonal lysozyme in 5° wedges (no indexing ambiguity: Laue 4/mmm = lattice)
    "lysozyme-wedges": dict(_COMMON, n_crystals=8, n_images=50, oscillation_width=0.1,
                            space_group="P 43 21 2", unit_cell=(79.1, 79.1, 38.0, 90.0, 90.0, 90.0),
                            detector="eiger9m", wavelength=0.9763, d_edge=1.6, signal=30000.0,
                            background=0.3, b_factor=18.0, n_atoms=400),
}

__all__ = ["PRESETS"]
