"""Diffraction image files: one interface over every registered image format.

This module names no concrete format. Each format module subclasses
:class:`ImageFile` and registers its class with :func:`register_format`; importing
the ``processing.io`` package imports the format modules, so the table is full
before use. ``open_image_file`` asks each registered class whether it
``understand``s the file's first bytes and opens the file with the first that does
(as dxtbx's format registry). ``open_imageset`` reads the images of an experiment's
sweep (an :class:`ImageSource` plus its :class:`Scan`).

Pixel arrays are (slow, fast) = (y, x), one per panel; masks are bool with True for
a usable pixel.
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import XtalError
from ..models import Beam, Detector, Goniometer, ImageSource, Scan

HEAD_BYTES = 4096  # how much of a file ``ImageFile.understand`` sees

# Hybrid-pixel module layouts (pixels): module size fast/slow, gap fast/slow and the
# module counts across the fast direction that occur (as dxtbx's FormatPilatusHelpers).
PAD_MODULES = {
    "Pilatus": (487, 195, 7, 17, (1, 3, 5)),
    "Eiger X": (1030, 514, 10, 37, (1, 2, 3, 4)),
    "Eiger 2X": (1028, 512, 12, 38, (1, 2, 3, 4)),
}


def module_gap_rectangles(image_size: tuple[int, int], family: str) -> list[list[int]]:
    """Inter-module gap rectangles [x0, y0, x1, y1] (px, end exclusive) for a Pilatus
    or Eiger detector of ``image_size`` (fast, slow) — the regions dxtbx puts in
    ``Panel.mask``. ``family`` is "Pilatus" or "Eiger"; empty if the size does not
    match a known module layout."""
    nx, ny = int(image_size[0]), int(image_size[1])
    names = ["Pilatus"] if family == "Pilatus" else ["Eiger X", "Eiger 2X"]
    for name in names:
        mf, ms, gf, gs, configs = PAD_MODULES[name]
        if not any(mf * j + gf * (j - 1) == nx for j in configs):
            continue
        n_fast, rf = divmod(nx, mf)
        n_slow, rs = divmod(ny, ms)
        if (n_fast - 1) * gf != rf or (n_slow - 1) * gs != rs:
            continue
        rects = [[(i + 1) * mf + i * gf, 0, (i + 1) * mf + (i + 1) * gf, ny] for i in range(n_fast - 1)]
        rects += [[0, (j + 1) * ms + j * gs, nx, (j + 1) * ms + (j + 1) * gs] for j in range(n_slow - 1)]
        return rects
    return []


def apply_rectangles(mask: np.ndarray, rectangles) -> np.ndarray:
    """Set mask False inside each [x0, y0, x1, y1] rectangle (end exclusive)."""
    for x0, y0, x1, y1 in rectangles:
        mask[int(y0):int(y1), int(x0):int(x1)] = False
    return mask


class ImageFile:
    """One image file: a single image, or every frame of a multi-image file.

    Attributes: ``format_name`` (dxtbx format class name, e.g.
    "FormatCBFMiniPilatus"), ``path``, ``n_images``, ``image_number`` (the number in
    a single-image file's name; 1 for a multi-image file).
    """

    format_name: str = "Format"
    format_label: str = ""  # short name for messages ("CBF"), set by each format
    path: str = ""
    n_images: int = 1
    image_number: int = 1

    @classmethod
    def understand(cls, head: bytes) -> bool:
        """True if a file starting with ``head`` (its first HEAD_BYTES bytes) is
        of this format."""
        return False

    def models(self) -> tuple[Beam, Detector, Goniometer | None, Scan | None]:
        """(beam, detector, goniometer, scan) in the DIALS lab frame; the scan
        covers this file's images."""
        raise NotImplementedError

    def get_raw_data(self, index: int) -> tuple[np.ndarray, ...]:
        """One 2-D array (slow, fast) per panel for 0-based image ``index``."""
        raise NotImplementedError

    def get_mask(self) -> tuple[np.ndarray, ...]:
        """Static mask per panel (True = usable): file pixel masks and the panels'
        mask rectangles. Trusted-range masking is per image, by the caller."""
        raise NotImplementedError

    def detector_name(self) -> str:
        """The detector's name as the file gives it (NXmx ``NXdetector/description``,
        a CBF header's ``# Detector:`` line), or "" when it gives none."""
        return ""

    def check_data_files(self) -> None:
        """Raise XtalError naming any data file this image file refers to that is
        missing (checked at import, before any stage reads pixels)."""

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.n_images:
            raise XtalError(f"image index {index} out of range 0..{self.n_images - 1} in {self.path}")
        return index

    def __repr__(self):
        return f"<{type(self).__name__} {self.format_name} {self.path!r} n_images={self.n_images}>"


_FORMATS: list[type[ImageFile]] = []


def register_format(cls: type[ImageFile]) -> type[ImageFile]:
    """Add an :class:`ImageFile` subclass to the reader table (usable as a class
    decorator). Registering a class twice keeps one entry."""
    if cls not in _FORMATS:
        _FORMATS.append(cls)
    return cls


def registered_formats() -> tuple[type[ImageFile], ...]:
    """The registered image-file classes, in registration order."""
    return tuple(_FORMATS)


def _read_head(path: str) -> bytes:
    if not os.path.exists(path):
        raise XtalError(f"image file not found: {path}")
    if os.path.isdir(path):
        raise XtalError(f"{path} is a directory, not an image file")
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError as exc:
        raise XtalError(f"cannot read image file {path}: {exc.strerror or exc}") from None


def format_class_for_file(path: str) -> type[ImageFile]:
    """The registered class that understands the file's first bytes, or XtalError."""
    head = _read_head(path)
    for cls in _FORMATS:
        if cls.understand(head):
            return cls
    known = " or ".join(cls.format_label or cls.__name__ for cls in _FORMATS) or "none registered"
    raise XtalError(f"{path} is not a recognised diffraction image (known formats: {known})")


def open_image_file(path: str) -> ImageFile:
    """Open an image file with the registered reader that understands its content."""
    path = os.fspath(path)
    return format_class_for_file(path)(path)


_TEMPLATE = re.compile(r"#+")


def template_path(template: str, number: int) -> str:
    """Fill the last run of '#' in a DIALS template with a zero-padded number."""
    runs = list(_TEMPLATE.finditer(template))
    if not runs:
        return template
    m = runs[-1]
    width = m.end() - m.start()
    return template[:m.start()] + f"{int(number):0{width}d}" + template[m.end():]


class ImageSetReader:
    """Reads images of one experiment: ``get_raw_data(i)`` for 0-based image i of
    its scan (or i-th path of a stills ImageSet), ``get_mask()``, ``len()``."""

    def __init__(self, source: ImageSource, scan: Scan | None):
        self.source = source
        self.scan = scan
        self._files: dict[str, ImageFile] = {}
        tmpl = source.template
        self._multi = bool(tmpl) and "#" not in tmpl  # one multi-image file (NXmx)
        if source.kind != "ImageSequence" or not tmpl:
            if not source.paths:
                raise XtalError("image set has neither a template nor image paths")
            self._n = len(source.paths) if not source.single_file_indices else len(source.single_file_indices)
        elif self._multi:
            if source.single_file_indices is not None:
                self._n = len(source.single_file_indices)
            elif scan is not None:
                self._n = scan.num_images
            else:
                self._n = self._file(tmpl).n_images
        else:
            if scan is None:
                raise XtalError(f"an image template ({tmpl}) needs a scan to know its image range")
            self._n = scan.num_images

    def __len__(self) -> int:
        return self._n

    def _file(self, path: str) -> ImageFile:
        f = self._files.get(path)
        if f is None:
            if len(self._files) > 4:  # keep a few open files only
                self._files.pop(next(iter(self._files)))
            f = open_image_file(path)
            self._files[path] = f
        return f

    def _locate(self, i: int) -> tuple[str, int]:
        i = int(i)
        if not 0 <= i < self._n:
            raise XtalError(f"image {i} out of range 0..{self._n - 1}")
        src = self.source
        if src.kind == "ImageSequence" and src.template:
            if self._multi:
                if src.single_file_indices is not None:
                    return src.template, int(src.single_file_indices[i])
                first = self.scan.image_range[0] if self.scan is not None else 1
                return src.template, first - 1 + i
            first = self.scan.image_range[0]
            return template_path(src.template, first + i), 0
        if len(src.paths) == 1 and src.single_file_indices is not None:
            return src.paths[0], int(src.single_file_indices[i])
        return src.paths[i], (int(src.single_file_indices[i]) if src.single_file_indices else 0)

    def path_of(self, i: int) -> str:
        return self._locate(i)[0]

    def get_raw_data(self, i: int) -> tuple[np.ndarray, ...]:
        path, index = self._locate(i)
        return self._file(path).get_raw_data(index)

    def get_mask(self, i: int = 0) -> tuple[np.ndarray, ...]:
        path, _ = self._locate(i)
        return self._file(path).get_mask()

    def models(self, i: int = 0):
        return self._file(self._locate(i)[0]).models()


def open_imageset(source: ImageSource, scan: Scan | None) -> ImageSetReader:
    """Reader for the images of an experiment (see :class:`ImageSetReader`)."""
    return ImageSetReader(source, scan)
