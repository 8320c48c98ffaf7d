"""The stability check: the analysis rerun with another seed and on random halves of
the data sets; how often the Laue group and each data set's operation repeat."""
from __future__ import annotations

import numpy as np

from .analysis import analyse, cosets
from .params import CosymParams


def stability(cc, weights, ops, table, params: CosymParams, result, datasets, summary) -> dict:
    """Rerun the analysis with seed + 1 and on two random splits into halves; how often
    the Laue group and each data set's operator (up to one relabelling of all) repeat."""
    n = len(datasets)
    if params.stability == "false" or (params.stability == "auto" and n > 200):
        return {"skipped": f"{n} data sets; stability=true runs it" if params.stability == "auto" else "off"}
    if n < 4:
        return {"skipped": f"only {n} data sets"}
    best = next(r for r in result["subgroups"] if r["patterson_group"] == summary["best"]["patterson_group"])
    H = best["elements"]
    rep = cosets(H, table)
    inv = {k: int(np.nonzero(table[k] == 0)[0][0]) for k in range(len(table))}
    main = {ds.index: int(result["chosen"][k]) for k, ds in enumerate(datasets)}
    rng = np.random.default_rng(params.seed)
    subsets = [("seed", np.arange(n), params.seed + 1)]
    for split in range(2):
        perm = rng.permutation(n)
        subsets += [(f"half {2 * split + 1}", np.sort(perm[: n // 2]), params.seed),
                    (f"half {2 * split + 2}", np.sort(perm[n // 2:]), params.seed)]
    runs, agree = [], {ds.index: [] for ds in datasets}
    for kind, sel, seed in subsets:
        p2 = type(params)(**{**params.__dict__, "seed": seed})
        sub = analyse(cc[:, sel][:, :, sel], weights[:, sel][:, :, sel], ops, table, p2, result["dims"])
        same_laue = sorted(sub["subgroups"][0]["elements"]) == sorted(H)
        # each data set's operator relative to the main run's: one coset for all = agreement
        rel = {datasets[k].index: rep[int(table[inv[main[datasets[k].index]], int(c)])]
               for k, c in zip(sel, sub["chosen"])}
        values = list(rel.values())
        mode = max(set(values), key=values.count)
        for i, r in rel.items():
            agree[i].append(r == mode)
        label = kind if kind != "seed" else f"seed {seed}"
        runs.append({"run": label, "n_datasets": int(len(sel)), "laue_group_same": bool(same_laue),
                     "operators_agree": float(np.mean([r == mode for r in values]))})
    return {"runs": runs,
            "laue_group_agreement": float(np.mean([r["laue_group_same"] for r in runs])),
            "operator_agreement": {ds.name: float(np.mean(agree[ds.index])) for ds in datasets if agree[ds.index]}}
