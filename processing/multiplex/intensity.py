"""Intensity-based clustering as xia2.multiplex: the correlation matrix and cos-angles.

(a) Correlation clustering: each data set's scaled observations are merged to the
    asymmetric unit (inverse-variance weighted mean per unique reflection); the Pearson
    CC of every pair on the reflections both measured comes from one sparse
    data-set × reflection matrix (sums over the common reflections as sparse products);
    pairs sharing fewer than ``min_common`` reflections get CC = NaN (distance 1).
    Distance 1 − CC, average linkage.
(b) Cos-angle clustering: vectors per data set (the embedding of the correlation matrix
    as cosym/dials.correlation_matrix make it, or any coordinates such as cosym's), the
    cosine of the angle between each pair, distance 1 − cos, average linkage.

Both return the tree (linkage, leaves, labels, drawing coordinates) and the candidate
clusters at every merge node, as strict-JSON dicts.
"""
from __future__ import annotations

import gemmi
import numpy as np
import scipy.sparse as sp

from ..merging.merge import asu_index, valid_observations
from .tree import dendrogram, linkage, nodes


def _ids(x) -> list:
    return [v.item() if hasattr(v, "item") else v for v in x]


def scaled_observations(table) -> dict:
    """The usable scaled observations of a scaled reflection table (dials.scale's columns):
    ``{"hkl", "intensity", "variance", "dataset"}`` with intensity and variance divided by
    the inverse scale factor (and its square)."""
    from ..merging.filtering import usable_rows

    ok = usable_rows(table)
    g = table["inverse_scale_factor"][ok]
    return {"hkl": np.asarray(table["miller_index"][ok]).reshape(-1, 3),
            "intensity": table["intensity.scale.value"][ok] / g,
            "variance": table["intensity.scale.variance"][ok] / g ** 2,
            "dataset": np.asarray(table["id"][ok])}


def compared_observations(table, space_group: gemmi.SpaceGroup, zmax: float = 6.0) -> dict:
    """The observations clustering compares: the usable scaled observations and also those
    scaling rejected as outliers, each of the latter winsorised to ``zmax`` σ from its
    reflection's weighted mean over the usable ones (same keys as :func:`scaled_observations`).

    An observation far from the ensemble's mean is the very evidence that its data set
    differs: a non-isomorphous crystal loses most of its observations to outlier rejection
    and what remains agrees with the others. Winsorising keeps the sign of each such
    deviation and bounds a zinger's weight in the correlations."""
    from ..merging.merge import asu_index
    from ..reflections import Flags

    usable = scaled_observations(table)
    flags = table["flags"].astype(np.uint64)
    g = table["inverse_scale_factor"]
    v = table["intensity.scale.variance"]
    left_out = np.uint64(int(Flags.user_excluded_in_scaling | Flags.excluded_for_scaling))
    with np.errstate(invalid="ignore"):
        out = (((flags & np.uint64(int(Flags.outlier_in_scaling))) != 0) & ((flags & left_out) == 0)
               & np.isfinite(g) & (g > 0) & np.isfinite(table["intensity.scale.value"]) & np.isfinite(v) & (v > 0))
    if not out.any() or not len(usable["hkl"]):
        return usable
    hkl_o = np.asarray(table["miller_index"][out]).reshape(-1, 3)
    i_o = table["intensity.scale.value"][out] / g[out]
    v_o = table["intensity.scale.variance"][out] / g[out] ** 2
    _, _, key_u = asu_index(usable["hkl"], space_group)
    _, _, key_o = asu_index(hkl_o, space_group)
    keys, inv = np.unique(key_u, return_inverse=True)
    w = 1.0 / usable["variance"]
    mean = np.bincount(inv, weights=w * usable["intensity"], minlength=len(keys)) / np.bincount(
        inv, weights=w, minlength=len(keys))
    pos = np.clip(np.searchsorted(keys, key_o), 0, len(keys) - 1)
    known = keys[pos] == key_o  # an outlier of a reflection with no usable observation is left out
    sigma = np.sqrt(v_o[known])
    centre = mean[pos[known]]
    clipped = centre + np.clip((i_o[known] - centre) / sigma, -zmax, zmax) * sigma
    return {"hkl": np.concatenate([usable["hkl"], hkl_o[known]]),
            "intensity": np.concatenate([usable["intensity"], clipped]),
            "variance": np.concatenate([usable["variance"], v_o[known]]),
            "dataset": np.concatenate([np.asarray(usable["dataset"]), np.asarray(table["id"][out])[known]])}


def merged_matrix(hkl, intensity, variance, dataset, space_group: gemmi.SpaceGroup, dataset_ids=None,
                  anomalous: bool = False):
    """``(ids, X, P)``: per data set (rows, in ``ids`` order) the weighted mean intensity of
    each unique reflection (columns) as a CSR matrix X, and its presence P (1.0 where measured).

    ``dataset_ids``: the data sets (rows) to keep, in order (default: the sorted ids
    present); observations of other data sets are ignored.
    """
    hkl = np.asarray(hkl).reshape(-1, 3)
    intensity = np.asarray(intensity, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    dataset = np.asarray(dataset)
    ids = _ids(np.unique(dataset)) if dataset_ids is None else _ids(dataset_ids)
    row_of = {v: k for k, v in enumerate(ids)}
    rows = np.array([row_of.get(v, -1) for v in _ids(dataset)], dtype=np.int64) if len(dataset) else \
        np.zeros(0, dtype=np.int64)
    ok = valid_observations(intensity, variance) & (rows >= 0)
    hkl, intensity, variance, rows = hkl[ok], intensity[ok], variance[ok], rows[ok]
    n = len(ids)
    if len(rows) == 0:
        empty = sp.csr_matrix((n, 0))
        return ids, empty, empty.copy()
    _, _, key = asu_index(hkl, space_group, anomalous=anomalous)
    ukey, col = np.unique(key, return_inverse=True)
    m = len(ukey)
    cell_key = rows * m + col
    ucell, inv = np.unique(cell_key, return_inverse=True)
    w = 1.0 / variance
    mean = np.bincount(inv, weights=w * intensity) / np.bincount(inv, weights=w)
    r, c = ucell // m, ucell % m
    X = sp.csr_matrix((mean, (r, c)), shape=(n, m))
    P = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, m))
    return ids, X, P


#: the data-set × reflection matrices are multiplied dense when at least this fraction is
#: filled and they have at most DENSE_MAX_CELLS cells (1,000 data sets × 20,000 reflections)
DENSE_FRACTION = 0.02
DENSE_MAX_CELLS = 20_000_000


def correlation_matrix(X, P, min_common: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(cc, n_common)``: the Pearson CC of every pair of rows of X over the columns both
    have (P), and how many those are. CC is NaN where fewer than ``min_common`` are shared
    or either side is constant on them; the diagonal is 1 for rows with ≥ 2 values."""
    X = sp.csr_matrix(X, dtype=np.float64)
    P = sp.csr_matrix(P, dtype=np.float64)
    n = X.shape[0]
    if n == 0:
        return np.zeros((0, 0)), np.zeros((0, 0), dtype=np.int64)
    # standardise each row over its own values (CC is unchanged; the sums below cancel less)
    counts = np.asarray(P.sum(axis=1)).ravel()
    s1 = np.asarray(X.sum(axis=1)).ravel()
    s2 = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(counts > 0, s1 / np.maximum(counts, 1), 0.0)
        sd = np.sqrt(np.maximum(s2 / np.maximum(counts, 1) - mu ** 2, 0.0))
    sd = np.where(sd > 0, sd, 1.0)
    Xc = X.tocoo()
    Z = sp.csr_matrix(((Xc.data - mu[Xc.row]) / sd[Xc.row], (Xc.row, Xc.col)), shape=X.shape)
    Z2 = Z.multiply(Z)
    if P.nnz > DENSE_FRACTION * n * P.shape[1] and n * P.shape[1] <= DENSE_MAX_CELLS:
        # many data sets over one asymmetric unit: dense products (BLAS) are far faster
        Z, Z2, P = Z.toarray(), Z2.toarray(), P.toarray()
        product = lambda a, b: a @ b.T  # noqa: E731
    else:
        product = lambda a, b: (a @ b.T).toarray()  # noqa: E731
    N = product(P, P)
    Sx = product(Z, P)      # Sx[i, j] = Σ over common of z_i
    Sxx = product(Z2, P)    # Σ over common of z_i²
    Sxy = product(Z, Z)
    with np.errstate(invalid="ignore", divide="ignore"):
        num = N * Sxy - Sx * Sx.T
        vx = N * Sxx - Sx ** 2
        den = np.sqrt(np.maximum(vx, 0.0) * np.maximum(vx.T, 0.0))
        cc = num / den
    bad = (N < min_common) | ~(den > 1e-12 * np.maximum(N, 1) ** 2) | ~np.isfinite(cc)
    cc = np.clip(np.where(bad, np.nan, cc), -1.0, 1.0)
    diag = np.diag(N) >= 2
    cc[np.arange(n)[diag], np.arange(n)[diag]] = 1.0
    return cc, N.astype(np.int64)


def _clusters(distance: np.ndarray, ids: list, labels, method: str = "average") -> dict:
    Z = linkage(distance, method)
    return {"linkage_method": method, "dendrogram": dendrogram(Z, ids, labels), "clusters": nodes(Z, ids)}


def _finite(M: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in M]


def correlation_clustering(hkl, intensity, variance, dataset, space_group: gemmi.SpaceGroup, *,
                           dataset_ids=None, labels=None, min_common: int = 10) -> dict:
    """Hierarchical clustering (average linkage) on 1 − CC of the data sets' merged intensities.

    Parameters
    ----------
    hkl, intensity, variance, dataset : per scaled observation (intensity and variance
        already divided by the inverse scale factor), the data set's id
    space_group : gemmi.SpaceGroup of the (consistently indexed) data
    dataset_ids : the data sets to cluster, in order (default: the sorted ids present)
    labels : names in the dendrogram (default: the ids)
    min_common : fewest common unique reflections for a pair's CC to count

    Returns
    -------
    dict (strict JSON): ``ids``; ``correlation`` (n × n CC, None where undefined);
    ``n_common`` (n × n); ``distance`` (1 − CC, 1 where undefined); ``dendrogram``;
    ``clusters`` (every merge node: ``node``, ``members``, ``size``, ``height``,
    ``children``, lowest first); ``method`` = "correlation".
    """
    ids, X, P = merged_matrix(hkl, intensity, variance, dataset, space_group, dataset_ids)
    cc, N = correlation_matrix(X, P, min_common)
    D = np.where(np.isfinite(cc), 1.0 - cc, 1.0)
    np.fill_diagonal(D, 0.0)
    out = {"method": "correlation", "ids": ids, "correlation": _finite(cc),
           "n_common": [[int(v) for v in row] for row in N], "distance": _finite(D)}
    out.update(_clusters(D, ids, labels))
    return out


def correlation_embedding(cc: np.ndarray, n_common: np.ndarray, *, min_common: int = 10,
                          dimensions: int | None = None, seed: int = 0, max_dimensions: int = 6) -> dict:
    """Vectors x_i whose dot products fit the correlation matrix (cosym's functional with
    the identity as the only operation): Φ = Σ w_ij (CC_ij − x_i·x_j)², w_ij = n_common
    (0 below ``min_common`` or where CC is undefined), L-BFGS from a seeded start.

    ``dimensions``: None chooses the elbow of Φ against dimensions (DIALS's rule,
    :func:`~processing.symmetry.embedding.elbow_dimensions`), trying 2 … ``max_dimensions``.
    Returns ``{"coordinates" (n × d), "dimensions", "functional": {d: Φ}}``.
    """
    from ..symmetry.embedding import elbow_dimensions, embed

    cc = np.asarray(cc, dtype=np.float64)
    n = len(cc)
    w = np.where(np.isfinite(cc) & (np.asarray(n_common) >= min_common), np.asarray(n_common, float), 0.0)
    np.fill_diagonal(w, 0.0)
    if n == 0 or not np.any(w > 0):
        d = dimensions or 2
        return {"coordinates": np.zeros((n, d)), "dimensions": d, "functional": {}}
    w = w / float(w[w > 0].mean())
    table = np.zeros((1, 1), dtype=np.int64)
    cc1, w1 = np.nan_to_num(cc)[None], w[None]
    tried = [dimensions] if dimensions else list(range(2, max(2, min(max_dimensions, n - 1)) + 1))
    results = {d: embed(cc1, w1, table, d, seed) for d in tried}
    d = dimensions or elbow_dimensions({k: v[1] for k, v in results.items()})
    return {"coordinates": results[d][0][:, 0, :], "dimensions": int(d),
            "functional": {str(k): float(v[1]) for k, v in results.items()}}


def cos_angle_matrix(coordinates: np.ndarray) -> np.ndarray:
    """cos of the angle between every pair of rows (0 for a zero vector; 1 on the diagonal)."""
    x = np.asarray(coordinates, dtype=np.float64)
    x = x.reshape(len(x), -1)
    norm = np.linalg.norm(x, axis=1)
    u = x / np.where(norm > 0, norm, 1.0)[:, None]
    cos = np.clip(u @ u.T, -1.0, 1.0)
    np.fill_diagonal(cos, 1.0)
    return cos


def cos_angle_clustering(coordinates, ids=None, labels=None) -> dict:
    """Hierarchical clustering (average linkage) on 1 − cos of the angles between the data
    sets' vectors (``coordinates``: n × d; rows in ``ids`` order, default 0 … n − 1).

    Returns a dict as :func:`correlation_clustering`'s with ``cos_angle`` (n × n),
    ``coordinates`` and ``method`` = "cos_angle".
    """
    x = np.asarray(coordinates, dtype=np.float64)
    x = x.reshape(len(x), -1)
    ids = list(range(len(x))) if ids is None else _ids(ids)
    cos = cos_angle_matrix(x)
    D = 1.0 - cos
    np.fill_diagonal(D, 0.0)
    out = {"method": "cos_angle", "ids": ids, "coordinates": _finite(x), "cos_angle": _finite(cos),
           "distance": _finite(D)}
    out.update(_clusters(D, ids, labels))
    return out


def intensity_clustering(hkl, intensity, variance, dataset, space_group: gemmi.SpaceGroup, *,
                         dataset_ids=None, labels=None, min_common: int = 10, dimensions: int | None = None,
                         seed: int = 0) -> dict:
    """Both of xia2.multiplex's intensity clusterings on one set of scaled observations:
    ``{"correlation": …, "cos_angle": …}``, the cos-angles from the correlation embedding
    (:func:`correlation_embedding`, its ``dimensions`` and ``functional`` included)."""
    corr = correlation_clustering(hkl, intensity, variance, dataset, space_group, dataset_ids=dataset_ids,
                                  labels=labels, min_common=min_common)
    cc = np.array([[np.nan if v is None else v for v in row] for row in corr["correlation"]], dtype=float)
    emb = correlation_embedding(cc.reshape(len(corr["ids"]), -1), np.asarray(corr["n_common"]),
                                min_common=min_common, dimensions=dimensions, seed=seed)
    cos = cos_angle_clustering(emb["coordinates"], corr["ids"], labels)
    cos["dimensions"], cos["functional"] = emb["dimensions"], emb["functional"]
    return {"correlation": corr, "cos_angle": cos}


__all__ = ["scaled_observations", "merged_matrix", "correlation_matrix", "correlation_clustering",
           "correlation_embedding", "cos_angle_matrix", "cos_angle_clustering", "intensity_clustering"]
