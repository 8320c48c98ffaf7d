"""CBF reading: headers of two real images against DIALS 3.12, pixels, bad input."""
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processing.errors import XtalError
from processing.io.attenuation import mu_at_angstrom
from processing.io.cbf import CBFImageFile, decompress_byte_offset
from processing.io.images import open_image_file

IMAGES = "../shared/data/real/images"
SMARGON = os.path.join(IMAGES, "DLS_I03_smargon_0001.cbf")
EIGER = os.path.join(IMAGES, "dlsnxs2cbf_therm_0001.cbf")

# dials.show (DIALS 3.12) numbers, from NAME.dials_show.txt / imported.expt
REFERENCE = {
    SMARGON: dict(format="FormatCBFFullPilatusDLS6MSN126", distance=291.47, beam_px=(1229.30, 1200.47),
                  beam_mm=(211.44, 206.48), wavelength=0.97625, pixel=0.172, size=(2463, 2527),
                  osc=(45.0, 0.1), trusted=(-1.0, 91795.0), mu=3.92204, thickness=1.0,
                  origin=(-211.44, 206.48, -291.47), exposure=0.009, epoch=1511450621.8799963,
                  angles=[45.0, 45.0, 45.0], n_mask_rects=15, first_rect=[487, 0, 494, 2527],
                  identifier="PILATUS3 6M, S/N 60-0126",
                  fixed=[0.707107, 0.5, -0.5, -0.707107, 0.5, -0.5, 0, 0.707107, 0.707107],
                  sum=36200, region_sum=265, bad_static_plus_trusted=527314),
    EIGER: dict(format="FormatCBFMiniEigerDLS16MSN160", distance=213.96, beam_px=(2216.06, 2300.41),
                beam_mm=(166.20, 172.53), wavelength=0.98027, pixel=0.075, size=(4148, 4362),
                osc=(174.0, 0.25), trusted=(-1.0, 65535.0), mu=3.96951, thickness=0.45,
                origin=(-166.2045, 172.53075, -213.96), exposure=0.008, epoch=1550154357.0,
                angles=[0.0, 0.0, 174.0], n_mask_rects=10, first_rect=[1028, 0, 1040, 4362],
                identifier="EIGER 16M XR4i S/N 160-0001 Diamond",
                fixed=[1, 0, 0, 0, 1, 0, 0, 0, 1],
                # DIALS imageset.get_mask(0) masks exactly these 1253320 pixels too
                sum=-1210773, region_sum=-4537, bad_static_plus_trusted=1253320),
}

needs_images = pytest.mark.skipif(not os.path.exists(SMARGON) or not os.path.exists(EIGER),
                                  reason="real CBF images not available")


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


@needs_images
@pytest.mark.parametrize("path", [SMARGON, EIGER])
def test_header_models_match_dials(path):
    ref = REFERENCE[path]
    f = open_image_file(path)
    assert isinstance(f, CBFImageFile)
    assert f.format_name == ref["format"]
    assert f.n_images == 1 and f.image_number == 1
    beam, detector, gonio, scan = f.models()
    p = detector[0]
    assert rel(p.distance, ref["distance"]) < 1e-4
    assert rel(beam.wavelength, ref["wavelength"]) < 1e-4
    assert np.allclose(beam.direction, [0, 0, 1])
    bc_px = p.get_beam_centre_px(beam.s0)
    assert rel(bc_px[0], ref["beam_px"][0]) < 1e-4 and rel(bc_px[1], ref["beam_px"][1]) < 1e-4
    bc_mm = p.get_beam_centre(beam.s0)
    assert np.allclose(bc_mm, ref["beam_mm"], atol=0.006)
    assert np.allclose(p.pixel_size, (ref["pixel"], ref["pixel"]), rtol=1e-9)
    assert p.image_size == ref["size"]
    assert np.allclose(p.origin, ref["origin"], rtol=1e-9)
    assert np.allclose(p.fast_axis, [1, 0, 0]) and np.allclose(p.slow_axis, [0, -1, 0])
    assert p.trusted_range == ref["trusted"]
    assert rel(p.mu, ref["mu"]) < 1e-4
    assert p.thickness == pytest.approx(ref["thickness"]) and p.material == "Si"
    assert p.px_mm_strategy == "ParallaxCorrectedPxMmStrategy"
    assert p.identifier == ref["identifier"]
    assert len(p.mask) == ref["n_mask_rects"] and p.mask[0] == ref["first_rect"]
    assert scan.image_range == (1, 1)
    assert scan.oscillation == pytest.approx(ref["osc"], rel=1e-9)
    assert scan.exposure_times[0] == pytest.approx(ref["exposure"])
    assert scan.epochs[0] == pytest.approx(ref["epoch"], abs=1e-3)
    assert gonio.names == ["GON_PHI", "GON_CHI", "GON_OMEGA"] and gonio.scan_axis == 2
    assert np.allclose(gonio.axes, [[1, 0, 0], [0, 0, -1], [1, 0, 0]])
    assert gonio.angles == pytest.approx(ref["angles"])
    assert np.allclose(gonio.fixed_rotation.ravel(), ref["fixed"], atol=1e-6)
    assert np.allclose(gonio.rotation_axis, [1, 0, 0])


@needs_images
@pytest.mark.parametrize("path", [SMARGON, EIGER])
def test_pixel_data_and_mask(path):
    ref = REFERENCE[path]
    f = open_image_file(path)
    (data,) = f.get_raw_data(0)
    nx, ny = ref["size"]
    assert data.shape == (ny, nx) and data.dtype == np.int32
    assert int(data.sum(dtype=np.int64)) == ref["sum"]  # identical to dxtbx's get_raw_data
    assert int(data[1000:1100, 1000:1100].sum()) == ref["region_sum"]
    (mask,) = f.get_mask()
    lo, hi = f.models()[1][0].trusted_range
    usable = mask & (data > lo) & (data < hi)
    assert int((~usable).sum()) == ref["bad_static_plus_trusted"]


def test_attenuation_matches_dials():
    # DIALS/cctbx values (mu_at_angstrom / 10)
    assert mu_at_angstrom("Si", 0.97625) == pytest.approx(3.9220365583933647, rel=1e-6)
    assert mu_at_angstrom("Si", 0.98027) == pytest.approx(3.9695080645203604, rel=1e-6)
    assert mu_at_angstrom("CdTe", 0.9) == pytest.approx(36.274783622272516, rel=1e-6)
    assert mu_at_angstrom("Ge", 1.2) == pytest.approx(18.217078084433076, rel=1e-6)  # above Ge K edge
    assert mu_at_angstrom("GaAs", 1.0) == pytest.approx(80.07998629661657, rel=1e-6)
    assert mu_at_angstrom("CdTe", 0.4647) == pytest.approx(6.115884568977813, rel=1e-6)
    with pytest.raises(XtalError):
        mu_at_angstrom("Unobtainium", 1.0)


# ---------------------------------------------------------------- synthetic CBF
def encode_byte_offset(values: np.ndarray) -> bytes:
    out = bytearray()
    prev = 0
    for v in values.ravel().tolist():
        d = v - prev
        prev = v
        if -127 <= d <= 127:
            out += int(d).to_bytes(1, "little", signed=True)
        elif -32767 <= d <= 32767:
            out += b"\x80" + int(d).to_bytes(2, "little", signed=True)
        else:
            out += b"\x80" + b"\x00\x80" + int(d).to_bytes(4, "little", signed=True)
    return bytes(out)


def minicbf_bytes(data: np.ndarray) -> bytes:
    ny, nx = data.shape
    packed = encode_byte_offset(data)
    header = (
        "###CBF: VERSION 1.5, CBFlib v0.7.8 - PILATUS detectors\n\ndata_test\n\n"
        '_array_data.header_convention "PILATUS_1.2"\n_array_data.header_contents\n;\n'
        "# Detector: PILATUS 2M, S/N 24-0000\n# 2020-01-01T00:00:00.000\n"
        "# Pixel_size 172e-6 m x 172e-6 m\n# Silicon sensor, thickness 0.000450 m\n"
        "# Exposure_time 0.1 s\n# Exposure_period 0.1 s\n# Count_cutoff 1048500 counts\n"
        "# Wavelength 1.0 A\n# Detector_distance 0.2 m\n# Beam_xy (10.0, 5.0) pixels\n"
        "# Start_angle 0.0 deg.\n# Angle_increment 0.5 deg.\n# Detector_2theta 0.0000 deg.\n;\n\n"
        "_array_data.data\n;\n--CIF-BINARY-FORMAT-SECTION--\nContent-Type: application/octet-stream;\n"
        '     conversions="x-CBF_BYTE_OFFSET"\nContent-Transfer-Encoding: BINARY\n'
        f"X-Binary-Size: {len(packed)}\nX-Binary-ID: 1\n"
        'X-Binary-Element-Type: "signed 32-bit integer"\nX-Binary-Element-Byte-Order: LITTLE_ENDIAN\n'
        f"X-Binary-Number-of-Elements: {nx * ny}\nX-Binary-Size-Fastest-Dimension: {nx}\n"
        f"X-Binary-Size-Second-Dimension: {ny}\nX-Binary-Size-Padding: 0\n\n"
    )
    return header.encode() + b"\x0c\x1a\x04\xd5" + packed + b"\n--CIF-BINARY-FORMAT-SECTION----\n;\n"


SYNTH = np.array([[0, 5, -1, 300, 70000, 2, 0, -2], [1, 1, 40000, 3, 3, 3, 100000, 0]] * 3, dtype=np.int32)


def test_byte_offset_round_trip():
    rng = np.random.default_rng(1)
    values = rng.integers(-2, 2 ** 31 - 1, size=500).astype(np.int32)
    values[::7] = rng.integers(0, 50, size=len(values[::7]))
    out = decompress_byte_offset(encode_byte_offset(values.astype(np.int64)), values.size)
    assert np.array_equal(out, values)
    with pytest.raises(ValueError):
        decompress_byte_offset(encode_byte_offset(values.astype(np.int64))[:-3], values.size)


def test_synthetic_minicbf(tmp_path):
    path = tmp_path / "synth_0007.cbf"
    path.write_bytes(minicbf_bytes(SYNTH))
    f = open_image_file(str(path))
    assert f.format_name == "FormatCBFMiniPilatus" and f.image_number == 7
    beam, det, gonio, scan = f.models()
    assert np.allclose(det[0].origin, [-10 * 0.172, 5 * 0.172, -200.0])
    assert det[0].trusted_range == (-1.0, 1048500.0)
    assert det[0].mask == []  # 8×6 px is no Pilatus module layout
    assert scan.image_range == (7, 7) and scan.oscillation == (0.0, 0.5)
    assert np.allclose(gonio.rotation_axis, [1, 0, 0]) and gonio.axes is None
    assert np.array_equal(f.get_raw_data(0)[0], SYNTH)


@needs_images
def test_truncated_real_cbf(tmp_path):
    raw = open(SMARGON, "rb").read()
    half = tmp_path / "half_0001.cbf"
    half.write_bytes(raw[: len(raw) // 2])
    # the header is intact, but the file is refused when opened (so at import)
    with pytest.raises(XtalError, match=r"half_0001.cbf.*truncated \(binary section has \d+ of \d+ bytes\)"):
        open_image_file(str(half))
    head = tmp_path / "head_0001.cbf"
    head.write_bytes(raw[:3000])
    with pytest.raises(XtalError, match="head_0001.cbf"):
        open_image_file(str(head))


@needs_images
def test_cbf_sniffed_by_content(tmp_path):
    other = tmp_path / "renamed.img"
    shutil.copy(EIGER, other)
    f = open_image_file(str(other))
    assert f.format_name == "FormatCBFMiniEigerDLS16MSN160"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=2000),
       flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6))
def test_garbled_cbf_raises_only_xtalerror(tmp_path, cut, flips):
    raw = bytearray(minicbf_bytes(SYNTH))
    for pos, val in flips:
        raw[pos % len(raw)] = val
    raw = bytes(raw[: max(1, len(raw) - cut)])
    path = tmp_path / "garbled_0001.cbf"
    path.write_bytes(raw)
    try:
        f = open_image_file(str(path))
        f.models()
        data = f.get_raw_data(0)
        f.get_mask()
    except XtalError as exc:
        assert str(exc)
    else:
        assert data[0].ndim == 2
