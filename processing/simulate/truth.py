"""The true structure: structure factors with the space group's symmetry, and
the indexing-ambiguity operators of the lattice.

Random atoms (C/N/O/S in protein-like proportions) are placed in the unit cell and
expanded with every operator of the space group (centring included), so the
structure factors have the Laue symmetry and the systematic absences of the space
group exactly. ``F(h) = Σ_ops Σ_atoms f_j(s) · exp(2πi h·(R x_j + t)) · exp(−B s²)``
with IT92 form factors and the overall B (s = sinθ/λ), so ⟨|F|²⟩ follows Wilson's
``Σ f_j(s)² · exp(−2 B s²)``. Intensities are normalised so that ⟨I⟩ → 1000 as
s → 0. A user PDB/mmCIF model (via gemmi) may replace the random atoms.

Nothing here reads or writes files except ``structure_from_model`` (which reads the
user's model through gemmi, as an io reader would).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import gemmi
import numpy as np
from numba import njit, prange

from ..errors import XtalError

I_SCALE = 1000.0  # ⟨I⟩ at s → 0

_ELEMENTS = ("C", "N", "O", "S")
_ELEMENT_FRACTIONS = (0.63, 0.17, 0.19, 0.01)


@dataclass
class TrueStructure:
    """Atoms of the asymmetric unit and the symmetry that expands them."""

    space_group: gemmi.SpaceGroup
    cell: tuple[float, ...]
    xyz: np.ndarray  # N×3 fractional coordinates
    elements: list[str]
    b_iso: np.ndarray  # N, Å² (atomic, on top of the overall B)
    occupancy: np.ndarray  # N
    b_overall: float = 20.0

    def perturbed(self, rng: np.random.Generator, rms_shift: float, cell_factor: float = 1.0,
                  b_add: float = 0.0) -> "TrueStructure":
        """A non-isomorphous variant: atoms shifted by ``rms_shift`` Å (rms per axis)
        and the cell scaled by ``cell_factor``."""
        a, b, c, al, be, ga = self.cell
        cell = (a * cell_factor, b * cell_factor, c * cell_factor, al, be, ga)
        uc = gemmi.UnitCell(*cell)
        frac = np.array(uc.frac.mat.tolist())
        shift = rng.normal(0.0, rms_shift, size=self.xyz.shape) @ frac.T
        return TrueStructure(self.space_group, cell, self.xyz + shift, list(self.elements),
                             self.b_iso.copy(), self.occupancy.copy(), self.b_overall + b_add)


def random_structure(space_group: gemmi.SpaceGroup, cell, n_atoms: int, rng: np.random.Generator,
                     b_overall: float = 20.0) -> TrueStructure:
    """``n_atoms`` random atoms per asymmetric unit (uniform in the cell)."""
    xyz = rng.random((n_atoms, 3))
    elements = list(rng.choice(_ELEMENTS, size=n_atoms, p=_ELEMENT_FRACTIONS))
    return TrueStructure(space_group, tuple(float(x) for x in cell), xyz, elements,
                         np.zeros(n_atoms), np.ones(n_atoms), float(b_overall))


def structure_from_model(path: str, b_overall: float = 0.0) -> TrueStructure:
    """Atoms, cell and space group of a PDB/mmCIF model (hydrogens left out)."""
    try:
        st = gemmi.read_structure(str(path))
    except (OSError, RuntimeError, ValueError) as e:
        raise XtalError(f"model={path}: cannot read it as PDB/mmCIF ({e})") from None
    sg = st.find_spacegroup()
    if sg is None or not st.cell.is_crystal():
        raise XtalError(f"model={path}: has no space group or unit cell (CRYST1 / _cell)")
    st.remove_hydrogens()
    xyz, elements, b, occ = [], [], [], []
    for cra in st[0].all():
        a = cra.atom
        xyz.append(st.cell.fractionalize(a.pos).tolist())
        elements.append(a.element.name)
        b.append(a.b_iso)
        occ.append(a.occ)
    if not xyz:
        raise XtalError(f"model={path}: no atoms")
    cell = (st.cell.a, st.cell.b, st.cell.c, st.cell.alpha, st.cell.beta, st.cell.gamma)
    return TrueStructure(sg, cell, np.array(xyz), elements, np.array(b), np.array(occ), float(b_overall))


# --- structure factors --------------------------------------------------------------

@njit(parallel=True, cache=True)
def _sf_kernel(hkl, rots, trans, xyz, f_elem, elem, occ, biso, stol2):  # pragma: no cover (numba)
    m_refl = hkl.shape[0]
    n_ops = rots.shape[0]
    n_atoms = xyz.shape[0]
    out_re = np.zeros(m_refl)
    out_im = np.zeros(m_refl)
    two_pi = 2.0 * math.pi
    for m in prange(m_refl):
        h0 = hkl[m, 0]
        h1 = hkl[m, 1]
        h2 = hkl[m, 2]
        w = np.empty(n_atoms)
        for n in range(n_atoms):
            w[n] = f_elem[m, elem[n]] * occ[n] * math.exp(-biso[n] * stol2[m])
        re = 0.0
        im = 0.0
        for k in range(n_ops):
            # h·(R x + t) = (hR)·x + h·t
            hr0 = h0 * rots[k, 0, 0] + h1 * rots[k, 1, 0] + h2 * rots[k, 2, 0]
            hr1 = h0 * rots[k, 0, 1] + h1 * rots[k, 1, 1] + h2 * rots[k, 2, 1]
            hr2 = h0 * rots[k, 0, 2] + h1 * rots[k, 1, 2] + h2 * rots[k, 2, 2]
            ht = h0 * trans[k, 0] + h1 * trans[k, 1] + h2 * trans[k, 2]
            for n in range(n_atoms):
                ph = two_pi * (hr0 * xyz[n, 0] + hr1 * xyz[n, 1] + hr2 * xyz[n, 2] + ht)
                re += w[n] * math.cos(ph)
                im += w[n] * math.sin(ph)
        out_re[m] = re
        out_im[m] = im
    return out_re, out_im


def _ops_arrays(sg: gemmi.SpaceGroup) -> tuple[np.ndarray, np.ndarray]:
    ops = list(sg.operations())
    rots = np.array([op.rot for op in ops], dtype=float) / gemmi.Op.DEN
    trans = np.array([op.tran for op in ops], dtype=float) / gemmi.Op.DEN
    return rots, trans


def form_factors(elements: list[str], stol2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(s) per distinct element (M×E) and each atom's column in it."""
    names = sorted(set(elements))
    index = {n: i for i, n in enumerate(names)}
    f = np.empty((len(stol2), len(names)))
    for i, n in enumerate(names):
        it = gemmi.Element(n).it92
        a, b = np.array(it.a), np.array(it.b)
        f[:, i] = np.exp(-np.outer(stol2, b)) @ a + it.c
    return f, np.array([index[e] for e in elements], dtype=np.int64)


def structure_factors(structure: TrueStructure, hkl: np.ndarray) -> np.ndarray:
    """Complex F(h) (electrons) for indices ``hkl`` (N×3), overall B included."""
    hkl = np.ascontiguousarray(hkl, dtype=float).reshape(-1, 3)
    uc = gemmi.UnitCell(*structure.cell)
    Bm = np.array(uc.frac.mat.tolist()).T
    r = hkl @ Bm.T
    stol2 = 0.25 * np.einsum("ij,ij->i", r, r)
    f, elem = form_factors(structure.elements, stol2)
    rots, trans = _ops_arrays(structure.space_group)
    re, im = _sf_kernel(hkl, rots, trans, np.ascontiguousarray(structure.xyz, dtype=float), f, elem,
                        structure.occupancy.astype(float), structure.b_iso.astype(float), stol2)
    return (re + 1j * im) * np.exp(-structure.b_overall * stol2)


def wilson_scale(structure: TrueStructure) -> float:
    """Σ f_j(0)² over the unit cell: ⟨|F|²⟩ as s → 0 (used to normalise I)."""
    f0, elem = form_factors(structure.elements, np.zeros(1))
    n_ops = len(list(structure.space_group.operations()))
    return float(n_ops * np.sum((f0[0, elem] * structure.occupancy) ** 2))


def wilson_mean_intensity(structure: TrueStructure, stol2: np.ndarray) -> np.ndarray:
    """Expected ⟨I⟩(s) in the normalised scale (I_SCALE at s = 0)."""
    f, elem = form_factors(structure.elements, np.asarray(stol2, float))
    n_ops = len(list(structure.space_group.operations()))
    w = (f[:, elem] * structure.occupancy * np.exp(-np.outer(stol2, structure.b_iso))) ** 2
    return I_SCALE * n_ops * w.sum(axis=1) * np.exp(-2 * structure.b_overall * np.asarray(stol2)) \
        / wilson_scale(structure)


# --- symmetry: asymmetric unit, lookup, ambiguities -----------------------------------

def _key(h: np.ndarray) -> np.ndarray:
    h = h.astype(np.int64) + 1024
    return (h[..., 0] << 22) | (h[..., 1] << 11) | h[..., 2]


def point_group_index_ops(sg: gemmi.SpaceGroup) -> np.ndarray:
    """Index-space rotations Rᵀ of the point group plus their negatives (Laue group)."""
    rots = {tuple(np.array(op.rot).T.ravel() // gemmi.Op.DEN) for op in sg.operations().sym_ops}
    mats = [np.array(r).reshape(3, 3) for r in sorted(rots)]
    return np.array(mats + [-m for m in mats], dtype=np.int64)


def canonical_keys(h: np.ndarray, laue_ops: np.ndarray) -> np.ndarray:
    """One integer per symmetry-equivalence class (Friedel mates included)."""
    h = np.asarray(h, dtype=np.int64).reshape(-1, 3)
    eq = np.einsum("kij,nj->kni", laue_ops, h)
    return _key(eq).max(axis=0)


@dataclass
class TrueIntensities:
    """Merged true intensities on the asymmetric unit, with a lookup for any index."""

    space_group: gemmi.SpaceGroup
    cell: tuple[float, ...]
    miller_index: np.ndarray  # M×3, gemmi's reciprocal ASU
    intensity: np.ndarray  # M
    d: np.ndarray  # M
    laue_ops: np.ndarray
    _keys: np.ndarray | None = None
    _order: np.ndarray | None = None

    def __post_init__(self):
        keys = canonical_keys(self.miller_index, self.laue_ops)
        self._order = np.argsort(keys)
        self._keys = keys[self._order]

    def lookup(self, h: np.ndarray) -> np.ndarray:
        """I(h) for any indices (N×3); absent or out-of-range indices give 0."""
        keys = canonical_keys(h, self.laue_ops)
        pos = np.searchsorted(self._keys, keys)
        pos = np.clip(pos, 0, len(self._keys) - 1)
        found = self._keys[pos] == keys
        out = np.zeros(len(keys))
        out[found] = self.intensity[self._order[pos[found]]]
        return out


def true_intensities(structure: TrueStructure, d_min: float) -> TrueIntensities:
    """|F|² on the ASU to ``d_min``, normalised so ⟨I⟩ → I_SCALE as s → 0."""
    uc = gemmi.UnitCell(*structure.cell)
    hkl = np.array(gemmi.make_miller_array(uc, structure.space_group, d_min * (1 - 1e-9)), dtype=np.int32)
    F = structure_factors(structure, hkl)
    inten = np.abs(F) ** 2 / wilson_scale(structure) * I_SCALE
    d = np.array(uc.calculate_d_array(hkl))
    return TrueIntensities(structure.space_group, structure.cell, hkl, inten, d,
                           point_group_index_ops(structure.space_group))


def lattice_index_ops(cell, sg: gemmi.SpaceGroup, tol: float = 2e-3) -> np.ndarray:
    """Proper rotations (index space, entries −1/0/1) that keep the metric and the centring."""
    uc = gemmi.UnitCell(*cell)
    L = np.array(uc.orth.mat.tolist())  # columns a, b, c
    G = L.T @ L
    vals = (-1, 0, 1)
    mats = np.array(list(itertools.product(vals, repeat=9)), dtype=np.int64).reshape(-1, 3, 3)
    mats = mats[np.round(np.linalg.det(mats)).astype(int) == 1]
    Gp = np.einsum("kij,jl,kml->kim", mats, G, mats)
    ok = np.all(np.abs(Gp - G) <= tol * np.abs(G).max(), axis=(1, 2))
    mats = mats[ok]
    # keep the centring: allowed reflections must map to allowed ones
    cen = np.array(sg.operations().cen_ops, dtype=float) / gemmi.Op.DEN
    grid = np.array(list(itertools.product(range(-2, 3), repeat=3)))

    def allowed(h):
        ph = h @ cen.T
        return np.all(np.abs(ph - np.round(ph)) < 1e-6, axis=-1)

    a0 = allowed(grid)
    keep = [m for m in mats if np.array_equal(allowed(grid @ m.T), a0)]
    return np.array(keep, dtype=np.int64)


def ambiguity_ops(cell, sg: gemmi.SpaceGroup) -> list[np.ndarray]:
    """Representatives (index space, h_ref = M·h) of the indexing ambiguities: the
    cosets of the Laue group in the lattice's rotation group (empty if none)."""
    laue = point_group_index_ops(sg)
    laue_rot = [m for m in laue if round(np.linalg.det(m)) == 1]
    lat = lattice_index_ops(cell, sg)
    lat = sorted(lat, key=lambda m: (-int(np.trace(m)), -int(m[2, 2]), tuple(m.ravel())))
    covered = {tuple(m.ravel()) for m in laue_rot}
    reps = []
    for m in lat:
        if tuple(m.ravel()) in covered:
            continue
        reps.append(m)
        covered |= {tuple((g @ m).ravel()) for g in laue_rot}
    return reps


def format_abc(M: np.ndarray) -> str:
    """cctbx-style change-of-basis string for h' = M·h (rows: new basis in the old)."""
    out = []
    for row in np.asarray(M):
        terms = ""
        for coef, name in zip(row, "abc"):
            coef = int(round(coef))
            if coef == 0:
                continue
            sign = "-" if coef < 0 else ("+" if terms else "")
            mag = "" if abs(coef) == 1 else str(abs(coef))
            terms += f"{sign}{mag}{name}"
        out.append(terms or "0")
    return ",".join(out)


def parse_abc(text: str) -> np.ndarray:
    """Inverse of ``format_abc`` (integer rows)."""
    op = gemmi.Op(text.replace("a", "x").replace("b", "y").replace("c", "z"))
    return np.array(op.rot, dtype=np.int64) // gemmi.Op.DEN


def true_mtz(truth: TrueIntensities) -> gemmi.Mtz:
    """An MTZ object (H K L IMEAN SIGIMEAN) of the merged true intensities."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = truth.space_group
    mtz.set_cell_for_all(gemmi.UnitCell(*truth.cell))
    mtz.add_dataset("truth")
    mtz.add_column("IMEAN", "J")
    mtz.add_column("SIGIMEAN", "Q")
    sig = np.sqrt(np.maximum(truth.intensity, 0.0)) * 0.01 + 1e-3
    data = np.column_stack([truth.miller_index.astype(np.float32), truth.intensity, sig]).astype(np.float32)
    mtz.set_data(data)
    mtz.history = ["xtal simulate: true merged intensities"]
    return mtz
