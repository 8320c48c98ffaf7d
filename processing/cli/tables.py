"""Text tables as DIALS prints them (dials.util.tabulate: tabulate's ``psql`` format)."""
from __future__ import annotations

import re

_NUM = re.compile(r"^-?\d+(\.\d*)?$")


def _decimal_column(cells: list[str]) -> list[str]:
    """Pad numbers so their decimal points line up (tabulate's numalign='decimal')."""
    if not cells or not all(_NUM.match(c) for c in cells):
        return cells
    frac = [len(c.split(".")[1]) + 1 if "." in c else 0 for c in cells]
    width = max(frac)
    return [c + " " * (width - f) for c, f in zip(cells, frac)]


def psql_table(headers: list[str], rows: list[list], align: str = "right") -> str:
    """Rows of cells under (possibly multi-line) headers, boxed as tabulate's psql.

    Numeric columns line up on the decimal point; ``align`` ("right" or "left")
    places the other cells.
    """
    rows = [[str(c) for c in r] for r in rows]
    cols = [_decimal_column([r[k] for r in rows]) for k in range(len(headers))]
    head = [h.split("\n") for h in headers]
    nlines = max(len(h) for h in head)
    head = [h + [""] * (nlines - len(h)) for h in head]
    widths = [max([len(x) + 2 for x in h] + [len(c) for c in col]) for h, col in zip(head, cols)]
    just = (lambda s, w: s.rjust(w)) if align == "right" else (lambda s, w: s.ljust(w))
    rule = lambda l, m, r: l + m.join("-" * (w + 2) for w in widths) + r
    lines = [rule("+", "+", "+")]
    for i in range(nlines):
        lines.append("| " + " | ".join(just(h[i], w) for h, w in zip(head, widths)) + " |")
    lines.append(rule("|", "+", "|"))
    for j in range(len(rows)):
        lines.append("| " + " | ".join(just(col[j], w) for col, w in zip(cols, widths)) + " |")
    lines.append(rule("+", "+", "+"))
    return "\n".join(lines)


def rmsd_table(rows: list[dict]) -> str:
    """The "RMSDs by experiment" table of dials.refine / dials.index."""
    headers = ["Exp\nid", "Nref", "RMSD_X\n(px)", "RMSD_Y\n(px)", "RMSD_Z\n(images)"]
    body = [[str(r["experiment"]), str(r["nref"]), f"{r['rmsd_x_px']:.5g}", f"{r['rmsd_y_px']:.5g}",
             f"{r['rmsd_z_images']:.5g}"] for r in rows]
    return psql_table(headers, body)


def num(value, spec: str = ".2f") -> str:
    """``value`` formatted with ``spec``; "—" for a statistic that has no value (None)."""
    return "—" if value is None else format(value, spec)
