"""Reading reference intensities from an MTZ file (merged: IMEAN, I, or F squared)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import gemmi
import numpy as np

from ..errors import XtalError


@dataclass
class ReferenceIntensities:
    """Merged intensities of a reference: Miller indices in its setting, I, space group."""

    hkl: np.ndarray
    intensity: np.ndarray
    space_group: gemmi.SpaceGroup
    cell: tuple[float, ...]
    path: str
    column: str


def read_reference_intensities(path: str) -> ReferenceIntensities:
    """IMEAN (else I, else F²) of a merged MTZ; one clear error for anything else."""
    if not os.path.isfile(path):
        raise XtalError(f"{path}: no such file", field="reference")
    try:
        mtz = gemmi.read_mtz_file(path)
    except Exception as exc:
        raise XtalError(f"{path}: not a readable MTZ file ({exc})", field="reference") from None
    labels = [c.label for c in mtz.columns]
    types = {c.label: c.type for c in mtz.columns}
    column = next((c for c in ("IMEAN", "I") if c in labels and types[c] == "J"), None)
    if column is None:
        column = next((c.label for c in mtz.columns if c.type == "J"), None)
    square = False
    if column is None:
        column = next((c.label for c in mtz.columns if c.type == "F"), None)
        square = True
    if column is None or mtz.spacegroup is None:
        raise XtalError(f"{path}: no intensity (J) or amplitude (F) column, or no space group", field="reference")
    data = np.array(mtz, copy=False)
    hkl = data[:, [labels.index("H"), labels.index("K"), labels.index("L")]].astype(np.int64)
    values = data[:, labels.index(column)].astype(float)
    if square:
        values = values ** 2
    ok = np.isfinite(values)
    if not ok.any():
        raise XtalError(f"{path}: column {column} holds no values", field="reference")
    c = mtz.cell
    return ReferenceIntensities(hkl[ok], values[ok], mtz.spacegroup, (c.a, c.b, c.c, c.alpha, c.beta, c.gamma),
                                path, column + ("²" if square else ""))
