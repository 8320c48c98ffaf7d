"""Reference intensities calculated from an atomic model (dials.scale / dials.cosym
``reference=model.pdb``): |F_model|² with a flat bulk-solvent model.

F_model(h) = F_calc(h) + k_sol · exp(−B_sol s²/4) · F_mask(h), s = 1/d (Å⁻¹), as the
reference model of dials.scale (k_sol 0.35 e/Å³, B_sol 46 Å² by default). F_calc is the
Fourier transform of the model's electron density (X-ray form factors, the atoms'
isotropic B, occupancies; symmetry of the model's space group), F_mask that of its
solvent mask (Refmac radii). Intensities are on an arbitrary scale: scaling fits its own.
"""
from __future__ import annotations

import gemmi
import numpy as np

from ..errors import XtalError


def model_intensities(structure: gemmi.Structure, d_min: float, *, k_sol: float = 0.35, b_sol: float = 46.0):
    """|F_model|² of every unique reflection to ``d_min`` (Å) in the model's cell and space group.

    Parameters
    ----------
    structure : gemmi.Structure
        The model (first model used); cell and space group from its CRYST1/_cell/_symmetry.
    d_min : float
        High-resolution limit in Å.
    k_sol, b_sol : float
        Bulk solvent: mean solvent density (e/Å³) and its B (Å²); k_sol = 0 leaves it out.

    Returns
    -------
    hkl (n, 3) int, intensity (n,), space group (gemmi.SpaceGroup), cell (a, b, c, α, β, γ)
    """
    if not d_min or not np.isfinite(d_min) or d_min <= 0:
        raise XtalError(f"reference model: d_min must be positive, not {d_min}", field="reference")
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise XtalError("reference model: it has no atoms", field="reference")
    sg = structure.find_spacegroup()
    if sg is None or not structure.cell.is_crystal():
        raise XtalError("reference model: no unit cell or space group (CRYST1 / _cell, _symmetry)",
                        field="reference")
    model = structure[0]
    dc = gemmi.DensityCalculatorX()
    dc.d_min = d_min
    dc.set_grid_cell_and_spacegroup(structure)
    dc.set_refmac_compatible_blur(model)
    dc.put_model_density_on_grid(model)
    f_calc = gemmi.transform_map_to_f_phi(dc.grid).prepare_asu_data(dmin=d_min)
    hkl = np.asarray(f_calc.miller_array, dtype=np.int64)
    inv_d2 = np.asarray(f_calc.make_1_d2_array(), dtype=np.float64)
    # undo the blur added for a fine-enough grid: exp(+blur s²/4)
    f = np.asarray(f_calc.value_array) * np.exp(dc.blur * inv_d2 / 4.0)
    if k_sol:
        mask = gemmi.FloatGrid(*dc.grid.shape)
        mask.set_unit_cell(structure.cell)
        mask.spacegroup = sg
        gemmi.SolventMasker(gemmi.AtomicRadiiSet.Refmac).put_mask_on_float_grid(mask, model)
        f_mask = gemmi.transform_map_to_f_phi(mask).prepare_asu_data(dmin=d_min)
        if not np.array_equal(np.asarray(f_mask.miller_array), hkl):
            raise RuntimeError("solvent mask and model transforms disagree on the reflections")
        f = f + k_sol * np.exp(-b_sol * inv_d2 / 4.0) * np.asarray(f_mask.value_array)
    keep = ~np.all(hkl == 0, axis=1)
    c = structure.cell
    return hkl[keep], (np.abs(f[keep]) ** 2).astype(np.float64), sg, (c.a, c.b, c.c, c.alpha, c.beta, c.gamma)


__all__ = ["model_intensities"]
