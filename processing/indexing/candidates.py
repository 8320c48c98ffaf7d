"""From candidate basis vectors to the best crystal model (DIALS's lattice search).

Triples of vectors become Niggli-reduced lattices (duplicates and flat cells
dropped, known-symmetry filter applied); each of the first ``max_refine`` is
evaluated: indices assigned, a supercell halved when ≥ 90 % of its indexed spots
obey one parity condition (DIALS's non-primitive-basis check), A fitted to the
indexed rlps by linear least squares (a quick reciprocal-space refinement), and
ranked with DIALS's weighted score: log₂ fraction indexed, log₂ volume and log₂
rmsd, each relative to the best.

That score cannot tell a lattice from a real-space superlattice of index m (a cell
m times too small: its reciprocal lattice is a sublattice of the true one, so it
indexes only ~1/m of the spots, and log₂ m lost on the fraction indexed is won
back on the volume — for m = 2 the two tie and the rmsd decides). So before the
score, duplicates are merged and a candidate is *dominated* and dropped when
another candidate's lattice is an index-m sublattice of its own (real space) that
indexes clearly more spots (n < (1 + 1/m)/2 · n_other) — the reverse of the
non-primitive-basis check. And when the best solution leaves many spots sitting
on a rational coset (fractional hkl ≈ integer + v/m, e.g. half-integers), the
misindexing check ``expand_to_superlattice`` adds that coset to the reciprocal
lattice (the true cell when no candidate had it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .assign import assign_indices
from .lattice import niggli_reduce, same_lattice
from .vectors import basis_combinations

_PARITY = [np.array(v) for v in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1))]


@dataclass
class Candidate:
    R: np.ndarray  # reduced real-space rows
    n_indexed: int = 0
    fraction_indexed: float = 0.0
    rmsd: float = float("inf")
    volume: float = 0.0
    score: float = float("inf")


def candidate_lattices(vectors, min_cell_volume: float = 25.0, max_lattices: int = 50,
                       accept=None, max_combinations: int = 20000, exclude=None,
                       volume_window: tuple[float, float] | None = None) -> list[np.ndarray]:
    """Reduced, distinct lattices from vector triples; ``accept(R)`` filters (known
    symmetry), ``exclude(R)`` drops lattices too close to ones already found, and
    ``volume_window`` (Å³, a known cell's primitive volume ± its tolerance) skips
    triples that cannot be a primitive basis of it before any reduction."""
    found: list[np.ndarray] = []
    found_inv: list[np.ndarray] = []
    for n, basis in enumerate(basis_combinations(vectors)):
        if n >= max_combinations or len(found) >= max_lattices:
            break
        if volume_window is not None and not volume_window[0] <= abs(np.linalg.det(basis)) <= volume_window[1]:
            continue
        R, _ = niggli_reduce(basis)
        lengths = np.linalg.norm(R, axis=1)
        vol = abs(np.linalg.det(R))
        if vol <= np.prod(lengths) / 100 or vol < min_cell_volume:
            continue
        if found_inv and _same_as_any(R, np.array(found_inv)):
            continue
        if accept is not None and not accept(R):
            continue
        if exclude is not None and exclude(R):
            continue
        found.append(R)
        found_inv.append(np.linalg.inv(R))
    return found


def _same_as_any(R: np.ndarray, found_inv: np.ndarray, tol: float = 0.1) -> bool:
    """``same_lattice(R, F)`` for any F, given the stacked inverses of the Fs."""
    M = R @ found_inv
    Mi = np.rint(M)
    near = np.all(np.abs(M - Mi) < tol, axis=(1, 2))
    return bool(np.any(near & (np.abs(np.rint(np.linalg.det(Mi))) == 1)))


def _fit_A(rlp: np.ndarray, hkl: np.ndarray) -> np.ndarray | None:
    H = hkl.astype(float)
    try:
        X, *_ = np.linalg.lstsq(H, rlp, rcond=None)  # rlp ≈ H X, X = Aᵀ
    except np.linalg.LinAlgError:
        return None
    A = X.T
    if abs(np.linalg.det(A)) < 1e-12:
        return None
    return A


def correct_non_primitive(R: np.ndarray, hkl: np.ndarray, threshold: float = 0.9) -> np.ndarray | None:
    """A halved cell when the indexed reflections obey a parity condition, else None."""
    if len(hkl) < 10:
        return None
    for v in _PARITY:
        if np.mean((hkl @ v) % 2 == 0) >= threshold:
            t = (v @ R) / 2.0
            i = int(np.nonzero(v)[0][0])
            new = R.copy()
            new[i] = t
            return niggli_reduce(new)[0]
    return None


def evaluate(R: np.ndarray, rlp: np.ndarray, entering, imageset, hkl_tolerance: float = 0.3,
             n_cycles: int = 3, min_cell_volume: float = 25.0, check_primitive: bool = True) -> Candidate | None:
    for _ in range(3):
        A = np.linalg.inv(R)
        hkl, cid, _ = assign_indices(rlp, [A], hkl_tolerance, entering, imageset)
        sel = cid == 0
        if sel.sum() < 6:
            return None
        new = correct_non_primitive(R, hkl[sel]) if check_primitive else None
        if new is None or abs(np.linalg.det(new)) < min_cell_volume:
            break
        R = new
    for _ in range(n_cycles):
        A_new = _fit_A(rlp[sel], hkl[sel])
        if A_new is None:
            return None
        A = A_new
        hkl, cid, _ = assign_indices(rlp, [A], hkl_tolerance, entering, imageset)
        sel = cid == 0
        if sel.sum() < 6:
            return None
    resid = rlp[sel] - hkl[sel] @ A.T
    rmsd = float(np.sqrt(np.mean(np.einsum("ij,ij->i", resid, resid))))
    R_new = np.linalg.inv(A)
    return Candidate(R=R_new, n_indexed=int(sel.sum()), fraction_indexed=float(sel.mean()),
                     rmsd=max(rmsd, 1e-9), volume=float(abs(np.linalg.det(R_new))))


def _sublattice_index(R_big: np.ndarray, R_small: np.ndarray, tol: float = 0.1) -> int:
    """m when the real-space lattice of ``R_big`` is an index-m sublattice of the one of
    ``R_small`` (R_big = M R_small, M integer, |det M| = m); 0 otherwise."""
    M = R_big @ np.linalg.inv(R_small)
    Mi = np.rint(M)
    if np.any(np.abs(M - Mi) > tol):
        return 0
    return int(abs(round(np.linalg.det(Mi))))


def dedupe(cands: list[Candidate]) -> list[Candidate]:
    """One candidate per lattice (the one indexing most spots)."""
    out: list[Candidate] = []
    for c in sorted(cands, key=lambda c: (-c.n_indexed, c.rmsd)):
        if not any(same_lattice(c.R, o.R, tol=0.05) for o in out):
            out.append(c)
    return out


def drop_dominated(cands: list[Candidate]) -> list[Candidate]:
    """Drop candidates whose lattice is a real-space superlattice (a cell m times too
    small) of another candidate's that indexes clearly more spots."""
    keep = []
    for c in cands:
        dominated = False
        for d in cands:
            if d is c or d.n_indexed <= c.n_indexed:
                continue
            m = _sublattice_index(d.R, c.R)
            if m >= 2 and c.n_indexed < 0.5 * (1.0 + 1.0 / m) * d.n_indexed:
                dominated = True
                break
        if not dominated:
            keep.append(c)
    return keep


def rank(cands: list[Candidate]) -> list[Candidate]:
    """DIALS's ModelRankWeighted (power 1, unit weights) over the distinct, undominated
    candidates; best first."""
    if not cands:
        return []
    cands = drop_dominated(dedupe(cands))
    f = np.log2([c.fraction_indexed for c in cands])
    v = np.log2([c.volume for c in cands])
    r = np.log2([c.rmsd for c in cands])
    score = (f.max() - f) + (v - v.min()) + (r - r.min())
    for c, s in zip(cands, score):
        c.score = float(s)
    return sorted(cands, key=lambda c: c.score)


def _index_m_basis(v: np.ndarray, m: int) -> np.ndarray | None:
    """Integer rows (det ±m) spanning {t ∈ Z³ : t·v ≡ 0 (mod m)}, for v ∈ Z³ not ≡ 0."""
    rng = range(-m, m + 1)
    pts = np.array([(i, j, k) for i in rng for j in rng for k in rng if (i, j, k) != (0, 0, 0)])
    pts = pts[(pts @ v) % m == 0]
    pts = pts[np.argsort(np.abs(pts).sum(axis=1), kind="stable")]
    for a in range(len(pts)):
        for b in range(a + 1, len(pts)):
            ab = np.cross(pts[a], pts[b])
            if not ab.any():
                continue
            for c in range(b + 1, len(pts)):
                det = int(round(ab @ pts[c]))
                if abs(det) == m:
                    return np.array([pts[a], pts[b], pts[c]])
    return None


def expand_to_superlattice(R: np.ndarray, rlp: np.ndarray, hkl_tolerance: float = 0.3,
                           min_fraction: float = 0.05, min_concentration: float = 0.5,
                           orders=(2, 3)) -> np.ndarray | None:
    """Misindexing check: when the spots left unindexed by R mostly sit on one rational
    coset (fractional hkl ≈ integer + v/m; at least ``min_concentration`` of the
    unindexed spots and ``min_fraction`` of all), the reciprocal lattice of R is a
    sublattice of the true one; return the reduced real-space basis of the lattice
    that includes the coset (the cell m times larger), else None. Unindexed spots of
    a right cell (noise, ice, another lattice) spread over all positions and all
    cosets (≈ 3 % each for m = 2), so they never pass."""
    frac = rlp @ R.T  # hkl = A⁻¹ rlp = R rlp
    n = len(frac)
    dev = np.abs(frac - np.rint(frac))
    unindexed = ~np.all(dev < hkl_tolerance, axis=1)
    n_un = int(unindexed.sum())
    need = max(min_fraction * n, min_concentration * n_un, 10)
    if n_un < need:
        return None
    fu = frac[unindexed]
    best = None
    for m in orders:
        scaled = fu * m  # |frac − cls/m| < hkl_tolerance/m: the tolerance of the m× cell
        cls = np.rint(scaled)
        near = np.all(np.abs(scaled - cls) < hkl_tolerance, axis=1)
        if near.sum() < need:
            continue
        keys = cls[near].astype(np.int64) % m
        codes = keys[:, 0] * m * m + keys[:, 1] * m + keys[:, 2]
        counts = np.bincount(codes, minlength=m ** 3)
        counts[0] = 0
        code = int(np.argmax(counts))
        if counts[code] >= need and (best is None or counts[code] > best[0]):
            v = np.array([code // (m * m), (code // m) % m, code % m])
            best = (int(counts[code]), m, v)
    if best is None:
        return None
    _, m, v = best
    M = _index_m_basis(v, m)
    if M is None:
        return None
    return niggli_reduce(M @ R)[0]
