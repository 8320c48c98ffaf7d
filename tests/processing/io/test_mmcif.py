"""mmCIF writer for scaled unmerged reflections (dials.export format=mmcif, v5 layout)."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.mmcif import write_unmerged_mmcif
from processing.reflections import Flags
from tests.processing.io.test_mtz_export import _experiments, _table

ITEMS = ["diffrn_id", "id", "index_h", "index_k", "index_l", "pdbx_image_id", "pdbx_detector_x",
         "pdbx_detector_y", "pdbx_scale_value", "intensity_net", "intensity_sigma", "pdbx_scan_angle",
         "scale_group_code"]


def _loop(block, category, items):
    table = block.find(category, items)
    return {item: [table[i][k] for i in range(len(table))] for k, item in enumerate(items)}


def test_mmcif_round_trip(tmp_path):
    expts, table = _experiments(), _table()
    out = tmp_path / "scaled.cif"
    n = write_unmerged_mmcif(out, expts, table, gemmi.SpaceGroup("P 21 21 21"))
    doc = gemmi.cif.read(str(out))
    block = doc.sole_block()
    # rows 0-16 have bad flags, variance or scale; 17 (partiality 0.2) and 18 (I/sigma -100)
    # stay, as dials.export's mmCIF applies no partiality threshold and no I/sigma limit
    assert n == len(table) - 17
    rows = _loop(block, "_diffrn_refln.", ITEMS)
    assert len(rows["id"]) == n
    assert rows["id"] == [str(i) for i in range(1, n + 1)]
    assert set(rows["diffrn_id"]) == {"1"}
    intensity = np.array(rows["intensity_net"], dtype=float)
    src = np.rint(intensity * 2.0 - 1000.0).astype(int)  # I = value / isf identifies the row
    src[intensity < 0] = 18
    assert sorted(src.tolist()) == list(range(17, len(table)))
    np.testing.assert_allclose(intensity, table["intensity.scale.value"][src] / 2.0, rtol=1e-6)
    np.testing.assert_allclose(np.array(rows["intensity_sigma"], dtype=float),
                               np.sqrt(table["intensity.scale.variance"][src]) / 2.0, rtol=1e-5)
    np.testing.assert_allclose(np.array(rows["pdbx_scale_value"], dtype=float), 0.5)
    hkl = np.column_stack([np.array(rows[k], dtype=int) for k in ("index_h", "index_k", "index_l")])
    np.testing.assert_array_equal(hkl, table["miller_index"][src])  # original indices, not ASU
    np.testing.assert_array_equal(np.array(rows["scale_group_code"], dtype=int), table["id"][src] + 1)
    z = table["xyzobs.px.value"][src, 2]
    np.testing.assert_array_equal(np.array(rows["pdbx_image_id"], dtype=int), np.floor(z).astype(int) + 1)
    np.testing.assert_allclose(np.array(rows["pdbx_detector_x"], dtype=float),
                               table["xyzobs.px.value"][src, 0], atol=0.006)
    zc = table["xyzcal.px"][src, 2]
    np.testing.assert_allclose(np.array(rows["pdbx_scan_angle"], dtype=float), 10.0 * table["id"][src] + 0.5 * zc,
                               atol=1e-4)
    # metadata
    assert float(block.find_value("_cell.length_a")) == pytest.approx(50.0, abs=1e-3)
    assert float(block.find_value("_cell.length_c")) == pytest.approx(70.0, abs=1e-3)
    assert float(block.find_value("_cell.angle_beta")) == pytest.approx(90.0, abs=1e-3)
    assert gemmi.cif.as_string(block.find_value("_symmetry.space_group_name_H-M")) == "P 21 21 21"
    assert block.find_value("_symmetry.Int_Tables_number") == "19"
    assert block.find_value("_space_group.IT_number") == "19"
    assert gemmi.cif.as_string(block.find_value("_space_group.name_H-M_alt")) == "P 21 21 21"
    wl = _loop(block, "_diffrn_radiation_wavelength.", ["id", "wavelength"])
    assert wl["id"] == ["1"] and float(wl["wavelength"][0]) == pytest.approx(1.0)
    assert list(block.find_loop("_diffrn_scale_group.code")) == ["1", "2"]
    assert len(block.find_loop("_diffrn_refln.wavelength_id")) == 0  # one wavelength: no column


def test_mmcif_two_wavelengths(tmp_path):
    expts, table = _experiments(), _table()
    expts[1].beam.wavelength = 0.9
    write_unmerged_mmcif(tmp_path / "w.cif", expts, table, "P 21 21 21")
    block = gemmi.cif.read(str(tmp_path / "w.cif")).sole_block()
    wl = _loop(block, "_diffrn_radiation_wavelength.", ["id", "wavelength"])
    assert [float(w) for w in wl["wavelength"]] == pytest.approx([0.9, 1.0])
    rows = _loop(block, "_diffrn_refln.", ["scale_group_code", "wavelength_id"])
    pairs = set(zip(rows["scale_group_code"], rows["wavelength_id"]))
    assert pairs == {("1", "2"), ("2", "1")}  # experiment 2 at 0.9 Å has wavelength id 1


def test_mmcif_errors(tmp_path):
    expts, table = _experiments(), _table()
    table["flags"] = table["flags"] & ~np.uint64(Flags.scaled)
    with pytest.raises(XtalError, match="no reflections left"):
        write_unmerged_mmcif(tmp_path / "x.cif", expts, table, "P 21 21 21")
    with pytest.raises(XtalError, match="cannot write"):
        write_unmerged_mmcif(tmp_path / "nowhere" / "x.cif", expts, _table(), "P 21 21 21")
    with pytest.raises(XtalError, match="space group"):
        write_unmerged_mmcif(tmp_path / "x.cif", expts, _table(), "P 7")
    assert not any(tmp_path.iterdir())
