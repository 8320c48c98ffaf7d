"""Lattice search: from spots to refined, accepted crystal models (dials.index's
basis-vector search, ``multiple_lattice_search`` and refinement macro-cycles).

A new lattice is searched among the spots that no accepted lattice predicts. The
basis-vector search (``method=``; with a known cell also the real-space grid search
of that cell, DIALS's method for narrow wedges and several crystals: after the
chosen method for one lattice, before it when ``max_lattices > 1``) gives candidate
lattices, ranked as DIALS ranks them. The best few are tried in turn: the candidate
is refined alone on those spots over ``n_macro_cycles`` (resolution widened to all
spots; first cycle by hkl tolerance, then only the spots it predicts, below) and
*accepted* only if it then predicts at least ``min_lattice_spots`` spots with a
positional RMSD √(X² + Y²) ≤ ``max_rmsd_xy`` px and a φ RMSD ≤ ``max_rmsd_z``
images. A first lattice that no candidate meets is an XtalError naming the best
one's numbers; for later lattices the search ends there. The accepted lattices then
share the spots and are refined again: each spot goes to the one lattice that
predicts its X, Y, φ best in units of that lattice's RMSDs; a lattice *predicts* a
spot within 5 RMSDs (at least 1 px and 3 images). So a lattice no longer holds the
spots of the others that its hkl tolerance happens to reach; a spot no lattice
predicts still goes, as in DIALS, to the nearest-integer hkl within the tolerance.

Each refinement also moves the detector (``refine_detector``, ``detector_choice``:
the beam-centre shifts, the distance on wedges of ≥ 10°, tilts and beam fixed, as
DIALS's ``detector.fix`` would fix what a narrow wedge cannot determine), and the spots
are re-mapped to reciprocal space from the refined geometry before the next
assignment; a refused candidate's geometry is dropped.

The limits (3 px, 6 images, 20 spots) come from what true and false lattices
measure, refined with the geometry fixed (before the detector was refined): true
lattices of simulated 1° wedges refine to 0.02–0.45 px and 0.05–1.2 images (1.2
with a 1.3 mm header distance error); those of the real 1° l-cysteine wedges
(10 × 0.1°) to 0.5 and 2.0 px and 4.6 and 5.2 images, because a narrow wedge cuts
most spots and biases their φ centroids by up to half the wedge. False lattices
(random spots within ``hkl_tolerance`` of some lattice point) refine to 5.4–19 px
and 7–25 images. So XY is the discriminating limit, at 3 px (DIALS's stills indexer
refuses candidates above ``rmsd_min_px`` = 2 px; its rotation indexer has no
limit); φ is a loose bound in images, since half an image or the mosaic spread
would refuse true narrow-wedge lattices. With the geometry fixed, a header beam
centre 2.5 px off made the true lattice refine to 2.4 px and 15 images (refused);
refining the shifts brings it back within the limits.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import numpy as np

from ..errors import XtalError
from .assign import assign_indices, best_lattice
from .candidates import candidate_lattices, evaluate, expand_to_superlattice, rank
from .fft1d import fft1d_basis_vectors
from .fft3d import fft3d_basis_vectors
from .known_cell import TargetSymmetry, real_space_grid_search
from .lattice import cell_volume, closest_rotation, rotation_angle_deg
from .params import IndexParams
from .refine_static import predict, refine_crystal

N_TRIED = 3  # ranked candidates refined per method before a search gives up

_PROPER = [np.array(s)[:, None] * np.eye(3)[list(p)] for p in itertools.permutations(range(3))
           for s in itertools.product((1, -1), repeat=3)]
_PROPER = np.array([m for m in _PROPER if np.linalg.det(m) > 0])  # 24 axis permutations with signs


def misorientation_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    """Smallest rotation (deg) taking lattice 2 onto lattice 1 over the cubic-like
    equivalent bases (sign permutations of the reduced axes, rows a, b, c in Å)."""
    return _Misorientation(R2)(R1)


class _Misorientation:
    """Rotation (deg) from a fixed lattice R2 to others of about the same cell: of the 24
    equivalent bases of R2, the one whose transform to R1 is nearest a rotation (largest
    trace) is polar-decomposed."""

    def __init__(self, R2: np.ndarray):
        self.inv = np.linalg.inv(_PROPER @ R2)  # 24 × 3 × 3

    def __call__(self, R1: np.ndarray) -> float:
        M = self.inv @ R1
        Q = closest_rotation(M[int(np.argmax(np.trace(M, axis1=1, axis2=2)))])
        return rotation_angle_deg(Q)


def search_candidates(spots, sel: np.ndarray, params: IndexParams, target: TargetSymmetry, max_cell: float,
                      found: list[np.ndarray]):
    """Yield ``(R, d_min, method)``: candidate lattices (reduced real-space rows, Å) among
    the spots ``sel``, best first within each method (at most ``N_TRIED`` per method).
    Raises the search's XtalError when no method found a candidate and nothing was found before."""
    rlp = spots.rlp[sel]
    ent, iset = spots.entering[sel], spots.imageset[sel]

    near = [_Misorientation(F) for F in found]

    def exclude(R):
        return any(m(R) < params.minimum_angular_separation for m in near)

    accept = target.matches if target.active else None
    methods = [params.method]
    if target.unit_cell is not None and params.method != "real_space_grid_search":
        # several crystals of a known cell: the grid search first (DIALS's advice for
        # multiple lattices and narrow wedges), the chosen method as the fallback
        methods.insert(0 if params.max_lattices > 1 else 1, "real_space_grid_search")
    last_error, n_yielded = None, 0
    for method in methods:
        d_min = None
        try:
            if method == "fft3d":
                vectors, d_min = fft3d_basis_vectors(rlp, max_cell, params.min_cell, params.n_points, params.d_min)
            elif method == "fft1d":
                vectors = fft1d_basis_vectors(rlp, max_cell, params.min_cell)
            else:
                vectors = real_space_grid_search(rlp, target.reduced_cell)
        except XtalError as e:
            last_error = e
            continue
        dm = d_min if d_min is not None else float(spots.d[sel].min())
        use = spots.d[sel] >= dm
        lattices = candidate_lattices(vectors, params.min_cell_volume, params.max_refine, accept,
                                      exclude=exclude if found else None, volume_window=_volume_window(target, params))
        cands = []
        for R in lattices:
            c = evaluate(R, rlp[use], ent[use], iset[use], params.hkl_tolerance,
                         min_cell_volume=params.min_cell_volume, check_primitive=not target.active)
            if c is not None and (accept is None or accept(c.R)):
                cands.append(c)
        for best in rank(cands)[:N_TRIED]:
            best = _misindexing_check(best, rlp[use], ent[use], iset[use], params, target, accept)
            n_yielded += 1
            yield best.R, dm, method
    if n_yielded == 0 and last_error is not None and not found:
        raise last_error


def _volume_window(target: TargetSymmetry, params: IndexParams) -> tuple[float, float] | None:
    """Primitive-cell volumes (Å³) a lattice matching the known cell can have."""
    if target.reduced_cell is None:
        return None
    v = cell_volume(target.reduced_cell)
    t = params.relative_length_tolerance
    return v * (1 - t) ** 3 * 0.98, v * (1 + t) ** 3 * 1.02


def _misindexing_check(best, rlp, ent, iset, params: IndexParams, target: TargetSymmetry, accept):
    """Many spots on a half/third-integer coset: the cell m× larger (see candidates.py)."""
    for _ in range(2):
        R_big = expand_to_superlattice(best.R, rlp, params.hkl_tolerance)
        if R_big is None or (accept is not None and not accept(R_big)):
            break
        c = evaluate(R_big, rlp, ent, iset, params.hkl_tolerance,
                     min_cell_volume=params.min_cell_volume, check_primitive=False)
        if c is None or c.n_indexed < 1.1 * best.n_indexed:
            break
        best = c
    return best


# a refined crystal predicts a spot when it is within N_SIGMA of its RMSDs, and never
# tighter than these (px, images): φ centroids of partials cut by a narrow wedge's ends
# are biased by up to a few images. A spot predicted by none goes, as in DIALS, to the
# crystal with the nearest-integer hkl (its score is OFF_GATE + the normalised residual)
N_SIGMA = 5.0
MIN_GATE_XY_PX = 1.0
MIN_GATE_Z_IMAGES = 3.0
OFF_GATE = 1e6


def prediction_scores(spots, A: np.ndarray, rmsd: tuple, sel: np.ndarray, params: IndexParams):
    """Per spot, the nearest-integer hkl of crystal A and its squared residual between
    observed and predicted X, Y (px) and φ (images) in units of the crystal's RMSDs
    ``rmsd`` (X, Y px; Z images), plus ``OFF_GATE`` where it is predicted beyond the
    gate (module constants); inf where hkl is off by more than ``hkl_tolerance``, not
    predicted, or outside ``sel``."""
    frac = spots.rlp @ np.linalg.inv(A).T
    hkl = np.rint(frac)
    ok = sel & np.all(np.abs(frac - hkl) < params.hkl_tolerance, axis=1) & np.any(hkl != 0, axis=1)
    score = np.full(len(hkl), np.inf)
    s_xy = max(math.hypot(rmsd[0], rmsd[1]), 0.05)
    s_z = max(rmsd[2], 0.05)
    gate_xy, gate_z = max(N_SIGMA * s_xy, MIN_GATE_XY_PX), max(N_SIGMA * s_z, MIN_GATE_Z_IMAGES)
    obs = spots.cols["xyzobs.mm.value"]
    for j, e in enumerate(spots.experiments):
        rows = np.nonzero(ok & (spots.imageset == j))[0]
        if not len(rows):
            continue
        cal, _, _, valid = predict(A, e, hkl[rows], obs[rows, 2], spots.cols["panel"][rows])
        px = np.asarray(e.detector[0].pixel_size)
        d_xy = np.hypot(*((cal[:, :2] - obs[rows, :2]) / px).T)
        d_z = np.abs(cal[:, 2] - obs[rows, 2]) / math.radians(e.scan.oscillation[1])
        s2 = (d_xy / s_xy) ** 2 + (d_z / s_z) ** 2
        score[rows[valid]] = np.where((d_xy <= gate_xy) & (d_z <= gate_z), s2, OFF_GATE + np.minimum(s2, 1e5))[valid]
    return hkl, score


def assign_predicted(spots, A_list: list[np.ndarray], rmsds: list[tuple], sel: np.ndarray, params: IndexParams):
    """(miller_index, lattice id, predicted) of every spot: the refined crystal that
    predicts it best; ``predicted`` is False where no crystal predicts it within its gate."""
    pairs = [prediction_scores(spots, A, r, sel, params) for A, r in zip(A_list, rmsds)]
    hkl, cid, score = best_lattice([p[0] for p in pairs], [p[1] for p in pairs], spots.entering, spots.imageset,
                                   n=len(spots))
    return hkl, cid, (cid >= 0) & (score < OFF_GATE)


# fewest spots on which the detector is refined with a lattice; below, it stays fixed
MIN_SPOTS_DETECTOR = 30
# narrowest total wedge (deg) on which ``refine_detector=auto`` also refines the distance:
# on narrower ones it is degenerate with the cell's scale
MIN_WEDGE_DISTANCE_DEG = 10.0


def detector_choice(spots, sel: np.ndarray, params: IndexParams) -> str:
    """What of the detector is refined with a lattice on the spots ``sel`` (DIALS's
    ``detector.fix`` chosen automatically): none on too few spots; with ``auto`` the
    shifts, and the distance too when the sweeps span at least MIN_WEDGE_DISTANCE_DEG."""
    if params.refine_detector == "none" or sel.sum() < MIN_SPOTS_DETECTOR:
        return "none"
    if params.refine_detector != "auto":
        return params.refine_detector
    wedge = max(e.scan.num_images * abs(e.scan.oscillation[1]) for e in spots.experiments)
    return "shift+distance" if wedge >= MIN_WEDGE_DISTANCE_DEG else "shift"


def _refine(spots, A: np.ndarray, sel: np.ndarray, hkl: np.ndarray, params: IndexParams | None = None):
    """Refine one crystal on the spots ``sel`` (P1, X, Y, φ; the detector as
    ``detector_choice`` says, after which the spots are re-mapped to reciprocal space),
    with DIALS's sanity check on the volume."""
    if sel.sum() < 10:
        raise XtalError(f"too few indexed reflections ({int(sel.sum())}) to refine a lattice")
    blocks = spots.blocks(sel, hkl)
    res = refine_crystal(A, blocks, "a", detector=detector_choice(spots, sel, params) if params else "none")
    v0, v1 = abs(np.linalg.det(np.linalg.inv(A))), abs(np.linalg.det(np.linalg.inv(res.A)))
    if abs(v1 - v0) / v0 > 0.5:
        raise XtalError(f"unrealistic unit cell volume change during refinement ({100 * (v1 - v0) / v0:.0f}%)")
    if res.experiments is not None:
        spots.set_experiments([next((r for b, r in zip(blocks, res.experiments) if b.experiment is e), e)
                               for e in spots.experiments])
    return res


def lattice_quality(res, n_indexed: int) -> dict:
    """The numbers the acceptance limits are checked against."""
    x, y, z = res.rmsd_px_img
    return {"n_indexed": int(n_indexed), "rmsd_xy_px": math.hypot(x, y), "rmsd_z_images": float(z)}


def rejection(q: dict, params: IndexParams) -> str | None:
    """Why a lattice with quality ``q`` is refused (None: it is accepted)."""
    why = []
    if q["n_indexed"] < params.min_lattice_spots:
        why.append(f"{q['n_indexed']} spots < min_lattice_spots={params.min_lattice_spots}")
    if not q["rmsd_xy_px"] <= params.max_rmsd_xy:
        why.append(f"RMSD_XY {q['rmsd_xy_px']:.2f} px > max_rmsd_xy={params.max_rmsd_xy:g}")
    if not q["rmsd_z_images"] <= params.max_rmsd_z:
        why.append(f"RMSD_Z {q['rmsd_z_images']:.2f} images > max_rmsd_z={params.max_rmsd_z:g}")
    return "; ".join(why) or None


def refine_candidate(spots, A: np.ndarray, pool: np.ndarray, params: IndexParams, d_start: float):
    """``n_macro_cycles`` of assignment and refinement of one new crystal on the spots
    ``pool`` (those no accepted lattice indexes), the resolution widened from ``d_start``
    to all spots; from the second cycle a spot is indexed only where the crystal
    predicts it. Returns (A, refinement result, quality)."""
    d_all = float(spots.d.min())
    n_cycles = params.n_macro_cycles
    step = (d_start - d_all) / (n_cycles - 1) if n_cycles > 1 and d_start > d_all else 0.0
    res = None
    for i in range(n_cycles + 1):
        d_cut = max(d_start - i * step, 0.0) if i < n_cycles - 1 else 0.0
        use = pool & (spots.d >= d_cut - 1e-9)
        if res is None:
            hkl, cid, _ = assign_indices(spots.rlp, [A], params.hkl_tolerance, spots.entering, spots.imageset,
                                         allowed=use[:, None])
            predicted = cid == 0
        else:
            hkl, cid, predicted = assign_predicted(spots, [A], [res.rmsd_px_img], use, params)
        if i == n_cycles:  # the last assignment, with the final model
            break
        res = _refine(spots, A, predicted, hkl, params)
        A = res.A
    return A, res, lattice_quality(res, int(np.sum(predicted)))


def refine_together(spots, A_list: list[np.ndarray], results: list, params: IndexParams):
    """Every spot to the accepted lattice that predicts it best, each lattice refined on
    its own spots, and the assignment again. Returns A list, results, hkl, lattice ids."""
    everything = np.ones(len(spots), bool)
    hkl, cid, predicted = assign_predicted(spots, A_list, [r.rmsd_px_img for r in results], everything, params)
    new_results = []
    for k, A in enumerate(A_list):
        mine = predicted & (cid == k)
        new_results.append(_refine(spots, A, mine, hkl, params) if mine.sum() >= 10 else results[k])
    A_list = [r.A for r in new_results]
    hkl, cid, predicted = assign_predicted(spots, A_list, [r.rmsd_px_img for r in new_results], everything, params)
    return A_list, new_results, hkl, cid, predicted


def _try_candidates(spots, A_list, pool, params, target, max_cell, d_start):
    """The first candidate among the spots ``pool`` (those no accepted lattice predicts) that refines and
    meets the limits: (A, result, d_start) or (None, the best refused quality, d_start)."""
    found = [np.linalg.inv(A) for A in A_list]
    best_refused = None
    geometry = list(spots.experiments)
    for R, dm, _method in search_candidates(spots, pool, params, target, max_cell, found):
        d0 = dm if d_start is None else d_start
        try:
            A, res, q = refine_candidate(spots, np.linalg.inv(R), pool, params, d0)
        except XtalError as e:
            spots.set_experiments(geometry)  # a refused candidate's detector is not kept
            if best_refused is None:
                best_refused = {"reason": str(e)}
            continue
        why = rejection(q, params)
        if why is None:
            return A, res, d0
        spots.set_experiments(geometry)
        q = dict(q, reason=why)
        if best_refused is None or "rmsd_xy_px" not in best_refused or \
                q["rmsd_xy_px"] < best_refused["rmsd_xy_px"]:
            best_refused = q
    return None, best_refused, d_start


def find_lattices(spots, params: IndexParams, target: TargetSymmetry, max_cell: float):
    """Search, refine and accept lattices until ``max_lattices``, too few unindexed spots,
    or no acceptable candidate. Returns the refined A matrices, their refinement results,
    each lattice's quality (spots, RMSDs), and every spot's Miller index and lattice id (−1)."""
    A_list: list[np.ndarray] = []
    results: list = []
    cid = np.full(len(spots), -1)
    predicted = np.zeros(len(spots), bool)
    hkl = np.zeros((len(spots), 3), np.int32)
    d_start = None
    while len(A_list) < params.max_lattices:
        if A_list:
            if not predicted.any():
                break
            d_idx = float(spots.d[predicted].min())
            inner = spots.d > d_idx
            if np.sum(inner & ~predicted) < params.recycle_unindexed_reflections_cutoff * np.sum(inner):
                break
            if np.sum(~predicted) < max(params.min_spots, params.min_lattice_spots):
                break
        try:
            A_new, res_new, d_start = _try_candidates(spots, A_list, ~predicted, params, target, max_cell, d_start)
        except XtalError:
            if not A_list:
                raise
            break
        if A_new is None:
            if not A_list:
                raise XtalError(_refusal_message(res_new, params))
            break
        A_list, results, hkl, cid, predicted = refine_together(spots, A_list + [A_new], results + [res_new], params)
    qualities = [lattice_quality(r, int(np.sum(predicted & (cid == k)))) for k, r in enumerate(results)]
    return A_list, results, qualities, hkl, cid


BEAM_SEARCH_PX = 3.0  # radius of the ring of beam centres tried when the header's gives no lattice
BEAM_SEARCH_DIRECTIONS = 8


def shifted_experiments(experiments: list, shift_px) -> list:
    """Copies of the experiments with every panel moved in its plane by ``shift_px``
    (fast, slow px): the beam centre moves by −shift_px."""
    out = []
    for e in experiments:
        det = copy.deepcopy(e.detector)
        for p in det.panels:
            p.origin = p.origin + shift_px[0] * p.pixel_size[0] * p.fast_axis + shift_px[1] * p.pixel_size[1] * p.slow_axis
        out.append(dataclasses.replace(e, detector=det))
    return out


def search_beam_position(spots, params: IndexParams, index):
    """``index()`` (any XtalError: no acceptable lattice) from the header geometry; if it
    fails (and ``beam_search``), again from the beam centre moved BEAM_SEARCH_PX px in
    BEAM_SEARCH_DIRECTIONS directions, keeping the first that indexes (a small
    dials.search_beam_position scored by the lattice search itself). The spots keep the
    geometry that indexed; the header's error is raised if none does."""
    header = list(spots.experiments)
    try:
        return index()
    except XtalError as e:
        if not params.beam_search or params.refine_detector == "none":
            raise
        error = e
    for k in range(BEAM_SEARCH_DIRECTIONS):
        a = 2 * math.pi * k / BEAM_SEARCH_DIRECTIONS
        spots.set_experiments(shifted_experiments(header, (BEAM_SEARCH_PX * math.cos(a), BEAM_SEARCH_PX * math.sin(a))))
        try:
            return index()
        except XtalError:
            continue
    spots.set_experiments(header)
    raise error


def _refusal_message(best: dict | None, params: IndexParams) -> str:
    limits = (f"limits: at least min_lattice_spots={params.min_lattice_spots} spots, "
              f"RMSD_XY ≤ max_rmsd_xy={params.max_rmsd_xy:g} px, RMSD_Z ≤ max_rmsd_z={params.max_rmsd_z:g} images")
    if best is None:
        return "no suitable lattice could be found"
    if "rmsd_xy_px" not in best:
        return f"no candidate lattice could be refined ({best['reason']})"
    return (f"no lattice meets the acceptance limits ({limits}): the best candidate indexed "
            f"{best['n_indexed']} spots with RMSD_XY {best['rmsd_xy_px']:.2f} px and RMSD_Z "
            f"{best['rmsd_z_images']:.2f} images")
