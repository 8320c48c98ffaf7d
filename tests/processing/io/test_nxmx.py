"""NXmx: the real Dectris Eiger master file against DIALS 3.12, writer → reader round
trips, and clear errors for broken files."""
import os

import h5py
import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.attenuation import mu_at_angstrom
from processing.io.images import open_image_file
from processing.io.nxmx import NXmxImageFile, write_nxmx
from processing.models import Beam, Detector, Goniometer, Panel, Scan
from processing.models.detector import PARALLAX

EIGER_MASTER = "../shared/data/real/eiger_master/dectris_eiger_master.h5"

# DIALS 3.12 dials.import of the master file (given a dummy data_000001 file of the
# right shape, since DIALS cannot read the header without it): imported.expt values
DIALS_EIGER = dict(
    wavelength=0.9801121950149536,
    origin=(-120.55612747914381, 118.98235628684799, -134.255002982549),
    pixel=0.07500000356230885, size=(3110, 3269), trusted=(-1.0, 12440.0),
    thickness=0.44999999227002263, mu=3.967637476425361, material="Si",
    mask=[[1030, 0, 1040, 3269], [2070, 0, 2080, 3269], [0, 514, 3110, 551], [0, 1065, 3110, 1102],
          [0, 1616, 3110, 1653], [0, 2167, 3110, 2204], [0, 2718, 3110, 2755]],
    image_range=(1, 1), oscillation=(0.0, 0.0), exposure=0.004999999888241291,
    masked_pixels=637030,  # DIALS imageset.get_mask(0) with an all-zero image
)


@pytest.mark.skipif(not os.path.exists(EIGER_MASTER), reason="Eiger master file not available")
def test_real_eiger_master_header():
    f = open_image_file(EIGER_MASTER)
    assert isinstance(f, NXmxImageFile)
    assert f.format_name == "FormatHDF5EigerNearlyNexus"
    assert f.n_images == 1 and f.image_number == 1
    beam, det, gonio, scan = f.models()
    ref = DIALS_EIGER
    p = det[0]
    assert beam.wavelength == pytest.approx(ref["wavelength"], rel=1e-12)
    assert np.allclose(beam.direction, [0, 0, 1])
    assert np.allclose(p.origin, ref["origin"], rtol=1e-8)
    assert np.allclose(p.fast_axis, [1, 0, 0]) and np.allclose(p.slow_axis, [0, -1, 0])
    assert p.distance == pytest.approx(134.255, rel=1e-6)
    assert p.pixel_size == pytest.approx((ref["pixel"], ref["pixel"]), rel=1e-12)
    assert p.image_size == ref["size"]
    assert p.trusted_range == ref["trusted"]
    assert p.thickness == pytest.approx(ref["thickness"], rel=1e-12)
    assert p.material == ref["material"] and p.mu == pytest.approx(ref["mu"], rel=1e-6)
    assert p.mask == ref["mask"]
    # header beam_center_x/y (1607.415, 1586.4314) px is where the geometry puts the beam
    bc = p.get_beam_centre(beam.s0) / np.asarray(p.pixel_size)
    assert bc == pytest.approx((1607.415, 1586.4314), abs=2e-3)
    assert np.allclose(gonio.rotation_axis, [1, 0, 0])
    assert scan.image_range == ref["image_range"] and scan.oscillation == ref["oscillation"]
    assert scan.exposure_times[0] == pytest.approx(ref["exposure"], rel=1e-12)
    (mask,) = f.get_mask()
    assert mask.shape == (3269, 3110) and int((~mask).sum()) == ref["masked_pixels"]
    with pytest.raises(XtalError, match=r"dectris_eiger_data_000001\.h5.*missing"):
        f.get_raw_data(0)


# ---------------------------------------------------------------- writer
NX, NY, N = 200, 180, 5


def sweep_models(material="CdTe", thickness=0.75, multi_axis=False):
    wavelength = 0.9
    panel = Panel(name="/entry/instrument/detector/module", fast_axis=[1, 0, 0], slow_axis=[0, -1, 0],
                  origin=[-7.2, 6.9, -120.0], image_size=(NX, NY), pixel_size=(0.075, 0.075),
                  trusted_range=(-1, 65000), thickness=thickness, material=material,
                  mu=mu_at_angstrom(material, wavelength), px_mm_strategy=PARALLAX)
    beam = Beam(wavelength=wavelength)
    if multi_axis:
        gonio = Goniometer.multi_axis([[1, 0, 0], [0, 0, -1], [1, 0, 0]], [30.0, 20.0, 10.0],
                                      ["phi", "chi", "omega"], 2)
    else:
        gonio = Goniometer()
    scan = Scan(image_range=(1, N), oscillation=(10.0, 0.25), exposure_times=[0.02] * N,
                epochs=0.02 * np.arange(N))
    return beam, Detector([panel]), gonio, scan


def synthetic_images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.poisson(2.0, (NY, NX)).astype(np.uint32) + np.uint32(i) for i in range(N)]


def assert_same_models(a, b):
    (b1, d1, g1, s1), (b2, d2, g2, s2) = a, b
    assert b1.wavelength == pytest.approx(b2.wavelength, rel=1e-12)
    assert np.allclose(b1.direction, b2.direction)
    p1, p2 = d1[0], d2[0]
    for attr in ("fast_axis", "slow_axis", "origin"):
        assert np.allclose(getattr(p1, attr), getattr(p2, attr), atol=1e-9), attr
    assert p1.image_size == p2.image_size
    assert p1.pixel_size == pytest.approx(p2.pixel_size, rel=1e-12)
    assert p1.trusted_range == p2.trusted_range
    assert p1.thickness == pytest.approx(p2.thickness) and p1.material == p2.material
    assert p1.mu == pytest.approx(p2.mu, rel=1e-9)
    assert p1.px_mm_strategy == p2.px_mm_strategy
    assert s1.image_range == s2.image_range
    assert s1.oscillation == pytest.approx(s2.oscillation, rel=1e-9)
    assert np.allclose(s1.exposure_times, s2.exposure_times)
    assert np.allclose(g1.rotation_matrix(0.3), g2.rotation_matrix(0.3), atol=1e-12)
    assert np.allclose(g1.rotation_axis, g2.rotation_axis)
    assert (g1.names or []) == (g2.names or [])


@pytest.mark.parametrize("multi_axis", [False, True])
def test_write_read_round_trip(tmp_path, multi_axis):
    models = sweep_models(multi_axis=multi_axis)
    images = synthetic_images()
    bad = np.zeros((NY, NX), dtype=bool)
    bad[10, 20] = bad[11, 21] = True
    models[1][0].mask = [[100, 0, 104, NY]]  # a gap, burnt into pixel_mask
    paths = write_nxmx(str(tmp_path / "sweep_master.h5"), *models, iter(images), pixel_mask=bad,
                       images_per_file=2)
    assert [os.path.basename(p) for p in paths] == ["sweep_master.h5", "sweep_data_000001.h5",
                                                   "sweep_data_000002.h5", "sweep_data_000003.h5"]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    f = open_image_file(paths[0])
    assert f.format_name == "FormatNXmx" and f.n_images == N
    got = f.models()
    assert_same_models(got, models)
    assert got[1][0].mask == []  # rectangles come back as pixel_mask
    for i in range(N):
        (data,) = f.get_raw_data(i)
        assert data.shape == (NY, NX) and np.array_equal(data, images[i])
    (mask,) = f.get_mask()
    assert int((~mask).sum()) == 2 + 4 * NY and not mask[10, 20] and not mask[50, 101]
    # storage: one image per chunk, bitshuffle (filter 32008) with LZ4
    with h5py.File(paths[1], "r") as h:
        ds = h["/entry/data/data"]
        assert ds.chunks == (1, NY, NX) and "32008" in ds._filters
        assert ds.attrs["image_nr_low"] == 1 and ds.attrs["image_nr_high"] == 2
    with h5py.File(paths[0], "r") as h:
        om = h["/entry/sample/transformations/omega"]
        assert np.allclose(om[()], 10.0 + 0.25 * np.arange(N))
        assert h["/entry/sample/transformations/omega_increment_set"][()] == 0.25
        assert h["/entry/data"].get("data_000002", getlink=True).filename == "sweep_data_000002.h5"


def test_writer_streams_and_checks_count(tmp_path):
    models = sweep_models()
    consumed = []

    def gen():
        for i, img in enumerate(synthetic_images()):
            consumed.append(i)
            yield img

    write_nxmx(str(tmp_path / "s_master.h5"), *models, gen(), images_per_file=100)
    assert consumed == list(range(N))
    with pytest.raises(XtalError, match="got 3 images but the scan has 5"):
        write_nxmx(str(tmp_path / "t_master.h5"), *models, iter(synthetic_images()[:3]))
    assert not os.path.exists(tmp_path / "t_master.h5")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(("t_", ".t_"))]


def test_missing_data_file_behind_external_link(tmp_path):
    models = sweep_models()
    paths = write_nxmx(str(tmp_path / "m_master.h5"), *models, iter(synthetic_images()), images_per_file=2)
    os.remove(paths[2])  # m_data_000002.h5 holds images 2, 3
    f = open_image_file(paths[0])
    assert f.models()[3].num_images == N  # header still fine
    assert f.get_raw_data(1)[0].shape == (NY, NX)
    with pytest.raises(XtalError, match=r"m_data_000002\.h5.*missing"):
        f.get_raw_data(3)


def test_hdf5_without_nxmx_entry(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as h:
        h["entry/data"] = np.zeros((2, 3))
    with pytest.raises(XtalError, match="has no NXmx entry"):
        open_image_file(str(path))


def test_non_hdf5_file(tmp_path):
    path = tmp_path / "notes_master.h5"
    path.write_text("this is not an HDF5 file\n")
    with pytest.raises(XtalError, match="notes_master.h5"):
        open_image_file(str(path))
    with pytest.raises(XtalError, match="not a readable HDF5"):
        NXmxImageFile(str(path))
