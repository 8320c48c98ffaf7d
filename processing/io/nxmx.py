"""NeXus/HDF5 (NXmx) images: read master files as Eiger detectors and Diamond
beamlines write them, and write standard NXmx sweeps.

Frames: NeXus uses the McStas frame (z along the beam, y up, x to the left looking
along the beam); the DIALS lab frame has the beam along −z. Vectors convert with
``MCSTAS_TO_LAB = diag(−1, 1, −1)`` both ways. Lengths in mm, angles in degrees,
wavelength in Å at the interfaces. Transformations follow the NeXus rule: a chain
T1 → T2 → T3 (T1 depends on T2 …) acts as T3·T2·T1 on homogeneous points, each
rotation/translation preceded by its fixed ``offset``.

Besides standard NXmx (``/entry/definition = "NXmx"``, read as dxtbx's FormatNXmx
does) the reader accepts the older Dectris "nearly NeXus" master files (NXentry with
``instrument/detector/geometry`` and ``detectorSpecific``, no ``definition``) as
dxtbx's FormatHDF5EigerNearlyNexus does.
"""
from __future__ import annotations

import os
import uuid

import h5py
import hdf5plugin  # also registers the bitshuffle/LZ4 filters with h5py
import numpy as np

from ..errors import XtalError
from ..models import Beam, Detector, Goniometer, Panel, Scan
from ..models.detector import PARALLAX
from ..models.goniometer import axis_angle_matrix
from .attenuation import canonical_material, mu_at_angstrom
from .images import ImageFile, apply_rectangles, module_gap_rectangles, register_format

MCSTAS_TO_LAB = np.diag([-1.0, 1.0, -1.0])
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

_LENGTH_MM = {"m": 1000.0, "meter": 1000.0, "metre": 1000.0, "meters": 1000.0, "mm": 1.0,
              "millimeter": 1.0, "millimetre": 1.0, "millimeters": 1.0, "um": 1e-3, "micron": 1e-3,
              "microns": 1e-3, "micrometer": 1e-3, "cm": 10.0, "nm": 1e-6}
_ANGLE_DEG = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "rad": 180.0 / np.pi, "radian": 180.0 / np.pi,
              "radians": 180.0 / np.pi}
_WAVELENGTH_A = {"angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "å": 1.0, "nm": 10.0, "m": 1e10,
                 "pm": 0.01}
_TIME_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6}


def _str(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        v = v.ravel()[0] if v.size else ""
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode("utf-8", "replace")
    return str(v)


def _units(obj, default: str = "") -> str:
    return (_str(obj.attrs.get("units")) or default).strip()


def _scale(unit: str, table: dict, what: str, path: str) -> float:
    u = unit.strip().lower()
    if u in table:
        return table[u]
    raise XtalError(f"unknown {what} unit {unit!r} in {path}")


def _scalar(ds) -> float:
    return float(np.asarray(ds[()]).ravel()[0])


def _nx_class(obj) -> str | None:
    return _str(obj.attrs.get("NX_class"))


def _children_of_class(group, nx_class: str) -> list:
    out = []
    for name in group:
        try:
            obj = group[name]
        except (KeyError, OSError):  # dangling external link
            continue
        if isinstance(obj, h5py.Group) and _nx_class(obj) == nx_class:
            out.append(obj)
    return out


# --------------------------------------------------------------------------
# transformations
class _Axis:
    """One NXtransformations axis: 4×4 matrices for its values (mm, deg)."""

    def __init__(self, ds: h5py.Dataset, path_for_errors: str):
        self.ds = ds
        self.name = ds.name.split("/")[-1]
        self.type = (_str(ds.attrs.get("transformation_type")) or "").lower()
        vec = ds.attrs.get("vector")
        self.vector = np.zeros(3) if vec is None else np.asarray(vec, dtype=float).ravel()[:3]
        unit = _units(ds)
        values = np.atleast_1d(np.asarray(ds[()], dtype=float)).ravel()
        if self.type == "rotation":
            self.values = values * _scale(unit or "deg", _ANGLE_DEG, "angle", path_for_errors)
        elif self.type == "translation":
            self.values = values * _scale(unit or "mm", _LENGTH_MM, "length", path_for_errors)
        else:
            self.values = values
        off = ds.attrs.get("offset")
        self.offset = np.zeros(3)
        if off is not None and np.size(off) >= 3:
            ou = _str(ds.attrs.get("offset_units")) or unit or "mm"
            self.offset = np.asarray(off, dtype=float).ravel()[:3] * _scale(ou, _LENGTH_MM, "length",
                                                                            path_for_errors)
        dep = _str(ds.attrs.get("depends_on"))
        self.depends_on = None if dep in (None, "", ".") else dep
        end = ds.parent.get(self.name + "_end") if self.name + "_end" in ds.parent else None
        self.end = None
        if isinstance(end, h5py.Dataset):
            self.end = np.atleast_1d(np.asarray(end[()], dtype=float)).ravel() * \
                _scale(_units(end, unit or "deg"), _ANGLE_DEG, "angle", path_for_errors) \
                if self.type == "rotation" else None

    def __len__(self):
        return len(self.values)

    def matrix(self, i: int = 0) -> np.ndarray:
        v = self.values[min(i, len(self.values) - 1)] if len(self.values) else 0.0
        M = np.eye(4)
        if self.type == "rotation":
            M[:3, :3] = axis_angle_matrix(self.vector, np.radians(v)) if np.any(self.vector) else np.eye(3)
        elif self.type == "translation":
            M[:3, 3] = v * self.vector
        M[:3, 3] += self.offset
        return M


def _resolve(h5: h5py.File, base: h5py.HLObject, path: str):
    """A depends_on target: absolute, or relative to the group holding ``base``."""
    try:
        if path.startswith("/"):
            return h5[path]
        return base.parent[path] if isinstance(base, h5py.Dataset) else base[path]
    except KeyError:
        raise XtalError(f"{h5.filename}: depends_on target {path!r} not found") from None


def _chain(h5: h5py.File, start, path: str) -> list[_Axis]:
    """The dependency chain from ``start`` (a dataset or a depends_on path)."""
    out: list[_Axis] = []
    ds = start if isinstance(start, h5py.Dataset) else _resolve(h5, h5["/"], start)
    while ds is not None:
        ax = _Axis(ds, path)
        out.append(ax)
        if len(out) > 64:
            raise XtalError(f"{path}: circular depends_on chain")
        ds = _resolve(h5, ds, ax.depends_on) if ax.depends_on else None
    return out


def _cumulative(chain: list[_Axis], i: int = 0, rotations_only: bool = False) -> np.ndarray:
    M = np.eye(4)
    for ax in reversed(chain):
        if rotations_only and ax.type != "rotation":
            continue
        M = M @ ax.matrix(i)
    return M


def _depends_on_path(group) -> str | None:
    if "depends_on" not in group:
        return None
    v = _str(group["depends_on"][()])
    return None if v in (None, "", ".") else v


# --------------------------------------------------------------------------
# data files behind /entry/data
class _DataBlocks:
    """Maps 0-based image index → (file, dataset, local index); opens data files
    lazily, one at a time, and names a missing file in the error."""

    def __init__(self, master: str, data_group: h5py.Group):
        self.master = master
        self.dir = os.path.dirname(os.path.abspath(master))
        self.blocks: list[tuple[str | None, str]] = []  # (external file or None, dataset path)
        names = sorted(k for k in data_group if k.startswith("data_"))
        for k in names:
            link = data_group.get(k, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                self.blocks.append((link.filename, link.path))
            elif isinstance(data_group.get(k), h5py.Dataset):
                self.blocks.append((None, data_group[k].name))
        if not self.blocks:
            signal = _str(data_group.attrs.get("signal")) or "data"
            link = data_group.get(signal, getlink=True) if signal in data_group else None
            if isinstance(link, h5py.ExternalLink):
                self.blocks.append((link.filename, link.path))
            elif link is not None:
                self.blocks.append((None, data_group.name + "/" + signal))
        self._lengths: list[int | None] = [None] * len(self.blocks)
        self._open: tuple[int, h5py.File, h5py.Dataset] | None = None

    def check_files(self) -> None:
        """XtalError naming the first external data file that does not exist."""
        for fname, _ in self.blocks:
            if fname is not None and not os.path.exists(self._file_path(fname)):
                raise XtalError(f"NeXus data file {self._file_path(fname)} (external link from "
                                f"{self.master}) is missing")

    def _file_path(self, fname: str) -> str:
        return fname if os.path.isabs(fname) else os.path.join(self.dir, fname)

    def _dataset(self, b: int):
        if self._open is not None and self._open[0] == b:
            return self._open[2]
        self.close()
        fname, dpath = self.blocks[b]
        if fname is None:
            fh = h5py.File(self.master, "r")
        else:
            full = self._file_path(fname)
            if not os.path.exists(full):
                raise XtalError(f"NeXus data file {full} (external link from {self.master}) is missing")
            try:
                fh = h5py.File(full, "r")
            except OSError as exc:
                raise XtalError(f"cannot open NeXus data file {full}: {exc}") from None
        try:
            ds = fh[dpath]
        except KeyError:
            fh.close()
            raise XtalError(f"{fname or self.master}: no dataset {dpath}") from None
        if ds.is_virtual:
            for vs in ds.virtual_sources():
                src = vs.file_name
                if src != "." and not os.path.exists(self._file_path(src) if not os.path.isabs(src) else src):
                    fh.close()
                    raise XtalError(f"NeXus data file {self._file_path(src)} (virtual source of "
                                    f"{self.master}) is missing")
        self._open = (b, fh, ds)
        return ds

    def length(self, b: int) -> int:
        if self._lengths[b] is None:
            ds = self._dataset(b)
            self._lengths[b] = int(ds.shape[0]) if ds.ndim == 3 else 1
        return self._lengths[b]

    def total(self) -> int:
        return sum(self.length(b) for b in range(len(self.blocks)))

    def read(self, index: int, slices) -> list[np.ndarray]:
        if not self.blocks:
            raise XtalError(f"{self.master}: /entry/data holds no image data")
        k = index
        for b in range(len(self.blocks)):
            n = self.length(b)
            if k < n:
                ds = self._dataset(b)
                out = []
                for sl in slices:
                    out.append(np.asarray(ds[(k,) + sl] if ds.ndim == 3 else ds[sl]))
                return out
            k -= n
        raise XtalError(f"image {index} is beyond images in the data files of {self.master}")

    def close(self):
        if self._open is not None:
            try:
                self._open[1].close()
            finally:
                self._open = None


# --------------------------------------------------------------------------
@register_format
class NXmxImageFile(ImageFile):
    """A NeXus master file: models from the header, frames from the data files."""

    image_number = 1
    format_label = "NXmx/HDF5"

    @classmethod
    def understand(cls, head: bytes) -> bool:
        """Any HDF5 file (its signature, or a damaged one's first 4 bytes); the NXmx
        structure is checked on opening, with a clear error."""
        return head.startswith(HDF5_MAGIC[:4])

    def __init__(self, path: str):
        self.path = os.fspath(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise XtalError(f"{self.path} is not a readable HDF5 file ({exc})") from None
        try:
            self._setup()
        except XtalError:
            self._h5.close()
            raise
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            self._h5.close()
            raise XtalError(f"{self.path}: NXmx header incomplete or unreadable ({exc})") from None

    def __del__(self):
        try:
            self._blocks.close()
            self._h5.close()
        except Exception:
            pass

    # --- structure -----------------------------------------------------------
    def _setup(self):
        h5 = self._h5
        entries = _children_of_class(h5, "NXentry")
        nxmx = [e for e in entries if "definition" in e and _str(e["definition"][()]) == "NXmx"]
        self._legacy = False
        if nxmx:
            self.entry = nxmx[0]
        else:
            legacy = [e for e in entries if "definition" not in e and "instrument/detector" in e
                      and "eiger" in (_str(e["instrument/detector"].get("description", np.bytes_(b""))[()])
                                      or "").lower()]
            if not legacy:
                raise XtalError(f"{self.path} is an HDF5 file but has no NXmx entry "
                                "(no NXentry with definition 'NXmx')")
            self.entry = legacy[0]
            self._legacy = True
        instruments = _children_of_class(self.entry, "NXinstrument")
        if not instruments:
            raise XtalError(f"{self.path}: NXmx entry has no NXinstrument")
        self.instrument = instruments[0]
        detectors = _children_of_class(self.instrument, "NXdetector")
        if not detectors:
            raise XtalError(f"{self.path}: NXmx instrument has no NXdetector")
        self.nxdetector = detectors[0]
        samples = _children_of_class(self.entry, "NXsample")
        self.nxsample = samples[0] if samples else None
        data = _children_of_class(self.entry, "NXdata")
        if not data:
            raise XtalError(f"{self.path}: NXmx entry has no NXdata group")
        self._blocks = _DataBlocks(self.path, data[0])
        if self._legacy:
            self.format_name = "FormatHDF5EigerNearlyNexus"
            self._models = self._legacy_models()
        else:
            name = self._instrument_name()
            self.format_name = "FormatNXmx"
            if name and (name.lower() in ("i03", "i04", "i24", "vmxi")
                         or name.upper().startswith(("DIAMOND BEAMLINE", "DLS"))):
                self.format_name = "FormatNXmxDLS"
            self._models = self._nxmx_models()
        scan = self._models[3]
        if scan is not None:
            self.n_images = scan.num_images
        else:
            self.n_images = self._blocks.total()

    def _instrument_name(self) -> str | None:
        inst = self.instrument
        if "short_name" in inst.attrs:
            return _str(inst.attrs["short_name"])
        if "name" in inst:
            return _str(inst["name"].attrs.get("short_name")) or _str(inst["name"][()])
        return None

    def models(self):
        return self._models

    def detector_name(self) -> str:
        det = self.nxdetector
        for key in ("description", "detector_name"):
            if key in det:
                try:
                    return (_str(np.asarray(det[key][()]).ravel()[0]) or "").strip()
                except (TypeError, ValueError, IndexError):
                    continue
        return ""

    # --- standard NXmx ---------------------------------------------------------
    def _wavelength(self) -> float:
        beams = _children_of_class(self.instrument, "NXbeam")
        if not beams and self.nxsample is not None:
            beams = _children_of_class(self.nxsample, "NXbeam")
        if not beams or "incident_wavelength" not in beams[0]:
            raise XtalError(f"{self.path}: no NXbeam/incident_wavelength")
        ds = beams[0]["incident_wavelength"]
        return _scalar(ds) * _scale(_units(ds, "angstrom"), _WAVELENGTH_A, "wavelength", self.path)

    def _sensor(self, det) -> tuple[str, float]:
        material = canonical_material(_str(np.asarray(det["sensor_material"][()]).ravel()[0]))
        ds = det["sensor_thickness"]
        thickness = _scalar(ds) * _scale(_units(ds, "m"), _LENGTH_MM, "length", self.path)
        return material, thickness

    def _nxmx_models(self):
        h5, det = self._h5, self.nxdetector
        wavelength = self._wavelength()
        beam = Beam(direction=[0.0, 0.0, 1.0], wavelength=wavelength)
        material, thickness = self._sensor(det)
        mu = mu_at_angstrom(material, wavelength)
        underload = float(int(_scalar(det["underload_value"]))) if "underload_value" in det else None
        if underload is None and self.format_name == "FormatNXmxDLS":
            underload = 0.0
        if underload is None:
            underload = -float(0x7FFFFFFF)
        saturation = float(int(_scalar(det["saturation_value"]))) if "saturation_value" in det else float(0x7FFFFFFF)
        modules = _children_of_class(det, "NXdetector_module")
        if not modules:
            raise XtalError(f"{self.path}: NXdetector has no NXdetector_module")
        panels, self._slices = [], []
        for mod in modules:
            fpd, spd = mod["fast_pixel_direction"], mod["slow_pixel_direction"]
            f_ax, s_ax = _Axis(fpd, self.path), _Axis(spd, self.path)
            fchain = _chain(h5, fpd, self.path)[1:]
            schain = _chain(h5, spd, self.path)[1:]
            Rf = _cumulative(fchain, rotations_only=True)[:3, :3]
            Rs = _cumulative(schain, rotations_only=True)[:3, :3]
            fast = MCSTAS_TO_LAB @ Rf @ f_ax.vector
            slow = MCSTAS_TO_LAB @ Rs @ s_ax.vector
            origin = MCSTAS_TO_LAB @ _cumulative(fchain)[:3, 3]
            size = np.asarray(mod["data_size"][()]).ravel().astype(int)
            start = np.asarray(mod["data_origin"][()]).ravel().astype(int)
            self._slices.append(tuple(slice(int(a), int(a + b)) for a, b in zip(start, size)))
            panels.append(Panel(
                name=mod.name, type="SENSOR_PAD", fast_axis=fast, slow_axis=slow, origin=origin,
                image_size=(int(size[-1]), int(size[-2])),
                pixel_size=(float(f_ax.values[0]), float(s_ax.values[0])),
                trusted_range=(underload - 1.0, saturation), thickness=thickness, material=material,
                mu=mu, px_mm_strategy=PARALLAX))
        if len(panels) == 1:  # dxtbx: a detector upstream of the sample is flipped
            p = panels[0]
            if abs(p.normal @ beam.direction) > 0.99 and p.origin @ beam.direction > 0:
                p.origin = p.origin * np.array([1.0, 1.0, -1.0])
        gonio, scan = self._goniometer_and_scan()
        return beam, Detector(panels=panels), gonio, scan

    def _goniometer_and_scan(self):
        sample, det = self.nxsample, self.nxdetector
        dep = _depends_on_path(sample) if sample is not None else None
        if dep is None:
            return None, None
        chain = _chain(self._h5, dep, self.path)
        rot = [a for a in chain if a.type == "rotation"]
        varying = [len(a) > 1 and not np.all(a.values == a.values[0]) for a in chain]
        gonio = None
        if len(rot) == 1:
            gonio = Goniometer(rotation_axis=MCSTAS_TO_LAB @ rot[0].vector)
        elif rot:
            moving = [i for i, a in enumerate(rot) if len(a) > 1 and not np.all(a.values == a.values[0])]
            scan_axis = moving[0] if moving else 0
            gonio = Goniometer.multi_axis([MCSTAS_TO_LAB @ a.vector for a in rot], [a.values[0] for a in rot],
                                          [a.name for a in rot], scan_axis)
        scan_ax = next((a for a, v in zip(chain, varying) if v and a.type == "rotation"), None)
        if scan_ax is None:
            scan_ax = next((a for a, v in zip(chain, varying) if v), chain[0])
        n = len(scan_ax)
        start, width = 0.0, 0.0
        if scan_ax.type == "rotation":
            start = float(scan_ax.values[0])
            if scan_ax.end is not None:
                steps = scan_ax.end - scan_ax.values
            elif n > 1:
                steps = np.diff(scan_ax.values)
            else:
                steps = np.zeros(1)
            width = float(np.median(steps))
        frame_time = None
        if "frame_time" in det:
            ds = det["frame_time"]
            frame_time = _scalar(ds) * _scale(_units(ds, "s"), _TIME_S, "time", self.path)
        exposure = np.full(n, frame_time if frame_time is not None else 0.0)
        epochs = np.arange(n) * frame_time if frame_time is not None else np.zeros(n)
        scan = Scan(image_range=(1, n), oscillation=(start, width), exposure_times=exposure, epochs=epochs)
        return gonio, scan

    # --- Dectris "nearly NeXus" --------------------------------------------------
    def _legacy_models(self):
        det = self.nxdetector
        spec = det.get("detectorSpecific")
        wavelength = self._wavelength()
        beam = Beam(direction=[0.0, 0.0, 1.0], wavelength=wavelength)
        orient = np.asarray(det["geometry/orientation/value"][()], dtype=float).ravel()
        fast_m = orient[0:3] * np.array([1, 1, -1])  # Dectris z sign → NeXus
        slow_m = orient[3:6] * np.array([1, 1, -1])
        dist = np.asarray(det["geometry/translation/distances"][()]).astype(np.float64).ravel()
        offset_m = dist * np.array([1, 1, -1])
        length = float(np.float32(np.linalg.norm(offset_m)))  # dxtbx stores it as float32
        unit = offset_m / np.linalg.norm(offset_m) if np.linalg.norm(offset_m) > 0 else offset_m
        origin = MCSTAS_TO_LAB @ (unit * length * 1000.0)
        px = _scalar(det["x_pixel_size"]) * 1000.0
        py = _scalar(det["y_pixel_size"]) * 1000.0
        if spec is not None and "x_pixels_in_detector" in spec:
            nx, ny = int(_scalar(spec["x_pixels_in_detector"])), int(_scalar(spec["y_pixels_in_detector"]))
        else:
            shape = self._first_data_shape()
            nx, ny = int(shape[2]), int(shape[1])
        if spec is not None and "countrate_correction_count_cutoff" in spec:
            saturation = float(int(_scalar(spec["countrate_correction_count_cutoff"])))
        elif spec is not None and "detectorModule_000/countrate_correction_count_cutoff" in spec:
            saturation = float(int(_scalar(spec["detectorModule_000/countrate_correction_count_cutoff"])))
        else:
            saturation = float(0x7FFFFFFF)
        material, thickness = self._sensor(det)
        mu = mu_at_angstrom(material, wavelength)
        panel = Panel(name="/entry/instrument/detector", type="SENSOR_PAD",
                      fast_axis=MCSTAS_TO_LAB @ fast_m, slow_axis=MCSTAS_TO_LAB @ slow_m, origin=origin,
                      image_size=(nx, ny), pixel_size=(px, py), trusted_range=(-1.0, saturation),
                      thickness=thickness, material=material, mu=mu, px_mm_strategy=PARALLAX)
        panel.mask = module_gap_rectangles(panel.image_size, "Eiger")
        self._slices = [(slice(0, ny), slice(0, nx))]
        # goniometer: omega about McStas (−1, 0, 0) = lab +x, as dxtbx assumes
        key = _str(det["detector_number"][()]) if "detector_number" in det else ""
        axis_m = np.array([0.0, 1.0, 0.0]) if key == "E-32-0105" else np.array([-1.0, 0.0, 0.0])
        gonio = Goniometer(rotation_axis=MCSTAS_TO_LAB @ axis_m)
        n = None
        if spec is not None and "nimages" in spec:
            n = int(_scalar(spec["nimages"])) * int(_scalar(spec["ntrigger"])) if "ntrigger" in spec \
                else int(_scalar(spec["nimages"]))
        if not n:
            n = self._blocks.total()
        g = self.nxsample["goniometer"] if self.nxsample is not None and "goniometer" in self.nxsample else {}
        width = 0.0
        if n > 1 and "omega_range_average" in g:
            width = int(_scalar(g["omega_range_average"]) * 100 + 0.5) / 100.0
        frame_time = float(np.float32(_scalar(det["frame_time"]))) if "frame_time" in det else 0.0
        scan = Scan(image_range=(1, n), oscillation=(0.0, width), exposure_times=np.full(n, frame_time),
                    epochs=np.arange(n) * frame_time)
        return beam, Detector(panels=[panel]), gonio, scan

    def _first_data_shape(self):
        self._blocks.length(0)
        return self._blocks._dataset(0).shape

    # --- pixels ---------------------------------------------------------------
    def check_data_files(self) -> None:
        self._blocks.check_files()

    def get_raw_data(self, index: int) -> tuple[np.ndarray, ...]:
        index = self._check_index(index)
        arrays = self._blocks.read(index, self._slices)
        det = self.nxdetector
        bits = int(_scalar(det["bit_depth_readout"])) if ("bit_depth_readout" in det and not self._legacy) else None
        out = []
        for a in arrays:
            if np.issubdtype(a.dtype, np.integer):
                if bits:
                    top = 2 ** 31 if bits == 32 else 2 ** bits
                    a64 = a.astype(np.int64)
                    a64[a64 == top - 1] = -1
                    a64[a64 == top - 2] = -2
                    a = a64
                a = a.astype(np.int32)
            out.append(a)
        return tuple(out)

    def get_mask(self) -> tuple[np.ndarray, ...]:
        det = self.nxdetector
        pm = None
        for p in ("pixel_mask", "detectorSpecific/pixel_mask"):
            if p in det and det[p].ndim == 2:
                pm = det[p]
                break
        out = []
        for panel, sl in zip(self._models[1], self._slices):
            m = np.ones((panel.image_size[1], panel.image_size[0]), dtype=bool)
            if pm is not None:
                m &= np.asarray(pm[sl]) == 0
            out.append(apply_rectangles(m, panel.mask))
        return tuple(out)


# --------------------------------------------------------------------------
# writer
def _tmp_name(path: str) -> str:
    d, b = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{b}.{uuid.uuid4().hex[:8]}.tmp")


def _set_axis(ds, ttype: str, vector, depends_on: str, units: str, offset=(0.0, 0.0, 0.0)):
    ds.attrs["transformation_type"] = np.bytes_(ttype)
    ds.attrs["vector"] = np.asarray(vector, dtype=float)
    ds.attrs["offset"] = np.asarray(offset, dtype=float)
    ds.attrs["offset_units"] = np.bytes_("mm")
    ds.attrs["units"] = np.bytes_(units)
    ds.attrs["depends_on"] = np.bytes_(depends_on)


def _text(group, name, value):
    group.create_dataset(name, data=np.bytes_(value))


def write_nxmx(master_path: str, beam: Beam, detector: Detector, goniometer: Goniometer | None, scan: Scan,
               images, *, pixel_mask=None, saturation_value=None, images_per_file: int = 100,
               detector_name: str = "EIGER2 XE 9M", sensor_material: str = "CdTe",
               sensor_thickness_mm: float = 0.75, pixel_mask_bits=None) -> list[str]:
    """Write a rotation sweep as NXmx: ``<name>_master.h5`` + ``<name>_data_000001.h5`` ….

    ``images`` is an iterable of 2-D integer arrays (slow, fast), consumed one at a
    time and streamed to the data files (chunk = one image, bitshuffle-LZ4), at most
    ``images_per_file`` per file. ``pixel_mask`` (slow, fast): non-zero = bad pixel;
    the panel's mask rectangles are added to it (bit 0, gap); ``pixel_mask_bits`` (slow,
    fast, optional) are NeXus pixel_mask bits OR-ed in as given (2 dead, 8 hot …). Geometry is written as
    McStas depends_on chains; the goniometer's axes (innermost first) as rotations
    with per-image values for the scan axis. ``/entry/data`` holds external links
    ``data_000001`` … and a virtual dataset ``data`` spanning them. Files are
    written under temporary names and renamed when complete. Returns all paths.
    """
    if len(detector) != 1:
        raise XtalError(f"write_nxmx writes single-panel detectors only (got {len(detector)} panels)")
    if images_per_file < 1:
        raise XtalError("images_per_file must be at least 1")
    panel = detector[0]
    nx, ny = panel.image_size
    master_path = os.path.abspath(os.fspath(master_path))
    base = master_path[:-len("_master.h5")] if master_path.endswith("_master.h5") else os.path.splitext(master_path)[0]
    n_expected = scan.num_images
    written: list[tuple[str, str]] = []  # (tmp, final)
    counts: list[int] = []
    dtype = None
    fh = ds = None
    k = 0
    try:
        for img in images:
            a = np.asarray(img)
            if a.shape != (ny, nx):
                raise XtalError(f"image {k + 1} has shape {a.shape}, expected (slow, fast) = {(ny, nx)}")
            if not np.issubdtype(a.dtype, np.integer):
                raise XtalError(f"image {k + 1} is not integer data ({a.dtype})")
            if dtype is None:
                dtype = a.dtype
            if ds is None or ds.shape[0] == images_per_file:
                if fh is not None:
                    ds.attrs["image_nr_high"] = np.int32(k)
                    fh.close()
                final = f"{base}_data_{len(written) + 1:06d}.h5"
                tmp = _tmp_name(final)
                written.append((tmp, final))
                counts.append(0)
                fh = h5py.File(tmp, "w")
                g = fh.create_group("entry")
                g.attrs["NX_class"] = np.bytes_("NXentry")
                gd = g.create_group("data")
                gd.attrs["NX_class"] = np.bytes_("NXdata")
                ds = gd.create_dataset("data", shape=(0, ny, nx), maxshape=(None, ny, nx), dtype=dtype,
                                       chunks=(1, ny, nx), **hdf5plugin.Bitshuffle(cname="lz4"))
                ds.attrs["image_nr_low"] = np.int32(k + 1)
            i = ds.shape[0]
            ds.resize(i + 1, axis=0)
            ds[i] = a.astype(dtype, copy=False)
            counts[-1] += 1
            k += 1
        if fh is not None:
            ds.attrs["image_nr_high"] = np.int32(k)
            fh.close()
            fh = None
        if k != n_expected:
            raise XtalError(f"write_nxmx got {k} images but the scan has {n_expected}")
        tmp_master = _tmp_name(master_path)
        _write_master(tmp_master, base, beam, panel, goniometer, scan, counts, dtype, pixel_mask,
                      saturation_value, detector_name, sensor_material, sensor_thickness_mm, pixel_mask_bits)
        for tmp, final in written:
            os.replace(tmp, final)
        os.replace(tmp_master, master_path)
    except BaseException:
        if fh is not None:
            fh.close()
        for tmp, _ in written:
            if os.path.exists(tmp):
                os.remove(tmp)
        if "tmp_master" in locals() and os.path.exists(tmp_master):
            os.remove(tmp_master)
        raise
    return [master_path] + [final for _, final in written]


def _write_master(path, base, beam, panel, goniometer, scan, counts, dtype, pixel_mask, saturation_value,
                  detector_name, sensor_material, sensor_thickness_mm, pixel_mask_bits=None):
    """The NXmx master file: beam, detector, goniometer and links to the data files."""
    with h5py.File(path, "w") as f:
        f.attrs["default"] = np.bytes_("entry")
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = np.bytes_("NXentry")
        entry.attrs["default"] = np.bytes_("data")
        _text(entry, "definition", "NXmx")
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = np.bytes_("NXinstrument")
        _text(inst, "name", "XTALWEB SIMULATED BEAMLINE")
        nxbeam = inst.create_group("beam")
        nxbeam.attrs["NX_class"] = np.bytes_("NXbeam")
        wl = nxbeam.create_dataset("incident_wavelength", data=float(beam.wavelength))
        wl.attrs["units"] = np.bytes_("angstrom")
        det = inst.create_group("detector")
        det.attrs["NX_class"] = np.bytes_("NXdetector")
        _write_detector_header(det, beam, panel, scan, saturation_value, detector_name, sensor_material,
                               sensor_thickness_mm)
        _write_pixel_mask(det, panel, pixel_mask, pixel_mask_bits)
        _write_detector_geometry(det, panel)
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = np.bytes_("NXsample")
        _text(sample, "name", "sample")
        if goniometer is not None:
            _write_goniometer(sample, goniometer, scan)
        _write_data_links(entry, base, panel, counts, dtype)


def _write_detector_header(det, beam, panel, scan, saturation_value, detector_name, sensor_material,
                           sensor_thickness_mm):
    """NXdetector description, sensor, trusted range (counts), timing (s) and beam centre (px)."""
    _text(det, "description", detector_name)
    _text(det, "type", "Pixel")
    _text(det, "sensor_material", canonical_material(sensor_material))
    t = det.create_dataset("sensor_thickness", data=float(sensor_thickness_mm))
    t.attrs["units"] = np.bytes_("mm")
    sat = int(saturation_value if saturation_value is not None else panel.trusted_range[1])
    det.create_dataset("saturation_value", data=np.int64(sat))
    det.create_dataset("underload_value", data=np.int64(int(round(panel.trusted_range[0])) + 1))
    exposure = float(scan.exposure_times[0]) if len(scan.exposure_times) else 0.0
    if exposure > 0:
        for name in ("count_time", "frame_time"):
            d = det.create_dataset(name, data=exposure)
            d.attrs["units"] = np.bytes_("s")
    s0 = beam.s0
    try:
        bc = panel.get_beam_centre_px(s0)
        for name, v in (("beam_center_x", bc[0]), ("beam_center_y", bc[1])):
            d = det.create_dataset(name, data=float(v))
            d.attrs["units"] = np.bytes_("pixel")
    except Exception:
        pass


def _write_pixel_mask(det, panel, pixel_mask, bits=None):
    """``pixel_mask`` (slow, fast): bit 1 for the caller's bad pixels, bit 0 for module gaps;
    ``bits``: NeXus bits OR-ed in as given."""
    nx, ny = panel.image_size
    mask = np.zeros((ny, nx), dtype=np.uint32) if pixel_mask is None else \
        (np.asarray(pixel_mask) != 0).astype(np.uint32) * np.uint32(2)
    if mask.shape != (ny, nx):
        raise XtalError(f"pixel_mask has shape {mask.shape}, expected {(ny, nx)}")
    if bits is not None:
        bits = np.asarray(bits)
        if bits.shape != (ny, nx):
            raise XtalError(f"pixel_mask_bits has shape {bits.shape}, expected {(ny, nx)}")
        mask |= bits.astype(np.uint32)
    for x0, y0, x1, y1 in panel.mask:
        mask[int(y0):int(y1), int(x0):int(x1)] |= np.uint32(1)
    det.create_dataset("pixel_mask", data=mask, compression="gzip", compression_opts=4)
    det.create_dataset("pixel_mask_applied", data=np.int8(0))


def _write_detector_geometry(det, panel):
    """McStas depends_on chain: det_z along the panel normal (the distance, mm), then
    the module offset (the rest of the origin) and the fast/slow pixel directions."""
    nx, ny = panel.image_size
    M = MCSTAS_TO_LAB
    normal = panel.normal
    dist = float(panel.origin @ normal)
    n_dir = normal if dist >= 0 else -normal
    dist = abs(dist)
    dd = det.create_dataset("distance", data=dist)
    dd.attrs["units"] = np.bytes_("mm")
    tr = det.create_group("transformations")
    tr.attrs["NX_class"] = np.bytes_("NXtransformations")
    dz = tr.create_dataset("det_z", data=np.array([dist]))
    _set_axis(dz, "translation", M @ n_dir, ".", "mm")
    det_z = "/entry/instrument/detector/transformations/det_z"
    _text(det, "depends_on", det_z)
    mod = det.create_group("module")
    mod.attrs["NX_class"] = np.bytes_("NXdetector_module")
    mod.create_dataset("data_origin", data=np.array([0, 0], dtype=np.int64))
    mod.create_dataset("data_size", data=np.array([ny, nx], dtype=np.int64))
    mod.create_dataset("data_stride", data=np.array([1, 1], dtype=np.int64))
    rest = M @ (panel.origin - dist * n_dir)
    mo = mod.create_dataset("module_offset", data=0.0)
    _set_axis(mo, "translation", M @ n_dir, det_z, "mm", offset=rest)
    mo_path = "/entry/instrument/detector/module/module_offset"
    fp = mod.create_dataset("fast_pixel_direction", data=float(panel.pixel_size[0]))
    _set_axis(fp, "translation", M @ panel.fast_axis, mo_path, "mm")
    sp = mod.create_dataset("slow_pixel_direction", data=float(panel.pixel_size[1]))
    _set_axis(sp, "translation", M @ panel.slow_axis, mo_path, "mm")


def _write_goniometer(sample, goniometer, scan):
    """Sample rotation axes (innermost first, deg, McStas), per-image values on the scan axis."""
    M = MCSTAS_TO_LAB
    g = sample.create_group("transformations")
    g.attrs["NX_class"] = np.bytes_("NXtransformations")
    if goniometer.axes is not None:
        axes = [np.asarray(a, float) for a in goniometer.axes]
        angles, names, scan_axis = list(goniometer.angles), list(goniometer.names), goniometer.scan_axis
    else:  # single axis: its lab direction (setting rotation applied)
        axes, angles, names, scan_axis = [goniometer.rotation_axis_lab], [0.0], ["omega"], 0
    start, width = scan.oscillation
    n = scan.num_images
    paths = [f"/entry/sample/transformations/{nm}" for nm in names]
    for i, (ax, ang, nm) in enumerate(zip(axes, angles, names)):
        dep = paths[i + 1] if i + 1 < len(names) else "."
        if i == scan_axis:
            values = start + width * np.arange(n)
            d = g.create_dataset(nm, data=values)
            e = g.create_dataset(nm + "_end", data=values + width)
            e.attrs["units"] = np.bytes_("deg")
            inc = g.create_dataset(nm + "_increment_set", data=float(width))
            inc.attrs["units"] = np.bytes_("deg")
        else:
            d = g.create_dataset(nm, data=np.array([float(ang)]))
        _set_axis(d, "rotation", M @ (ax / np.linalg.norm(ax)), dep, "deg")
    _text(sample, "depends_on", paths[0])


def _write_data_links(entry, base, panel, counts, dtype):
    """``/entry/data``: external links ``data_000001`` … and a virtual dataset over them."""
    nx, ny = panel.image_size
    data = entry.create_group("data")
    data.attrs["NX_class"] = np.bytes_("NXdata")
    data.attrs["signal"] = np.bytes_("data")
    total = int(sum(counts))
    layout = h5py.VirtualLayout(shape=(total, ny, nx), dtype=dtype)
    k = 0
    for i, c in enumerate(counts):
        fname = os.path.basename(f"{base}_data_{i + 1:06d}.h5")
        data[f"data_{i + 1:06d}"] = h5py.ExternalLink(fname, "/entry/data/data")
        layout[k:k + c] = h5py.VirtualSource(fname, "/entry/data/data", shape=(c, ny, nx))
        k += c
    data.create_virtual_dataset("data", layout, fillvalue=0)
