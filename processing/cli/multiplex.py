"""`xtal multiplex integrated.expt integrated.refl [space_group=…] [d_min=…] [min_completeness=…]
[min_multiplicity=…] [max_clusters=…] [cluster_method=cos_angle|correlation] [nproc=2] [output_dir=.]`
(xia2.multiplex).

1. Unit-cell clustering (Niggli cells, NCDist, single linkage): every crystal form with
   at least ``min_cluster_size`` data sets is processed on its own, in ``form_<k>/``.
2. Per form: cosym → scale → ΔCC½ filtering (iterative, rescaled) → merge, each stage's
   DIALS-named files in the form's folder.
3. Intensity clustering of the filtered data (pairwise CC of merged intensities, and
   cos-angles in their embedding); the clusters that meet ``min_completeness`` and
   ``min_multiplicity`` (at most ``max_clusters``) are scaled and merged on their own in
   ``form_<k>/<cluster>/``, ``nproc`` clusters at a time (forked processes).
Clustering is deterministic: a rerun gives the same clusters and files.
"""
from __future__ import annotations

import json
import os

from ..errors import XtalError
from ..params import from_strings
from .command import read_expt_refl, split_args
from .tables import num, psql_table

USAGE = ("xtal multiplex integrated.expt integrated.refl [space_group=…] [d_min=…] [min_completeness=…] "
         "[max_clusters=…] [nproc=2] [output_dir=.]")
STAGE_WORDS = {"cosym": ("space_group",), "scale": ("d_min", "anomalous"), "merge": ("d_min", "anomalous")}


def _subset(experiments, table, identifiers):
    """The experiments with these identifiers, and their rows (ids renumbered)."""
    wanted = set(identifiers)
    keep = [e for e in experiments if e.identifier in wanted]
    # the whole input: share its columns (reset_ids replaces the id column, never writes into it)
    sub = table.shallow_copy() if len(keep) == len(experiments) else \
        table.select_on_experiment_identifiers([e.identifier for e in keep])
    sub.reset_ids()
    return type(experiments)(keep), sub


def _stage(name, experiments, table, values, folder, **fixed):
    from ..io.outputs import write_output
    from ..stages import STAGES

    stage = STAGES[name]
    params = from_strings(stage.params, [f"{k}={values[k]}" for k in STAGE_WORDS.get(name, ()) if k in values],
                          **fixed)
    out_e, out_r, summary = stage.execute(experiments, table, params)
    for file_name in stage.outputs:
        write_output(os.path.join(folder, file_name), out_e, out_r, params=params)
    return out_e, out_r, summary


_SHARED = {}  # the form's data, inherited by forked workers (never pickled)


def _merge_one(job):
    """Scale (rescale=True, the other data sets excluded) and merge one cluster in its folder."""
    e, t, values = _SHARED["data"]
    sub_folder, left_out = job
    ce, ct, _ = _stage("scale", e, t, values, sub_folder, rescale=True, exclude_datasets=left_out)
    return _stage("merge", ce, ct, values, sub_folder)[2]


#: memory a cluster's scaling takes, as a multiple of its reflection table's size (measured
#: on 1,000 data sets: about 2×); parallel clusters are limited to what the memory holds
SCALE_MEMORY_FACTOR = 2.5


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cluster_workers(nproc: int, n_jobs: int, table_bytes: int, available: int | None) -> int:
    """How many clusters to scale at once: at most ``nproc`` and the jobs, and only as many
    as the available memory holds (each about SCALE_MEMORY_FACTOR × the table)."""
    n = max(1, min(nproc, n_jobs))
    if available is not None and table_bytes > 0:
        n = min(n, max(1, int(available // (SCALE_MEMORY_FACTOR * table_bytes))))
    return n


def _merge_clusters(e, t, values, jobs, nproc: int) -> list[dict]:
    """Each job's merge summary, in order; clusters run in forked processes (each writes only
    its own folder; a process that dies fails the command, never hangs it), or here when
    one at a time is all that fits or fork is unavailable."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    _SHARED["data"] = (e, t, values)
    n = cluster_workers(nproc, len(jobs), sum(v.nbytes for _, v in t.items()), _available_bytes())
    try:
        if n <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            return [_merge_one(j) for j in jobs]
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
            try:
                return list(pool.map(_merge_one, jobs))
            except BrokenProcessPool:
                raise XtalError("a process scaling a cluster died (out of memory?): run again with nproc=1 "
                                "(the clusters one at a time)", field="nproc") from None
    finally:
        _SHARED.clear()


def run(argv: list[str]) -> int:
    from ..multiplex.intensity import compared_observations, intensity_clustering, scaled_observations
    from ..multiplex.params import MultiplexParams
    from ..multiplex.selection import candidates_of, select_clusters
    from ..multiplex.stage import MAX_MATRIX_DATASETS, _tree_summary
    from ..multiplex.unit_cell import cluster_unit_cells
    from ..scaling.scale import common_space_group, median_cell

    files, words, help_ = split_args(argv)
    if help_:
        print(f"usage: {USAGE}\n\n{__doc__.split(chr(10) + chr(10), 1)[1]}")
        return 0
    values, mp_words = {}, []
    for w in words:
        key, _, value = (x.strip() for x in w.partition("="))
        if key in ("output_dir", "space_group", "d_min", "anomalous", "nproc"):
            values[key] = value
        else:
            mp_words.append(w)
    params = from_strings(MultiplexParams, mp_words)
    out_dir = values.pop("output_dir", ".")
    try:
        nproc = int(values.pop("nproc", "2"))
        if nproc < 1:
            raise ValueError
    except ValueError:
        raise XtalError("nproc: give a whole number ≥ 1 (processes that scale and merge the clusters)",
                        field="nproc") from None
    if not os.path.isdir(out_dir):
        raise XtalError(f"output folder {out_dir} does not exist")
    experiments, table = read_expt_refl(files, USAGE)
    if any(e.crystal is None for e in experiments):
        raise XtalError("every experiment needs a crystal model: give integrated data")

    cells = [e.crystal.unit_cell for e in experiments]
    forms = cluster_unit_cells(cells, ids=list(range(len(experiments))),
                               labels=[e.identifier for e in experiments], threshold=params.unit_cell_threshold,
                               min_cluster_size=params.min_cluster_size)
    print(psql_table(["Crystal form", "Data sets", "Median cell (Å, °)"],
                     [[k, c["size"], ", ".join(f"{x:.2f}" for x in c["median_cell"])]
                      for k, c in enumerate(forms["clusters"])]))
    if forms.get("outliers"):
        print(f"{len(forms['outliers'])} data set(s) in no crystal form of at least {params.min_cluster_size}")
    if not forms["clusters"]:
        raise XtalError(f"no crystal form has {params.min_cluster_size} or more data sets (min_cluster_size)")
    report = {"unit_cell_clustering": forms, "forms": []}
    for k, form in enumerate(forms["clusters"]):
        folder = os.path.join(out_dir, f"form_{k}")
        os.makedirs(folder, exist_ok=True)
        idents = [experiments[i].identifier for i in form["members"]]
        e, t = _subset(experiments, table, idents)
        print(f"\nCrystal form {k}: {len(e)} data sets → {folder}")
        e, t, cosym_s = _stage("cosym", e, t, values, folder, stability="false")
        e, t, _ = _stage("scale", e, t, values, folder)
        e, t, filt_s = _stage("compute_delta_cchalf", e, t, values, folder, max_cycles=6, final_rescale=True)
        _, _, merge_s = _stage("merge", e, t, values, folder)
        best = cosym_s["best"]
        o = merge_s["merging_statistics"]["overall"]
        print(f"  Laue group {best['patterson_group']}, space group {best['space_group']}; ΔCC½ removed "
              f"{len(filt_s.get('removed') or [])}; merged: completeness {num(o.get('completeness'), '.1f')} %, "
              f"multiplicity {num(o.get('multiplicity'), '.2f')}, CC½ {num(o.get('cc_half'), '.3f')}")
        obs = scaled_observations(t)
        sg = common_space_group(e)
        compared = compared_observations(t, sg)
        labels = [x.identifier for x in e]
        clusterings = intensity_clustering(compared["hkl"], compared["intensity"], compared["variance"],
                                           compared["dataset"], sg,
                                           dataset_ids=list(range(len(e))), labels=labels, seed=params.seed)
        method = params.cluster_method
        candidates = [dict(c, method=method) for c in candidates_of(clusterings[method])]
        chosen = select_clusters(candidates, obs["hkl"], obs["intensity"], obs["variance"], obs["dataset"], sg,
                                 median_cell(e), params)
        rows = []
        jobs = []
        for c in chosen["selected"]:
            sub_folder = os.path.join(folder, c["name"])
            os.makedirs(sub_folder, exist_ok=True)
            jobs.append((sub_folder, tuple(i for i in range(len(e)) if i not in set(c["members"]))))
        for c, cm in zip(chosen["selected"], _merge_clusters(e, t, values, jobs, nproc)):
            sub_folder = os.path.join(folder, c["name"])
            co = cm["merging_statistics"]["overall"]
            c["merged"] = {"folder": sub_folder, "overall": co, "d_min": cm.get("d_min")}
            rows.append([c["name"], len(c["members"]), num(co.get("completeness"), ".1f"),
                         num(co.get("multiplicity"), ".2f"), num(co.get("cc_half"), ".3f"), num(co.get("rpim"), ".3f"),
                         num(cm.get("d_min"), ".2f")])
        print(psql_table(["Cluster", "Data sets", "Completeness %", "Multiplicity", "CC½", "Rpim", "d_min"], rows)
              if rows else "  no intensity cluster meets min_completeness / min_multiplicity")
        report["forms"].append({"folder": folder, "members": idents, "best": best, "removed": filt_s.get("removed"),
                                "merged": merge_s["merging_statistics"]["overall"],
                                "clustering": {m: _tree_summary(c, len(e), len(e) <= MAX_MATRIX_DATASETS)
                                               for m, c in clusterings.items()},
                                "clusters": chosen})
    path = os.path.join(out_dir, "xtal.multiplex.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(report, fh, allow_nan=False)
    os.replace(tmp, path)
    print(f"\nReport: {path}")
    return 0
