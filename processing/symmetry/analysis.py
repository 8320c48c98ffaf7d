"""From the correlations to an answer: the embedding in the dimensions it needs, each
operation scored in the consensus setting, the subgroups scored, and the cosets that
give each data set its reindexing operation."""
from __future__ import annotations

import numpy as np

from .embedding import choose_dimensions, embed
from .laue import SIGMA_CC, likelihood, score_subgroups, subgroups
from .params import CosymParams

#: most data sets used to choose the embedding's dimensions, and most dimensions tried
SEARCH_SETS = 100
MAX_DIMENSIONS = 12


def _consensus_ops(x: np.ndarray, n_iter: int = 10) -> np.ndarray:
    """For each data set the operation whose copy lies closest (cosine) to the consensus
    direction of all chosen copies; starts from the data set with the longest vector."""
    unit = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
    start = int(np.argmax(np.linalg.norm(x[:, 0], axis=1)))
    centre = unit[start, 0]
    chosen = np.zeros(len(x), dtype=int)
    for _ in range(n_iter):
        new = np.argmax(unit @ centre, axis=1)
        centre = unit[np.arange(len(x)), new].mean(axis=0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        if np.array_equal(new, chosen):
            break
        chosen = new
    return chosen


def analyse(cc, weights, ops, table, params: CosymParams, dims=None):
    """Embedding, operator scores and subgroup scores of one set of data sets."""
    if dims is None:
        # the functional's elbow, on at most SEARCH_SETS data sets (a seeded sample): the
        # search costs one embedding per dimension, the final run one more on all
        n = cc.shape[1]
        sample = np.sort(np.random.default_rng(params.seed).choice(n, SEARCH_SETS, replace=False)) \
            if n > SEARCH_SETS else np.arange(n)
        sub_cc, sub_w = cc[:, sample][:, :, sample], weights[:, sample][:, :, sample]
        tried = {}
        top = min(MAX_DIMENSIONS, len(ops))
        d = 2
        while True:  # Φ to 1e-6 relative: enough to see where it stops falling
            for k in (d, d + 1):
                if k <= top and k not in tried:
                    tried[k] = embed(sub_cc, sub_w, table, k, params.seed, params.max_iterations, ftol=1e-6)[1]
            if d + 1 > top or choose_dimensions(tried) == d:
                break
            d += 1
        dims = choose_dimensions(tried)
        x, _ = embed(cc, weights, table, dims, params.seed, params.max_iterations)
    else:
        tried = {}
        x, tried[dims] = embed(cc, weights, table, dims, params.seed, params.max_iterations)
    unit = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
    # each data set's copy in the consensus setting, then every operation applied on top:
    # reindexing by W_c then W_g is the copy of W_g W_c (an operation's CC is judged in
    # one common setting, so a Laue group that is not normal in the lattice group, e.g.
    # 4/m in a metrically cubic lattice, is seen whatever setting each data set is in)
    chosen = _consensus_ops(x)
    inv = np.array([int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))])
    n = np.arange(len(x))
    cc_op = np.array([np.mean(np.einsum("nd,nd->n", unit[n, chosen], unit[n, table[inv[g], chosen]]))
                      for g in range(len(table))])
    z = cc_op / SIGMA_CC
    p = np.array([likelihood(float(c)) for c in cc_op])
    groups = score_subgroups(subgroups(table), p, z)
    return {"x": x, "dims": dims, "functional": tried, "cc": cc_op, "z": z, "p": p, "subgroups": groups,
            "chosen": chosen}


def relabel(chosen: list[int], H: list[int], table: np.ndarray, rep: dict[int, int]) -> list[int]:
    """The same assignment, re-expressed so that the most data sets keep their own
    indexing (identity coset; ties: the first data set's). One operation applied to all
    data sets keeps them consistent; this is done only when H is normal in the lattice
    group, so that the relabelled setting has the same Laue group."""
    inv = {k: int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))}
    Hs = set(H)
    normal = all({int(table[g, int(table[inv[h], g])]) for h in H} <= Hs for g in range(len(table)))  # g⁻¹hg
    if not normal:
        return chosen
    counts = {c: chosen.count(c) for c in chosen}
    target = max(counts, key=lambda c: (counts[c], c == chosen[0]))
    return [rep[int(table[target, c])] for c in chosen]  # W_target⁻¹ · W_c


def cosets(H: list[int], table: np.ndarray) -> dict[int, int]:
    """Each operation c → the representative (lowest index) of its coset H·c: reindexing
    by W_c or by W_h W_c (h a symmetry of the common setting) is the same."""
    inv = {k: int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))}
    rep = {}
    for g in range(len(table)):
        coset = {int(table[inv[h], g]) for h in H}  # h·g
        rep[g] = min(coset)
    return rep


