"""CBF images: Pilatus/Eiger miniCBF and full imgCIF headers, byte-offset data.

Models are built as dxtbx builds them (FormatCBFMiniPilatus, FormatCBFMiniEiger,
FormatCBFFullPilatus): DIALS lab frame (beam along −z, rotation axis +x for miniCBF),
mm, Å, degrees. Pixel data are (slow, fast) int32 arrays.
"""
from __future__ import annotations

import calendar
import os
import re
import time

import numpy as np
from numba import njit

from ..errors import XtalError
from ..models import Beam, Detector, Goniometer, Panel, Scan
from ..models.detector import PARALLAX, SIMPLE
from ..models.goniometer import axis_angle_matrix
from .attenuation import mu_at_angstrom
from .images import ImageFile, apply_rectangles, module_gap_rectangles, register_format

BINARY_TAG = b"\x0c\x1a\x04\xd5"
CBF_MAGIC = b"###CBF"


# --------------------------------------------------------------------------
# byte-offset decompression
@njit(cache=True)
def _byte_offset_decode(buf, n):  # pragma: no cover - compiled
    """Decode CBF byte-offset data; returns (values int32[n], decoded count)."""
    out = np.empty(n, dtype=np.int32)
    pos = 0
    size = buf.shape[0]
    cur = np.int64(0)
    i = 0
    while i < n:
        if pos >= size:
            return out, i
        d = np.int64(buf[pos])
        pos += 1
        if d >= 128:
            d -= 256
        if d == -128:
            if pos + 2 > size:
                return out, i
            d = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
            pos += 2
            if d >= 32768:
                d -= 65536
            if d == -32768:
                if pos + 4 > size:
                    return out, i
                d = (np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
                     | (np.int64(buf[pos + 2]) << 16) | (np.int64(buf[pos + 3]) << 24))
                pos += 4
                if d >= 2147483648:
                    d -= 4294967296
                if d == -2147483648:
                    if pos + 8 > size:
                        return out, i
                    d = np.int64(0)
                    for k in range(8):
                        d |= np.int64(buf[pos + k]) << (8 * k)
                    pos += 8
        cur += d
        out[i] = np.int32(cur)
        i += 1
    return out, i


def decompress_byte_offset(data: bytes, n_elements: int) -> np.ndarray:
    """CBF_BYTE_OFFSET bytes → int32 array of ``n_elements``; ValueError if short."""
    buf = np.frombuffer(data, dtype=np.uint8)
    out, got = _byte_offset_decode(buf, int(n_elements))
    if got != n_elements:
        raise ValueError(f"compressed data end after {got} of {n_elements} pixels")
    return out


# --------------------------------------------------------------------------
# header parsing
def _read_header_bytes(path: str) -> tuple[bytes, int]:
    """Bytes before the binary marker and the offset of the data after it."""
    try:
        with open(path, "rb") as fh:
            head = b""
            while True:
                chunk = fh.read(65536)
                if not chunk:
                    break
                head += chunk
                k = head.find(BINARY_TAG)
                if k >= 0:
                    return head[:k], k + 4
                if len(head) > 16 * 1024 * 1024:
                    break
    except OSError as exc:
        raise XtalError(f"cannot read CBF file {path}: {exc.strerror or exc}") from None
    raise XtalError(f"{path}: not a readable CBF image (no binary data section; truncated or not CBF)")


_CIF_TOKEN = re.compile(r"'(?:[^']|'(?=\S))*'(?=\s|$)|\"[^\"]*\"|\S+")


def parse_cif_items(text: str) -> tuple[dict[str, str], dict[str, dict[str, list[str]]]]:
    """Tiny CIF reader: ({tag: value}, {category: {tag: [values]}} of loops).

    Handles quoted values, ';' text fields and loops — enough for imgCIF headers."""
    items: dict[str, str] = {}
    loops: dict[str, dict[str, list[str]]] = {}
    tokens: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(";"):
            buf = [line[1:]]
            i += 1
            while i < len(lines) and not lines[i].startswith(";"):
                buf.append(lines[i])
                i += 1
            tokens.append("\n".join(buf))
            i += 1
            continue
        s = line.split("#", 1)[0] if "'" not in line and '"' not in line else line
        if s.lstrip().startswith("#"):
            i += 1
            continue
        tokens.extend(t[1:-1] if t[:1] in "'\"" and len(t) > 1 else t for t in _CIF_TOKEN.findall(s))
        i += 1
    k = 0
    while k < len(tokens):
        t = tokens[k]
        if t.lower() == "loop_":
            k += 1
            tags = []
            while k < len(tokens) and tokens[k].startswith("_"):
                tags.append(tokens[k])
                k += 1
            values = []
            while k < len(tokens) and not tokens[k].startswith("_") and tokens[k].lower() != "loop_" \
                    and not tokens[k].startswith("data_"):
                values.append(tokens[k])
                k += 1
            if tags:
                cat = tags[0].split(".")[0].lower()
                table = {tag.lower(): values[j::len(tags)] for j, tag in enumerate(tags)}
                loops.setdefault(cat, {}).update(table)
        elif t.startswith("_") and k + 1 < len(tokens):
            items[t.lower()] = tokens[k + 1]
            k += 2
        else:
            k += 1
    return items, loops


def _pilatus_header(text: str) -> dict[str, str]:
    """'# Key value' lines of a Pilatus/Eiger header → {key: rest}; the bare
    timestamp line is stored as 'timestamp'."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            continue
        body = line[1:].strip()
        if re.fullmatch(r"\d{4}[-/][\w]+[-/]\d+[T ]\d+:\d+:\d+(\.\d+)?", body):
            out["timestamp"] = body
            continue
        m = re.match(r"([A-Za-z][\w\-]*)[:=\s]*(.*)$", body)
        if m:
            key, rest = m.group(1), m.group(2).strip()
            if key == "Detector" and rest.startswith(":"):
                rest = rest[1:].strip()
            out.setdefault(key, rest.lstrip(":= ").strip())
    return out


def _mime_header(text: str) -> dict[str, str]:
    out = {}
    k = text.rfind("--CIF-BINARY-FORMAT-SECTION--")
    if k < 0:
        return out
    for line in text[k:].splitlines()[1:]:
        if ":" in line:
            key, _, val = line.partition(":")
            out[key.strip()] = val.strip()
        elif "conversions" in line:
            out["conversions"] = line.split("=", 1)[1].strip().strip('"')
    return out


def _timestamp(s: str) -> float:
    """Pilatus header time (UTC, as dxtbx reads it) → seconds since 1970."""
    s = s.strip()
    frac = 0.0
    if "." in s:
        s, ms = s.split(".", 1)
        frac = float("0." + re.sub(r"\D.*", "", ms) or "0")
    for fmt in ("%Y-%b-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%b/%d %H:%M:%S"):
        try:
            return calendar.timegm(time.strptime(s, fmt)) + frac
        except ValueError:
            pass
    return 0.0


def _first_float(s: str | None, default=None):
    if s is None:
        return default
    m = re.search(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s)
    return float(m.group(0)) if m else default


def _number_in_name(path: str) -> int:
    m = re.search(r"(\d+)(?=\.cbf(\.gz|\.bz2)?$)", os.path.basename(path), re.IGNORECASE)
    return int(m.group(1)) if m else 1


def _sensor(text: str) -> tuple[str | None, float]:
    """(material, thickness mm) from '# Silicon sensor, thickness 0.000450 m'."""
    m = re.search(r"^#\s*(\S+)\s+sensor,\s*thickness\s*([0-9.eE+-]+)\s*m\s*$", text, re.MULTILINE)
    if not m:
        return None, 0.0
    material = {"silicon": "Si", "si": "Si", "cdte": "CdTe", "gaas": "GaAs",
                "germanium": "Ge"}.get(m.group(1).lower(), m.group(1))
    return material, float(m.group(2)) * 1000.0


# --------------------------------------------------------------------------
# full imgCIF headers: axes and their transforms
def _imgcif_axes(loops, path: str) -> dict[str, dict]:
    """The ``_axis`` loop: {id: type, equipment, depends_on, vector, offset (mm)}."""
    ax = loops.get("_axis")
    if not ax:
        raise XtalError(f"{path}: imgCIF header has no _axis loop")
    axes = {}
    for j, name in enumerate(ax["_axis.id"]):
        vec = [float(ax[f"_axis.vector[{c}]"][j]) for c in (1, 2, 3)]
        off = [ax.get(f"_axis.offset[{c}]", ["."] * len(ax["_axis.id"]))[j] for c in (1, 2, 3)]
        off = [0.0 if v in (".", "?") else float(v) for v in off]
        dep = ax.get("_axis.depends_on", ["."] * len(ax["_axis.id"]))[j]
        axes[name] = {"type": ax["_axis.type"][j].lower(), "equipment": ax["_axis.equipment"][j].lower(),
                      "depends_on": None if dep in (".", "?") else dep,
                      "vector": np.array(vec), "offset": np.array(off)}
    return axes


def _imgcif_axis_settings(loops, axes) -> tuple[dict[str, float], dict[str, float]]:
    """(setting, increment) of every axis for this frame (deg or mm): the frame-axis
    loop's value, else the scan-axis start; increments from the scan-axis loop."""
    setting = {name: 0.0 for name in axes}
    increment = {name: 0.0 for name in axes}
    sa = loops.get("_diffrn_scan_axis", {})
    for j, name in enumerate(sa.get("_diffrn_scan_axis.axis_id", [])):
        if name not in axes:
            continue
        key = "angle" if axes[name]["type"] == "rotation" else "displacement"
        setting[name] = _first_float(sa.get(f"_diffrn_scan_axis.{key}_start", ["0"])[j], 0.0)
        increment[name] = _first_float(sa.get(f"_diffrn_scan_axis.{key}_increment", ["0"])[j], 0.0)
    fa = loops.get("_diffrn_scan_frame_axis", {})
    for j, name in enumerate(fa.get("_diffrn_scan_frame_axis.axis_id", [])):
        if name not in axes:
            continue
        key = "angle" if axes[name]["type"] == "rotation" else "displacement"
        v = fa.get(f"_diffrn_scan_frame_axis.{key}", [None] * (j + 1))[j]
        if v not in (None, ".", "?"):
            setting[name] = float(v)
    return setting, increment


def _axis_matrix(axis: dict, value: float) -> np.ndarray:
    """4×4 homogeneous transform of one imgCIF axis at ``value`` (deg or mm)."""
    M = np.eye(4)
    if axis["type"] == "rotation":
        M[:3, :3] = axis_angle_matrix(axis["vector"], np.radians(value))
        M[:3, 3] = axis["offset"]
    elif axis["type"] == "translation":
        M[:3, 3] = axis["offset"] + value * axis["vector"]
    return M


def _axis_chain(axes: dict, name: str | None, path: str) -> list[str]:
    """``name`` followed by the axes it depends on, outwards."""
    out = []
    while name is not None:
        if name not in axes:
            raise XtalError(f"{path}: imgCIF axis {name!r} is not defined")
        out.append(name)
        name = axes[name]["depends_on"]
        if len(out) > 50:
            raise XtalError(f"{path}: circular imgCIF axis dependencies")
    return out


def _chain_matrix(axes: dict, names: list[str], setting: dict, values: dict) -> np.ndarray:
    """Transform of a whole chain (outermost applied last); ``values`` override ``setting``."""
    M = np.eye(4)
    for name in reversed(names):
        value = values.get(name)
        M = M @ _axis_matrix(axes[name], setting[name] if value is None else value)
    return M


def _imgcif_goniometer(axes: dict, setting: dict, increment: dict, path: str):
    """(goniometer or None, name of the scan axis or None): the sample rotation axes
    from the innermost (no dependants) outwards; the scan axis is the one that moves."""
    gon = [n for n, a in axes.items() if a["equipment"] == "goniometer"]
    gonio = None
    scan_name = None
    if gon:
        parents = {axes[n]["depends_on"] for n in gon}
        leaves = [n for n in gon if n not in parents]
        names = _axis_chain(axes, leaves[0], path) if leaves else gon
        rot = [n for n in names if axes[n]["type"] == "rotation"]
        moving = [n for n in rot if increment[n] != 0.0]
        scan_name = moving[0] if moving else (rot[-1] if rot else None)
        if len(rot) == 1:
            gonio = Goniometer(rotation_axis=axes[rot[0]]["vector"] / np.linalg.norm(axes[rot[0]]["vector"]))
        elif rot:
            gonio = Goniometer.multi_axis([axes[n]["vector"] for n in rot], [setting[n] for n in rot],
                                          rot, rot.index(scan_name))
    return gonio, scan_name


# --------------------------------------------------------------------------
@register_format
class CBFImageFile(ImageFile):
    """A single-image CBF file (miniCBF or full imgCIF header)."""

    format_label = "CBF"

    @classmethod
    def understand(cls, head: bytes) -> bool:
        """'###CBF' magic, or a CIF data block with an array (headers without the magic);
        an HDF5 file whose first block happens to hold those words is not CBF."""
        if head.startswith(CBF_MAGIC):
            return True
        return b"_array_data" in head and b"data_" in head and not head.startswith(b"\x89HDF")

    def __init__(self, path: str):
        self.path = os.fspath(path)
        raw, self._data_offset = _read_header_bytes(self.path)
        self.header_text = raw.decode("latin-1")
        self.mime = _mime_header(self.header_text)
        self.header = _pilatus_header(self.header_text)
        self.n_images = 1
        self.image_number = _number_in_name(self.path)
        try:
            self._fast = int(self.mime["X-Binary-Size-Fastest-Dimension"])
            self._slow = int(self.mime["X-Binary-Size-Second-Dimension"])
            self._size = int(self.mime["X-Binary-Size"])
            self._n_elements = int(self.mime.get("X-Binary-Number-of-Elements", self._fast * self._slow))
        except (KeyError, ValueError):
            raise XtalError(f"{self.path}: CBF binary section header lacks sizes (X-Binary-Size…)") from None
        available = os.path.getsize(self.path) - self._data_offset
        if available < self._size:  # caught at import, before any stage reads pixels
            raise XtalError(f"{self.path}: CBF file is truncated (binary section has {max(available, 0)} of "
                            f"{self._size} bytes)")
        self._full = "_axis.id" in self.header_text and "loop_" in self.header_text
        detector_name = self.header.get("Detector", "")
        self._is_eiger = "EIGER" in detector_name.upper()
        if self._full:
            self.format_name = "FormatCBFFullPilatus"
            if "PILATUS" in detector_name.upper() and "S/N 60-0126" in self.header_text:
                self.format_name = "FormatCBFFullPilatusDLS6MSN126"
        elif self._is_eiger:
            self.format_name = "FormatCBFMiniEiger"
            if "S/N 160-0001" in self.header_text:
                self.format_name = "FormatCBFMiniEigerDLS16MSN160"
        else:
            self.format_name = "FormatCBFMiniPilatus"
        self._models = None

    def detector_name(self) -> str:
        name = self.header.get("Detector", "").strip()
        if not name:  # a full imgCIF header: the diffrn_detector category
            items, loops = parse_cif_items(self.header_text)
            table = loops.get("_diffrn_detector", {})
            for key in ("_diffrn_detector.type", "_diffrn_detector.details"):
                value = items.get(key) or (table.get(key) or [""])[0]
                if value and value not in ("?", "."):
                    name = value
                    break
        return " ".join(str(name).split())

    # --- models ----------------------------------------------------------
    def models(self):
        if self._models is None:
            try:
                self._models = self._models_full() if self._full else self._models_mini()
            except XtalError:
                raise
            except (KeyError, ValueError, IndexError, TypeError) as exc:
                raise XtalError(f"{self.path}: CBF header incomplete or unreadable ({exc})") from None
        return self._models

    def _need(self, key: str) -> str:
        if key not in self.header:
            raise XtalError(f"{self.path}: miniCBF header has no '# {key}' line")
        return self.header[key]

    def _models_mini(self):
        h = self.header
        wavelength = _first_float(self._need("Wavelength"))
        distance = _first_float(self._need("Detector_distance")) * 1000.0
        bx, by = [float(v) for v in re.findall(r"[-+]?\d+\.?\d*(?:[eE][-+]?\d+)?", self._need("Beam_xy"))[:2]]
        px = [float(v) * 1000.0 for v in re.findall(r"[-+]?\d+\.?\d*(?:[eE][-+]?\d+)?", self._need("Pixel_size"))[:2]]
        material, thickness = _sensor(self.header_text)
        if self._is_eiger and material is None:
            material, thickness = "Si", 0.450
        if "Count_cutoff" in h:
            overload = float(int(_first_float(h["Count_cutoff"])))
        else:
            overload = 100000000.0
        mu = mu_at_angstrom(material, wavelength) if material else 0.0
        fast, slow = np.array([1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0])
        origin = np.array([0.0, 0.0, -distance]) - fast * bx * px[0] - slow * by * px[1]
        panel = Panel(name="Panel", type="SENSOR_PAD", fast_axis=fast, slow_axis=slow, origin=origin,
                      image_size=(self._fast, self._slow), pixel_size=(px[0], px[1]),
                      trusted_range=(-1.0, overload), thickness=thickness if material else 0.0,
                      material=material or "", mu=mu,
                      identifier=h.get("Detector", "").strip() if self._is_eiger else "",
                      px_mm_strategy=PARALLAX if material else SIMPLE)
        panel.mask = module_gap_rectangles(panel.image_size, "Eiger" if self._is_eiger else "Pilatus")
        beam = Beam(direction=[0.0, 0.0, 1.0], wavelength=wavelength)
        if "Flux" in h:
            beam.flux = _first_float(h["Flux"], 0.0)
        if "Transmission" in h:
            beam.transmission = _first_float(h["Transmission"], 1.0)
        if self.format_name == "FormatCBFMiniEigerDLS16MSN160":
            angles = [_first_float(h.get(k), 0.0) for k in ("Phi", "Chi", "Omega")]
            gonio = Goniometer.multi_axis([[1, 0, 0], [0, 0, -1], [1, 0, 0]], angles,
                                          ["GON_PHI", "GON_CHI", "GON_OMEGA"], 2)
        else:
            gonio = Goniometer()
        exposure = _first_float(h.get("Exposure_period"), 0.0)
        epoch = _timestamp(h["timestamp"]) if "timestamp" in h else 0.0
        n = self.image_number
        scan = Scan(image_range=(n, n), oscillation=(_first_float(self._need("Start_angle")),
                                                     _first_float(self._need("Angle_increment"))),
                    exposure_times=[exposure], epochs=[epoch])
        return beam, Detector(panels=[panel]), gonio, scan

    def _models_full(self):
        """Models from a full imgCIF header (axis, array-structure and scan loops)."""
        items, loops = parse_cif_items(self.header_text)
        axes = _imgcif_axes(loops, self.path)
        setting, increment = _imgcif_axis_settings(loops, axes)
        origin, fast, slow, image_size, pixel = self._imgcif_detector_axes(loops, axes, setting)
        trusted_range = self._imgcif_trusted_range(loops)
        material, thickness = _sensor(self.header_text)
        wavelength = self._imgcif_wavelength(items, loops)
        src = [n for n, a in axes.items() if a["equipment"] == "source"]
        direction = axes[src[0]]["vector"] if src else np.array([0.0, 0.0, 1.0])
        beam = Beam(direction=direction / np.linalg.norm(direction), wavelength=wavelength,
                    polarization_fraction=0.999)
        mu = mu_at_angstrom(material, wavelength) if material else 0.0
        panel = Panel(name="Panel", type="SENSOR_PAD", fast_axis=fast, slow_axis=slow, origin=origin,
                      image_size=image_size, pixel_size=pixel,
                      trusted_range=trusted_range, thickness=thickness, material=material or "",
                      mu=mu, identifier=self.header.get("Detector", "").strip(),
                      px_mm_strategy=PARALLAX if material else SIMPLE)
        panel.mask = module_gap_rectangles(panel.image_size, "Pilatus")
        gonio, scan_name = _imgcif_goniometer(axes, setting, increment, self.path)
        scan = self._imgcif_scan(loops, setting, increment, scan_name)
        return beam, Detector(panels=[panel]), gonio, scan

    def _imgcif_detector_axes(self, loops, axes, setting):
        """(origin, fast, slow, image_size, pixel_size) of the detector element, lab
        frame, mm, from the array-structure loops and the axis chains."""
        asl = loops["_array_structure_list"]
        prec = [int(p) for p in asl["_array_structure_list.precedence"]]
        dims = [int(d) for d in asl["_array_structure_list.dimension"]]
        set_ids = asl["_array_structure_list.axis_set_id"]
        dirs = asl.get("_array_structure_list.direction", ["increasing"] * len(prec))
        f_i, s_i = prec.index(1), prec.index(2)
        asla = loops.get("_array_structure_list_axis", {})
        disp, incr = {}, {}
        for j, sid in enumerate(asla.get("_array_structure_list_axis.axis_id", [])):
            disp[sid] = _first_float(asla.get("_array_structure_list_axis.displacement", ["0"] * (j + 1))[j], 0.0)
            incr[sid] = _first_float(asla.get("_array_structure_list_axis.displacement_increment",
                                              ["0"] * (j + 1))[j], 0.0)
        fast_id, slow_id = set_ids[f_i], set_ids[s_i]
        element_values = {fast_id: disp.get(fast_id, 0.0), slow_id: disp.get(slow_id, 0.0)}
        A = _chain_matrix(axes, _axis_chain(axes, fast_id, self.path), setting, element_values)
        Rs = _chain_matrix(axes, _axis_chain(axes, slow_id, self.path), setting, element_values)[:3, :3]
        fast = A[:3, :3] @ axes[fast_id]["vector"] * (1 if dirs[f_i].lower().startswith("incr") else -1)
        slow = Rs @ axes[slow_id]["vector"] * (1 if dirs[s_i].lower().startswith("incr") else -1)
        # the element axis's own rotation (if it were one) is not wanted: use the
        # rotation of what it depends on
        if axes[fast_id]["type"] == "rotation" or axes[slow_id]["type"] == "rotation":
            raise XtalError(f"{self.path}: imgCIF detector element axes must be translations")
        es = loops.get("_array_element_size", {})
        if es:
            sizes = {int(i): float(f"{float(v) * 1000.0:.12g}") for i, v in zip(es["_array_element_size.index"],
                                                               es["_array_element_size.size"])}
            idx = [int(i) for i in asl["_array_structure_list.index"]]
            pixel = (sizes[idx[f_i]], sizes[idx[s_i]])
        else:
            pixel = (incr[fast_id], incr[slow_id])
        return A[:3, 3], fast, slow, (dims[f_i], dims[s_i]), pixel

    def _imgcif_trusted_range(self, loops) -> tuple[float, float]:
        """(undefined value, overload) in counts; the overload falls back to the
        Pilatus 'Count_cutoff' line, then 1e6."""
        ai = loops.get("_array_intensities", {})
        overload = _first_float((ai.get("_array_intensities.overload") or [None])[0])
        if overload is None:
            overload = _first_float(self.header.get("Count_cutoff"), 1e6)
        underload = _first_float((ai.get("_array_intensities.undefined_value") or [None])[0], -1.0)
        return underload, overload

    def _imgcif_wavelength(self, items, loops) -> float | None:
        """Wavelength (Å): the radiation-wavelength loop, else item, else '# Wavelength'."""
        wl = loops.get("_diffrn_radiation_wavelength", {}).get("_diffrn_radiation_wavelength.wavelength")
        wavelength = float(wl[0]) if wl else _first_float(items.get("_diffrn_radiation_wavelength.wavelength"))
        if wavelength is None:
            wavelength = _first_float(self.header.get("Wavelength"))
        return wavelength

    def _imgcif_scan(self, loops, setting, increment, scan_name) -> Scan:
        """One-image scan: start and width of the scan axis (deg), exposure (s), epoch."""
        frame = loops.get("_diffrn_scan_frame", {})
        exposure = _first_float((frame.get("_diffrn_scan_frame.integration_time") or [None])[0])
        if exposure is None:
            exposure = _first_float(self.header.get("Exposure_time"), 0.0)
        date = (frame.get("_diffrn_scan_frame.date") or [None])[0]
        epoch = _timestamp(date) if date else (_timestamp(self.header["timestamp"]) if "timestamp" in self.header else 0.0)
        n = self.image_number
        start = setting.get(scan_name, 0.0) if scan_name else 0.0
        width = increment.get(scan_name, 0.0) if scan_name else 0.0
        return Scan(image_range=(n, n), oscillation=(start, width), exposure_times=[exposure], epochs=[epoch])

    # --- pixels ------------------------------------------------------------
    def get_raw_data(self, index: int = 0) -> tuple[np.ndarray, ...]:
        self._check_index(index)
        conv = self.mime.get("conversions", "x-CBF_BYTE_OFFSET")
        if "BYTE_OFFSET" not in conv.upper():
            raise XtalError(f"{self.path}: CBF compression {conv!r} is not supported (only byte-offset)")
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._data_offset)
                packed = fh.read(self._size)
        except OSError as exc:
            raise XtalError(f"cannot read CBF file {self.path}: {exc.strerror or exc}") from None
        n = self._fast * self._slow
        if len(packed) < self._size:
            raise XtalError(f"{self.path}: CBF file is truncated (binary section has {len(packed)} of "
                            f"{self._size} bytes)")
        if self._n_elements != n or n <= 0 or n > self._size:
            raise XtalError(f"{self.path}: CBF element count {self._n_elements} does not match "
                            f"{self._fast}×{self._slow} pixels")
        try:
            values = decompress_byte_offset(packed, n)
        except ValueError as exc:
            raise XtalError(f"{self.path}: corrupt CBF data: {exc}") from None
        return (values.reshape(self._slow, self._fast),)

    def get_mask(self) -> tuple[np.ndarray, ...]:
        _, detector, _, _ = self.models()
        out = []
        for p in detector:
            m = np.ones((p.image_size[1], p.image_size[0]), dtype=bool)
            out.append(apply_rectangles(m, p.mask))
        return tuple(out)


def read_cbf_models(path: str):
    """(beam, detector, goniometer, scan) of one CBF file."""
    return CBFImageFile(path).models()
