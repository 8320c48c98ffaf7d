"""open_image_file / open_imageset: format sniffing, templates, NXmx indices, errors."""
import os
import shutil

import h5py
import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.images import (module_gap_rectangles, open_image_file, open_imageset,
                                  template_path)
from processing.io.nxmx import write_nxmx
from processing.models import ImageSource, Scan

from .test_nxmx import N, NX, NY, synthetic_images, sweep_models

SMARGON = "../shared/data/real/images/DLS_I03_smargon_0001.cbf"


def test_template_path():
    assert template_path("/d/x_####.cbf", 7) == "/d/x_0007.cbf"
    assert template_path("/d/run2_x_###.cbf", 123) == "/d/run2_x_123.cbf"
    assert template_path("/d/m_master.h5", 3) == "/d/m_master.h5"


def test_module_gap_rectangles():
    assert len(module_gap_rectangles((2463, 2527), "Pilatus")) == 4 + 11
    assert module_gap_rectangles((1475, 1679), "Pilatus")[0] == [487, 0, 494, 1679]
    assert module_gap_rectangles((3110, 3269), "Eiger")[0] == [1030, 0, 1040, 3269]
    assert module_gap_rectangles((200, 180), "Eiger") == []


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "readme_0001.cbf"
    path.write_text("hello, I am text\n" * 10)
    with pytest.raises(XtalError, match="readme_0001.cbf is not a recognised diffraction image"):
        open_image_file(str(path))
    with pytest.raises(XtalError, match="not found"):
        open_image_file(str(tmp_path / "nothing_0001.cbf"))
    with pytest.raises(XtalError, match="directory"):
        open_image_file(str(tmp_path))


def test_hdf5_sniffed_by_content(tmp_path):
    models = sweep_models()
    paths = write_nxmx(str(tmp_path / "z_master.h5"), *models, iter(synthetic_images()))
    odd = tmp_path / "looks_like_0001.cbf"
    shutil.copy(paths[0], odd)  # external links are relative: still resolve
    f = open_image_file(str(odd))
    assert f.format_name == "FormatNXmx" and f.n_images == N


@pytest.mark.skipif(not os.path.exists(SMARGON), reason="real CBF image not available")
def test_imageset_from_cbf_template():
    template = SMARGON.replace("0001", "####")
    reader = open_imageset(ImageSource(template=template), Scan(image_range=(1, 1)))
    assert len(reader) == 1 and reader.path_of(0) == SMARGON
    (data,) = reader.get_raw_data(0)
    assert data.shape == (2527, 2463) and int(data.sum()) == 36200
    (mask,) = reader.get_mask()
    assert int((~mask).sum()) == 4 * 7 * 2527 + 11 * 17 * 2463 - 4 * 7 * 11 * 17
    with pytest.raises(XtalError, match="not found"):
        open_imageset(ImageSource(template=template), Scan(image_range=(1, 2))).get_raw_data(1)


def test_imageset_from_nxmx(tmp_path):
    models = sweep_models()
    images = synthetic_images(seed=3)
    paths = write_nxmx(str(tmp_path / "q_master.h5"), *models, iter(images), images_per_file=2)
    reader = open_imageset(ImageSource(template=paths[0]), Scan(image_range=(2, 4)))
    assert len(reader) == 3
    assert np.array_equal(reader.get_raw_data(0)[0], images[1])
    assert np.array_equal(reader.get_raw_data(2)[0], images[3])
    picked = open_imageset(ImageSource(template=paths[0], single_file_indices=[4, 0]), None)
    assert len(picked) == 2
    assert np.array_equal(picked.get_raw_data(0)[0], images[4])
    assert np.array_equal(picked.get_raw_data(1)[0], images[0])
    assert picked.get_mask()[0].shape == (NY, NX)
    with pytest.raises(XtalError, match="out of range"):
        picked.get_raw_data(2)


def test_nxmx_bit_depth_readout_marks_special_values(tmp_path):
    models = sweep_models()
    img = np.full((NY, NX), 3, dtype=np.uint16)
    img[0, 0], img[0, 1] = 65535, 65534
    scan = models[3]
    scan1 = Scan(image_range=(1, 1), oscillation=scan.oscillation, exposure_times=[0.02])
    paths = write_nxmx(str(tmp_path / "b_master.h5"), models[0], models[1], models[2], scan1, [img])
    with h5py.File(paths[0], "r+") as h:
        h["/entry/instrument/detector/bit_depth_readout"] = np.int32(16)
    (data,) = open_image_file(paths[0]).get_raw_data(0)
    assert data[0, 0] == -1 and data[0, 1] == -2 and data[5, 5] == 3 and data.dtype == np.int32
