"""The merging-statistics tables in the layout dials.scale / dials.merge print.

Takes the dict of :func:`processing.merging.statistics.merging_statistics`; a statistic
without a value (None) prints as "—" in its column.
"""
from __future__ import annotations

from processing.cli.tables import num

BIN_TITLE = "            ----------Merging statistics by resolution bin----------           "
BIN_HEADER = (" d_max  d_min   #obs  #uniq   mult.  %comp       <I>  <I/sI>    r_mrg   r_meas"
              "    r_pim   r_anom   cc1/2   cc_ano")
SUMMARY_TITLE = "            -------------Summary of merging statistics--------------           "
SUMMARY_HEADER = " " * 45 + "Overall    Low     High"


def _cell(value, width: int, spec: str) -> str:
    return num(value, spec).rjust(width)


def _bin_line(row: dict) -> str:
    """One shell as dials prints it (cctbx's merging_stats.format layout)."""
    return " ".join([
        _cell(row["d_max"], 6, ".2f"),
        _cell(row["d_min"], 6, ".2f"),
        _cell(row["n_obs"], 6, "d"),
        _cell(row["n_unique"], 6, "d"),
        "  " + _cell(row["multiplicity"], 5, ".2f"),
        _cell(row["completeness"], 6, ".2f"),
        " " + _cell(row["mean_intensity"], 8, ".1f"),
        " " + _cell(row["i_over_sigma"], 6, ".1f"),
        " " + _cell(row["rmerge"], 7, ".3f"),
        " " + _cell(row["rmeas"], 7, ".3f"),
        " " + _cell(row["rpim"], 7, ".3f"),
        " " + _cell(row["r_anom"], 7, ".3f"),
        " " + _cell(row["cc_half"], 6, ".3f"),
        " " + _cell(row["cc_ano"], 6, ".3f"),
    ])


def _summary_line(label: str, rows: list[dict], key: str, spec: str, first_width: int = 11) -> str:
    widths = [first_width, 8, 8]
    return f"{label:<40}" + "".join(_cell(r[key], w, spec) for r, w in zip(rows, widths))


def format_merging_table(stats: dict) -> list[str]:
    """Lines of "Merging statistics by resolution bin" and "Summary of merging statistics"."""
    lines = [BIN_TITLE, "", BIN_HEADER]
    lines += [_bin_line(r) for r in stats["shells"]]
    lines.append(_bin_line(stats["overall"]))
    lines += ["", "", "", SUMMARY_TITLE, "", SUMMARY_HEADER]
    cols = [stats["overall"], stats["low"], stats["high"]]
    lines.append(_summary_line("High resolution limit", cols, "d_min", ".2f", 12))
    lines.append(_summary_line("Low resolution limit", cols, "d_max", ".2f", 12))
    lines.append(_summary_line("Completeness", cols, "completeness", ".1f"))
    lines.append(_summary_line("Multiplicity", cols, "multiplicity", ".1f"))
    lines.append(_summary_line("I/sigma", cols, "i_over_sigma", ".1f"))
    lines.append(_summary_line("Rmerge(I)", cols, "rmerge", ".3f"))
    lines.append(_summary_line("Rmeas(I)", cols, "rmeas", ".3f"))
    lines.append(_summary_line("Rpim(I)", cols, "rpim", ".3f"))
    lines.append(_summary_line("CC half", cols, "cc_half", ".3f"))
    if stats.get("anomalous"):
        lines.append(_summary_line("Anomalous completeness", cols, "anom_completeness", ".1f"))
        lines.append(_summary_line("Anomalous multiplicity", cols, "anom_multiplicity", ".1f"))
        lines.append(_summary_line("Anomalous correlation", cols, "cc_ano", ".3f"))
    lines.append(_summary_line("Total observations", cols, "n_obs", "d"))
    lines.append(_summary_line("Total unique", cols, "n_unique", "d"))
    lines.append(f"{'Wilson B factor':<40}" + _cell(stats.get("wilson_b"), 11, ".2f"))
    return lines


__all__ = ["format_merging_table"]
