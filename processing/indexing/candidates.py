"""From candidate basis vectors to the best crystal model (DIALS's lattice search).

Triples of vectors become Niggli-reduced lattices (duplicates and flat cells
dropped, known-symmetry filter applied); each of the first ``max_refine`` is
evaluated: indices assigned, a supercell halved when ≥ 90 % of its indexed spots
obey one parity condition (DIALS's non-primitive-basis check), A fitted to the
indexed rlps by linear least squares (a quick reciprocal-space refinement), and
ranked with DIALS's weighted score: log₂ fraction indexed, log₂ volume and log₂
rmsd, each relative to the best.
"""
from __future__ import annotations

import math
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
                       accept=None, max_combinations: int = 20000, exclude=None) -> list[np.ndarray]:
    """Reduced, distinct lattices from vector triples; ``accept(R)`` filters (known
    symmetry), ``exclude(R)`` drops lattices too close to ones already found."""
    found: list[np.ndarray] = []
    for n, basis in enumerate(basis_combinations(vectors)):
        if n >= max_combinations or len(found) >= max_lattices:
            break
        R, _ = niggli_reduce(basis)
        lengths = np.linalg.norm(R, axis=1)
        vol = abs(np.linalg.det(R))
        if vol <= np.prod(lengths) / 100 or vol < min_cell_volume:
            continue
        if any(same_lattice(R, F) for F in found):
            continue
        if exclude is not None and exclude(R):
            continue
        if accept is not None and not accept(R):
            continue
        found.append(R)
    return found


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


def rank(cands: list[Candidate]) -> list[Candidate]:
    """DIALS's ModelRankWeighted (power 1, unit weights); best first."""
    if not cands:
        return []
    f = np.log2([c.fraction_indexed for c in cands])
    v = np.log2([c.volume for c in cands])
    r = np.log2([c.rmsd for c in cands])
    score = (f.max() - f) + (v - v.min()) + (r - r.min())
    for c, s in zip(cands, score):
        c.score = float(s)
    return sorted(cands, key=lambda c: c.score)
