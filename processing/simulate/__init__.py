"""Diffraction simulator with known truth (``xtal simulate``).

``simulate(params)`` computes everything in memory (images are generators, made
one at a time when consumed); ``write_simulation(result, out_dir)`` is the one
function that writes files; ``run_simulate(params)`` does both and returns
``(files, summary)``.

Files (in ``params.output_dir``):

images mode
    ``crystal_<k>_master.h5`` + ``crystal_<k>_data_000001.h5`` … (NXmx, one sweep per
    crystal, k = 000, 001 …), ``truth.expt`` (the true models, one experiment per
    lattice, imagesets pointing at the master files), ``truth_reflections_<k>.refl``
    (true reflections of sweep k: miller_index, xyzcal.px, intensity.true.value …;
    ``id`` = lattice), ``truth_partials_<k>.npz`` (per image partial fractions: row,
    image (1-based), fraction, counts), ``true.mtz`` (merged true intensities,
    IMEAN/SIGIMEAN), ``truth.json`` (with ``true_geometry`` and ``header_geometry``);
    with the realism options ``truth_zingers_<k>.npz`` (image (1-based), x, y, counts)
    and ``truth_defects.npz`` (hot_xy, dead_xy, dead_modules, mask_bits).
    The NXmx headers carry the header geometry (the truth plus the header_* errors).
reflections mode
    ``integrated.expt``, ``integrated.refl`` (integrated-like, DIALS columns and
    flags), ``true.mtz``, ``truth.json``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import XtalError
from ..io.files import atomic_path
from ..geometry.prediction import predict_rotation
from ..models import Crystal, Experiment, ExperimentList, ImageSource
from ..models.crystal import hall_symbol
from ..reflections import Flags, ReflectionTable
from . import defects, instrument, render, scatter
from .crystals import CrystalTruth, make_ensemble
from .params import SimulateParams, as_dict, check_symmetry, resolve
from .presets import PRESETS
from .truth import (I_SCALE, TrueIntensities, ambiguity_ops, format_abc, random_structure,
                    structure_from_model, true_intensities, true_mtz)

__all__ = ["SimulateParams", "PRESETS", "simulate", "write_simulation", "run_simulate",
           "SimulationResult", "SweepSimulation"]

MARGIN_DEG = 2.0  # predict this far outside the scan so partial spots at its ends are rendered


@dataclass
class SweepSimulation:
    """One crystal's sweep: the true experiments (one per lattice), true reflections and images."""

    crystal: CrystalTruth
    experiments: list[Experiment]
    table: dict  # column name -> array (true reflections with partiality > 0)
    partial_rows: np.ndarray
    partial_images: np.ndarray  # 0-based
    partial_fraction: np.ndarray
    partial_counts: np.ndarray  # expected counts of the row on that image (damage included)
    bg_scale: float
    n_images: int
    _background: np.ndarray = field(repr=False, default=None)
    _gap: np.ndarray = field(repr=False, default=None)
    saturation: int = 1_000_000
    defects: defects.DetectorDefects | None = field(repr=False, default=None)
    flux: np.ndarray | None = None  # relative incident flux of every image
    zingers: dict | None = None  # image (0-based), x, y, counts of the cosmic-ray hits

    @property
    def experiment(self) -> Experiment:
        """The experiment of the crystal's own lattice (lattice 0)."""
        return self.experiments[0]

    def images(self):
        """Generator of the sweep's images, int32 (slow, fast), one at a time."""
        order = np.argsort(self.partial_images, kind="stable")
        img = self.partial_images[order]
        bounds = np.searchsorted(img, np.arange(self.n_images + 1))
        xs_all = self.table["xyzcal.px"][:, 0]
        ys_all = self.table["xyzcal.px"][:, 1]
        sig_all = self.table["sigma_px"]
        for i in range(self.n_images):
            sel = order[bounds[i]:bounds[i + 1]]
            rows = self.partial_rows[sel]
            bg_scale = self.bg_scale if self.flux is None else self.bg_scale * self.flux[i]
            spots = (xs_all[rows].astype(np.float64), ys_all[rows].astype(np.float64),
                     sig_all[rows].astype(np.float64), self.partial_counts[sel].astype(np.float64))
            seed = np.uint64(self.crystal.seed + i)
            if self.defects is None:
                image = render.render_image(self._background, np.float32(bg_scale), *spots, self._gap, seed,
                                            int(self.saturation))
            else:
                image = render.render_image_detector(self._background, np.float32(bg_scale), *spots, self._gap,
                                                     self.defects.gain, self.defects.fixed, seed,
                                                     int(self.saturation))
            if self.zingers is not None:
                defects.add_zingers(image, self.zingers, i, int(self.saturation))
            yield image

    def truth_table(self) -> ReflectionTable:
        t = ReflectionTable(experiment_identifiers={j: e.identifier for j, e in enumerate(self.experiments)})
        for name, values in self.table.items():
            if name == "miller_index_reference":
                t.set_column(name, values, kind="cctbx::miller::index<>")
            elif name == "lattice":
                t.set_column(name, values, kind="int")
            else:
                t[name] = values
        t["id"] = np.asarray(self.table["lattice"], dtype=np.int32)
        t["flags"] = np.full(len(t), int(Flags.predicted), dtype=np.uint64)
        return t


@dataclass
class SimulationResult:
    params: SimulateParams
    truth: TrueIntensities
    crystals: list[CrystalTruth]
    experiments: ExperimentList
    sweeps: list[SweepSimulation]
    pixel_mask: np.ndarray | None
    summary: dict
    reflections: ReflectionTable | None = None
    detector_name: str = ""
    pixel_mask_bits: np.ndarray | None = None  # NeXus bits of the masked defects (uint32)
    header_models: tuple | None = None  # (beam, detector) written in the NXmx headers
    defects: defects.DetectorDefects | None = None


def _structure(p: SimulateParams, rng):
    if p.model:
        st = structure_from_model(p.model, b_overall=p.b_factor)
        return st, st.space_group, st.cell
    sg, cell = check_symmetry(p.space_group, p.unit_cell)
    return random_structure(sg, cell, p.n_atoms, rng, p.b_factor), sg, cell


def simulate(params: SimulateParams) -> SimulationResult:
    """Build the truth and the (lazy) images or the reflection tables. No file I/O."""
    t0 = time.perf_counter()
    p = resolve(params)
    rng = np.random.default_rng(p.seed)
    structure, sg, cell = _structure(p, rng)
    distance = p.distance or instrument.distance_for_edge(p.detector, p.wavelength, p.d_edge)
    detector = instrument.make_detector(p.detector, distance, p.wavelength, p.saturation_value)
    beam = instrument.make_beam(p.wavelength, p.beam_divergence)
    gonio = instrument.make_goniometer()
    d_corner = detector.get_max_resolution(beam.s0)
    d_min = max(p.d_min or 0.0, d_corner) if p.mode == "images" else (p.d_min or d_corner)
    truth = true_intensities(structure, d_min * 0.98)
    ambiguities = ambiguity_ops(cell, sg)
    crystals = make_ensemble(p, sg, cell, ambiguities, rng)
    hall = hall_symbol(sg)

    experiments = ExperimentList()
    per_crystal = []
    for c in crystals:
        scan = instrument.make_scan(p.n_images, p.start_angle, p.oscillation_width, c.exposure_time,
                                    1.7e9 + 600.0 * c.index)
        lattices = c.lattices() if p.mode == "images" else c.lattices()[:1]
        per_crystal.append([Experiment(beam=beam, detector=detector, goniometer=gonio, scan=scan,
                                       crystal=Crystal.from_cell_and_U(lat.cell, lat.U, hall),
                                       identifier=lat.identifier) for lat in lattices])
        for e in per_crystal[-1]:
            experiments.append(e)

    summary = {"preset": p.preset, "mode": p.mode, "parameters": as_dict(p),
               "space_group": sg.xhm(), "unit_cell": list(cell), "wavelength": p.wavelength,
               "distance_mm": distance, "d_min": d_min, "detector": p.detector,
               "image_size": list(detector[0].image_size),
               "ambiguity_ops": [format_abc(m) for m in ambiguities],
               "n_unique_true": int(len(truth.intensity))}

    if p.mode == "reflections":
        from .reflections import simulate_reflections
        table, per = simulate_reflections(p, truth, structure, crystals, experiments, d_min, rng)
        summary.update(per)
        summary["crystals"] = [c.to_dict() for c in crystals]
        summary["seconds"] = time.perf_counter() - t0
        return SimulationResult(p, truth, crystals, experiments, [], None, summary, reflections=table,
                                detector_name=instrument.NAMES[p.detector])

    panel = detector[0]
    shadow = render.beamstop_shadow(panel, beam)
    gap = instrument.gap_mask(p.detector)
    background = render.background_map(panel, beam, p.background)
    if p.ice_ring_intensity or p.solvent_ring_intensity or p.air_scatter_intensity:
        background = background + scatter.scatter_map(panel, beam, p.ice_ring_intensity,
                                                      p.solvent_ring_intensity, p.air_scatter_intensity)
    background = background * shadow
    bad = defects.detector_defects(p.detector, gap, p)
    alive = ~gap if bad is None else ~gap & (bad.fixed < 0)
    k_base = p.signal / I_SCALE
    sweeps = []
    non_iso_cache = {}
    for c, expts in zip(crystals, per_crystal):
        lookup = truth
        if "non_isomorphous" in c.flags:
            if c.index not in non_iso_cache:
                st2 = structure.perturbed(np.random.default_rng(c.seed), 0.35, 1.02)
                non_iso_cache[c.index] = true_intensities(st2, d_min * 0.98)
            lookup = non_iso_cache[c.index]
        flux = defects.flux_factors(p.n_images, p.beam_flux_jitter, p.seed, c.index)
        s = _sweep(p, c, expts, lookup, k_base, shadow, background, gap, d_min, flux)
        s.defects = bad
        s.zingers = defects.zingers(p.n_images, p.zinger_rate, alive, p.seed, c.index)
        sweeps.append(s)
    pixel_mask = gap.astype(np.uint32)
    summary["crystals"] = [_crystal_summary(c, s) for c, s in zip(crystals, sweeps)]
    header = _header(p, beam, detector, summary)
    if bad is not None:
        summary["detector_defects"] = dict(bad.summary(), masked=bool(p.mask_defects))
    summary["seconds_setup"] = time.perf_counter() - t0
    return SimulationResult(p, truth, crystals, experiments, sweeps, pixel_mask, summary,
                            detector_name=instrument.NAMES[p.detector],
                            pixel_mask_bits=bad.bits if bad is not None and p.mask_defects else None,
                            header_models=header, defects=bad)


def _crystal_summary(c: CrystalTruth, s: SweepSimulation) -> dict:
    d = dict(c.to_dict(), n_reflections=len(s.table["d"]),
             n_full_in_scan=int(np.sum(s.table["partiality"] > 0.99)))
    if c.extra_lattices:
        d["n_reflections_per_lattice"] = np.bincount(s.table["lattice"], minlength=1 + len(c.extra_lattices)).tolist()
    if s.flux is not None:
        d["beam_factors"] = [float(f) for f in s.flux]
    if s.zingers is not None:
        d["n_zingers"] = len(s.zingers["image"])
    return d


def _header(p: SimulateParams, beam, detector, summary: dict):
    """The header models (None if the header is exact); both geometries go into ``summary``."""
    summary["true_geometry"] = instrument.geometry_record(beam, detector)
    errors = (p.header_distance_error, tuple(p.header_beam_centre_error), p.header_tilt_error,
              p.header_tilt_axis, p.header_wavelength_error)
    if not any((errors[0], *errors[1], errors[2], errors[4])):
        summary["header_geometry"] = dict(summary["true_geometry"])
        return None
    hbeam, hdet = instrument.header_models(beam, detector, *errors)
    summary["header_geometry"] = dict(instrument.geometry_record(hbeam, hdet),
                                      errors={"distance_mm": errors[0], "beam_centre_px": list(errors[1]),
                                              "tilt_deg": errors[2], "tilt_axis_deg": errors[3],
                                              "wavelength": errors[4]})
    return hbeam, hdet


def _sweep(p, c: CrystalTruth, expts: list[Experiment], lookup: TrueIntensities, k_base, shadow,
           background, gap, d_min, flux) -> SweepSimulation:
    expt = expts[0]
    panel = expt.detector[0]
    cols, rows_all, img_all, frac_all, cnt_all = [], [], [], [], []
    offset = 0
    exposure_rel = c.exposure_time / p.exposure_time
    for lattice, lat in enumerate(c.lattices()):
        op = lat.setting_op
        pred = predict_rotation(lat.A, expt.beam, expt.detector, expt.goniometer, expt.scan, d_min=d_min,
                                space_group=lookup.space_group, margin_deg=MARGIN_DEG)
        h_ref = pred["miller_index"] @ op.T
        intensity = lookup.lookup(h_ref)
        stol2 = 0.25 / pred["d"] ** 2
        intensity = intensity * np.exp(-2.0 * lat.b_extra * stol2)
        sm = render.spot_model(pred, panel, expt.beam, intensity, k_base * lat.scale * exposure_rel,
                               p.mosaicity, p.beam_divergence, p.oscillation_width, shadow)
        if p.psf_sigma > 0:
            sm["sigma_px"] = np.hypot(sm["sigma_px"], p.psf_sigma)
        rows, image, frac = render.partials(pred["xyzcal.px"][:, 2], sm["sigma_z"], p.n_images)
        damage = np.ones(len(rows))
        if "damaged" in c.flags:
            damage = (1 - p.damage_decay_per_image) ** image * np.exp(-2 * p.damage_b_per_image * image * stol2[rows])
        counts = sm["counts_full"][rows] * frac * damage
        if flux is not None:
            counts = counts * flux[image]
        recorded = np.bincount(rows, weights=counts, minlength=len(intensity))
        partiality = np.bincount(rows, weights=frac, minlength=len(intensity))
        keep = partiality > 1e-3
        new_index = np.cumsum(keep) - 1
        sel = keep[rows]
        rows_all.append(new_index[rows[sel]] + offset)
        img_all.append(image[sel])
        frac_all.append(frac[sel])
        cnt_all.append(counts[sel])
        n_keep = int(keep.sum())
        offset += n_keep
        cols.append({
            "miller_index": pred["miller_index"][keep],
            "miller_index_reference": h_ref[keep].astype(np.int32),
            "panel": pred["panel"][keep], "s1": pred["s1"][keep],
            "xyzcal.mm": pred["xyzcal.mm"][keep], "xyzcal.px": pred["xyzcal.px"][keep],
            "entering": pred["entering"][keep], "d": pred["d"][keep], "zeta": pred["zeta"][keep],
            "lp": sm["lp"][keep], "qe": sm["qe"][keep], "partiality": partiality[keep],
            "intensity.true.value": recorded[keep], "intensity.true.full": sm["counts_full"][keep],
            "intensity.reference": intensity[keep], "sigma_px": sm["sigma_px"][keep],
            "sigma_z": sm["sigma_z"][keep], "lattice": np.full(n_keep, lattice, dtype=np.int32),
        })
    table = {k: np.concatenate([c_[k] for c_ in cols]) for k in cols[0]}
    return SweepSimulation(c, expts, table, np.concatenate(rows_all), np.concatenate(img_all),
                           np.concatenate(frac_all), np.concatenate(cnt_all), exposure_rel, p.n_images,
                           background, gap, int(p.saturation_value), flux=flux)


# --- writing: the only place that touches files ---------------------------------------

def _atomic(path: str, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def write_simulation(result: SimulationResult, out_dir: str) -> dict:
    """Write every output file of ``result`` into ``out_dir``; returns {kind: path(s)}."""
    from ..io.expt import write_experiments
    from ..io.refl import write_reflections

    out_dir = os.path.abspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise XtalError(f"output_dir={out_dir}: cannot create it ({e.strerror})", field="output_dir") from None
    files: dict = {}
    p = result.params
    if result.reflections is not None:
        write_experiments(os.path.join(out_dir, "integrated.expt"), result.experiments)
        write_reflections(os.path.join(out_dir, "integrated.refl"), result.reflections)
        files["experiments"] = os.path.join(out_dir, "integrated.expt")
        files["reflections"] = os.path.join(out_dir, "integrated.refl")
    else:
        from ..io.nxmx import write_nxmx
        files["images"], files["truth_reflections"], files["truth_partials"] = [], [], []
        t0 = time.perf_counter()
        for k, s in enumerate(result.sweeps):
            master = os.path.join(out_dir, f"crystal_{k:03d}_master.h5")
            e = s.experiment
            beam, detector = result.header_models or (e.beam, e.detector)
            written = write_nxmx(master, beam, detector, e.goniometer, e.scan, s.images(),
                                 pixel_mask=result.pixel_mask, pixel_mask_bits=result.pixel_mask_bits,
                                 saturation_value=int(p.saturation_value),
                                 images_per_file=p.images_per_file, detector_name=result.detector_name,
                                 sensor_material=e.detector[0].material,
                                 sensor_thickness_mm=e.detector[0].thickness)
            source = ImageSource(kind="ImageSequence", template=master,
                                 single_file_indices=list(range(e.scan.num_images)))
            for lattice in s.experiments:  # one imageset shared by the sweep's lattices, as DIALS writes it
                lattice.imageset = source
            files["images"].append(written)
            if s.zingers is not None:
                npz = os.path.join(out_dir, f"truth_zingers_{k:03d}.npz")
                z = s.zingers
                _atomic(npz, lambda tmp, z=z: _save_npz(tmp, image=z["image"] + 1, x=z["x"], y=z["y"],
                                                        counts=z["counts"]))
                files.setdefault("truth_zingers", []).append(npz)
            refl = os.path.join(out_dir, f"truth_reflections_{k:03d}.refl")
            write_reflections(refl, s.truth_table())
            files["truth_reflections"].append(refl)
            npz = os.path.join(out_dir, f"truth_partials_{k:03d}.npz")
            _atomic(npz, lambda tmp, s=s: _save_npz(tmp, row=s.partial_rows, image=s.partial_images + 1,
                                                    fraction=s.partial_fraction, counts=s.partial_counts))
            files["truth_partials"].append(npz)
        result.summary["seconds_images"] = time.perf_counter() - t0
        if result.defects is not None:
            d = result.defects
            npz = os.path.join(out_dir, "truth_defects.npz")
            _atomic(npz, lambda tmp: _save_npz(tmp, hot_xy=d.hot_xy, dead_xy=d.dead_xy,
                                               dead_modules=np.asarray(d.dead_modules, dtype=np.int64),
                                               mask_bits=d.bits))
            files["truth_defects"] = npz
        write_experiments(os.path.join(out_dir, "truth.expt"), result.experiments)
        files["truth_experiments"] = os.path.join(out_dir, "truth.expt")
    mtz_path = os.path.join(out_dir, "true.mtz")
    mtz = true_mtz(result.truth)
    _atomic(mtz_path, lambda tmp: mtz.write_to_file(tmp))
    files["true_mtz"] = mtz_path
    truth_path = os.path.join(out_dir, "truth.json")
    doc = {"truth": {k: v for k, v in result.summary.items() if k != "parameters"},
           "parameters": result.summary["parameters"], "files": files}
    _atomic(truth_path, lambda tmp: _write_json(tmp, doc))
    files["truth"] = truth_path
    return files


def _save_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=_json_default)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-able: {type(o)}")


def run_simulate(params: SimulateParams) -> tuple[dict, dict]:
    """Simulate a data set with known truth and write it (the stage ``xtal simulate``).

    Parameters
    ----------
    params : SimulateParams
        The preset and the fields that override it (cell in Å and deg, angles in
        deg, distance in mm, wavelength and resolutions in Å); files go to
        ``params.output_dir``.

    Returns
    -------
    files : dict
        The paths written, by kind: ``images`` (NXmx sweeps), ``truth_experiments``,
        ``truth_reflections``, ``truth_partials`` (and ``truth_zingers``,
        ``truth_defects`` when those options are on) in images mode, ``experiments``
        and ``reflections`` (integrated-like) in reflections mode; ``true_mtz``
        and ``truth`` in both.
    summary : dict
        JSON-able: preset, mode, space group, unit cell and one row per crystal
        (cell, change of basis to the reference setting, flags), plus ``files``.

    Examples
    --------
    >>> files, summary = run_simulate(SimulateParams(preset="tiny", output_dir="sim", seed=1))
    >>> [c["unit_cell"][0] for c in summary["crystals"]]
    """
    result = simulate(params)
    files = write_simulation(result, params.output_dir)
    summary = json.loads(json.dumps(result.summary, default=_json_default))
    summary["files"] = files
    return files, summary



