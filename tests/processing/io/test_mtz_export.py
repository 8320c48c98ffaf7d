"""MTZ writers: merged (dials.merge layout) and unmerged scaled (dials.export layout)."""
from __future__ import annotations

import os
from pathlib import Path

import gemmi
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from processing.errors import XtalError
from processing.io.mtz_export import (batch_offsets, cambridge_frame, mosflm_u, to_asu_with_isym,
                                      write_merged_mtz, write_unmerged_mtz)
from processing.merging.data import MergedIntensities
from processing.models import (Beam, Crystal, Detector, Experiment, ExperimentList, Goniometer, Panel,
                               Scan)
from processing.models.crystal import hall_symbol
from processing.reflections import Flags, ReflectionTable

X4WIDE = Path("../shared/data/real/x4wide_merged/AUTOMATIC_DEFAULT_scaled.mtz")


# --------------------------------------------------------------------------- merged
def _merged(sg="P 21 21 21", cell=(40.0, 50.0, 60.0, 90.0, 90.0, 90.0), anomalous=True) -> MergedIntensities:
    hkl = np.array([[1, 2, 3], [0, 0, 4], [2, 1, 5], [3, 0, 1]], dtype=np.int32)
    n = len(hkl)
    imean = np.array([100.5, 2000.25, -3.75, 12.125])
    i_plus = np.array([101.0, 2001.0, -3.5, 12.0])
    i_minus = np.array([99.0, np.nan, -4.0, 12.5])  # (0,0,4) is centric: no I(-)
    f = np.sqrt(np.abs(imean)) + 0.5
    return MergedIntensities(
        hkl=hkl, d=np.array([10.0, 15.0, 8.0, 12.0]), imean=imean, sigimean=np.array([1.5, 20.0, 2.0, 0.75]),
        n_obs=np.array([8, 4, 3, 6]), i_plus=i_plus, sig_i_plus=np.array([2.0, 20.0, 3.0, 1.0]),
        n_plus=np.array([4, 4, 2, 3]), i_minus=i_minus, sig_i_minus=np.array([2.5, np.nan, 3.5, 1.25]),
        n_minus=np.array([4, 0, 1, 3]), f=f, sigf=np.full(n, 0.25), f_plus=f + 0.125,
        sigf_plus=np.full(n, 0.5), f_minus=np.where(np.isnan(i_minus), np.nan, f - 0.125),
        sigf_minus=np.where(np.isnan(i_minus), np.nan, 0.5), dano=np.where(np.isnan(i_minus), np.nan, 0.25),
        sigdano=np.where(np.isnan(i_minus), np.nan, 0.7), space_group=gemmi.SpaceGroup(sg), cell=cell,
        wavelength=0.9795, anomalous=anomalous)


ANOMALOUS_LAYOUT = [("H", "H"), ("K", "H"), ("L", "H"), ("IMEAN", "J"), ("SIGIMEAN", "Q"), ("N", "I"),
                    ("F", "F"), ("SIGF", "Q"), ("I(+)", "K"), ("SIGI(+)", "M"), ("I(-)", "K"), ("SIGI(-)", "M"),
                    ("N(+)", "I"), ("N(-)", "I"), ("F(+)", "G"), ("SIGF(+)", "L"), ("F(-)", "G"),
                    ("SIGF(-)", "L"), ("DANO", "D"), ("SIGDANO", "Q")]


def _column(mtz, label):
    return np.array(mtz.column_with_label(label), dtype=float)


def test_merged_anomalous_round_trip(tmp_path):
    merged = _merged()
    out = tmp_path / "merged.mtz"
    write_merged_mtz(out, merged, project="proj", crystal="xtl", dataset="peak", history=["merged 4 refl"])
    mtz = gemmi.read_mtz_file(str(out))
    assert [(c.label, c.type) for c in mtz.columns] == ANOMALOUS_LAYOUT
    assert mtz.spacegroup.hm == "P 21 21 21"
    assert mtz.cell.parameters == pytest.approx((40.0, 50.0, 60.0, 90.0, 90.0, 90.0), abs=1e-3)
    ds = mtz.dataset(1)
    assert (ds.project_name, ds.crystal_name, ds.dataset_name) == ("proj", "xtl", "peak")
    assert ds.wavelength == pytest.approx(0.9795, abs=1e-6)
    assert mtz.column_with_label("H").dataset_id == 0 and mtz.column_with_label("IMEAN").dataset_id == 1
    assert "merged 4 refl" in mtz.history
    # rows come back sorted by hkl: map them to the input order
    hkl = np.array(mtz.make_miller_array())
    order = [next(i for i, h in enumerate(merged.hkl) if tuple(h) == tuple(r)) for r in hkl]
    for label, attr in [("IMEAN", "imean"), ("SIGIMEAN", "sigimean"), ("I(+)", "i_plus"), ("SIGI(+)", "sig_i_plus"),
                        ("F", "f"), ("F(+)", "f_plus"), ("DANO", "dano"), ("SIGDANO", "sigdano")]:
        expected = getattr(merged, attr)[order]
        np.testing.assert_allclose(_column(mtz, label), expected.astype(np.float32), rtol=1e-7, equal_nan=True)
    i_minus = _column(mtz, "I(-)")
    centric = [k for k, i in enumerate(order) if np.isnan(merged.i_minus[i])]
    assert len(centric) == 1 and np.isnan(i_minus[centric[0]]) and np.isnan(_column(mtz, "SIGI(-)")[centric[0]])
    assert np.isnan(_column(mtz, "F(-)")[centric[0]]) and np.isfinite(_column(mtz, "F(+)")[centric[0]])
    assert np.isfinite(np.delete(i_minus, centric)).all()
    n = _column(mtz, "N")
    np.testing.assert_array_equal(n, merged.n_obs[order])
    assert np.array_equal(n, np.round(n))
    np.testing.assert_array_equal(_column(mtz, "N(-)"), merged.n_minus[order])


def test_merged_non_anomalous_i23(tmp_path):
    merged = _merged(sg="I 2 3", cell=(78.1, 78.1, 78.1, 90.0, 90.0, 90.0), anomalous=False)
    merged.hkl = np.array([[2, 1, 1], [2, 0, 0], [3, 2, 1], [4, 0, 0]], dtype=np.int32)
    out = tmp_path / "m.mtz"
    write_merged_mtz(out, merged)
    mtz = gemmi.read_mtz_file(str(out))
    assert [(c.label, c.type) for c in mtz.columns] == ANOMALOUS_LAYOUT[:8]
    assert mtz.spacegroup.hm == "I 2 3" and mtz.spacegroup.number == 197
    assert mtz.cell.a == pytest.approx(78.1, abs=1e-3)
    assert mtz.nreflections == 4
    assert sorted(_column(mtz, "IMEAN").tolist()) == sorted(merged.imean.astype(np.float32).tolist())


def test_merged_without_amplitudes_has_no_f_columns(tmp_path):
    merged = _merged()
    for name in ("f", "sigf", "f_plus", "sigf_plus", "f_minus", "sigf_minus", "dano", "sigdano"):
        setattr(merged, name, np.full(len(merged), np.nan))
    write_merged_mtz(tmp_path / "m.mtz", merged)
    labels = gemmi.read_mtz_file(str(tmp_path / "m.mtz")).column_labels()
    assert labels == ["H", "K", "L", "IMEAN", "SIGIMEAN", "N", "I(+)", "SIGI(+)", "I(-)", "SIGI(-)", "N(+)", "N(-)"]


def test_merged_labels_and_types_match_x4wide(tmp_path):
    if not X4WIDE.is_file():
        pytest.skip("../shared/data/real/x4wide_merged is absent")
    ref = gemmi.read_mtz_file(str(X4WIDE))
    write_merged_mtz(tmp_path / "m.mtz", _merged())
    ours = {c.label: c.type for c in gemmi.read_mtz_file(str(tmp_path / "m.mtz")).columns}
    ref_types = {c.label: c.type for c in ref.columns}
    common = set(ours) & set(ref_types)
    # every column the xia2/DIALS file has, we have too, with the same type
    assert common == set(ref_types) and len(common) == 11
    assert {label: ours[label] for label in common} == ref_types
    # and in the same relative order
    ours_order = [label for label in ours if label in common]
    assert ours_order[:5] == [c.label for c in ref.columns][:5]


def test_merged_errors_and_atomic_write(tmp_path):
    merged = _merged()
    empty = _merged()
    for name in ("hkl",):
        setattr(empty, name, np.zeros((0, 3), dtype=np.int32))
    with pytest.raises(XtalError, match="no merged reflections"):
        write_merged_mtz(tmp_path / "e.mtz", empty)
    with pytest.raises(XtalError, match="cannot write"):
        write_merged_mtz(tmp_path / "missing" / "m.mtz", merged)
    out = tmp_path / "m.mtz"
    out.write_bytes(b"old")
    write_merged_mtz(out, merged)
    assert gemmi.read_mtz_file(str(out)).nreflections == 4
    assert sorted(os.listdir(tmp_path)) == ["m.mtz"]  # no temporary file left behind


# --------------------------------------------------------------------------- unmerged
CELL = (50.0, 60.0, 70.0, 90.0, 90.0, 90.0)


def _experiments(n_expt=2, n_images=20, sg="P 21 21 21", cell=CELL) -> ExperimentList:
    out = ExperimentList()
    for k in range(n_expt):
        U = Rotation.random(random_state=10 + k).as_matrix()
        out.append(Experiment(
            beam=Beam(direction=[0.0, 0.0, 1.0], wavelength=1.0), detector=Detector([Panel()]),
            goniometer=Goniometer(), scan=Scan(image_range=(1, n_images), oscillation=(10.0 * k, 0.5)),
            crystal=Crystal.from_cell_and_U(cell, U, hall_symbol(sg)), identifier=f"expt-{k}"))
    return out


def _table(n=300, n_expt=2, n_images=20, seed=1):
    """Scaled-like table; rows 0–18 carry one defect each, the rest are good."""
    rng = np.random.default_rng(seed)
    hkl = rng.integers(-12, 13, size=(n, 3))
    hkl[np.all(hkl == 0, axis=1)] = (1, 2, 3)
    ident = rng.integers(0, n_expt, size=n)
    z = rng.uniform(0.0, n_images, size=n)
    xy = rng.uniform(10, 990, size=(n, 2))
    value = 1000.0 + np.arange(n)  # unique: identifies the row
    variance = 4.0 + np.arange(n) % 7
    flags = np.full(n, int(Flags.integrated | Flags.scaled), dtype=np.uint64)
    isf = np.full(n, 2.0)
    part = np.ones(n)
    flags[0:5] |= np.uint64(Flags.outlier_in_scaling)
    flags[5:8] |= np.uint64(Flags.excluded_for_scaling)
    flags[8:10] |= np.uint64(Flags.user_excluded_in_scaling)
    flags[10:14] &= ~np.uint64(Flags.scaled)
    variance[14] = 0.0
    variance[15] = np.nan
    isf[16] = 0.0
    part[17] = 0.2
    value[18], variance[18] = -1000.0, 100.0  # I/sigma = -100 < -5
    table = ReflectionTable({
        "miller_index": hkl.astype(np.int32), "id": ident.astype(np.int32), "flags": flags,
        "intensity.scale.value": value, "intensity.scale.variance": variance,
        "inverse_scale_factor": isf, "inverse_scale_factor_variance": np.full(n, 0.0025),
        "intensity.prf.value": value * 0.9, "intensity.prf.variance": variance,
        "partiality": part, "lp": np.full(n, 0.8), "qe": np.full(n, 0.95),
        "xyzobs.px.value": np.column_stack([xy, z]),
        "xyzcal.px": np.column_stack([xy + 0.25, z + 0.1]),
    }, experiment_identifiers={k: f"expt-{k}" for k in range(n_expt)})
    return table


def _read(path):
    mtz = gemmi.read_mtz_file(str(path))
    return mtz, {c.label: np.array(c, dtype=float) for c in mtz.columns}


def test_unmerged_rows_batches_and_values(tmp_path):
    expts, table = _experiments(), _table()
    out = tmp_path / "scaled.mtz"
    summary = write_unmerged_mtz(out, expts, table, gemmi.SpaceGroup("P 21 21 21"), history=["scaled"])
    mtz, col = _read(out)
    assert [c.label for c in mtz.columns] == ["H", "K", "L", "M/ISYM", "BATCH", "I", "SIGI", "SCALEUSED",
                                              "SIGSCALEUSED", "FRACTIONCALC", "XDET", "YDET", "ROT", "LP", "QE"]
    assert [c.type for c in mtz.columns][3:7] == ["Y", "B", "J", "Q"]
    # rows with a defect are gone, all others are there
    assert summary.n_observations == mtz.nreflections == len(table) - 19
    row = np.rint((col["I"] * 2.0) - 1000.0).astype(int)  # I = value / isf identifies the input row
    assert sorted(row.tolist()) == list(range(19, len(table)))
    # I, SIGI are the scaled intensity and sigma: value / isf, sqrt(variance) / isf
    np.testing.assert_allclose(col["I"], (table["intensity.scale.value"][row] / 2.0).astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(col["SIGI"], np.sqrt(table["intensity.scale.variance"][row]) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(col["SCALEUSED"], 2.0)
    np.testing.assert_allclose(col["SIGSCALEUSED"], 0.05, rtol=1e-6)
    np.testing.assert_allclose(col["XDET"], table["xyzobs.px.value"][row, 0], rtol=1e-6)
    np.testing.assert_allclose(col["QE"], 0.95, rtol=1e-6)
    # one batch range per experiment, no overlap, one header per image
    assert summary.batch_offsets == (0, 100)
    assert summary.batch_ranges == ((1, 20), (101, 120))
    numbers = [b.number for b in mtz.batches]
    assert numbers == list(range(1, 21)) + list(range(101, 121))
    ident = table["id"][row]
    z = table["xyzobs.px.value"][row, 2]
    np.testing.assert_array_equal(col["BATCH"], np.floor(z) + 1 + np.where(ident == 1, 100, 0))
    assert set(col["BATCH"].astype(int)) <= set(numbers)
    # ROT: the scan angle at the calculated z (experiment 1 starts at 10 deg)
    zc = table["xyzcal.px"][row, 2]
    np.testing.assert_allclose(col["ROT"], 10.0 * ident + 0.5 * zc, atol=1e-4)
    # batch headers: phi range from the scan, wavelength, dataset, cell
    b = mtz.batches[numbers.index(103)]
    assert (b.floats[36], b.floats[37], b.floats[47]) == pytest.approx((11.0, 11.5, 0.5))
    assert b.wavelength == pytest.approx(1.0) and b.dataset_id == mtz.datasets[1].id
    assert b.cell.parameters == pytest.approx(CELL, abs=1e-3)
    assert len(mtz.datasets) == 2 and mtz.datasets[1].wavelength == pytest.approx(1.0)
    assert "scaled" in mtz.history


def test_unmerged_isym_maps_back_to_original_index(tmp_path):
    expts, table = _experiments(), _table()
    sg = gemmi.SpaceGroup("P 21 21 21")
    write_unmerged_mtz(tmp_path / "s.mtz", expts, table, sg)
    mtz, col = _read(tmp_path / "s.mtz")
    row = np.rint((col["I"] * 2.0) - 1000.0).astype(int)
    asu = np.column_stack([col["H"], col["K"], col["L"]]).astype(int)
    isym = col["M/ISYM"].astype(int)
    assert set(np.unique(isym)) == set(range(1, 9))  # 4 operations × Friedel: all used by random indices
    original = table["miller_index"][row]
    # independently: ISYM = 2k+1 means asu = h·R_k, 2k+2 means asu = -h·R_k
    ops = list(sg.operations().sym_ops)
    for h, a, s in zip(original, asu, isym):
        mapped = ops[(s - 1) // 2].apply_to_hkl([int(v) for v in h])
        assert list(a) == (mapped if s % 2 else [-v for v in mapped])
        assert gemmi.ReciprocalAsu(sg).is_in(list(a))
    # and gemmi's own reader recovers the original indices
    mtz.switch_to_original_hkl()
    back = np.array(mtz.make_miller_array())
    np.testing.assert_array_equal(back, original)


def test_scan_varying_umat_is_taken_at_the_image_centre(tmp_path):
    """A crystal turning by 0.2° per image about the lab x axis (the Cambridge z axis): the
    Umat of image i is the static one turned by 0.2° × (i − 0.5) about z."""
    expts, table = _experiments(n_expt=1, n_images=20), _table(n_expt=1)
    crystal = expts[0].crystal
    static = write_unmerged_mtz(tmp_path / "static.mtz", expts, table, "P 21 21 21")
    A0 = crystal.A
    step = np.radians(0.2)
    crystal.A_at_scan_points = np.array([Rotation.from_rotvec([step * t, 0, 0]).as_matrix() @ A0
                                         for t in range(21)])
    write_unmerged_mtz(tmp_path / "sv.mtz", expts, table, "P 21 21 21")
    umat = {}
    for name in ("static", "sv"):
        mtz = gemmi.read_mtz_file(str(tmp_path / f"{name}.mtz"))
        umat[name] = {b.number: np.array([b.floats[6 + j] for j in range(9)]).reshape(3, 3).T for b in mtz.batches}
        assert all(b.cell.parameters == pytest.approx(CELL, abs=1e-3) for b in mtz.batches)
    assert static.batch_ranges == ((1, 20),)
    for i in (1, 7, 20):
        turn = Rotation.from_rotvec([0, 0, step * (i - 0.5)]).as_matrix()
        np.testing.assert_allclose(umat["sv"][i], turn @ umat["static"][i], atol=2e-6)
    assert np.abs(umat["sv"][20] - umat["static"][20]).max() > 0.01  # the crystal did turn


@pytest.mark.parametrize("symbol", ["P 21 21 21", "I 2 3", "P 61 2 2", "R 3 2:H", "C 1 2 1", "F 4 3 2", "P -1"])
def test_to_asu_matches_gemmi(symbol):
    sg = gemmi.SpaceGroup(symbol)
    hkl = np.random.default_rng(3).integers(-9, 10, size=(3000, 3))
    asu, isym = to_asu_with_isym(hkl, sg)
    ra, ops = gemmi.ReciprocalAsu(sg), sg.operations()
    for h, a, s in zip(hkl[::7], asu[::7], isym[::7]):
        ref_h, ref_s = ra.to_asu([int(v) for v in h], ops)
        assert (list(a), int(s)) == (list(ref_h), ref_s)


def test_batch_offset_rule():
    def expts(ranges, offsets=None):
        out = ExperimentList()
        for i, r in enumerate(ranges):
            scan = None if r is None else Scan(image_range=r, oscillation=(0.0, 0.1),
                                               batch_offset=0 if offsets is None else offsets[i])
            out.append(Experiment(scan=scan))
        return out

    assert batch_offsets(expts([(1, 50)] * 3)) == [0, 100, 200]
    assert batch_offsets(expts([(1, 99), (1, 10)])) == [0, 100]  # 99 -> 101, not 100 (next to 99)
    assert batch_offsets(expts([(1, 100), (1, 10)])) == [0, 200]  # 100 -> 201
    assert batch_offsets(expts([(1, 50), (51, 100)])) == [0, 0]  # kept: no overlap
    assert batch_offsets(expts([(5, 20), (1, 10)])) == [0, 100]
    assert batch_offsets(expts([None, None])) == [1, 101]  # stills: image 0 -> batch 1, then 101
    assert batch_offsets(expts([(1, 10), (1, 10)], offsets=[0, 1000])) == [0, 1000]  # kept from the scans
    with pytest.raises(XtalError, match="overlapping batch ranges"):
        batch_offsets(expts([(1, 10), (1, 10), (1, 10)], offsets=[0, 5, 5]))


def test_cambridge_frame_and_mosflm_u():
    R = cambridge_frame([1.0, 0.0, 0.0], [0.0, 0.0, -1.0])
    np.testing.assert_allclose(R, [[0, 0, -1], [0, 1, 0], [1, 0, 0]], atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    # a monoclinic cell: U from A must be a rotation and reproduce A·h in the Mosflm B basis
    cell = (40.0, 50.0, 60.0, 90.0, 105.0, 90.0)
    U0 = Rotation.random(random_state=5).as_matrix()
    A = Crystal.from_cell_and_U(cell, U0).A
    U = mosflm_u(A, cell)[0]
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=1e-10)
    assert np.linalg.det(U) == pytest.approx(1.0)
    with pytest.raises(XtalError, match="parallel"):
        cambridge_frame([0.0, 0.0, 1.0], [0.0, 0.0, -1.0])


def _busing_levy_b(cell: gemmi.UnitCell) -> np.ndarray:
    """Busing & Levy's B (a* along x, b* in the xy plane), from gemmi's reciprocal cell."""
    rc = cell.reciprocal()
    cb, cg = np.cos(np.radians(rc.beta)), np.cos(np.radians(rc.gamma))
    return np.array([[rc.a, rc.b * cg, rc.c * cb],
                     [0.0, rc.b * np.sqrt(1 - cg ** 2), -rc.c * np.sqrt(1 - cb ** 2) * np.cos(np.radians(cell.alpha))],
                     [0.0, 0.0, 1.0 / cell.c]])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from processing.io.expt import read_experiments
    from processing.io.refl import read_reflections
    from processing.simulate import SimulateParams, run_simulate

    out = tmp_path_factory.mktemp("tiny_export")
    files, summary = run_simulate(SimulateParams(preset="tiny", mode="reflections", output_dir=str(out)))
    expts = read_experiments(files["experiments"])
    table = read_reflections(files["reflections"])
    n = len(table)
    table["intensity.scale.value"] = table["intensity.prf.value"] * 1.5
    table["intensity.scale.variance"] = table["intensity.prf.variance"] * 2.25
    table["inverse_scale_factor"] = np.full(n, 1.5)
    table["inverse_scale_factor_variance"] = np.full(n, 1e-4)
    table["flags"] = table["flags"] | np.uint64(Flags.scaled)
    return expts, table, gemmi.SpaceGroup(summary["space_group"])


def test_umat_puts_reflections_on_the_ewald_sphere(tiny, tmp_path):
    """Physical check of Umat, cell, frame and phi: rotate U·B·h by ROT about the Cambridge z
    axis; the result must lie on the Ewald sphere of a beam along +x."""
    expts, table, sg = tiny
    write_unmerged_mtz(tmp_path / "s.mtz", expts, table, sg)
    mtz = gemmi.read_mtz_file(str(tmp_path / "s.mtz"))
    assert [b.number for b in mtz.batches] == list(range(1, 11)) + list(range(101, 111)) + list(range(201, 211))
    mtz.switch_to_original_hkl()
    data = np.array(mtz, copy=False)
    labels = mtz.column_labels()
    h = data[:, :3].astype(float)
    batch = data[:, labels.index("BATCH")].astype(int)
    phi = np.radians(data[:, labels.index("ROT")].astype(float))
    residual = []
    for b in mtz.batches:
        sel = batch == b.number
        if not sel.any():
            continue
        U = np.array([b.floats[6 + j] for j in range(9)]).reshape(3, 3).T  # stored column by column
        B = _busing_levy_b(b.cell)
        r0 = (U @ B @ h[sel].T).T
        c, s = np.cos(phi[sel]), np.sin(phi[sel])
        r = np.column_stack([c * r0[:, 0] - s * r0[:, 1], s * r0[:, 0] + c * r0[:, 1], r0[:, 2]])
        s0 = np.array([1.0 / b.wavelength, 0.0, 0.0])
        residual.append(np.linalg.norm(r + s0, axis=1) * b.wavelength - 1.0)
    residual = np.concatenate(residual)
    assert len(residual) == mtz.nreflections > 10000
    assert np.abs(residual).max() < 2e-4  # on the sphere (float32 U, ROT)
    # the same vectors without the phi rotation are far off the sphere: the test discriminates
    assert np.abs(np.linalg.norm(r0 + s0, axis=1) * b.wavelength - 1.0).max() > 1e-2


def test_unmerged_profile_plus_sum(tiny, tmp_path):
    expts, table, sg = tiny
    summary = write_unmerged_mtz(tmp_path / "i.mtz", expts, table, sg, intensity="profile+sum")
    mtz, col = _read(tmp_path / "i.mtz")
    assert mtz.column_labels()[5:9] == ["IPR", "SIGIPR", "I", "SIGI"]
    assert "SCALEUSED" not in mtz.column_labels()
    assert summary.n_observations == mtz.nreflections > 0
    # corrections: IPR = prf·lp/qe, I = sum·lp/qe/partiality; find rows by their FRACTIONCALC/LP/QE
    ratio = col["I"] * col["QE"] * col["FRACTIONCALC"] / col["LP"]
    sums = table["intensity.sum.value"]
    # every exported summation intensity is one of the table's
    idx = np.searchsorted(np.sort(sums), ratio)
    close = np.isclose(np.sort(sums)[np.clip(idx, 0, len(sums) - 1)], ratio, rtol=1e-4) | \
        np.isclose(np.sort(sums)[np.clip(idx - 1, 0, len(sums) - 1)], ratio, rtol=1e-4)
    assert close.mean() > 0.999


def test_unmerged_errors(tmp_path):
    expts, table = _experiments(), _table()
    sg = gemmi.SpaceGroup("P 21 21 21")
    del table["inverse_scale_factor"]
    with pytest.raises(XtalError, match="inverse_scale_factor"):
        write_unmerged_mtz(tmp_path / "x.mtz", expts, table, sg)
    table = _table()
    table["flags"] = table["flags"] & ~np.uint64(Flags.scaled)
    with pytest.raises(XtalError, match="no reflections left"):
        write_unmerged_mtz(tmp_path / "x.mtz", expts, table, sg)
    with pytest.raises(XtalError, match="intensity must be"):
        write_unmerged_mtz(tmp_path / "x.mtz", expts, _table(), sg, intensity="best")
    with pytest.raises(XtalError, match="no experiments"):
        write_unmerged_mtz(tmp_path / "x.mtz", [], _table(), sg)
    assert not any(tmp_path.iterdir())
