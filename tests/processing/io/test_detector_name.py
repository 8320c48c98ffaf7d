"""The detector's name in the import summary (the web's Detector column): the name the
file gives (NXmx NXdetector/description, a CBF header's ``# Detector:`` line), not a
panel's HDF5 path."""
import pytest

from processing.importer import ImportParams, run_import
from processing.io.images import open_image_file
from processing.io.nxmx import write_nxmx
from tests.processing.io.test_nxmx import synthetic_images, sweep_models


def test_nxmx_description_is_the_detector_name(tmp_path):
    paths = write_nxmx(str(tmp_path / "xtal_1_master.h5"), *sweep_models(), iter(synthetic_images()),
                       images_per_file=2, detector_name="EIGER2 XE 16M")
    assert open_image_file(paths[0]).detector_name() == "EIGER2 XE 16M"
    _, summary = run_import(ImportParams(paths=(paths[0],), image_range=(1, 2)))
    assert summary["sweeps"][0]["detector"] == "EIGER2 XE 16M"


@pytest.mark.parametrize("name, expected", [("DLS_I03_smargon_0001.cbf", "PILATUS3 6M, S/N 60-0126"),
                                            ("dlsnxs2cbf_therm_0001.cbf", "EIGER 16M XR4i S/N 160-0001 Diamond")])
def test_cbf_header_detector_name(real_data, name, expected):
    path = real_data / "images" / name
    _, summary = run_import(ImportParams(paths=(str(path),)))
    assert summary["sweeps"][0]["detector"] == expected
