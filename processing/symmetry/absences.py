"""Systematic absences: which chiral space group of a Patterson group the data support.

For each candidate space group the merged reflections (reference setting) that it
declares systematically absent beyond the lattice centring are collected; their mean
I/σ should be near zero if the group is right. The candidate with the most such
absences whose mean I/σ stays below 3 wins; candidates whose absent reflections are
the same (I 2 3 and I 2₁3: the 2₁ axes' absences coincide with the centring's) cannot
be told apart, and the summary says so, as dials.symmetry does.
"""
from __future__ import annotations

import numpy as np

MAX_MEAN_I_OVER_SIGMA = 3.0


def absence_scores(merged: tuple[np.ndarray, np.ndarray], candidates) -> dict:
    """``{"rows": [...], "chosen": hm, "note": str}`` for candidate space groups (gemmi)."""
    hkl, ios = merged
    if len(hkl):
        hkl, inv = np.unique(hkl, axis=0, return_inverse=True)
        inv = inv.ravel()
        ios = np.bincount(inv, ios) / np.bincount(inv)
    rows = []
    keys_of = {}
    for sg in candidates:
        ops = sg.operations()
        centring = ops.cen_ops
        absent = np.array([ops.is_systematically_absent(list(map(int, h))) for h in hkl], dtype=bool) \
            if len(hkl) else np.zeros(0, bool)
        allowed_by_centring = np.ones(len(hkl), dtype=bool)
        for t in centring:  # translations in 24ths: h·t must be a whole number
            allowed_by_centring &= (hkl @ np.asarray(t, dtype=np.int64)) % 24 == 0
        extra = absent & allowed_by_centring
        keys_of[sg.xhm()] = frozenset(map(tuple, hkl[extra].tolist()))
        rows.append({"space_group": sg.xhm(), "n_absent": int(extra.sum()),
                     "mean_i_over_sigma_absent": float(np.mean(ios[extra])) if extra.any() else None})
    consistent = [r for r in rows if r["mean_i_over_sigma_absent"] is None
                  or r["mean_i_over_sigma_absent"] < MAX_MEAN_I_OVER_SIGMA]
    pool = consistent or rows
    top = max(r["n_absent"] for r in pool)
    best = [r for r in pool if r["n_absent"] == top]
    chosen = best[0]["space_group"]
    same = [r["space_group"] for r in pool if keys_of[r["space_group"]] == keys_of[chosen]]
    note = ""
    if len(same) > 1:
        note = (f"{' and '.join(same)} cannot be distinguished by systematic absences in these data; "
                f"{chosen} is written")
    for r in rows:
        r["chosen"] = r["space_group"] == chosen
    return {"rows": rows, "chosen": chosen, "note": note}
