"""`xtal cluster scaled.expt scaled.refl [cluster_method=cos_angle|correlation] [min_completeness=…]
[min_multiplicity=…] [max_clusters=…] [output.json=cluster.json]` (xia2.multiplex's clustering).

Prints the unit-cell clusters (median cell of each), the intensity clustering's summary
and the candidate clusters of ``cluster_method`` as xia2.multiplex's table — data sets,
height, completeness, multiplicity, CC½, Rpim, d_min — and which of them xia2.multiplex
would merge. Writes nothing but the optional JSON report (``output.json=``). filtered.*
after ΔCC½ are read the same way.
"""
from __future__ import annotations

from .command import Command, run_command
from .tables import num, psql_table


def ranges(ids) -> str:
    """``0-3,5,7``: sorted ids with runs of three or more as ranges."""
    ids = sorted(int(k) for k in ids)
    parts, k = [], 0
    while k < len(ids):
        j = k
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(f"{ids[k]}-{ids[j]}" if j - k >= 2 else ",".join(str(x) for x in ids[k:j + 1]))
        k = j + 1
    return ",".join(parts)


def _pct(fraction) -> str:
    return num(None if fraction is None else 100.0 * fraction, ".1f")


def report(summary: dict, experiments, reflections, params) -> str:
    out = [(f"{summary['n_observations']} scaled observations of {summary['n_datasets']} data sets, "
            f"space group {summary['space_group']}, {num(summary['d_max'])}–{num(summary['d_min'])} Å")]
    if summary["no_observations"]:
        out.append(f"Data sets without a usable scaled observation: {ranges(summary['no_observations'])}")
    forms = summary["unit_cell_clustering"]
    out += ["", f"Unit-cell clustering (NCDist, single linkage, threshold {forms['threshold']:g} Å²):",
            psql_table(["Cluster", "Data sets", "Median cell (Å, °)", "Members"],
                       [[c["cluster_id"], c["size"], ", ".join(f"{x:.2f}" for x in c["median_cell"]),
                         ranges(c["members"])] for c in forms["clusters"]])]
    cos = summary["cos_angle"]
    out.append("")
    out.append(f"Intensity clustering: correlation matrix of the merged intensities; cos-angles in its "
               f"{cos['dimensions']}-dimensional embedding. Candidate clusters of {summary['cluster_method']} "
               f"({summary['n_listed']} of {summary['n_candidates']} listed, largest first):")
    rows = []
    for c in summary["clusters"]:
        rows.append([c["node"], c["size"], ranges(c["members"]), f"{c['height']:.3f}", _pct(c["completeness"]),
                     num(c["multiplicity"]), num(c["cc_half"], ".3f"), num(c["rpim"], ".3f"), num(c["d_min"]),
                     "yes" if c["selected"] else f"no: {c['reason']}"])
    out.append(psql_table(["Cluster", "Data\nsets", "Members", "Height", "Completeness\n(%)", "Multiplicity", "CC½",
                           "Rpim", "d_min\n(Å)", "Merge"], rows))
    out.append(f"{summary['n_selected']} cluster(s) to merge (min_completeness={params.min_completeness}, "
               f"min_multiplicity={params.min_multiplicity}, max_clusters={params.max_clusters}); merge one with "
               "xtal scale scaled.expt scaled.refl exclude_datasets=<the other data sets>, then xtal merge")
    if not summary["matrices"]["included"]:
        out.append(summary["matrices"]["note"])
    return "\n".join(out)


COMMAND = Command("cluster", "xtal cluster scaled.expt scaled.refl [key=value …] [output.json=cluster.json]",
                  report, ignored=("output.html", "output.log"), json_report=True,
                  notes=("Data sets are numbered by their position in the input (scaled.expt), from 0.",))


def run(argv: list[str]) -> int:
    return run_command(COMMAND, argv)
