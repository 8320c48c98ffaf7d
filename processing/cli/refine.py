"""`xtal refine indexed.expt indexed.refl [scan_varying=…] [beam.fix=…] [detector.fix=…] …` (dials.refine).

Writes refined.expt and refined.refl (``output.experiments=``, ``output.reflections=``)
and prints the "RMSDs by experiment" table as dials.refine does. Parameter names may
be written with DIALS's dots (``beam.fix=all``, ``outlier.algorithm=tukey``).
"""
from __future__ import annotations


from ..models import format_with_sd
from ..params import from_strings
from ..refinement import RefineParams, run_refine
from .main import pop_outputs, print_help, read_expt_refl, split_args, write_expt_refl
from .tables import rmsd_table

ALIASES = {  # DIALS spellings → RefineParams fields
    "beam.fix": "beam_fix", "detector.fix": "detector_fix", "crystal.fix": "crystal_fix",
    "detector.panels": "detector_panels", "smoother.interval_width_degrees": "interval_width_degrees",
    "smoother.absolute_num_intervals": "absolute_num_intervals", "outlier.algorithm": "outlier_algorithm",
    "outlier.block_width": "outlier_block_width", "outlier.separate_panels": "separate_panels",
    "outlier.minimum_number_of_reflections": "minimum_number_of_reflections",
    "outlier.tukey.iqr_multiplier": "iqr_multiplier", "outlier.mcd.threshold_probability": "threshold_probability",
    "reflections.reflections_per_degree": "reflections_per_degree",
    "reflections.minimum_sample_size": "minimum_sample_size",
    "reflections.maximum_sample_size": "maximum_sample_size", "reflections.random_seed": "random_seed",
    "reflections.close_to_spindle_cutoff": "close_to_spindle_cutoff",
    "auto_reduction.min_nref_per_parameter": "min_nref_per_parameter",
    "refinery.max_iterations": "max_iterations",
}
def run(argv: list[str]) -> int:
    files, words, help_ = split_args(argv)
    if help_:
        print_help("refine", RefineParams)
        print("  output.experiments = refined.expt\n  output.reflections = refined.refl")
        print("\nDIALS spellings accepted: " + ", ".join(sorted(ALIASES)))
        return 0
    outputs, words = pop_outputs(words, experiments="refined.expt", reflections="refined.refl")
    kept = [f"{ALIASES.get(k.strip(), k.strip())}={v}" for k, _, v in (w.partition("=") for w in words)]
    params = from_strings(RefineParams, kept)
    experiments, reflections = read_expt_refl(files, "xtal refine indexed.expt indexed.refl [key=value …]")
    refined, table, summary = run_refine(experiments, reflections, params)
    for f in summary["failed"]:
        print(f"Warning: {f['message']}")
    print(f"\n{summary['n_used_in_refinement']} reflections used in refinement, "
          f"{summary['n_centroid_outliers']} centroid outliers rejected")
    for c in summary["macrocycles"]:
        kind = "Scan-varying" if c["scan_varying"] else "Static"
        print(f"{kind} refinement: {c['n_parameters']} parameters, {c['n_iterations']} iterations "
              f"({c['reason_for_termination']})")
    print("\nRMSDs by experiment:")
    print(rmsd_table(summary["rmsds_by_experiment"]))
    print()
    for c in summary["crystals"]:
        sd = c["unit_cell_sd"] or [0.0] * 6
        cell = ", ".join(format_with_sd(v, s) for v, s in zip(c["unit_cell"], sd))
        print(f"    Experiment {c['experiment']}: Unit cell: {cell}  {c['space_group']}"
              + ("" if c["refined"] else "  (not refined)"))
    print()
    write_expt_refl(refined, table, outputs)
    return 0
