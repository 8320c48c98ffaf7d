"""`xtal integrate` on the command line: integrated reflections, the resolution tables, errors."""
import math
import re

from processing.io.refl import read_reflections
from processing.reflections import Flags

from .conftest import assert_one_line_error, run_xtal


def resolution_tables(text: str) -> list[list[dict]]:
    """Per sweep, the rows of its "Summary vs resolution" table as {column: text}."""
    tables = []
    for block in text.split("Summary vs resolution")[1:]:
        lines = [line for line in block.splitlines() if line.startswith("|")]
        head = [c.strip() for c in lines[0].strip("|").split("|")]
        tables.append([dict(zip(head, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:]])
    return tables


def test_integrate_flags_reflections(integrated):
    table = read_reflections(integrated.path("integrated.refl"))
    summed = table.get_flags(Flags.integrated_sum)
    assert int(summed.sum()) > 12000  # 14282 of 14702 predicted today
    for k in range(3):
        assert int(summed[table["id"] == k].sum()) > 4000
    assert (integrated.folder / "integrated.expt").exists()


def test_integrate_tables_have_no_nan(integrated):
    out = integrated.proc.stdout
    assert not re.search(r"\bnan\b", out, re.IGNORECASE)
    tables = resolution_tables(out)
    assert len(tables) == 3
    for rows in tables:
        assert len(rows) >= 5
        for row in rows:
            for column in ("<I/sigI> (sum)", "<I/sigI> (prf)"):
                assert math.isfinite(float(row[column])) and float(row[column]) > 0, row
        assert float(rows[0]["<I/sigI> (sum)"]) > 50  # the strong low-resolution bin


def test_integrate_missing_reflection_file(refined, tmp_path):
    proc = run_xtal("integrate", refined.path("refined.expt"), "nowhere.refl", cwd=tmp_path)
    assert_one_line_error(proc, "nowhere.refl")
    assert list(tmp_path.iterdir()) == []
