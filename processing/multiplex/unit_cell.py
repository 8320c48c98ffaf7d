"""Unit-cell clustering as dials.cluster_unit_cell / xia2.multiplex: NCDist and single linkage.

Each cell is reduced to its primitive Niggli cell and written as a G6 vector
``(a², b², c², 2bc·cosα, 2ac·cosβ, 2ab·cosγ)`` (Å²). The distance between two lattices
is the Andrews–Bernstein NCDist (J. Appl. Cryst. 2014, 47, 346): the Euclidean G6
distance, shortened where a path through a boundary of the Niggli cone is shorter —
near a boundary, two nearly equal lattices can have Niggli cells far apart in G6 (a ≈ b
swapped, an angle on either side of 90°), and the boundary's transformation glues the
two sides together.

What is implemented (``ncdist_matrix``):

* the direct distance ``|g₁ − g₂|`` and, for the three axis sign flips valid everywhere,
  ``|S g₁ − g₂|``;
* the 15 5-D boundaries of the Niggli cone: g1 = g2, g2 = g3; g4 = 0, g5 = 0, g6 = 0 on
  the +++ and on the −−− side (one hyperplane each; there the remaining two signs flip
  independently, so three transformations per hyperplane serve both sides);
  g4 = ±g2, g5 = ±g1, g6 = ±g1; and the body diagonal g1 + g2 + g4 + g5 + g6 = 0 — each a
  hyperplane through the origin with the change of basis that maps the cone across it
  (a↔b, b↔c, c ∓ b, c ∓ a, b ∓ a, c + a + b);
* each change of basis also composed with the three axis sign flips (after c → c − b, say,
  the signs of g4, g5, g6 can be mixed and the far side's Niggli form flips an axis);
* one-boundary paths ``|g₁ − P_b g₁| + |M_b P_b g₁ − g₂|`` and the same from g₂ (P_b the
  orthogonal projection onto boundary b, M_b its transformation), as NCDist's
  projections of each end onto each boundary;
* two-boundary paths ``|g₁ − P_b g₁| + |M_b P_b g₁ − M_c P_c g₂| + |P_c g₂ − g₂|`` over every
  pair (b, c), as NCDist_2bds;
* the minimum of all of these.

What is not: NCDist's refinement of the crossing point along each boundary (the path's
boundary point is the projection of an end point, not the optimum on the boundary, so a
distance may come out somewhat longer than NCDist's when both cells lie far from the
boundary they are glued across), the distinction between the boundaries' valid
polytopes and the rest of their hyperplanes, paths through three or more boundaries,
and the 7 special-position subspaces. Every path used is a valid lattice path (each jump
joins two G6 vectors of one lattice), so the value is an upper bound of the exact
distance and never above the plain G6 distance. Distances are in Å² (no extra scaling),
so dials.cluster_unit_cell's default threshold 5000 applies directly.
"""
from __future__ import annotations

import gemmi
import numpy as np
from scipy.cluster import hierarchy

from .tree import dendrogram, linkage

CELL_KEYS = ("a", "b", "c", "alpha", "beta", "gamma")


# ---------------------------------------------------------------- G6 and Niggli reduction

def g6_from_cell(cell) -> np.ndarray:
    """G6 vector (Å²) of a cell (a, b, c, α, β, γ), Å and degrees, as given (not reduced)."""
    a, b, c, al, be, ga = (float(x) for x in cell)
    ca, cb, cg = (np.cos(np.radians(x)) for x in (al, be, ga))
    return np.array([a * a, b * b, c * c, 2 * b * c * ca, 2 * a * c * cb, 2 * a * b * cg])


def cell_from_g6(g) -> tuple[float, ...]:
    """(a, b, c, α, β, γ) of a G6 vector."""
    g1, g2, g3, g4, g5, g6 = (float(x) for x in g)
    a, b, c = np.sqrt([g1, g2, g3])
    ang = lambda x, p, q: float(np.degrees(np.arccos(np.clip(x / (2 * p * q), -1.0, 1.0))))
    return (float(a), float(b), float(c), ang(g4, b, c), ang(g5, a, c), ang(g6, a, b))


def _centring(c) -> str:
    if c is None:
        return "P"
    if isinstance(c, gemmi.SpaceGroup):
        return c.centring_type()
    s = str(c).strip()
    if len(s) == 1:
        return s.upper()
    sg = gemmi.find_spacegroup_by_name(s)
    if sg is None:
        raise ValueError(f"unknown space group {c!r}")
    return sg.centring_type()


def niggli_g6(cells, centrings=None) -> np.ndarray:
    """(n, 6) G6 vectors of the primitive Niggli-reduced cells.

    ``centrings``: per cell a lattice centring letter (P, C, I, F, R…), a space group
    symbol or a gemmi.SpaceGroup (None: P for every cell). The reduction is gemmi's
    Křivý–Gruber Niggli reduction with a tolerance of 1e-5 of the mean edge².
    """
    cells = [tuple(float(x) for x in c) for c in cells]
    if centrings is None or isinstance(centrings, (str, gemmi.SpaceGroup)):
        centrings = [centrings] * len(cells)
    out = np.zeros((len(cells), 6))
    for i, (cell, cen) in enumerate(zip(cells, centrings)):
        gv = gemmi.GruberVector(gemmi.UnitCell(*cell), _centring(cen), False)
        eps = 1e-5 * float(np.mean(gv.parameters[:3]))
        gv.niggli_reduce(eps, 1000)
        out[i] = gv.parameters
    return out


# ---------------------------------------------------------------- boundaries

def _metric(g) -> np.ndarray:
    g1, g2, g3, g4, g5, g6 = g
    return np.array([[g1, g6 / 2, g5 / 2], [g6 / 2, g2, g4 / 2], [g5 / 2, g4 / 2, g3]])


def _g6(G) -> np.ndarray:
    return np.array([G[0, 0], G[1, 1], G[2, 2], 2 * G[1, 2], 2 * G[0, 2], 2 * G[0, 1]])


def _basis_change(M3) -> np.ndarray:
    """G6 transformation (6×6) of the change of basis rows' = M3 @ rows."""
    M3 = np.asarray(M3, dtype=np.float64)
    T = np.zeros((6, 6))
    for k in range(6):
        g = np.zeros(6)
        g[k] = 1.0
        T[:, k] = _g6(M3 @ _metric(g) @ M3.T)
    return T


_SWAP_AB = _basis_change([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
_SWAP_BC = _basis_change([[1, 0, 0], [0, 0, 1], [0, 1, 0]])
#: the single-axis sign flips (valid everywhere): flipping a, b or c changes two of g4, g5, g6
SIGN_FLIPS = [np.diag([1, 1, 1, 1, -1, -1.0]), np.diag([1, 1, 1, -1, 1, -1.0]), np.diag([1, 1, 1, -1, -1, 1.0])]


def _boundaries() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, unit normal, 6×6 transformation) for every boundary (one row per transformation)."""
    e = np.eye(6)
    rows = [("g1=g2", e[0] - e[1], _SWAP_AB), ("g2=g3", e[1] - e[2], _SWAP_BC)]
    for k, name in ((3, "g4=0"), (4, "g5=0"), (5, "g6=0")):
        others = [j for j in (3, 4, 5) if j != k]
        for flip in ([others[0]], [others[1]], others):
            d = np.ones(6)
            d[flip] = -1
            rows.append((name, e[k], np.diag(d)))
    rows += [
        ("g4=g2", e[3] - e[1], _basis_change([[1, 0, 0], [0, 1, 0], [0, -1, 1]])),   # c → c − b
        ("g4=-g2", e[3] + e[1], _basis_change([[1, 0, 0], [0, 1, 0], [0, 1, 1]])),   # c → c + b
        ("g5=g1", e[4] - e[0], _basis_change([[1, 0, 0], [0, 1, 0], [-1, 0, 1]])),   # c → c − a
        ("g5=-g1", e[4] + e[0], _basis_change([[1, 0, 0], [0, 1, 0], [1, 0, 1]])),   # c → c + a
        ("g6=g1", e[5] - e[0], _basis_change([[1, 0, 0], [-1, 1, 0], [0, 0, 1]])),   # b → b − a
        ("g6=-g1", e[5] + e[0], _basis_change([[1, 0, 0], [1, 1, 0], [0, 0, 1]])),   # b → b + a
        ("g1+g2+g4+g5+g6=0", e[0] + e[1] + e[3] + e[4] + e[5],
         _basis_change([[1, 0, 0], [0, 1, 0], [1, 1, 1]])),                          # c → c + a + b
    ]
    # after a change of basis the signs of g4, g5, g6 may be mixed; the Niggli form on the far
    # side then needs one axis flipped as well, so each change of basis also comes composed
    # with the three sign flips
    out = []
    for name, n, T in rows:
        out.append((name, n / np.linalg.norm(n), T))
        if not name.endswith("=0"):
            out += [(name, n / np.linalg.norm(n), S @ T) for S in SIGN_FLIPS]
    return out


BOUNDARIES = _boundaries()


# ---------------------------------------------------------------- NCDist

def _project(g: np.ndarray):
    """For (n, 6) G6 vectors: A (n, B) distances to each boundary and X (n, B, 6) the images
    M_b P_b g of their projections."""
    normals = np.array([n for _, n, _ in BOUNDARIES])            # (B, 6)
    T = np.array([t for _, _, t in BOUNDARIES])                  # (B, 6, 6)
    s = g @ normals.T                                            # (n, B) signed distances
    P = g[:, None, :] - s[:, :, None] * normals[None, :, :]      # (n, B, 6)
    X = np.einsum("bij,nbj->nbi", T, P)
    return np.abs(s), X


def ncdist_matrix(g6: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(n, n) NCDist (Å²) between reduced G6 vectors (see the module's docstring)."""
    g = np.asarray(g6, dtype=np.float64).reshape(-1, 6)
    n = len(g)
    D = np.sqrt(np.maximum(((g[:, None, :] - g[None, :, :]) ** 2).sum(-1), 0.0))
    for S in SIGN_FLIPS:
        gs = g @ S.T
        D = np.minimum(D, np.sqrt(((gs[:, None, :] - g[None, :, :]) ** 2).sum(-1)))
    if n < 2:
        return D
    A, X = _project(g)                                           # (n, B), (n, B, 6)
    nb = A.shape[1]
    iu, ju = np.triu_indices(n, 1)
    for start in range(0, len(iu), chunk):
        i, j = iu[start:start + chunk], ju[start:start + chunk]
        best = D[i, j]
        # one boundary: from either end
        one_i = A[i] + np.linalg.norm(X[i] - g[j][:, None, :], axis=-1)     # (p, B)
        one_j = A[j] + np.linalg.norm(X[j] - g[i][:, None, :], axis=-1)
        best = np.minimum(best, np.minimum(one_i.min(1), one_j.min(1)))
        # two boundaries: only (b, c) whose end legs alone are shorter than the best so far
        for b in range(nb):
            lower = A[i, b][:, None] + A[j]                                  # (p, B)
            p, c = np.nonzero(lower < best[:, None])
            if len(p) == 0:
                continue
            d = lower[p, c] + np.linalg.norm(X[i[p], b] - X[j[p], c], axis=-1)
            np.minimum.at(best, p, d)
        D[i, j] = D[j, i] = best
    np.fill_diagonal(D, 0.0)
    return D


def ncdist(cell1, cell2, centring1=None, centring2=None) -> float:
    """NCDist (Å²) between two cells (each Niggli-reduced first, in its primitive setting)."""
    g = niggli_g6([cell1, cell2], [centring1, centring2])
    return float(ncdist_matrix(g)[0, 1])


# ---------------------------------------------------------------- clustering

def cluster_unit_cells(cells, ids=None, labels=None, centrings=None, threshold: float = 5000.0,
                       min_cluster_size: int = 1) -> dict:
    """Single-linkage clustering of unit cells on NCDist, cut at ``threshold`` (Å²).

    Parameters
    ----------
    cells : sequence of (a, b, c, α, β, γ), Å and degrees, in any setting
    ids : data-set ids (default 0 … n − 1); labels : names shown in the dendrogram
    centrings : lattice centring per cell (letter, space group symbol or gemmi.SpaceGroup)
    threshold : the tree's cut height, dials.cluster_unit_cell's threshold (default 5000)
    min_cluster_size : clusters with fewer data sets are left out; their ids are ``outliers``

    Returns
    -------
    dict (strict JSON): ``clusters`` largest first (ties: the lowest id first), each with
    ``cluster_id`` (1, 2, … in that order), ``members`` (ids), ``size``, ``median_cell``
    (per parameter, of the cells as given), ``median_niggli_cell``; ``outliers``;
    ``threshold``; ``dendrogram`` (see :func:`processing.multiplex.tree.dendrogram`);
    ``max_distance`` (the largest NCDist).
    """
    cells = np.asarray([[float(x) for x in c] for c in cells], dtype=np.float64).reshape(-1, 6)
    n = len(cells)
    ids = list(range(n)) if ids is None else [x.item() if hasattr(x, "item") else x for x in ids]
    if len(ids) != n:
        raise ValueError("ids: one per cell")
    if n == 0:
        return {"clusters": [], "outliers": [], "threshold": float(threshold),
                "dendrogram": dendrogram(np.zeros((0, 4)), []), "max_distance": 0.0}
    g = niggli_g6(cells, centrings)
    D = ncdist_matrix(g)
    Z = linkage(D, "single")
    assign = hierarchy.fcluster(Z, t=threshold, criterion="distance") if n > 1 else np.ones(1, dtype=int)
    groups = {}
    for k, c in enumerate(assign):
        groups.setdefault(int(c), []).append(k)
    ordered = sorted(groups.values(), key=lambda m: (-len(m), m[0]))
    clusters, outliers = [], []
    for m in ordered:
        if len(m) < min_cluster_size:
            outliers += [ids[k] for k in m]
            continue
        clusters.append({"cluster_id": len(clusters) + 1, "members": [ids[k] for k in m], "size": len(m),
                         "median_cell": [float(v) for v in np.median(cells[m], axis=0)],
                         "median_niggli_cell": list(cell_from_g6(np.median(g[m], axis=0)))})
    return {"clusters": clusters, "outliers": sorted(outliers, key=ids.index), "threshold": float(threshold),
            "dendrogram": dendrogram(Z, ids, labels), "max_distance": float(D.max())}


__all__ = ["g6_from_cell", "cell_from_g6", "niggli_g6", "ncdist", "ncdist_matrix", "cluster_unit_cells",
           "BOUNDARIES", "SIGN_FLIPS"]
