"""The merging tables in dials.scale's layout (lines copied from a DIALS 3.12 dials.scale.log)."""
import gemmi

from processing.cli.merging_table import format_merging_table
from processing.merging import merging_statistics
from tests.processing.merging.synth import observations

DIALS_LINES = [
    "            ----------Merging statistics by resolution bin----------           ",
    "",
    " d_max  d_min   #obs  #uniq   mult.  %comp       <I>  <I/sI>    r_mrg   r_meas    r_pim   r_anom   cc1/2   cc_ano",
    "  1.94   1.43      3      2    1.50   3.57    1808.8    42.9    0.004    0.005    0.004    0.007   0.000   0.000",
    "  1.94   0.62     40     38    1.05   2.82     746.0    17.7    0.025    0.036    0.025    0.050   1.000   0.000",
    "",
    "",
    "",
    "            -------------Summary of merging statistics--------------           ",
    "",
    "                                             Overall    Low     High",
    "High resolution limit                           0.62    1.43    0.62",
    "Low resolution limit                            1.94    1.94    0.63",
    "Completeness                                    2.8     3.6     8.1",
    "Multiplicity                                    1.1     1.5     1.0",
    "I/sigma                                        17.7    42.9     9.2",
    "Rmerge(I)                                     0.025   0.004   0.000",
    "Rmeas(I)                                      0.036   0.005   0.000",
    "Rpim(I)                                       0.025   0.004   0.000",
    "CC half                                       1.000   0.000   0.000",
    "Total observations                               40       3       5",
    "Total unique                                     38       2       5",
]


def _row(**kw):
    row = dict(d_max=None, d_min=None, n_obs=0, n_unique=0, multiplicity=None, completeness=None,
               mean_intensity=None, i_over_sigma=None, rmerge=None, rmeas=None, rpim=None,
               cc_half=None, cc_half_random=None, cc_ano=None, r_anom=None,
               anom_completeness=None, anom_multiplicity=None)
    row.update(kw)
    return row


def test_layout_matches_dials_scale_log():
    low = _row(d_max=1.94, d_min=1.43, n_obs=3, n_unique=2, multiplicity=1.5, completeness=3.57,
               mean_intensity=1808.8, i_over_sigma=42.9, rmerge=0.004, rmeas=0.005, rpim=0.004,
               r_anom=0.007, cc_half=0.0, cc_ano=0.0)
    high = _row(d_max=0.63, d_min=0.62, n_obs=5, n_unique=5, multiplicity=1.0, completeness=8.06,
                mean_intensity=197.6, i_over_sigma=9.2, rmerge=0.0, rmeas=0.0, rpim=0.0,
                cc_half=0.0)
    overall = _row(d_max=1.94, d_min=0.62, n_obs=40, n_unique=38, multiplicity=40 / 38,
                   completeness=2.82, mean_intensity=746.0, i_over_sigma=17.7, rmerge=0.025,
                   rmeas=0.036, rpim=0.025, r_anom=0.050, cc_half=1.0, cc_ano=0.0)
    stats = dict(shells=[low], overall=overall, low=low, high=high, anomalous=False, wilson_b=None)
    lines = format_merging_table(stats)
    assert lines[:-1] == DIALS_LINES
    assert lines[-1] == "Wilson B factor" + " " * 35 + "—"


def test_table_from_statistics_keeps_its_columns():
    _, _, hkl, i, v, _ = observations("P 21 3", (78.0,) * 3 + (90.0,) * 3, 2.0, multiplicity=1)
    stats = merging_statistics(hkl, i, v, gemmi.SpaceGroup("P 21 3"), (78.0,) * 3 + (90.0,) * 3,
                               anomalous=True)
    lines = format_merging_table(stats)
    rows = lines[3:3 + 21]
    assert all(len(r) == 112 for r in rows)  # every shell and the overall line, None as "—"
    assert rows[0].split()[8:] == ["—"] * 6  # multiplicity 1: no R, r_anom, CC½ or CC_ano
    assert any(line.startswith("Anomalous completeness") for line in lines)
    summary = {line[:40].strip(): line[40:].split() for line in lines[30:]}
    assert summary["Total unique"] == ["10953", str(stats["low"]["n_unique"]),
                                       str(stats["high"]["n_unique"])]
    assert summary["Completeness"] == ["100.0", "100.0", "100.0"]
