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
    error_model_a=1.2, error_model_b=0.03, outlier_fraction=0.002, lattices_per_sweep=(1,),
)

# the realism options, all off: the header tells the true geometry, a perfect detector, steady beam
_IDEAL = {
    "header_distance_error": 0.0, "header_beam_centre_error": (0.0, 0.0), "header_tilt_error": 0.0,
    "header_tilt_axis": 0.0, "header_wavelength_error": 0.0, "psf_sigma": 0.0, "gain_sigma": 0.0,
    "hot_pixel_fraction": 0.0, "hot_pixel_counts": 20000, "dead_pixel_fraction": 0.0, "n_dead_modules": 0,
    "mask_defects": True, "ice_ring_intensity": 0.0, "solvent_ring_intensity": 0.0, "air_scatter_intensity": 0.0,
    "zinger_rate": 0.0, "beam_flux_jitter": 0.0,
}
_COMMON.update(_IDEAL)

# every realism option on, at levels seen at a microfocus beamline (dead modules aside: on the
# two-module 1M of insulin-realistic one would take half the detector; add n_dead_modules=1 on eiger9m)
_REALISTIC = {
    "header_distance_error": 1.5, "header_beam_centre_error": (2.5, -1.8), "header_tilt_error": 0.3,
    "header_tilt_axis": 30.0, "header_wavelength_error": 0.002, "psf_sigma": 0.4, "gain_sigma": 0.03,
    "hot_pixel_fraction": 2e-5, "hot_pixel_counts": 20000, "dead_pixel_fraction": 1e-4, "n_dead_modules": 0,
    "mask_defects": True, "ice_ring_intensity": 1.0, "solvent_ring_intensity": 0.4, "air_scatter_intensity": 0.5,
    "zinger_rate": 3.0, "beam_flux_jitter": 0.03,
}

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
    # 1° wedges of 10 × 0.1° from microcrystals of tetragonal lysozyme, 2–5 crystals in the beam
    # at once (one experiment per lattice in truth.expt); geometry exact (no header errors)
    "microcrystals": dict(_COMMON, n_crystals=10, n_images=10, oscillation_width=0.1,
                          space_group="P 43 21 2", unit_cell=(79.1, 79.1, 38.0, 90.0, 90.0, 90.0),
                          detector="eiger1m", wavelength=0.9763, d_edge=3.0, d_min=4.2, signal=6000.0,
                          background=0.5, b_factor=25.0, n_atoms=400, lattices_per_sweep=(2, 5),
                          scale_jitter=0.3, alt_setting_fraction=0.0),
    # cubic insulin, 4 × 5° on the 1M Eiger with every realism option on (_REALISTIC); < 1 min
    "insulin-realistic": dict(_COMMON, **_REALISTIC, n_crystals=4, n_images=50, oscillation_width=0.1,
                              space_group="I 21 3", unit_cell=(78.1, 78.1, 78.1, 90.0, 90.0, 90.0),
                              detector="eiger1m", wavelength=0.9763, d_edge=1.8, signal=30000.0,
                              background=0.3, b_factor=15.0, n_atoms=200),
}

__all__ = ["PRESETS"]
