"""The integrate stage: predict, model the profile, read shoeboxes, background,
summation, profile fitting, corrections (DIALS's ``dials.integrate``).

Per sweep:

1. Predict every reflection to d_min inside the scan (Ewald crossings; rays that
   hit a panel); drop |ζ| < min_zeta. Match the input's indexed reflections to the
   predictions (same hkl, nearest frame): they are the references.
2. Reference pass (one read of the images): small windows around the references
   give σ_b and σ_m (profile_model.py) and then the 3-D reference profiles per
   detector region (profile_fitting.py).
3. Integration pass (a second read): bounding boxes from the profile model
   (n_σ = 3), pixels copied frame by frame into the shoeboxes of the reflections in
   the current block (memory bounded by ``block_memory_mb``, never a whole sweep),
   overlapped pixels given to the nearest reflection, foreground/background masks,
   robust background, summation, centroid, profile fitting, flags.
4. Corrections (lp, qe, partiality) and the DIALS columns.

Sweeps and blocks run in parallel processes (``nproc``).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from ..errors import SweepError, XtalError
from ..geometry.prediction import predict_rotation
from ..models import Experiment, ExperimentList
from ..reflections import Flags, ReflectionTable
from ..summary import finite_mean
from .background import BACKGROUND_ALGORITHMS
from .corrections import lp_correction, partiality, qe_correction
from .filtering import in_ice_ring
from .params import IntegrateParams
from .profile_fitting import GridSpec, ReferenceProfiles, region_index
from .profile_model import ProfileModel, estimate_sigma_b, estimate_sigma_m, window_moments
from .processor import (I_NBG, I_NFG, I_NSPIKE, I_NVALID, I_STATUS, N_IRES, N_RES, R_BG, R_BGSUM, R_BGVAR, R_CORR,
                        R_IPRF, R_ISUM, R_VPRF, R_VSUM, R_VX, R_VY, R_VZ, R_X, R_Y, R_Z, S_BG_FAIL, S_FG_BAD,
                        S_OVERLOAD, S_PRF_FAIL, S_PRF_OK, S_SUM_OK, SPIKE_MAX_PIXELS, process_shoeboxes)
from .shoebox import compute_bbox, extract_frame, kabsch_frames, pool_layout

__all__ = ["IntegrateParams", "run_integrate", "integrate_sweep"]


# --------------------------------------------------------------------------- helpers

def sweep_name(experiment: Experiment, index: int) -> str:
    src = experiment.imageset
    base = os.path.basename(src.template or (src.paths[0] if src and src.paths else "")) if src else ""
    for suffix in ("_master.h5", ".nxs", ".h5"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return f"sweep {index} ({base})" if base else f"sweep {index}"


def _panel_geometry(panel):
    return (np.asarray(panel.origin, float), np.asarray(panel.fast_axis, float),
            np.asarray(panel.slow_axis, float), float(panel.pixel_size[0]), float(panel.pixel_size[1]))


def _hkl_key(h: np.ndarray) -> np.ndarray:
    h = np.asarray(h, dtype=np.int64) + 1024
    return (h[:, 0] << 22) | (h[:, 1] << 11) | h[:, 2]


def match_to_predictions(pred_hkl, pred_z, obs_hkl, obs_z, max_dz: float) -> np.ndarray:
    """Index of the prediction matching each observed reflection (same hkl, nearest
    frame within ``max_dz``), −1 where none."""
    out = np.full(len(obs_hkl), -1, dtype=np.int64)
    if len(pred_hkl) == 0 or len(obs_hkl) == 0:
        return out
    pk = _hkl_key(pred_hkl)
    order = np.argsort(pk, kind="stable")
    pk_sorted = pk[order]
    ok_ = _hkl_key(obs_hkl)
    lo = np.searchsorted(pk_sorted, ok_, side="left")
    hi = np.searchsorted(pk_sorted, ok_, side="right")
    best = np.full(len(obs_hkl), np.inf)
    for s in range(int((hi - lo).max(initial=0))):
        idx = lo + s
        has = idx < hi
        cand = order[np.minimum(idx, len(order) - 1)]
        dz = np.abs(pred_z[cand] - obs_z)
        better = has & (dz < best) & (dz <= max_dz)
        out[better] = cand[better]
        best[better] = dz[better]
    return out


def _active_lists(bbox: np.ndarray, f_lo: int, f_hi: int):
    """CSR lists of the reflections active on each frame f_lo..f_hi−1."""
    z0 = bbox[:, 4].astype(np.int64)
    z1 = bbox[:, 5].astype(np.int64)
    n = np.maximum(z1 - z0, 0)
    refl = np.repeat(np.arange(len(bbox)), n)
    start = np.repeat(np.cumsum(n) - n, n)
    frame = np.repeat(z0, n) + (np.arange(n.sum()) - start)
    order = np.argsort(frame, kind="stable")
    frame, refl = frame[order], refl[order]
    ptr = np.searchsorted(frame, np.arange(f_lo, f_hi + 1))
    return ptr, refl.astype(np.int64)


def _read_into_pool(reader, experiment, bbox, centre, panel_of, f_lo, f_hi, static_masks):
    """Read frames f_lo..f_hi−1 (array indices) into the shoeboxes ``bbox``."""
    off, size = pool_layout(bbox)
    pool = np.zeros(size, dtype=np.float32)
    pool_mask = np.zeros(size, dtype=np.uint8)
    first = experiment.scan.array_range[0]
    panels = experiment.detector.panels
    lists = {}
    for k in range(len(panels)):
        sel = np.nonzero(panel_of == k)[0]
        if len(sel):
            ptr, refl = _active_lists(bbox[sel], f_lo, f_hi)
            lists[k] = (sel, ptr, refl)
    scratch = {}
    for f in range(f_lo, f_hi):
        needed = [k for k, (sel, ptr, refl) in lists.items() if ptr[f - f_lo + 1] > ptr[f - f_lo]]
        if not needed:
            continue
        data = reader.get_raw_data(f - first)
        for k in needed:
            sel, ptr, refl = lists[k]
            active = sel[refl[ptr[f - f_lo]:ptr[f - f_lo + 1]]]
            img = data[k]
            if k not in scratch:
                scratch[k] = (np.full(img.shape, np.inf, dtype=np.float64), np.full(img.shape, -1, dtype=np.int64))
            dist, owner = scratch[k]
            lo, hi = panels[k].trusted_range
            extract_frame(img, static_masks[k], float(lo), float(hi), f, active.astype(np.int64), bbox,
                          centre, off, pool, pool_mask, dist, owner)
    return pool, pool_mask, off


def _static_masks(reader, experiment):
    try:
        masks = reader.get_mask()
    except (XtalError, NotImplementedError):
        masks = None
    out = []
    for k, p in enumerate(experiment.detector.panels):
        nx, ny = p.image_size
        m = np.ones((ny, nx), dtype=bool) if masks is None else np.asarray(masks[k], dtype=bool)
        for rect in p.mask or []:
            x0, x1, y0, y1 = (int(v) for v in rect)
            m[max(y0, 0):y1, max(x0, 0):x1] = False
        out.append(np.ascontiguousarray(m))
    return out


# --------------------------------------------------------------------------- jobs

@dataclass
class SweepPlan:
    """Everything one sweep needs: predictions, geometry and references."""

    index: int
    name: str
    experiment: Experiment
    pred: dict
    frames: object  # KabschFrames
    reference: np.ndarray  # rows of pred that are references
    ref_input_rows: np.ndarray  # rows of the input table matched (for flag transfer)
    ref_bbox_half: tuple[float, float, float]


def _reference_windows(xyz: np.ndarray, half: tuple[float, float, float], scan) -> np.ndarray:
    """Window boxes (x0, x1, y0, y1, z0, z1; px and frames, ends exclusive) of ``half``
    half-widths around the predicted centres ``xyz``, clipped to the scan."""
    hx, hy, hz = half
    wbox = np.zeros((len(xyz), 6), dtype=np.int32)
    wbox[:, 0] = np.floor(xyz[:, 0] - hx)
    wbox[:, 1] = np.ceil(xyz[:, 0] + hx)
    wbox[:, 2] = np.floor(xyz[:, 1] - hy)
    wbox[:, 3] = np.ceil(xyz[:, 1] + hy)
    za, zb = scan.array_range
    wbox[:, 4] = np.clip(np.floor(xyz[:, 2] - hz), za, zb - 1)
    wbox[:, 5] = np.clip(np.ceil(xyz[:, 2] + hz), wbox[:, 4] + 1, zb)
    return wbox


@dataclass
class _RefWindows:
    """The pixels read around the references, and their window moments."""

    pool: np.ndarray
    pool_mask: np.ndarray
    off: np.ndarray
    wbox: np.ndarray
    fr: object  # KabschFrames of the references
    xyz: np.ndarray
    panel_of: np.ndarray
    pan_geo: list
    frames: np.ndarray | None = None  # per-frame signal of the last ``measure``

    def __post_init__(self):
        self.nzw = (self.wbox[:, 5] - self.wbox[:, 4]).astype(np.int64)
        self.K = int(self.nzw.max()) if len(self.wbox) else 1

    def measure(self, radius):
        """(sw, swr2, bg, npix, bad) of every window within ``radius`` (rad) of the centre."""
        n, K, fr, wbox = len(self.wbox), self.K, self.fr, self.wbox
        sw, swr2, bg = np.zeros(n), np.zeros(n), np.zeros(n)
        frames = np.zeros((n, K))
        npix = np.zeros(n, dtype=np.int64)
        bad = np.zeros(n, dtype=bool)
        for k, geo in enumerate(self.pan_geo):
            sel = np.nonzero(self.panel_of == k)[0]
            if not len(sel):
                continue
            o, f, s, px, py = geo
            sub_off = self.off[sel]
            s_sw, s_swr2, s_bg = np.zeros(len(sel)), np.zeros(len(sel)), np.zeros(len(sel))
            s_fr = np.zeros((len(sel), K))
            s_np = np.zeros(len(sel), dtype=np.int64)
            s_bad = np.zeros(len(sel), dtype=bool)
            window_moments(self.pool, self.pool_mask, sub_off, wbox[sel], fr.e1[sel], fr.e2[sel], fr.s1e[sel], o, f, s,
                           px, py, radius, s_sw, s_swr2, s_bg, s_fr, s_np, s_bad)
            sw[sel], swr2[sel], bg[sel], frames[sel], npix[sel], bad[sel] = s_sw, s_swr2, s_bg, s_fr, s_np, s_bad
        self.frames = frames
        return sw, swr2, bg, npix, bad


def _estimate_sigmas(plan: SweepPlan, params: IntegrateParams, win: _RefWindows):
    """σ_b and σ_m (rad) from the reference windows, or the given overrides; and the
    references used for σ_b."""
    e = plan.experiment
    scan = e.scan
    n = len(win.wbox)
    hx, hy, _ = plan.ref_bbox_half
    panel0 = e.detector.panels[0]
    pix_rad = panel0.pixel_size[0] / max(abs(panel0.distance), 1e-3)
    if params.sigma_b is not None:
        sigma_b = math.radians(params.sigma_b)
        used = np.ones(n, dtype=bool)
    else:
        if n == 0:
            raise XtalError(f"{plan.name}: no indexed reflections to model the profile from")
        sigma_b, used = estimate_sigma_b(win.measure, max(hx, hy) * pix_rad / 4.0)
        if used.sum() == 0:
            raise XtalError(f"{plan.name}: no strong reflections found at the predicted positions "
                            f"to model the profile (is the crystal model right for these images?)")
    if params.sigma_m is not None:
        return sigma_b, math.radians(params.sigma_m), used
    sw, swr2, bg, npix, bad = win.measure(3.0 * sigma_b)
    frames, nzw, K, fr = win.frames, win.nzw, win.K, win.fr
    noise = np.sqrt(np.abs(sw) + np.abs(bg) * npix + 1.0)
    good = (~bad) & (sw > 10.0 * noise)
    if good.sum() < 3:
        good = (~bad) & (sw > 3.0 * noise)
    if good.sum() == 0:
        raise XtalError(f"{plan.name}: no strong reflections found at the predicted positions "
                        f"to model the mosaicity")
    g = np.nonzero(good)[0]
    edges = np.radians(scan.angle_from_frame(win.wbox[g, 4][:, None] + np.arange(K + 1)[None, :]))
    npix_frame = np.maximum(npix[g] / np.maximum(nzw[g], 1), 1.0)
    bgv = (np.abs(bg[g]) * npix_frame)[:, None] * np.ones((1, K))
    sigma_m = estimate_sigma_m(frames[g], edges, fr.phi[g], fr.zeta[g], bgv, nzw[g])
    if os.environ.get("XTAL_DEBUG_SIGMA"):
        np.savez(os.environ["XTAL_DEBUG_SIGMA"], frames=frames[g], edges=edges, phi=fr.phi[g], zeta=fr.zeta[g],
                 bgv=bgv, nzw=nzw[g], xyz=win.xyz[g], wbox=win.wbox[g])
    return sigma_b, sigma_m, used


def _learn_profiles(plan: SweepPlan, params: IntegrateParams, model: ProfileModel, win: _RefWindows,
                    region: np.ndarray, used: np.ndarray, refs: ReferenceProfiles) -> int:
    """Add the fully recorded references inside their windows to ``refs``; how many."""
    e = plan.experiment
    scan = e.scan
    fr, wbox, xyz, panel_of = win.fr, win.wbox, win.xyz, win.panel_of
    n_regions, grid = len(refs.count), refs.grid
    bbox = compute_bbox(e, fr, xyz, panel_of, model.delta_b, model.delta_m)
    inside = ((bbox[:, 0] >= wbox[:, 0]) & (bbox[:, 1] <= wbox[:, 1]) & (bbox[:, 2] >= wbox[:, 2])
              & (bbox[:, 3] <= wbox[:, 3]))
    pb = bbox.copy()
    pb[:, 4] = np.maximum(bbox[:, 4], wbox[:, 4])
    pb[:, 5] = np.minimum(bbox[:, 5], wbox[:, 5])
    part = partiality(scan, fr.phi, fr.zeta, model.sigma_m, pb[:, 4], pb[:, 5])
    learn = inside & (part > 0.95) & used
    G = grid.G

    def learn_pass(profiles, prof_ok, reject_sigma):
        acc = np.zeros((n_regions, G, G * G))
        acc_count = np.zeros(n_regions, dtype=np.int64)
        res = np.zeros((len(wbox), N_RES))
        ires = np.zeros((len(wbox), N_IRES), dtype=np.int64)
        for k, geo in enumerate(win.pan_geo):
            sel = np.nonzero(panel_of == k)[0].astype(np.int64)
            if not len(sel):
                continue
            o, f, s, px, py = geo
            process_shoeboxes(sel, win.pool, win.pool_mask, win.off, wbox, pb, fr.e1, fr.e2, fr.s1e, fr.zeta, fr.phi,
                              xyz, o, f, s, px, py, math.radians(scan.oscillation[0]),
                              math.radians(scan.oscillation[1]), scan.array_range[0], model.delta_b,
                              model.delta_m, model.n_sigma, BACKGROUND_ALGORITHMS[params.background_algorithm],
                              params.tuning_constant, params.min_background_pixels,
                              params.valid_foreground_threshold, reject_sigma, SPIKE_MAX_PIXELS, profiles, prof_ok,
                              region, bool(prof_ok.any()), learn, acc, acc_count, 5, G, grid.R, grid.w, res, ires)
        return acc, acc_count

    acc, acc_count = learn_pass(np.zeros((n_regions, G, G * G)), np.zeros(n_regions, dtype=np.bool_), 0.0)
    refs.sum = acc.reshape(n_regions, G, G, G)
    refs.count = acc_count
    if params.spike_sigma > 0:
        # again, leaving out the pixels that are spikes (zingers) against the first profiles
        first, first_ok = refs.finalise(params.min_reference)
        if first_ok.any():
            acc, acc_count = learn_pass(first.reshape(n_regions, G, G * G), first_ok, params.spike_sigma)
            refs.sum = acc.reshape(n_regions, G, G, G)
            refs.count = acc_count
    return int(acc_count.sum())


def _reference_job(plan: SweepPlan, params: IntegrateParams):
    """Read windows around references; estimate σ_b, σ_m; learn reference profiles."""
    from ..io.images import open_imageset
    t0 = time.perf_counter()
    e = plan.experiment
    scan = e.scan
    reader = open_imageset(e.imageset, scan)
    static = _static_masks(reader, e)
    pred = plan.pred
    rows = plan.reference
    xyz = pred["xyzcal.px"][rows]
    panel_of = pred["panel"][rows].astype(np.int64)
    wbox = _reference_windows(xyz, plan.ref_bbox_half, scan)
    za, zb = scan.array_range
    pool, pool_mask, off = _read_into_pool(reader, e, wbox, xyz, panel_of, za, zb, static)
    win = _RefWindows(pool, pool_mask, off, wbox, plan.frames.select(rows), xyz, panel_of,
                      [_panel_geometry(p) for p in e.detector.panels])
    info = {"n_reference": int(len(rows))}
    sigma_b, sigma_m, used = _estimate_sigmas(plan, params, win)
    model = ProfileModel(sigma_b, sigma_m, params.n_sigma)
    info.update(sigma_b_deg=math.degrees(sigma_b), sigma_m_deg=math.degrees(sigma_m),
                n_used_for_sigma=int(np.sum(used)))
    grid = GridSpec(params.grid_size)
    region_all, n_regions = region_index(e, pred["xyzcal.px"], pred["panel"], 3, params.scan_step)
    refs = ReferenceProfiles(n_regions, grid)
    if params.profile_fitting:
        info["n_learned"] = _learn_profiles(plan, params, model, win, region_all[rows], used, refs)
    info["seconds"] = time.perf_counter() - t0
    return model, refs, info


def _integrate_job(plan: SweepPlan, rows: np.ndarray, bbox: np.ndarray, model: ProfileModel, profiles,
                   prof_ok, params: IntegrateParams):
    """Integrate the predictions ``rows`` of one sweep (one block of images)."""
    from ..io.images import open_imageset
    e = plan.experiment
    scan = e.scan
    reader = open_imageset(e.imageset, scan)
    static = _static_masks(reader, e)
    pred = plan.pred
    xyz = pred["xyzcal.px"][rows]
    panel_of = pred["panel"][rows].astype(np.int64)
    bb = bbox[rows]
    f_lo, f_hi = int(bb[:, 4].min()), int(bb[:, 5].max())
    pool, pool_mask, off = _read_into_pool(reader, e, bb, xyz, panel_of, f_lo, f_hi, static)
    fr = plan.frames.select(rows)
    grid = GridSpec(params.grid_size)
    G = grid.G
    region_all, n_regions = region_index(e, pred["xyzcal.px"], pred["panel"], 3, params.scan_step)
    region = region_all[rows]
    res = np.zeros((len(rows), N_RES))
    ires = np.zeros((len(rows), N_IRES), dtype=np.int64)
    learn = np.zeros(len(rows), dtype=np.bool_)
    acc = np.zeros((1, G, G * G))
    acc_count = np.zeros(1, dtype=np.int64)
    do_fit = bool(params.profile_fitting and prof_ok.any())
    prof = profiles.reshape(len(profiles), G, G * G) if do_fit else np.zeros((n_regions, G, G * G))
    for k, p in enumerate(e.detector.panels):
        sel = np.nonzero(panel_of == k)[0].astype(np.int64)
        if not len(sel):
            continue
        o, f, s, px, py = _panel_geometry(p)
        process_shoeboxes(sel, pool, pool_mask, off, bb, bb, fr.e1, fr.e2, fr.s1e, fr.zeta, fr.phi, xyz,
                          o, f, s, px, py, math.radians(scan.oscillation[0]), math.radians(scan.oscillation[1]),
                          scan.array_range[0], model.delta_b, model.delta_m, model.n_sigma,
                          BACKGROUND_ALGORITHMS[params.background_algorithm], params.tuning_constant,
                          params.min_background_pixels, params.valid_foreground_threshold,
                          params.spike_sigma, SPIKE_MAX_PIXELS, prof, prof_ok, region, do_fit, learn, acc, acc_count,
                          5, G, grid.R, grid.w, res, ires)
    return rows, res, ires


# --------------------------------------------------------------------------- planning

def _plan_sweep(index: int, experiment: Experiment, table: ReflectionTable | None, params: IntegrateParams) -> SweepPlan:
    name = sweep_name(experiment, index)
    e = experiment
    if e.crystal is None or e.scan is None or e.goniometer is None or e.is_still:
        raise XtalError(f"{name}: integration needs a rotation sweep with a crystal model")
    d_min = params.d_min
    A_sp = e.crystal.A_at_scan_points  # scan-varying crystal: A per image boundary, as dials.integrate
    if A_sp is not None and len(A_sp) != e.scan.num_images + 1:
        A_sp = None
    pred = predict_rotation(e.crystal.A, e.beam, e.detector, e.goniometer, e.scan, d_min=d_min,
                            space_group=e.crystal.space_group, A_at_scan_points=A_sp)
    # DIALS's ζ = m2·ê1 (ê1 = s1 × s0 normalised)
    m2 = e.goniometer.rotation_axis_lab / np.linalg.norm(e.goniometer.rotation_axis_lab)
    e1 = np.cross(pred["s1"], e.beam.s0)
    with np.errstate(all="ignore"):
        zeta_d = (e1 @ m2) / np.linalg.norm(e1, axis=1)
    keep = np.abs(np.nan_to_num(zeta_d)) >= params.min_zeta
    z = pred["xyzcal.px"][:, 2]
    za, zb = e.scan.array_range
    keep &= (z >= za) & (z < zb) & np.all(np.isfinite(pred["xyzcal.px"]), axis=1)
    pred = {k: v[keep] for k, v in pred.items()}
    if len(pred["d"]) == 0:
        raise XtalError(f"{name}: the crystal model predicts no reflections on the detector"
                        + (f" to d_min={d_min:g} Å" if d_min else ""))
    frames = kabsch_frames(e, pred["s1"], pred["xyzcal.px"], pred["xyzcal.mm"][:, 2], pred["panel"])
    # references: the input's indexed reflections of this sweep
    ref_rows = np.zeros(0, dtype=np.int64)
    ref_input = np.zeros(0, dtype=np.int64)
    half = (6.0, 6.0, max(3.0, math.ceil(1.0 / abs(e.scan.oscillation[1]))))
    if table is not None and len(table) and "miller_index" in table:
        hkl = table["miller_index"]
        sel = np.any(hkl != 0, axis=1)
        if "flags" in table:
            indexed = (table["flags"] & np.uint64(int(Flags.indexed))) != 0
            if indexed.any():
                sel &= indexed
        if "xyzobs.px.value" in table:
            obs = table["xyzobs.px.value"]
            sel &= np.all(np.isfinite(obs), axis=1)
            obs_z = obs[:, 2]
        else:
            obs_z = table["xyzcal.px"][:, 2] if "xyzcal.px" in table else np.zeros(len(table))
        rows_in = np.nonzero(sel)[0]
        if len(rows_in):
            m = match_to_predictions(pred["miller_index"], pred["xyzcal.px"][:, 2], hkl[rows_in], obs_z[rows_in],
                                     max_dz=max(3.0, 1.0 / abs(e.scan.oscillation[1])))
            ok = m >= 0
            ref_rows, first = np.unique(m[ok], return_index=True)
            ref_input = rows_in[ok][first]
            if "bbox" in table and len(ref_input):
                b = table["bbox"][ref_input].astype(float)
                c = pred["xyzcal.px"][ref_rows]
                hx = np.percentile(np.maximum(c[:, 0] - b[:, 0], b[:, 1] - c[:, 0]), 90)
                hy = np.percentile(np.maximum(c[:, 1] - b[:, 2], b[:, 3] - c[:, 1]), 90)
                hz = np.percentile(np.maximum(c[:, 2] - b[:, 4], b[:, 5] - c[:, 2]), 90)
                half = (float(np.clip(1.5 * hx + 2, 4, 20)), float(np.clip(1.5 * hy + 2, 4, 20)),
                        float(np.clip(hz + 2, 2, 30)))
    if len(ref_rows) > params.max_reference:
        if "intensity.sum.value" in table:
            strength = table["intensity.sum.value"][ref_input]
            pick = np.argsort(-strength, kind="stable")[:params.max_reference]
        else:
            pick = np.random.default_rng(0).choice(len(ref_rows), params.max_reference, replace=False)
        pick = np.sort(pick)
        ref_rows, ref_input = ref_rows[pick], ref_input[pick]
    if len(ref_rows) and params.sigma_b is None:
        ref_rows, ref_input = _isolated(pred["xyzcal.px"], ref_rows, ref_input, half)
    return SweepPlan(index, name, e, pred, frames, ref_rows, ref_input, half)


def _isolated(xyz, ref_rows, ref_input, half):
    """References with no other predicted centre inside their window."""
    from scipy.spatial import cKDTree
    scale = np.array([1.0 / half[0], 1.0 / half[1], 1.0 / half[2]])
    tree = cKDTree(xyz * scale)
    counts = np.array([len(c) for c in tree.query_ball_point(xyz[ref_rows] * scale, r=1.0, p=np.inf)])
    keep = counts <= 1
    if keep.sum() < max(10, 0.2 * len(ref_rows)):
        return ref_rows, ref_input
    return ref_rows[keep], ref_input[keep]


def _blocks(bbox: np.ndarray, budget_bytes: float, min_blocks: int) -> list[np.ndarray]:
    """Split reflections (sorted by first frame) into blocks of bounded shoebox memory."""
    vol = ((bbox[:, 1] - bbox[:, 0]).astype(np.int64) * (bbox[:, 3] - bbox[:, 2])
           * (bbox[:, 5] - bbox[:, 4]))
    order = np.lexsort((bbox[:, 5], bbox[:, 4]))
    cum = np.cumsum(vol[order] * 5.0)
    total = cum[-1] if len(cum) else 0.0
    n_blocks = max(int(math.ceil(total / max(budget_bytes, 1.0))), min_blocks, 1)
    n_blocks = min(n_blocks, max(len(order), 1))
    edges = np.searchsorted(cum, np.linspace(0, total, n_blocks + 1)[1:-1])
    return [b for b in np.split(order, edges) if len(b)]


# --------------------------------------------------------------------------- the stage

def _executor(nproc: int):
    if nproc <= 1:
        return None
    import multiprocessing as mp
    if mp.current_process().daemon:  # e.g. inside a Celery prefork worker
        return None
    from concurrent.futures import ProcessPoolExecutor
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=nproc, mp_context=ctx)


def _run(ex, fn, *args):
    if ex is None:
        class _Done:
            def __init__(self, v):
                self.v = v

            def result(self):
                return self.v
        return _Done(fn(*args))
    return ex.submit(fn, *args)


def _sweep_error(k: int, name: str, message: str) -> SweepError:
    """A failure of sweep k: "name: reason", with the bare reason for callers that name
    the sweeps themselves."""
    reason = message.removeprefix(f"{name}: ")
    return SweepError(f"{name}: {reason}", {k: reason})


def _plan_sweeps(experiments: ExperimentList, reflections: ReflectionTable, params: IntegrateParams):
    """Each sweep's plan (predictions, frames) and the reflections' experiment ids."""
    if reflections is None or len(reflections) == 0:
        raise _sweep_error(0, sweep_name(experiments[0], 0), "the reflection list is empty "
                           "(integration needs indexed reflections to model the profile)")
    ids = reflections["id"] if "id" in reflections else np.zeros(len(reflections), dtype=np.int32)
    plans = []
    for k, e in enumerate(experiments):
        sub = reflections.select(ids == k) if hasattr(reflections, "select") else reflections
        if len(sub) == 0 and params.sigma_b is None:
            raise _sweep_error(k, sweep_name(e, k), "no reflections of this sweep in the reflection list "
                               "(integration needs indexed reflections to model the profile)")
        try:
            plans.append(_plan_sweep(k, e, sub, params))
        except XtalError as exc:
            raise _sweep_error(k, sweep_name(e, k), str(exc)) from None
    return plans, ids


def run_integrate(experiments: ExperimentList, reflections: ReflectionTable, params: IntegrateParams,
                  progress=None) -> tuple[ExperimentList, ReflectionTable, dict]:
    """Integrate every sweep (the stage ``xtal integrate``, dials.integrate).

    Parameters
    ----------
    experiments : ExperimentList
        Refined rotation sweeps (crystal A = U·B in the DIALS lab frame, Å⁻¹) with images.
    reflections : ReflectionTable
        Their indexed reflections (``id`` = experiment): the references of the profile model.
    params : IntegrateParams
        ``d_min`` (Å), σ_b/σ_m overrides (deg), background, profile fitting, ``nproc``.
    progress : callable, optional
        ``progress(fraction)`` as reference and integration jobs finish.

    Returns
    -------
    (experiments, reflections, summary)
        The sweeps with their profile model (``profile``, σ in deg); one row per predicted
        reflection, DIALS's integrated.refl columns (``intensity.sum/prf.*`` in counts, ``xyz*.px``
        in px fast, slow, frame, ``xyzcal.mm`` in mm, mm, rad, ``d`` in Å); per-sweep summaries.

    Examples
    --------
    >>> expts, integrated, summary = run_integrate(refined_expts, refined, IntegrateParams(d_min=1.8))
    """
    t_start = time.perf_counter()
    if len(experiments) == 0:
        raise XtalError("no experiments to integrate")
    plans, ids = _plan_sweeps(experiments, reflections, params)
    ex = _executor(params.nproc)
    n_steps = len(plans) * 2
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done / max(n_steps, 1), 1.0))

    try:
        ref_futures = [_run(ex, _reference_job, p, params) for p in plans]
        models = []
        for p, fut in zip(plans, ref_futures):
            try:
                models.append(fut.result())
            except XtalError as exc:
                raise _sweep_error(p.index, p.name, str(exc)) from None
            tick()
        jobs = []
        min_blocks = max(1, int(math.ceil(params.nproc / len(plans)))) if params.nproc > 1 else 1
        per_sweep = []
        for p, (model, refs, info) in zip(plans, models):
            profiles, prof_ok = refs.finalise(params.min_reference)
            if not params.profile_fitting:
                prof_ok[:] = False
            bbox = compute_bbox(p.experiment, p.frames, p.pred["xyzcal.px"], p.pred["panel"],
                                model.delta_b, model.delta_m)
            blocks = _blocks(bbox, params.block_memory_mb * 1e6, min_blocks)
            per_sweep.append((bbox, profiles, prof_ok, len(blocks)))
            n_steps += len(blocks) - 1
            for rows in blocks:
                jobs.append((p.index, _run(ex, _integrate_job, p, rows, bbox, model, profiles, prof_ok, params)))
        results = {p.index: [] for p in plans}
        for k, fut in jobs:
            results[k].append(fut.result())
            tick()
    finally:
        if ex is not None:
            ex.shutdown()
    tables, sweep_summaries = [], []
    out_experiments = ExperimentList()
    for p, (model, refs, info), (bbox, profiles, prof_ok, nb) in zip(plans, models, per_sweep):
        n = len(p.pred["d"])
        res = np.zeros((n, N_RES))
        ires = np.zeros((n, N_IRES), dtype=np.int64)
        for rows, r_, i_ in results[p.index]:
            res[rows] = r_
            ires[rows] = i_
        info["n_spike_pixels"] = int(ires[:, I_NSPIKE].sum())
        table = _make_table(p, model, bbox, res, ires, reflections, ids, len(tables), params.ice_rings)
        e = p.experiment
        e.profile = model.to_dict()
        out_experiments.append(e)
        tables.append(table)
        sweep_summaries.append(_sweep_summary(p, model, info, table, nb, int(prof_ok.sum()), len(prof_ok)))
    out = ReflectionTable.concatenate(tables) if len(tables) > 1 else tables[0]
    out.experiment_identifiers = {k: e.identifier for k, e in enumerate(out_experiments)}
    summary = {"sweeps": sweep_summaries, "n_integrated_sum": int(sum(s["n_integrated_sum"] for s in sweep_summaries)),
               "n_integrated_prf": int(sum(s["n_integrated_prf"] for s in sweep_summaries)),
               "n_predicted": int(sum(s["n_predicted"] for s in sweep_summaries)),
               "seconds": time.perf_counter() - t_start}
    return out_experiments, out, summary


def integrate_sweep(experiment: Experiment, reflections: ReflectionTable, params: IntegrateParams):
    """Integrate one sweep: :func:`run_integrate` on a one-experiment list.

    Parameters
    ----------
    experiment : Experiment
        A refined rotation sweep with its crystal and image source.
    reflections : ReflectionTable
        Its indexed reflections; their ``id`` must be 0.
    params : IntegrateParams
        As for :func:`run_integrate`.

    Returns
    -------
    tuple
        ``(experiments, reflections, summary)`` as :func:`run_integrate` returns them.

    Examples
    --------
    >>> expts, integrated, summary = integrate_sweep(refined_expts[0], refined.select(refined["id"] == 0),
    ...                                              IntegrateParams())
    """
    return run_integrate(ExperimentList([experiment]), reflections, params)


def _make_table(plan: SweepPlan, model: ProfileModel, bbox, res, ires, reflections, ids, exp_id,
                ice_rings: bool = False) -> ReflectionTable:
    e = plan.experiment
    pred = plan.pred
    n = len(pred["d"])
    status = ires[:, I_STATUS]
    flags = np.full(n, int(Flags.predicted), dtype=np.uint64)

    def setf(cond, flag):
        flags[cond] |= np.uint64(int(flag))

    setf((status & S_SUM_OK) != 0, Flags.integrated_sum)
    setf((status & S_PRF_OK) != 0, Flags.integrated_prf)
    setf((status & S_OVERLOAD) != 0, Flags.overloaded)
    setf((status & S_FG_BAD) != 0, Flags.foreground_includes_bad_pixels)
    setf((status & S_BG_FAIL) != 0, Flags.failed_during_background_modelling)
    setf((status & S_PRF_FAIL) != 0, Flags.failed_during_profile_fitting)
    setf((status & (S_BG_FAIL | S_SUM_OK)) == 0, Flags.failed_during_summation)
    if ice_rings:
        setf(in_ice_ring(pred["d"]), Flags.in_powder_ring)
    if len(plan.reference):
        ref = np.zeros(n, dtype=bool)
        ref[plan.reference] = True
        setf(ref, Flags.reference_spot)
        if "flags" in reflections:
            sub_rows = np.nonzero(ids == plan.index)[0][plan.ref_input_rows]
            carried = reflections["flags"][sub_rows] & np.uint64(
                int(Flags.indexed | Flags.strong | Flags.observed | Flags.used_in_refinement))
            flags[plan.reference] |= carried
    scan = e.scan
    s1 = pred["s1"]
    panel = pred["panel"].astype(np.uint64)
    part = partiality(scan, pred["xyzcal.mm"][:, 2], plan.frames.zeta, model.sigma_m, bbox[:, 4], bbox[:, 5])
    lp = lp_correction(e.beam, e.goniometer, s1)
    qe = qe_correction(e.detector, s1, pred["panel"])
    xyzobs = res[:, [R_X, R_Y, R_Z]]
    xyzvar = res[:, [R_VX, R_VY, R_VZ]]
    mm = np.zeros_like(xyzobs)
    mmvar = np.zeros_like(xyzvar)
    for k, p in enumerate(e.detector.panels):
        sel = pred["panel"] == k
        if np.any(sel):
            mm[sel, :2] = p.pixel_to_millimeter(xyzobs[sel, :2])
            mmvar[sel, 0] = xyzvar[sel, 0] * p.pixel_size[0] ** 2
            mmvar[sel, 1] = xyzvar[sel, 1] * p.pixel_size[1] ** 2
    mm[:, 2] = np.radians(scan.angle_from_frame(xyzobs[:, 2]))
    mmvar[:, 2] = xyzvar[:, 2] * math.radians(scan.oscillation[1]) ** 2
    t = ReflectionTable(experiment_identifiers={exp_id: e.identifier})
    cols = {
        "miller_index": pred["miller_index"], "id": np.full(n, exp_id, dtype=np.int32),
        "panel": panel, "entering": pred["entering"].astype(bool), "s1": s1, "d": pred["d"],
        "xyzcal.px": pred["xyzcal.px"], "xyzcal.mm": pred["xyzcal.mm"], "zeta": plan.frames.zeta,
        "bbox": bbox.astype(np.int32), "flags": flags, "partial_id": np.arange(n, dtype=np.uint64),
        "partiality": part, "lp": lp, "qe": qe,
        "intensity.sum.value": res[:, R_ISUM], "intensity.sum.variance": res[:, R_VSUM],
        "intensity.prf.value": res[:, R_IPRF], "intensity.prf.variance": res[:, R_VPRF],
        "profile.correlation": res[:, R_CORR],
        "background.mean": res[:, R_BG], "background.sum.value": res[:, R_BGSUM],
        "background.sum.variance": res[:, R_BGVAR],
        "xyzobs.px.value": xyzobs, "xyzobs.px.variance": xyzvar,
        "xyzobs.mm.value": mm, "xyzobs.mm.variance": mmvar,
        "num_pixels.valid": ires[:, I_NVALID].astype(np.int32),
        "num_pixels.background": ires[:, I_NBG].astype(np.int32),
        "num_pixels.background_used": ires[:, I_NBG].astype(np.int32),
        "num_pixels.foreground": ires[:, I_NFG].astype(np.int32),
        "imageset_id": np.full(n, exp_id, dtype=np.int32),
    }
    for k, v in cols.items():
        t[k] = v
    return t


def resolution_bins(d: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin edges in d (descending) with equal numbers of reflections per 1/d³ shell."""
    s3 = np.sort(1.0 / d ** 3)
    lo, hi = s3[0], s3[-1]
    edges = np.linspace(lo, hi, n_bins + 1)
    return edges ** (-1.0 / 3.0)


def mean_i_over_sigma(intensity: np.ndarray, variance: np.ndarray) -> float | None:
    """⟨I/σ(I)⟩ over the reflections with a positive, finite variance; None if there are none."""
    ok = np.isfinite(intensity) & np.isfinite(variance) & (variance > 0)
    return finite_mean(intensity[ok] / np.sqrt(variance[ok])) if ok.any() else None


def _sweep_summary(plan, model, info, table, n_blocks, n_regions_ok, n_regions) -> dict:
    flags = table["flags"]

    def has(f):
        return (flags & np.uint64(int(f))) != 0

    isum = has(Flags.integrated_sum)
    iprf = has(Flags.integrated_prf)
    d = table["d"]
    rows = []
    if len(d):
        edges = resolution_bins(d, 10)
        inv = 1.0 / d ** 3
        e3 = 1.0 / edges ** 3
        which = np.clip(np.searchsorted(e3, inv, side="right") - 1, 0, len(edges) - 2)
        full = table["partiality"] > 0.99
        for b in range(len(edges) - 1):
            sel = which == b
            s_ok = sel & isum
            p_ok = sel & iprf
            rows.append({
                "d_max": float(edges[b]), "d_min": float(edges[b + 1]),
                "n_full": int(np.sum(sel & full)), "n_partial": int(np.sum(sel & ~full)),
                "n_overloaded": int(np.sum(sel & has(Flags.overloaded))),
                "n_integrated_sum": int(s_ok.sum()), "n_integrated_prf": int(p_ok.sum()),
                # None (not NaN) for an empty shell: the summary is strict JSON
                "mean_background": finite_mean(table["background.mean"][sel]),
                "mean_ios_sum": mean_i_over_sigma(table["intensity.sum.value"][s_ok],
                                                  table["intensity.sum.variance"][s_ok]),
                "mean_ios_prf": mean_i_over_sigma(table["intensity.prf.value"][p_ok],
                                                  table["intensity.prf.variance"][p_ok]),
                "mean_correlation": finite_mean(table["profile.correlation"][p_ok]),
            })
    return {
        "sweep": plan.index, "name": plan.name, "identifier": plan.experiment.identifier,
        "profile_model": model.to_dict(), "n_predicted": int(len(d)),
        "n_reference": int(info.get("n_reference", 0)), "n_learned": int(info.get("n_learned", 0)),
        "n_integrated_sum": int(isum.sum()), "n_integrated_prf": int(iprf.sum()),
        "n_failed_background": int(has(Flags.failed_during_background_modelling).sum()),
        "n_failed_summation": int((~isum).sum()),
        "n_failed_prf": int(has(Flags.failed_during_profile_fitting).sum()),
        "n_overloaded": int(has(Flags.overloaded).sum()),
        "n_bad_foreground": int(has(Flags.foreground_includes_bad_pixels).sum()),
        "n_in_ice_rings": int(has(Flags.in_powder_ring).sum()),
        "n_spike_pixels": int(info.get("n_spike_pixels", 0)),
        "n_blocks": int(n_blocks), "profile_regions_used": f"{n_regions_ok}/{n_regions}",
        "resolution_table": rows,
    }
