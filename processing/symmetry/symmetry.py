"""``run_symmetry``: Laue group and space group of one sweep, or of several sweeps
indexed consistently and taken together (dials.symmetry).

The experiments' reflections are merged into one data set in the reduced basis; each
lattice operation g is scored by the correlation of E²(h) with E²(W_g h) over the
reflections that have both (σ(CC) from their number), then the subgroups as in cosym
(``laue.py``), the Patterson group and its reference setting, and the chiral space
groups by systematic absences. With no pair of equivalent reflections every
operation scores p = ½, every subgroup alike, and the lattice's own Patterson group
comes first, as dials.symmetry reports it.
"""
from __future__ import annotations

import numpy as np

from ..errors import XtalError
from ..reflections import ReflectionTable
from .correlations import pairwise_correlations
from .cosym import _choose_subgroup, _finish_common, _transforms
from .data import prepare
from .embedding import composition_table
from .lattice import average_reduced_basis, lattice_operations
from .laue import likelihood, score_subgroups, subgroups
from .params import CosymParams


def _scores(cc: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CC, Z-CC, p(S | CC)) of each operation from its self-correlation."""
    ok = np.isfinite(cc) & (n >= 3)
    cc_v = np.where(ok, cc, 0.0)
    sigma = np.where(ok, np.clip((1 - cc_v ** 2) / np.sqrt(np.maximum(n - 1, 1)), 0.05, 1.0), 1.0)
    true = [c for c, good in zip(cc_v[1:], ok[1:]) if good]
    expected = float(np.clip(np.percentile(true, 90), 0.5, 1.0)) if true else 1.0
    p = np.array([likelihood(float(c), float(s), expected) if good else 0.5
                  for c, s, good in zip(cc_v, sigma, ok)])
    p[0] = max(p[0], 0.5)
    return cc_v, cc_v / sigma, p


def run_symmetry(experiments, reflections, params: CosymParams, progress=None):
    """Determine the Laue group and space group of consistently indexed experiments.

    Parameters
    ----------
    experiments : ExperimentList
        One sweep, or several indexed in one setting (their reflections are merged).
    reflections : ReflectionTable
        Integrated reflections (``id`` = experiment).
    params : CosymParams
        ``space_group``, ``d_min``, ``lattice_symmetry_max_delta``, ``min_pairs`` are used.

    Returns
    -------
    (experiments, reflections, summary)
        Reindexed into the reference setting of the chosen space group; the summary as
        cosym's, without the embedding.

    Examples
    --------
    >>> expts, refl, summary = run_symmetry(expts, refl, CosymParams())
    """
    if len(experiments) == 0:
        raise XtalError("no experiments")
    Ts, bases = _transforms(experiments)
    ids = reflections["id"]
    parts = []
    for i in range(len(experiments)):
        t = reflections.select(ids == i)
        hkl = t["miller_index"].astype(float) @ (np.linalg.inv(Ts[0]) @ Ts[i]).T  # into experiment 0's indexing
        t["miller_index"] = np.rint(hkl).astype(np.int32)
        t["id"] = np.zeros(len(t), dtype=np.int32)
        t.experiment_identifiers = {0: experiments[0].identifier}
        parts.append(t)
    merged = ReflectionTable.concatenate(parts) if len(parts) > 1 else parts[0]
    ds = prepare(0, experiments[0].identifier, merged, Ts[0], params.d_min)
    if len(ds.e2) == 0:
        raise XtalError("no usable integrated reflections")
    ops = lattice_operations(bases[0], params.lattice_symmetry_max_delta)
    R = average_reduced_basis([bases[0]], ops)
    table = composition_table(ops)
    cc, n = pairwise_correlations([ds], ops)
    cc_op, z, p = _scores(cc[:, 0, 0], n[:, 0, 0])
    result = {"cc": cc_op, "z": z, "p": p, "subgroups": score_subgroups(subgroups(table), p, z),
              "dims": None, "functional": {}, "n_pairs": [int(v) for v in n[:, 0, 0]]}
    best = _choose_subgroup(result, ops, R, params)
    M_conv = best["_setting"][1]
    if M_conv is None:
        raise XtalError(f"no reference setting found for the Laue group {best['patterson_group']}")
    total = {i: M_conv @ Ts[i] for i in range(len(experiments))}  # Ts[0] T0⁻¹ Ts[i] = Ts[i]
    return _finish_common(experiments, reflections, params, best, result, ops, R, total, [], params.d_min)
