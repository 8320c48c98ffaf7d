"""DIALS msgpack .refl reading and writing, against real DIALS files."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processing.errors import XtalError
from processing.io import refl as refl_io
from processing.io.refl import decode_reflections, encode_reflections, read_reflections, write_reflections
from processing.reflections import Flags, ReflectionTable, Shoebox

REAL = Path("../shared/data/real/l_cysteine_narrow_wedge")
FILES = {
    # file: (nrows, identifier, strong count, miller_index of row 0)
    "11_integrated.refl": (92, "0812526a-eca7-467f-b271-26cb05ff56f4", 33, [-1, -10, 11]),
    "23_integrated.refl": (69, "6a0ce67e-c1b7-4667-a8b7-0e566468efe3", 21, [-1, 0, -15]),
}


def real_file(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real data {path} not present")
    return path


def read_quiet(path, **kw) -> ReflectionTable:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return read_reflections(path, **kw)


def assert_tables_equal(a: ReflectionTable, b: ReflectionTable) -> None:
    assert a.keys() == b.keys()
    assert len(a) == len(b)
    for name in a.keys():
        assert a.kind(name) == b.kind(name), name
        x, y = a[name], b[name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if a.kind(name) == "Shoebox<>":
            assert all(p == q for p, q in zip(x, y)), name
        else:
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
    assert a.experiment_identifiers == b.experiment_identifiers


# ------------------------------------------------------------- real files
@pytest.mark.parametrize("name", sorted(FILES))
def test_real_file_round_trip(name, tmp_path):
    nrows, identifier, n_strong, hkl0 = FILES[name]
    with pytest.warns(UserWarning, match="'shoebox' \\(Shoebox<>\\) not loaded"):
        t = read_reflections(real_file(name))
    assert len(t) == nrows
    assert t.experiment_identifiers == {0: identifier}
    assert "shoebox" not in t and len(t.keys()) == 34
    assert int(t.get_flags(Flags.strong).sum()) == n_strong
    assert t["miller_index"][0].tolist() == hkl0
    assert t.kind("bbox") == "int6" and t["bbox"].shape == (nrows, 6)
    assert t["flags"].dtype == np.uint64 and t["panel"].dtype == np.uint64
    assert t["entering"].dtype == np.bool_

    out = tmp_path / "copy.refl"
    write_reflections(out, t)
    assert_tables_equal(read_quiet(out), t)
    assert os.listdir(tmp_path) == ["copy.refl"]  # no temporary left behind


@pytest.mark.parametrize("name", sorted(FILES))
def test_real_file_with_shoeboxes_is_byte_identical(name, tmp_path):
    path = real_file(name)
    raw = path.read_bytes()
    t = read_reflections(path, skip_shoebox=False)
    assert t.kind("shoebox") == "Shoebox<>"
    assert encode_reflections(t) == raw
    write_reflections(tmp_path / "x.refl", t)
    assert (tmp_path / "x.refl").read_bytes() == raw


def test_real_file_11_known_values():
    t = read_reflections(real_file("11_integrated.refl"), skip_shoebox=False)
    # numbers printed by `dials.show 11_integrated.refl show_flags=True` (DIALS 3.12)
    ids, counts = np.unique(t["id"], return_counts=True)
    assert ids.tolist() == [-1, 0] and counts.tolist() == [7, 85]
    s = t.summary()
    rows = {r[0]: r[1:] for r in s["columns"]}
    assert rows["flags"][:2] == [769, 35651616]
    assert round(rows["flags"][2]) == 3648251
    assert rows["miller_index"][0] == [-7, -11, -7] and rows["miller_index"][1] == [3, 0, 11]
    assert rows["intensity.sum.value"][1] == 25664.0
    assert round(rows["intensity.prf.value"][2], 1) == 288.4
    assert rows["  N pix"][1] == 500.0 and round(rows["  N pix"][2], 1) == 11.6
    assert round(rows["  summed I"][2], 1) == 297.3
    assert round(rows["  N valid foreground pix"][2], 1) == 4.4
    flags = {r[0]: r[1] for r in s["flags"]}
    assert flags == {**flags, "predicted": 85, "indexed": 26, "used_in_refinement": 16,
                     "strong": 33, "integrated_sum": 63, "integrated_prf": 21,
                     "bad_spot": 20, "centroid_outlier": 10, "failed_during_profile_fitting": 54,
                     "excluded_for_refinement": 7, "bad_for_refinement": 17, "scaled": 0}
    with_pixels = [i for i, box in enumerate(t["shoebox"]) if box.data is not None]
    assert len(with_pixels) == 17 and with_pixels[0] == 75  # DIALS: 17 shoeboxes with data
    box = t["shoebox"][75]
    assert box.bbox == (254, 256, 1166, 1168, 0, 2) == tuple(t["bbox"][75])
    assert box.data.shape == (2, 2, 2) and box.mask.dtype == np.int32
    assert float(box.data.sum()) == 24.0


def test_real_files_concatenate_and_split(tmp_path):
    a = read_quiet(real_file("11_integrated.refl"))
    b = read_quiet(real_file("23_integrated.refl"))
    with pytest.raises(XtalError, match="Experiment identifiers do not match"):
        a.copy().extend(b)  # both use id 0
    joined = ReflectionTable.concatenate([a, b])
    assert len(joined) == 161
    assert joined.experiment_identifiers == {0: FILES["11_integrated.refl"][1], 1: FILES["23_integrated.refl"][1]}
    write_reflections(tmp_path / "joined.refl", joined)
    back = read_quiet(tmp_path / "joined.refl")
    parts = back.split_by_experiment()
    assert [len(p) for p in parts] == [85, 69]
    assert np.array_equal(parts[1]["xyzobs.px.value"], b["xyzobs.px.value"])
    assert int(back.get_flags(Flags.strong).sum()) == 54


# ------------------------------------------------------------- synthetic
def all_kinds_table() -> ReflectionTable:
    rng = np.random.default_rng(1)
    n = 5
    t = ReflectionTable()
    t["flags"] = np.array([1, 32, 2**40, 0, 2**63 + 5], np.uint64)
    t["id"] = np.array([0, 1, 1, -1, 0])
    t["entering"] = np.array([True, False, True, True, False])
    t["d"] = rng.normal(size=n)
    t["xy"] = rng.normal(size=(n, 2))
    t["s1"] = rng.normal(size=(n, 3))
    t["ub"] = rng.normal(size=(n, 9))
    t["bbox"] = rng.integers(-5, 100, size=(n, 6))
    t["miller_index"] = rng.integers(-30, 30, size=(n, 3))
    t.experiment_identifiers = {0: "first", 1: "second"}
    return t


def test_all_kinds_round_trip(tmp_path):
    t = all_kinds_table()
    write_reflections(tmp_path / "t.refl", t)
    back = read_reflections(tmp_path / "t.refl")
    assert sorted(t.keys()) == back.keys()  # written in DIALS's sorted order
    for name in t.keys():
        assert back.kind(name) == t.kind(name)
        assert np.array_equal(back[name], t[name]) and back[name].dtype == t[name].dtype
    assert int(back["flags"][4]) == 2**63 + 5
    assert back.experiment_identifiers == {0: "first", 1: "second"}


def test_shoebox_round_trip_synthetic():
    t = ReflectionTable()
    shape = (2, 3, 4)
    data = np.arange(24, dtype=np.float32).reshape(shape)
    t["shoebox"] = [
        Shoebox(1, (10, 14, 20, 23, 5, 7), data, (data % 7).astype(np.int32), data / 2),
        Shoebox(0, (0, 0, 0, 0, 0, 0)),
    ]
    back = decode_reflections(encode_reflections(t), skip_shoebox=False)
    assert back["shoebox"][0] == t["shoebox"][0]
    assert back["shoebox"][0].background[1, 2, 3] == 11.5
    assert back["shoebox"][1].data is None and back["shoebox"][1].panel == 0


def libstdcxx_strings(values: list[str]) -> bytes:
    """std::string objects as DIALS dumps them on Linux: ptr, size, 16-byte buffer."""
    out = b""
    for v in values:
        raw = v.encode()
        out += (0x28FD5750).to_bytes(8, "little") + len(raw).to_bytes(8, "little")
        out += raw.ljust(16, b"\0") if len(raw) <= 15 else (len(raw)).to_bytes(8, "little") + b"\0" * 8
    return out


def table_bytes(data: dict, nrows: int, identifiers=None, version=1) -> bytes:
    header = {"identifiers": identifiers or {}, "nrows": nrows, "data": data}
    return msgpack.packb(["dials::af::reflection_table", version, header], use_bin_type=True)


def test_string_column_read_and_not_written():
    raw = table_bytes({"s": ["std::string", [3, libstdcxx_strings(["ab", "cde", ""])]]}, 3)
    t = decode_reflections(raw)
    assert t.kind("s") == "std::string" and t["s"].tolist() == ["ab", "cde", ""]
    t["d"] = np.ones(3)
    with pytest.warns(UserWarning, match="'s' \\(std::string\\) not written"):
        back = decode_reflections(encode_reflections(t))
    assert back.keys() == ["d"]
    long = table_bytes({"s": ["std::string", [1, libstdcxx_strings(["a long string of 24 b"])]]}, 1)
    with pytest.raises(XtalError, match="longer than 15 bytes"):
        decode_reflections(long)


# ------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    with pytest.raises(XtalError, match="nope.refl: no such reflection file"):
        read_reflections(tmp_path / "nope.refl")


def test_directory(tmp_path):
    with pytest.raises(XtalError, match="is a directory"):
        read_reflections(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.refl").write_bytes(b"")
    with pytest.raises(XtalError, match="file is empty"):
        read_reflections(tmp_path / "e.refl")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_file(tmp_path, keep):
    raw = real_file("23_integrated.refl").read_bytes()
    (tmp_path / "t.refl").write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(XtalError, match="t.refl: file is truncated"):
        read_reflections(tmp_path / "t.refl")


def test_not_a_reflection_table(tmp_path):
    (tmp_path / "x.refl").write_bytes(b'{"__id__": "ExperimentList"}')
    with pytest.raises(XtalError, match="x.refl: not a DIALS reflection table"):
        read_reflections(tmp_path / "x.refl")
    (tmp_path / "y.refl").write_bytes(msgpack.packb(["something", 1, {}]))
    with pytest.raises(XtalError, match="y.refl: not a DIALS reflection table \\(no 'dials::af::reflection_table' header\\)"):
        read_reflections(tmp_path / "y.refl")
    (tmp_path / "p.refl").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(XtalError, match="pickle-format reflection file"):
        read_reflections(tmp_path / "p.refl")


def test_unknown_column_type():
    raw = table_bytes({"d": ["double", [2, b"\0" * 16]], "weird": ["float16", [2, b"\0" * 4]]}, 2)
    with pytest.raises(XtalError, match="column 'weird' has unknown type 'float16'"):
        decode_reflections(raw, source="u.refl")


def test_column_rows_inconsistent_with_nrows():
    raw = table_bytes({"d": ["double", [2, b"\0" * 16]]}, 3)
    with pytest.raises(XtalError, match="column 'd' has 2 rows but the table has 3"):
        decode_reflections(raw)
    raw = table_bytes({"s1": ["vec3<double>", [2, b"\0" * 40]]}, 2)
    with pytest.raises(XtalError, match="column 's1' \\(vec3<double>\\) has 40 bytes, expected 48"):
        decode_reflections(raw)


def test_other_corruptions():
    with pytest.raises(XtalError, match="version 2 is not supported"):
        decode_reflections(table_bytes({}, 0, version=2))
    good = table_bytes({"d": ["double", [1, b"\0" * 8]]}, 1)
    with pytest.raises(XtalError, match="3 bytes after the end"):
        decode_reflections(good + b"abc")
    with pytest.raises(XtalError, match="bad experiment identifiers"):
        decode_reflections(table_bytes({}, 0, identifiers={"0": "a"}))
    assert len(decode_reflections(good)) == 1


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.refl"
    target.write_bytes(b"old contents")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(refl_io.os, "replace", boom)
    with pytest.raises(XtalError, match="out.refl: cannot write reflection file \\(No space left on device\\)"):
        write_reflections(target, all_kinds_table())
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["out.refl"]


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(XtalError, match="cannot write reflection file"):
        write_reflections(tmp_path / "no" / "such.refl", all_kinds_table())


# ------------------------------------------------------------- fuzzing
def _decode_or_xtal(raw: bytes, skip_shoebox: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            decode_reflections(raw, skip_shoebox=skip_shoebox)
        except XtalError:
            pass


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=2000), st.booleans())
def test_fuzz_random_bytes(raw, skip):
    _decode_or_xtal(raw, skip)


@_FUZZ
@given(st.data())
def test_fuzz_truncated_and_mutated_real_file(data):
    path = REAL / "23_integrated.refl"
    if not path.exists():
        pytest.skip("real data not present")
    raw = path.read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(XtalError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decode_reflections(raw[:cut], skip_shoebox=data.draw(st.booleans()))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=4))
    mutated = bytearray(raw)
    for pos, value in flips:
        mutated[pos] = value
    _decode_or_xtal(bytes(mutated), skip_shoebox=data.draw(st.booleans()))
