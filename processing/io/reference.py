"""A reference for cosym and scale (``reference=``): a merged MTZ, or an atomic model
(PDB or mmCIF) from which intensities are calculated, as dials.cosym and dials.scale
accept either."""
from __future__ import annotations

import os

import gemmi

from ..errors import XtalError
from .mtz import ReferenceIntensities, read_reference_intensities

MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")


def is_model_file(path: str) -> bool:
    return path.lower().endswith(MODEL_SUFFIXES)


def read_model(path: str) -> gemmi.Structure:
    """An atomic model (PDB or mmCIF); one clear XtalError for anything else."""
    if not os.path.isfile(path):
        raise XtalError(f"{path}: no such file", field="reference")
    try:
        structure = gemmi.read_structure(path)
    except Exception as exc:
        raise XtalError(f"{path}: not a readable PDB or mmCIF model ({exc})", field="reference") from None
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise XtalError(f"{path}: the model has no atoms (a reflection mmCIF? give it as MTZ)", field="reference")
    structure.setup_entities()
    return structure


def read_reference(path: str, d_min: float | None, *, k_sol: float = 0.35, b_sol: float = 46.0) -> ReferenceIntensities:
    """Reference intensities from ``path``: IMEAN/I/F² of a merged MTZ, or |F_model|² of a
    model to ``d_min`` (Å; the data's high-resolution limit)."""
    if not is_model_file(path):
        return read_reference_intensities(path)
    from ..scaling.reference_model import model_intensities

    structure = read_model(path)
    if d_min is None:
        raise XtalError("a reference model needs the data's d_min", field="reference")
    hkl, intensity, sg, cell = model_intensities(structure, d_min, k_sol=k_sol, b_sol=b_sol)
    return ReferenceIntensities(hkl, intensity, sg, cell, path, "|F_model|²")


__all__ = ["read_reference", "read_model", "is_model_file", "MODEL_SUFFIXES"]
