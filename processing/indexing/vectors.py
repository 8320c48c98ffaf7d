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
    V = [np.asarray(v, float) for v in vectors[:n]]
    combos = [(i, j, k) for i in range(n) for j in range(i + 1, n) for k in range(j + 1, n)]
    combos.sort(key=lambda t: t[0] ** 2 + t[1] ** 2 + t[2] ** 2)
    min_angle = math.radians(20)
    half_pi = math.pi / 2
    for i, j, k in combos:
        a, b = V[i], V[j]
        ang = math.radians(_angle(a, b))
        if ang < min_angle or math.pi - ang < min_angle:
            continue
        axb = np.cross(a, b)
        if ang < half_pi:
            b = -b
            axb = -axb
        c = V[k]
        if abs(half_pi - math.radians(_angle(axb, c))) < min_angle:
            continue
        if math.radians(_angle(b, c)) < half_pi:
            c = -c
        if axb @ c < 0:
            a, b, c = -a, -b, -c
        yield np.array([a, b, c])
