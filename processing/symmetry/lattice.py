"""The lattice group of an ensemble, in its Niggli-reduced primitive setting.

Bases are 3×3 arrays whose rows are a, b, c (Å). A change of basis M (integer) makes
new rows ``M @ R`` and new Miller indices ``M @ h`` (``processing.indexing.lattice``).
A lattice symmetry operation is an integer matrix W (det +1) that maps the lattice
onto itself: the metric G = R Rᵀ is kept, ``W G Wᵀ ≈ G``. For a reduced basis every
such W has entries in {-1, 0, 1}, so all 3⁹ candidates are tested at once. Miller
indices transform under W as ``h' = W h`` (rows of W act on the basis vectors).
"""
from __future__ import annotations

import itertools

import numpy as np

from ..indexing.lattice import niggli_reduce
from ..models.crystal import cell_from_real_space


def _candidates() -> np.ndarray:
    """All integer 3×3 matrices with entries in {-1, 0, 1} and determinant +1."""
    vals = np.array(list(itertools.product((-1, 0, 1), repeat=9)), dtype=np.int64).reshape(-1, 3, 3)
    det = np.rint(np.linalg.det(vals.astype(float))).astype(int)
    return vals[det == 1]


_CANDIDATES = _candidates()


def metric(R: np.ndarray) -> np.ndarray:
    """The metric tensor G = R Rᵀ (Å²) of the basis rows R."""
    return R @ R.T


def lattice_operations(R: np.ndarray, max_delta_deg: float = 5.0, relative_length_tolerance: float = 0.05
                       ) -> np.ndarray:
    """The rotations (n, 3, 3 integers) that keep the lattice of the reduced basis R.

    W is kept when the transformed basis vectors have lengths within
    ``relative_length_tolerance`` of the originals and inter-axial angles within
    ``max_delta_deg`` — a tolerance like DIALS's Le Page δ for lattice symmetry.
    The identity comes first.
    """
    G = metric(R)
    Gw = np.einsum("nij,jk,nlk->nil", _CANDIDATES.astype(float), G, _CANDIDATES.astype(float))
    lengths = np.sqrt(np.diag(G))
    lw = np.sqrt(np.clip(np.einsum("nii->ni", Gw), 1e-12, None))
    ok = np.all(np.abs(lw / lengths - 1.0) < relative_length_tolerance, axis=1)
    cos0 = G / np.outer(lengths, lengths)
    cosw = Gw / (lw[:, :, None] * lw[:, None, :])
    angles0 = np.degrees(np.arccos(np.clip(cos0, -1, 1)))
    anglesw = np.degrees(np.arccos(np.clip(cosw, -1, 1)))
    ok &= np.all(np.abs(anglesw - angles0) < max_delta_deg, axis=(1, 2))
    ops = _CANDIDATES[ok]
    ident = np.all(ops == np.eye(3, dtype=int), axis=(1, 2))
    return np.concatenate([ops[ident], ops[~ident]])


def reduce_basis(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(reduced rows, M)``: the Niggli-reduced basis ``M @ R`` (right-handed)."""
    reduced, M = niggli_reduce(R)
    return reduced, np.asarray(M, dtype=int)


def average_reduced_basis(bases: list[np.ndarray], ops: np.ndarray | None = None) -> np.ndarray:
    """The mean of reduced bases after aligning each to the first by a lattice operation
    (each basis's metric is compared, so orientation does not matter): rows a, b, c."""
    ref = bases[0]
    G0 = metric(ref)
    out = []
    for R in bases:
        if ops is None:
            out.append(metric(R))
            continue
        best = min(ops, key=lambda W: float(np.abs(W @ metric(R) @ W.T - G0).sum()))
        out.append(best @ metric(R) @ best.T)
    G = np.mean(out, axis=0)
    # a basis with that metric: Cholesky gives lower-triangular rows
    return np.linalg.cholesky(G)


def cell_of_metric(G: np.ndarray) -> tuple[float, ...]:
    return cell_from_real_space(np.linalg.cholesky(G))


def rotation_order_and_axis(W: np.ndarray, R: np.ndarray) -> tuple[int, np.ndarray, int]:
    """``(order, axis, sense)`` of the lattice rotation W in basis R: the order n (1, 2, 3,
    4, 6), the rotation axis as the smallest integer direction [u v w] in that basis (the
    direct-lattice vector u a + v b + w c it keeps), and ±1 for nᵏ vs n⁻ᵏ."""
    Wf = W.astype(float)
    trace = int(round(np.trace(Wf)))
    order = {3: 1, -1: 2, 0: 3, 1: 4, 2: 6}[trace]
    if order == 1:
        return 1, np.zeros(3, int), 1
    # direct-lattice directions transform with W⁻ᵀ: (u a + v b + w c) is kept when Wᵀ u = u
    evals, evecs = np.linalg.eig(Wf.T)
    k = int(np.argmin(np.abs(evals - 1.0)))
    u = np.real(evecs[:, k])
    u = u / np.max(np.abs(u))
    for scale in range(1, 7):
        v = u * scale
        if np.allclose(v, np.rint(v), atol=1e-6):
            u = np.rint(v).astype(int)
            break
    else:
        u = np.rint(u * 6).astype(int)
    g = np.gcd.reduce(np.abs(u[u != 0])) if np.any(u) else 1
    u = u // max(int(g), 1)
    if u[np.nonzero(u)[0][0]] < 0:
        u = -u
    # the sense: sign of the rotation about +axis in Cartesian space
    if order == 2:
        return 2, u, 1
    axis = u @ R
    cart = np.linalg.inv(R) @ Wf.T @ R  # the rotation in Cartesian (row-vector) form
    rot = cart.T
    sense = np.sign(np.dot(axis, [rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]]))
    return order, u, int(sense) if sense else 1


def operator_name(W: np.ndarray, R: np.ndarray) -> str:
    """A lattice rotation as DIALS names it: ``4 |(1, 1, 0)``, ``3^-1 |(1, 0, 0)``, ``1``."""
    order, axis, sense = rotation_order_and_axis(W, R)
    if order == 1:
        return "1"
    head = f"{order}" if sense > 0 or order == 2 else f"{order}^-1"
    return f"{head} |({axis[0]}, {axis[1]}, {axis[2]})"


def xyz_string(W: np.ndarray) -> str:
    """The reindexing operator of W in cctbx's x,y,z form (``x,x-y,x-z``): the new
    Miller index h' = W h written as the row vectors of W over (x, y, z) = (h, k, l)."""
    out = []
    for row in np.asarray(W, dtype=int):
        terms = ""
        for c, name in zip(row, "xyz"):
            if c == 0:
                continue
            sign = "-" if c < 0 else ("+" if terms else "")
            mag = "" if abs(c) == 1 else str(abs(c))
            terms += f"{sign}{mag}{name}"
        out.append(terms or "0")
    return ",".join(out)
