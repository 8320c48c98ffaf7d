"""ReflectionTable and DIALS flag bits."""

from __future__ import annotations

import numpy as np
import pytest

from processing.errors import XtalError
from processing.reflections import FLAG_ROWS, Flags, ReflectionTable, Shoebox


def make_table(ids, identifiers=None, start=0) -> ReflectionTable:
    n = len(ids)
    t = ReflectionTable()
    t["id"] = np.asarray(ids)
    t["flags"] = np.zeros(n, np.uint64)
    t["miller_index"] = np.arange(start, start + 3 * n).reshape(n, 3)
    t["d"] = np.linspace(1.0, 2.0, n) + start
    t["xyzobs.px.value"] = np.arange(3 * n, dtype=float).reshape(n, 3) + start
    t["entering"] = np.arange(n) % 2 == 0
    t.experiment_identifiers = identifiers or {}
    return t


# ---------------------------------------------------------------- flag values
def test_flag_values_match_dials_3_12():
    # Values read from dials.array_family.flex.reflection_table.flags (DIALS 3.12).
    assert Flags.predicted == 1
    assert Flags.strong == 32
    assert Flags.integrated == 768
    assert Flags.overlapped_bg == 2048
    assert Flags.includes_bad_pixels == 49152
    assert Flags.bad_shoebox == Flags.bad_spot == 64512
    assert Flags.used_in_modelling == 65536
    assert Flags.bad_reference == 2097152
    assert Flags.user_excluded_in_scaling == 4194304
    assert Flags.bad_for_scaling == 29360128
    assert Flags.excluded_for_refinement == 33554432
    assert Flags.bad_for_refinement == 33685504
    assert Flags.scaled == 67108864


def test_flag_rows_order_like_dials_show():
    names = [name for name, _ in FLAG_ROWS]
    assert len(FLAG_ROWS) == 31
    assert names[:3] == ["predicted", "observed", "indexed"]
    assert "bad_spot" in names and "bad_shoebox" not in names
    assert names[-3:] == ["excluded_for_refinement", "bad_for_refinement", "scaled"]
    values = [v for _, v in FLAG_ROWS]
    assert values == sorted(values)


def test_set_get_unset_flags():
    t = make_table([0] * 6)
    t.set_flags(np.array([True, True, False, False, True, False]), Flags.indexed)
    t.set_flags([1, 3], Flags.integrated_sum)
    assert t.get_flags(Flags.indexed).tolist() == [True, True, False, False, True, False]
    assert t.get_flags(Flags.integrated).sum() == 0  # all bits: sum and prf
    assert t.get_flags(Flags.integrated, all=False).tolist() == [False, True, False, True, False, False]
    assert int(t["flags"][1]) == 4 + 256
    t.unset_flags(np.ones(6, bool), Flags.indexed)
    assert t["flags"].tolist() == [0, 256, 0, 256, 0, 0]
    assert t["flags"].dtype == np.uint64
    t.set_flags([5], Flags.scaled | Flags.strong)
    assert int(t["flags"][5]) == (1 << 26) + 32
    t.unset_flags([5], Flags.strong)
    assert int(t["flags"][5]) == 1 << 26
    with pytest.raises(ValueError):
        t.set_flags(np.ones(5, bool), Flags.strong)
    with pytest.raises(IndexError):
        t.set_flags([6], Flags.strong)


def test_set_flags_creates_flags_column():
    t = ReflectionTable({"d": np.ones(3)})
    t.set_flags([2], Flags.strong)
    assert t["flags"].tolist() == [0, 0, 32]


# ---------------------------------------------------------------- columns
def test_columns_kinds_and_validation():
    t = make_table([0, 0, 1])
    assert len(t) == 3
    assert t.kind("id") == "int" and t["id"].dtype == np.int32
    assert t.kind("miller_index") == "cctbx::miller::index<>"
    assert t["miller_index"].dtype == np.int32 and t["miller_index"].shape == (3, 3)
    assert t.kind("xyzobs.px.value") == "vec3<double>"
    assert t.kind("entering") == "bool"
    t["bbox"] = np.zeros((3, 6), np.int64)
    assert t.kind("bbox") == "int6" and t["bbox"].dtype == np.int32
    t["ub"] = np.zeros((3, 9))
    assert t.kind("ub") == "mat3<double>"
    t["xy"] = np.zeros((3, 2))
    assert t.kind("xy") == "vec2<double>"
    t["count"] = np.array([1, 2, 3], np.uint64)
    assert t.kind("count") == "std::size_t"
    t["label"] = np.array(["a", "bb", "c"])
    assert t.kind("label") == "std::string" and t["label"][1] == "bb"
    assert "label" in t and "nope" not in t
    assert t.keys()[:3] == ["id", "flags", "miller_index"]

    with pytest.raises(ValueError, match="has 4 rows, table has 3"):
        t["d"] = np.ones(4)
    with pytest.raises(ValueError, match="shape"):
        t["s1"] = np.ones((3, 2))
    with pytest.raises(ValueError, match="needs integers"):
        t["id"] = np.array([0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="out of range"):
        t["flags"] = np.array([-1, 0, 0])
    with pytest.raises(KeyError):
        t["missing"]
    del t["label"]
    assert "label" not in t and t.ncols == 10


def test_empty_table_and_empty():
    t = ReflectionTable.empty(["flags", "id", "miller_index", "s1", "shoebox"], nrows=4)
    assert len(t) == 4
    assert t["miller_index"].shape == (4, 3) and t["miller_index"].dtype == np.int32
    assert t["s1"].shape == (4, 3) and t["s1"].dtype == np.float64
    assert t["flags"].dtype == np.uint64 and t.kind("shoebox") == "Shoebox<>"
    z = ReflectionTable.empty({"xy": "vec2<double>", "ok": "bool"})
    assert len(z) == 0 and z["xy"].shape == (0, 2)
    with pytest.raises(ValueError, match="no standard kind"):
        ReflectionTable.empty(["my_col"])


# ---------------------------------------------------------------- selection
def test_select_by_mask_and_indices_prunes_identifiers():
    t = make_table([0, 1, 1, 0, 2], {0: "a", 1: "b", 2: "c"})
    s = t.select(np.array([False, True, True, False, False]))
    assert len(s) == 2
    assert s["miller_index"].tolist() == [[3, 4, 5], [6, 7, 8]]
    assert s.experiment_identifiers == {1: "b"}
    s2 = t.select([4, 0])
    assert s2["id"].tolist() == [2, 0]
    assert s2.experiment_identifiers == {0: "a", 2: "c"}
    assert s2["d"].tolist() == [t["d"][4], t["d"][0]]
    # a copy: changing the selection leaves the table alone
    s2["d"][0] = -1
    assert t["d"][4] == 2.0
    with pytest.raises(ValueError):
        t.select(np.ones(4, bool))
    with pytest.raises(IndexError):
        t.select([-1])


def test_extend_merges_identifiers():
    a = make_table([0, 0], {0: "a"})
    b = make_table([1, 1, 1], {1: "b"}, start=100)
    a.extend(b)
    assert len(a) == 5
    assert a["id"].tolist() == [0, 0, 1, 1, 1]
    assert a["miller_index"][2].tolist() == [100, 101, 102]
    assert a.experiment_identifiers == {0: "a", 1: "b"}
    assert a.are_experiment_identifiers_consistent()


def test_extend_refuses_inconsistent_identifiers_without_change():
    a = make_table([0, 0], {0: "a"})
    b = make_table([0], {0: "other"})
    with pytest.raises(XtalError, match="Experiment identifiers do not match: id 0"):
        a.extend(b)
    assert len(a) == 2 and a.experiment_identifiers == {0: "a"}
    c = make_table([1], {1: "a"})
    with pytest.raises(XtalError, match="'a' has id 0 in one table and 1"):
        a.extend(c)
    d = make_table([0])
    del d["d"]
    with pytest.raises(ValueError, match="columns differ \\(d\\)"):
        a.extend(d)


def test_extend_empty_table_adopts_columns():
    t = ReflectionTable()
    t.extend(make_table([0, 0, 0], {0: "x"}))
    assert len(t) == 3 and t.kind("miller_index") == "cctbx::miller::index<>"
    assert t.experiment_identifiers == {0: "x"}


def test_concatenate_renumbers_and_split_restores():
    a = make_table([0, 0, -1], {0: "sweep-a"})
    b = make_table([0, 0, 0, 0], {0: "sweep-b"}, start=50)
    joined = ReflectionTable.concatenate([a, b])
    assert len(joined) == 7
    assert joined["id"].tolist() == [0, 0, -1, 1, 1, 1, 1]
    assert joined.experiment_identifiers == {0: "sweep-a", 1: "sweep-b"}
    parts = joined.split_by_experiment()
    assert [len(p) for p in parts] == [2, 4]  # the id -1 row belongs to no experiment
    assert parts[0].experiment_identifiers == {0: "sweep-a"}
    assert parts[1].experiment_identifiers == {1: "sweep-b"}
    assert np.array_equal(parts[1]["miller_index"], b["miller_index"])
    assert np.array_equal(parts[0]["d"], a["d"][:2])
    # a table meeting an identifier it already has keeps one id for it
    again = ReflectionTable.concatenate([a, make_table([3], {3: "sweep-a"})])
    assert again["id"].tolist() == [0, 0, -1, 0]
    assert again.experiment_identifiers == {0: "sweep-a"}


def test_split_by_experiment_keeps_row_order():
    t = make_table([2, 0, 2, 1, 0], {0: "a", 1: "b", 2: "c"})
    parts = t.split_by_experiment()
    assert [p["id"].tolist() for p in parts] == [[0, 0], [1], [2, 2]]
    assert parts[0]["miller_index"][:, 0].tolist() == [3, 12]
    assert parts[2]["miller_index"][:, 0].tolist() == [0, 6]
    assert [p.experiment_identifiers for p in parts] == [{0: "a"}, {1: "b"}, {2: "c"}]


def test_select_and_remove_on_experiment_identifiers():
    t = make_table([0, 1, 2, 1, 0], {0: "a", 1: "b", 2: "c"})
    s = t.select_on_experiment_identifiers(["c", "a"])
    assert s["id"].tolist() == [0, 2, 0]
    assert s.experiment_identifiers == {0: "a", 2: "c"}
    with pytest.warns(UserWarning, match="zzz"):
        s2 = t.select_on_experiment_identifiers(["b", "zzz"])
    assert s2["id"].tolist() == [1, 1]
    r = t.remove_on_experiment_identifiers(["a"])
    assert r["id"].tolist() == [1, 2, 1] and r.experiment_identifiers == {1: "b", 2: "c"}


def test_reset_ids():
    t = make_table([7, 3, -1, 7], {3: "a", 7: "b"})
    t.reset_ids()
    assert t["id"].tolist() == [1, 0, -1, 1]
    assert t.experiment_identifiers == {0: "a", 1: "b"}
    assert t["id"].dtype == np.int32


def test_identifier_validation_and_cleaning():
    t = make_table([0, 0])
    with pytest.raises(ValueError):
        t.experiment_identifiers = {-1: "a"}
    t.experiment_identifiers = {0: "a", 5: "gone"}
    assert t.are_experiment_identifiers_consistent()  # extra entries are allowed
    t.clean_experiment_identifiers_map()
    assert t.experiment_identifiers == {0: "a"}
    t2 = make_table([0, 1], {0: "a"})
    assert not t2.are_experiment_identifiers_consistent()


# ---------------------------------------------------------------- summary
def test_summary_numbers():
    t = ReflectionTable()
    t["id"] = np.array([0, 0, 1, -1])
    t["d"] = np.array([1.0, 2.0, 3.0, 6.0])
    t["miller_index"] = np.array([[1, 2, 3], [-1, 0, 5], [0, 0, 1], [4, 4, 4]])
    t["flags"] = np.array([32, 32 | 4, 256, 512], np.uint64)
    t["entering"] = np.array([True, False, True, True])
    s = t.summary()
    rows = {r[0]: r[1:] for r in s["columns"]}
    assert s["nrows"] == 4
    assert "entering" not in rows  # dials.show leaves bool columns out
    assert rows["d"] == [1.0, 6.0, 3.0]
    assert rows["id"] == [-1, 1, 0.0]
    assert rows["miller_index"] == [[-1, 0, 1], [4, 4, 5], [1.0, 1.5, 3.25]]
    flags = {r[0]: r[1:] for r in s["flags"]}
    assert flags["strong"] == [2, 50.0]
    assert flags["indexed"] == [1, 25.0]
    assert flags["integrated"] == [2, 50.0]  # any bit, as dials.show counts
    assert flags["scaled"] == [0, 0.0]
    assert ReflectionTable.empty(["d"]).summary() == {"nrows": 0, "columns": [], "flags": []}


def test_summary_shoebox_rows():
    t = ReflectionTable()
    data = np.full((1, 2, 2), 3.0, np.float32)
    mask = np.array([[[5, 5], [1, 4]]], np.int32)  # two valid foreground pixels
    bg = np.ones((1, 2, 2), np.float32)
    t["shoebox"] = [
        Shoebox(0, (0, 2, 0, 2, 0, 1), data, mask, bg),
        Shoebox(0, (0, 3, 0, 1, 0, 1)),
    ]
    rows = {r[0]: r[1:] for r in t.summary()["columns"]}
    assert rows["  summed I"] == [0.0, 4.0, 2.0]
    assert rows["  N pix"] == [3.0, 4.0, 3.5]
    assert rows["  N valid foreground pix"] == [0.0, 2.0, 1.0]
