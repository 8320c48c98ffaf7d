"""From a group of lattice rotations in the reduced basis to space groups in the
conventional setting: the Patterson group (Laue group with the lattice's centring),
the change of basis to its reference setting, and the space groups it allows.
"""
from __future__ import annotations

import gemmi
import numpy as np

from ..indexing.bravais import bravais_settings

#: Laue class of a proper rotation group, by its order and whether it has a 4- or 6-fold
_LAUE = {(1, 0): "-1", (2, 0): "2/m", (3, 0): "-3", (4, 0): "mmm", (4, 4): "4/m", (6, 0): "-3m", (6, 6): "6/m",
         (8, 4): "4/mmm", (12, 0): "m-3", (12, 6): "6/mmm", (24, 4): "m-3m"}

_FAMILY = {"-1": "a", "2/m": "m", "mmm": "o", "4/m": "t", "4/mmm": "t", "-3": "h", "-3m": "h", "6/m": "h",
           "6/mmm": "h", "m-3": "c", "m-3m": "c"}


def laue_class(rotations: np.ndarray) -> str:
    """The Laue class (``m-3``) of a group of integer rotation matrices."""
    traces = np.rint(np.trace(rotations.astype(float), axis1=1, axis2=2)).astype(int)
    top = 6 if np.any(traces == 2) else (4 if np.any(traces == 1) else 0)
    return _LAUE[(len(rotations), top)]


def _rotations_of(sg: gemmi.SpaceGroup) -> set[bytes]:
    """The proper rotations of a space group as Miller-index maps W (h' = W h)."""
    out = set()
    for op in sg.operations():
        rot = np.array(op.rot, dtype=float) / op.DEN
        if round(np.linalg.det(rot)) == 1:
            out.add(np.rint(rot.T).astype(np.int64).tobytes())
    return out


def patterson_groups(laue: str) -> list[gemmi.SpaceGroup]:
    """Centrosymmetric symmorphic groups of a Laue class, every centring and setting
    gemmi knows (``P m -3``, ``I m -3``, ``F m -3`` …)."""
    out = []
    for sg in gemmi.spacegroup_table():
        if not sg.is_centrosymmetric() or sg.laue_str() != laue or not sg.is_reference_setting():
            continue
        if all(t == 0 for op in sg.operations().sym_ops for t in op.tran):
            out.append(sg)
    return out


def conventional_setting(rotations: np.ndarray, R_reduced: np.ndarray, max_delta: float = 5.0):
    """``(patterson group, M)``: the Patterson group of the rotations and the integer change
    of basis M (h_conv = M h_red) to its reference setting, or ``(None, None)``."""
    laue = laue_class(rotations)
    wanted = {np.asarray(W, dtype=np.int64).tobytes() for W in rotations}
    candidates = patterson_groups(laue)
    for setting in bravais_settings(R_reduced, max_delta):
        if _FAMILY[laue] != setting.family:
            continue
        M = np.asarray(setting.M, dtype=float)
        Minv = np.linalg.inv(M)
        conv = {np.rint(M @ np.frombuffer(w, dtype=np.int64).reshape(3, 3) @ Minv).astype(np.int64).tobytes()
                for w in wanted}
        for sg in candidates:
            if sg.centring_type() == setting.bravais[1] and _rotations_of(sg) == conv:
                return sg, np.rint(M).astype(int)
    return None, None


def space_groups_of(patterson: gemmi.SpaceGroup) -> list[gemmi.SpaceGroup]:
    """The chiral (Sohncke) space groups with the Patterson group's lattice and Laue class,
    in their reference settings: I 2 3 and I 21 3 for I m -3."""
    out = []
    for sg in gemmi.spacegroup_table():
        if (sg.is_sohncke() and sg.laue_str() == patterson.laue_str()
                and sg.centring_type() == patterson.centring_type() and sg.is_reference_setting()
                and sg.crystal_system_str() == patterson.crystal_system_str()):
            out.append(sg)
    return out


def restrict_to_group(ops: np.ndarray, R_reduced: np.ndarray, symbol: str, max_delta: float = 5.0) -> np.ndarray:
    """The lattice operations that belong to the space group ``symbol``'s point group, in
    a setting of the lattice where that group fits (``lattice_group=``)."""
    from ..errors import XtalError

    sg = gemmi.find_spacegroup_by_name(symbol)
    if sg is None:
        raise XtalError(f"unknown space group {symbol!r}", field="lattice_group")
    wanted = _rotations_of(sg)
    for setting in bravais_settings(R_reduced, max_delta):
        if setting.bravais[1] != sg.centring_type() or _FAMILY.get(sg.laue_str()) != setting.family:
            continue
        M = np.asarray(setting.M, dtype=float)
        Minv = np.linalg.inv(M)
        keep = [W for W in ops if np.rint(M @ W @ Minv).astype(np.int64).tobytes() in wanted]
        if len(keep) == len(wanted):
            return np.array(keep)
    raise XtalError(f"lattice_group={symbol} does not fit the data sets' lattice", field="lattice_group")
