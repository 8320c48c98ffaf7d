"""Hierarchical-clustering trees as strict-JSON dicts (shared by unit-cell and intensity clustering).

A tree is scipy's linkage matrix Z ((n − 1) × 4: the two merged nodes, the height, the
size) plus the dendrogram's leaf order and drawing coordinates, every number finite.
Node ``n + k`` is the cluster formed at row k of Z; ``nodes(Z, ids)`` lists each one's
member ids, the candidate clusters of xia2.multiplex.
"""
from __future__ import annotations

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform


def condensed(distance: np.ndarray) -> np.ndarray:
    """The condensed (upper-triangle) form of a symmetric distance matrix; the diagonal is ignored."""
    d = np.array(distance, dtype=np.float64)
    np.fill_diagonal(d, 0.0)
    d = 0.5 * (d + d.T)
    return squareform(d, checks=False)


def linkage(distance: np.ndarray, method: str) -> np.ndarray:
    """scipy's linkage of a square distance matrix (finite, ≥ 0); (0, 4) for fewer than two items."""
    n = len(distance)
    if n < 2:
        return np.zeros((0, 4))
    return hierarchy.linkage(condensed(distance), method=method)


def _f(x) -> float:
    x = float(x)
    if not np.isfinite(x):
        raise ValueError("non-finite value in a tree")
    return x


def nodes(Z: np.ndarray, ids: list) -> list[dict]:
    """Every merge node of Z: ``{"node", "members", "size", "height", "children"}``, lowest first.

    ``node`` is scipy's node number (n + row); ``members`` the sorted ids of its leaves;
    ``children`` the two merged nodes (leaves are 0 … n − 1).
    """
    n = len(ids)
    members: list[list] = [[ids[i]] for i in range(n)]
    out = []
    for k, (a, b, h, _) in enumerate(Z):
        m = sorted(members[int(a)] + members[int(b)])
        members.append(m)
        out.append({"node": n + k, "members": m, "size": len(m), "height": _f(h),
                    "children": [int(a), int(b)]})
    return out


def dendrogram(Z: np.ndarray, ids: list, labels: list[str] | None = None) -> dict:
    """The tree as a strict-JSON dict: ``linkage`` rows [a, b, height, size], ``leaves`` (ids in
    the dendrogram's order), ``labels`` (in that order), ``icoord``/``dcoord`` (scipy's drawing
    coordinates: one 4-point path per merge)."""
    n = len(ids)
    labels = [str(x) for x in (labels if labels is not None else ids)]
    if n == 0:
        return {"linkage": [], "leaves": [], "labels": [], "icoord": [], "dcoord": []}
    if n == 1:
        return {"linkage": [], "leaves": [ids[0]], "labels": labels, "icoord": [], "dcoord": []}
    d = hierarchy.dendrogram(Z, no_plot=True)
    order = [int(i) for i in d["leaves"]]
    return {"linkage": [[int(a), int(b), _f(h), int(c)] for a, b, h, c in Z],
            "leaves": [ids[i] for i in order], "labels": [labels[i] for i in order],
            "icoord": [[_f(v) for v in row] for row in d["icoord"]],
            "dcoord": [[_f(v) for v in row] for row in d["dcoord"]]}


__all__ = ["condensed", "linkage", "nodes", "dendrogram"]
