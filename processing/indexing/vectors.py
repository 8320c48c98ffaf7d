"""Candidate basis vectors: grouping, integer multiples, and basis combinations."""
from __future__ import annotations

import math

import numpy as np


def _angle(u, v) -> float:
    c = float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def is_approximate_integer_multiple(a, b, relative_length_tolerance=0.2, angular_tolerance=5.0) -> bool:
    la, lb = np.linalg.norm(a), np.linalg.norm(b)
    if la > lb:
        a, b, la, lb = b, a, lb, la
    ang = _angle(a, b)
    if ang < angular_tolerance or abs(180 - ang) < angular_tolerance:
        m = lb / la
        return abs(round(m) - m) < relative_length_tolerance
    return False


def tidy_vectors(vecs: np.ndarray, volumes: np.ndarray, min_cell: float, max_cell: float) -> list[np.ndarray]:
    """DIALS fft3d post-processing: length window, grouping (10 %, 5°), removal of
    integer multiples of stronger shorter vectors; ordered by peak volume."""
    vecs = np.asarray(vecs, float).reshape(-1, 3)
    volumes = np.asarray(volumes, float)
    norms = np.linalg.norm(vecs, axis=1)
    sel = (norms > min_cell) & (norms < 2 * max_cell)
    vecs, volumes, norms = vecs[sel], volumes[sel], norms[sel]
    order = np.argsort(norms, kind="stable")
    groups: list[list] = []  # [sum vector, count, max weight]
    for i in order:
        v, w, L = vecs[i], volumes[i], norms[i]
        for g in groups:
            mv = g[0] / g[1]
            ml = np.linalg.norm(mv)
            if abs(ml - L) / max(ml, L) < 0.1:
                ang = _angle(mv, v)
                if ang < 5:
                    g[0] = g[0] + v; g[1] += 1; g[2] = max(g[2], w)
                    break
                if abs(180 - ang) < 5:
                    g[0] = g[0] - v; g[1] += 1; g[2] = max(g[2], w)
                    break
        else:
            groups.append([v.copy(), 1, w])
    gv = [g[0] / g[1] for g in groups]
    gw = np.array([g[2] for g in groups])
    lengths = np.array([np.linalg.norm(v) for v in gv])
    unique, uvol = [], []
    for p in np.argsort(lengths, kind="stable"):
        v = gv[p]
        if any(uvol[i] > gw[p] and is_approximate_integer_multiple(u, v) for i, u in enumerate(unique)):
            continue
        unique.append(v)
        uvol.append(gw[p])
    perm = np.argsort(-np.array(uvol), kind="stable") if uvol else []
    return [unique[i] for i in perm]


def basis_combinations(vectors: list[np.ndarray], max_vectors: int = 100):
    """Right-handed, obtuse-angled triples (a, b, c) of candidate vectors, in DIALS's
    order (combinations of the earliest vectors first), skipping near-collinear and
    near-coplanar triples (20° cut-offs)."""
    n = min(len(vectors), max_vectors)
    if n < 3:
        return
    V = np.array([np.asarray(v, float) for v in vectors[:n]])
    i, j, k = (x.ravel() for x in np.meshgrid(*(np.arange(n),) * 3, indexing="ij"))
    keep = (i < j) & (j < k)
    i, j, k = i[keep], j[keep], k[keep]
    order = np.argsort(i ** 2 + j ** 2 + k ** 2, kind="stable")
    i, j, k = i[order], j[order], k[order]
    U = V / np.linalg.norm(V, axis=1)[:, None]
    cos_ab = np.einsum("ij,ij->i", U[i], U[j])
    lim = math.cos(math.radians(20))
    ok = np.abs(cos_ab) < lim  # not (near-)collinear
    flip_b = np.where(cos_ab > 0, -1.0, 1.0)  # b made obtuse to a
    a, b, c = V[i], V[j] * flip_b[:, None], V[k]
    axb = np.cross(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_nc = np.einsum("ij,ij->i", axb, c) / (np.linalg.norm(axb, axis=1) * np.linalg.norm(c, axis=1))
    ok &= np.abs(cos_nc) > math.sin(math.radians(20))  # c not (near-)coplanar with a, b
    flip_c = np.where(np.einsum("ij,ij->i", b, c) > 0, -1.0, 1.0)  # c obtuse to b
    c = c * flip_c[:, None]
    hand = np.where(np.einsum("ij,ij->i", axb, c) < 0, -1.0, 1.0)  # right-handed
    for t in np.nonzero(ok)[0]:
        yield hand[t] * np.array([a[t], b[t], c[t]])
