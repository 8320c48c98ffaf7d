"""SimulateParams: the parameters of ``xtal simulate`` (one frozen dataclass).

Fields left at ``None`` take the preset's value (see ``presets.py``); ``resolve``
returns a copy with every field filled and checked.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import gemmi

from ..errors import XtalError
from ..params import StageParams, param

DETECTORS = ("eiger1m", "eiger9m")
MODES = ("images", "reflections")


@dataclass(frozen=True)
class SimulateParams(StageParams):
    """Parameters of the diffraction simulator (``xtal simulate key=value …``)."""

    preset: str = param("tiny", 'Starting point: tiny, insulin-24, lysozyme-wedges, microcrystals or insulin-realistic; '
                        'the other fields override it.')
    output_dir: str = param(".", 'Folder the files are written into (created if missing).')
    mode: str | None = param(None, 'images (NXmx sweeps) or reflections (an integrated-like .expt/.refl, fast).',
                             choices=MODES)
    seed: int = param(0, 'Random seed: the same parameters and seed give the same data set.')
    n_crystals: int | None = param(None, 'Number of crystals (one sweep each).', ge=1)
    # no limit: resolve() says "a sweep needs at least one image" instead
    n_images: int | None = param(None, 'Images per sweep.')
    oscillation_width: float | None = param(None, 'Rotation per image (deg).', gt=0)
    start_angle: float | None = param(None, 'Scan start angle φ of every sweep (deg).')
    exposure_time: float | None = param(None, 'Exposure per image (s); signal and background scale with it.', gt=0)
    space_group: str | None = param(None, "Space group symbol (Hermann–Mauguin, e.g. 'I 21 3').")
    unit_cell: tuple[float, ...] | None = param(None, 'Reference unit cell a, b, c (Å), α, β, γ (deg).')
    d_min: float | None = param(None, 'High-resolution limit of the simulated reflections (Å); None: the detector corner.', gt=0)
    d_edge: float | None = param(None, 'Resolution at the nearest detector edge (Å); sets the distance when distance is None.', gt=0)
    distance: float | None = param(None, 'Sample–detector distance (mm); None: from d_edge.', gt=0)
    detector: str | None = param(None, 'eiger1m (1028×1062 px, for tests) or eiger9m (Eiger 2X 9M, 3108×3262 px).',
                                 choices=DETECTORS)
    wavelength: float | None = param(None, 'X-ray wavelength (Å).', gt=0)
    mosaicity: float | None = param(None, 'Mosaic spread σ_m (deg), the Gaussian rocking width before the Lorentz factor.', ge=0)
    beam_divergence: float | None = param(None, 'Beam divergence σ_b (deg); sets the spot size on the detector and adds to the rocking width.', ge=0)
    cell_jitter: float | None = param(None, 'Relative standard deviation of the cell between crystals (kept in the space group).', ge=0)
    b_factor: float | None = param(None, 'Overall isotropic B of the reference structure (Å²).')
    b_factor_jitter: float | None = param(None, 'Standard deviation of the per-crystal extra B (Å², added to b_factor).', ge=0)
    scale_jitter: float | None = param(None, 'Relative standard deviation of the per-crystal scale (crystal volume).', ge=0)
    signal: float | None = param(None, 'Mean counts of a fully recorded reflection at low resolution (before Lorentz/polarisation).', gt=0)
    background: float | None = param(None, 'Mean background counts per pixel per image at low angle, at the preset exposure.', ge=0)
    n_atoms: int | None = param(None, 'Random atoms in the asymmetric unit of the truth structure (ignored with model).', ge=1)
    model: str | None = param(None, 'A PDB/mmCIF model to compute the structure factors from instead of random atoms.')
    n_weak: int | None = param(None, 'Crystals exposed 10× less (flag weak).', ge=0)
    n_non_isomorphous: int | None = param(None, 'Crystals with cell +2 % and perturbed atoms (flag non_isomorphous).', ge=0)
    n_damaged: int | None = param(None, 'Crystals with radiation damage: decay and B rising with image number (flag damaged).', ge=0)
    n_second_lattice: int | None = param(None, 'Crystals with a second lattice of random orientation in the same sweep (flag second_lattice).', ge=0)
    alt_setting_fraction: float | None = param(None, 'Fraction of crystals simulated in the alternative indexing setting (if the symmetry has one).',
                                               ge=0, le=1)
    damage_b_per_image: float | None = param(None, 'B increase per image of a damaged crystal (Å²).', ge=0)
    damage_decay_per_image: float | None = param(None, 'Relative intensity loss per image of a damaged crystal.', ge=0, lt=1)
    saturation_value: int | None = param(None, 'Counts at which a pixel saturates (clipped; written as the NXmx saturation_value).')
    images_per_file: int = param(100, 'Images per NXmx data file.', ge=1)
    lattices_per_sweep: tuple[int, ...] | None = param(
        None, 'Lattices in the beam at once in every sweep (images mode): n, or lo,hi for a random number in [lo, hi] '
        'per sweep; one crystal form in random orientations, one experiment per lattice in truth.expt.', ge=1)
    # --- realism (images mode; every option off in the tiny, insulin-24 and lysozyme-wedges presets)
    header_distance_error: float | None = param(None, 'The NXmx header distance minus the true one (mm).')
    header_beam_centre_error: tuple[float, float] | None = param(
        None, 'The header beam centre minus the true one, x,y (px, fast, slow).')
    header_tilt_error: float | None = param(None, 'Tilt of the header detector plane from the true one (deg).')
    header_tilt_axis: float | None = param(
        None, 'Direction of that tilt axis in the detector plane, from the fast axis towards the slow axis (deg).')
    header_wavelength_error: float | None = param(None, 'The header wavelength minus the true one (Å).')
    psf_sigma: float | None = param(None, 'Point-spread / charge-sharing blur σ of spots (px, Gaussian, added '
                                          'in quadrature to the 0.25 px built in).', ge=0)
    gain_sigma: float | None = param(None, 'Relative σ of the per-pixel gain (fixed per detector and seed).', ge=0, lt=1)
    hot_pixel_fraction: float | None = param(None, 'Fraction of pixels that are hot (read hot_pixel_counts every image).',
                                             ge=0, le=0.01)
    hot_pixel_counts: int | None = param(None, 'Counts a hot pixel reads on every image.', ge=1)
    dead_pixel_fraction: float | None = param(None, 'Fraction of pixels that are dead (read 0).', ge=0, le=0.01)
    n_dead_modules: int | None = param(None, 'Detector modules (1028×512 px) that are dead (read 0).', ge=0)
    mask_defects: bool | None = param(None, 'Write the hot/dead pixels and dead modules into the NXmx pixel_mask '
                                            '(NeXus bits: 2 dead, 8 hot); false: only the images show them.')
    ice_ring_intensity: float | None = param(None, 'Counts per pixel per image at the peak of the strongest '
                                                   'hexagonal-ice ring (3.90 Å), at the preset exposure.', ge=0)
    solvent_ring_intensity: float | None = param(None, 'Extra counts per pixel per image at the peak of a broad '
                                                       'solvent ring at 3.7 Å, at the preset exposure.', ge=0)
    air_scatter_intensity: float | None = param(None, 'Air scatter counts per pixel per image near the direct beam, '
                                                      'falling with 2θ (e-fold 4°), at the preset exposure.', ge=0)
    zinger_rate: float | None = param(None, 'Mean cosmic-ray hits (zingers, bright single pixels) per image.', ge=0)
    beam_flux_jitter: float | None = param(None, 'Relative σ of the incident flux from image to image.', ge=0, lt=1)
    error_model_a: float | None = param(None, "Reflection mode: multiplicative error-model factor a (σ' = a·√(σ² + (b·I)²)).")
    error_model_b: float | None = param(None, 'Reflection mode: error-model term b.', ge=0)
    outlier_fraction: float | None = param(None, 'Reflection mode: fraction of observations made outliers (×3 to ×10).', ge=0)


def parse_unit_cell(value) -> tuple[float, ...]:
    """'a,b,c,al,be,ga' or a sequence → 6 floats (XtalError if malformed)."""
    if isinstance(value, str):
        parts = [p for p in value.replace(",", " ").split() if p]
    else:
        parts = list(value)
    try:
        cell = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise XtalError(f"unit_cell={value!r}: expected six numbers a,b,c,alpha,beta,gamma",
                        field="unit_cell") from None
    if len(cell) != 6:
        raise XtalError(f"unit_cell={value!r}: expected six numbers a,b,c,alpha,beta,gamma, got {len(cell)}",
                        field="unit_cell")
    return cell


def resolve(params: SimulateParams) -> SimulateParams:
    """Fill the ``None`` fields from the preset and check every value (XtalError)."""
    from .presets import PRESETS

    if params.preset not in PRESETS:
        raise XtalError(f"unknown preset {params.preset!r}; known presets: {', '.join(PRESETS)}", field="preset")
    base = PRESETS[params.preset]
    values = {}
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        if v is None and f.name in base:
            v = base[f.name]
        values[f.name] = v
    p = dataclasses.replace(params, **values)
    _validate(p)
    return p


def _validate(p: SimulateParams) -> None:
    """The rules between fields (the limits were checked when ``p`` was built)."""
    if p.mode is None or p.detector is None:
        raise XtalError(f"preset {p.preset!r} sets no {'mode' if p.mode is None else 'detector'}",
                        field="mode" if p.mode is None else "detector")
    if p.n_images is not None and p.n_images <= 0:
        raise XtalError(f"n_images={p.n_images}: a sweep needs at least one image", field="n_images")
    if p.distance is None and p.d_edge is not None and p.wavelength is not None and p.d_edge <= p.wavelength / 2:
        raise XtalError(f"d_edge={p.d_edge:g}: must be more than λ/2 = {p.wavelength / 2:g} Å", field="d_edge")
    lat = p.lattices_per_sweep
    if lat is not None and not (len(lat) in (1, 2) and lat[0] <= lat[-1]):
        raise XtalError(f"lattices_per_sweep={','.join(map(str, lat))}: give n or lo,hi with lo ≤ hi",
                        field="lattices_per_sweep")
    if p.n_dead_modules:
        from .instrument import n_modules
        if p.n_dead_modules >= n_modules(p.detector):
            raise XtalError(f"n_dead_modules={p.n_dead_modules}: the {p.detector} has {n_modules(p.detector)} "
                            f"modules; leave one alive", field="n_dead_modules")
    flagged = (p.n_weak or 0) + (p.n_non_isomorphous or 0)
    if p.n_crystals is not None and flagged > p.n_crystals:
        raise XtalError(f"n_weak + n_non_isomorphous = {flagged} is more than n_crystals={p.n_crystals}",
                        field="n_weak")
    if p.model is None:
        check_symmetry(p.space_group, p.unit_cell)


def check_symmetry(space_group: str, unit_cell) -> tuple[gemmi.SpaceGroup, tuple[float, ...]]:
    """The gemmi space group and the cell, or XtalError if either is impossible."""
    sg = gemmi.find_spacegroup_by_name(str(space_group)) if space_group else None
    if sg is None:
        raise XtalError(f"space_group={space_group!r}: unknown space group", field="space_group")
    if sg.is_centrosymmetric():
        raise XtalError(f"space_group={space_group!r} is centrosymmetric; a protein crystal's is not",
                        field="space_group")
    cell = parse_unit_cell(unit_cell)
    a, b, c, al, be, ga = cell
    if min(a, b, c) <= 0:
        raise XtalError(f"unit_cell={_fmt(cell)}: cell lengths must be positive", field="unit_cell")
    if min(al, be, ga) <= 0 or max(al, be, ga) >= 180 or al + be + ga >= 360 or \
            al >= be + ga or be >= al + ga or ga >= al + be:
        raise XtalError(f"unit_cell={_fmt(cell)}: these angles make no cell", field="unit_cell")
    uc = gemmi.UnitCell(*cell)
    if not uc.volume > 0:
        raise XtalError(f"unit_cell={_fmt(cell)}: the cell has no volume", field="unit_cell")
    if not uc.is_compatible_with_spacegroup(sg, 1e-3):
        raise XtalError(f"unit_cell={_fmt(cell)} does not fit space group {sg.xhm()} "
                        f"({sg.crystal_system_str()})", field="unit_cell")
    return sg, cell


def _fmt(cell) -> str:
    return ",".join(f"{x:g}" for x in cell)


def as_dict(params: SimulateParams) -> dict:
    """JSON-able dict of the parameters (for logs and StageRun records)."""
    d = dataclasses.asdict(params)
    if d.get("unit_cell") is not None:
        d["unit_cell"] = list(d["unit_cell"])
    return d


__all__ = ["SimulateParams", "resolve", "check_symmetry", "parse_unit_cell", "as_dict",
           "DETECTORS", "MODES"]
