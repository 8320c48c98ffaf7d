"""Choosing the output setting with a reference: of the settings the Laue group allows
(lattice operations that keep it), the one whose merged intensities correlate best
with a reference MTZ's."""
from __future__ import annotations

import numpy as np

from ..errors import XtalError
from .data import select_intensities
from .lattice import xyz_string


def _laue_keys(hkl: np.ndarray, space_group) -> np.ndarray:
    """One int64 per index, equal for indices equivalent in the space group's Laue group."""
    mats = []
    for op in space_group.operations().sym_ops:
        W = np.rint(np.array(op.rot, dtype=float) / op.DEN).T.astype(np.int64)
        mats += [W, -W]
    h = np.asarray(hkl, dtype=np.int64)
    keys = np.stack([((h @ W.T + 1024) * np.array([1 << 22, 1 << 11, 1])).sum(axis=1) for W in mats])
    return keys.max(axis=0)


def _mean_by_key(keys: np.ndarray, values: np.ndarray) -> dict:
    uniq, inv = np.unique(keys, return_inverse=True)
    return dict(zip(uniq.tolist(), (np.bincount(inv, values) / np.bincount(inv)).tolist()))


def match_reference(reference, reflections, Ts, ops, table, best, M_conv, placed, chosen, rep):
    """Of the settings the Laue group allows (operations that keep it), the one whose
    merged intensities correlate best with the reference's; the data sets' operations."""
    sg = best["_setting"][0]
    if reference.space_group.laue_str() != sg.laue_str() or \
            reference.space_group.centring_type() != sg.centring_type():
        raise XtalError(f"reference {reference.path}: space group {reference.space_group.xhm()} does not have the "
                        f"data's Patterson group {sg.xhm()}", field="reference")
    inv = {k: int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))}
    H = set(best["elements"])
    normaliser = [g for g in range(len(table))
                  if {int(table[g, int(table[inv[h], g])]) for h in H} == H]  # g⁻¹Hg = H
    candidates = sorted({rep[g] for g in normaliser})
    ref = _mean_by_key(_laue_keys(reference.hkl, sg), reference.intensity)
    keep, intensity, _, _ = select_intensities(reflections)
    ids = reflections["id"]
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(int(ids.max()) + 2 if len(ids) else 1))
    rows_of = {i: order[bounds[i]:bounds[i + 1]] for i in placed if i + 1 < len(bounds)}
    scores = []
    for g in candidates:
        keys, vals = [], []
        for i, c in zip(placed, chosen):
            rows = rows_of.get(i, np.zeros(0, np.int64))
            sel = rows[keep[rows]]
            W = M_conv @ ops[int(table[inv[g], c])] @ Ts[i]
            h = np.rint(reflections["miller_index"][sel].astype(float) @ W.T).astype(np.int64)
            keys.append(_laue_keys(h, sg))
            vals.append(intensity[sel])
        ours = _mean_by_key(np.concatenate(keys), np.concatenate(vals))
        common = [k for k in ours if k in ref]
        cc = float(np.corrcoef([ours[k] for k in common], [ref[k] for k in common])[0, 1]) if len(common) > 2 \
            else float("nan")
        scores.append({"operator": xyz_string(ops[g]), "cc": cc, "n": len(common), "g": g})
    good = [s for s in scores if np.isfinite(s["cc"])]
    if not good:
        raise XtalError(f"reference {reference.path}: no reflections in common with the data", field="reference")
    top = max(good, key=lambda s: s["cc"])
    new = [rep[int(table[inv[top["g"]], c])] for c in chosen]
    return new, {"path": reference.path, "column": reference.column, "chosen": top["operator"],
                 "settings": [{k: v for k, v in s.items() if k != "g"} for s in scores]}
