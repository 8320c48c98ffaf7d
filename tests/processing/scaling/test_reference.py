"""Scaling against a reference (``reference=``): a merged MTZ, or an atomic model whose
intensities (with bulk solvent) are calculated as dials.scale does."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from processing.errors import XtalError
from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.io.reference import read_reference
from processing.params import from_strings
from processing.scaling import ScaleParams
from processing.scaling.reference_model import model_intensities
from processing.simulate import SimulateParams, run_simulate
from processing.simulate.truth import canonical_keys, point_group_index_ops
from processing.stages import STAGES
from processing.symmetry import CosymParams, run_cosym

from .test_scale import QUIET, cc_to_truth

CELL = (78.0, 78.0, 78.0, 90.0, 90.0, 90.0)


def write_model(path, n_atoms=150, seed=3):
    """A random 'protein' of C/N/O atoms in I 2 3 (insulin's cell), written as PDB."""
    rng = np.random.default_rng(seed)
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*CELL)
    st.spacegroup_hm = "I 2 3"
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    for i, (xyz, el) in enumerate(zip(rng.random((n_atoms, 3)) * 39.0, rng.choice(["C", "N", "O"], n_atoms))):
        res = gemmi.Residue()
        res.name, res.seqid = "UNK", gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name, atom.element, atom.pos = el, gemmi.Element(el), gemmi.Position(*xyz)
        atom.b_iso, atom.occ = 15.0, 1.0
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    st.write_pdb(str(path))
    return str(path)


@pytest.fixture(scope="module")
def from_model(tmp_path_factory):
    """Six reflection-level data sets whose truth is the model's |F|² (no solvent), cosym'd."""
    out = tmp_path_factory.mktemp("model_ref")
    pdb = write_model(out / "model.pdb")
    run_simulate(SimulateParams(preset="insulin-24", mode="reflections", n_crystals=6, model=pdb, b_factor=0.0,
                                output_dir=str(out), **QUIET))
    e, r = read_experiments(str(out / "integrated.expt")), read_reflections(str(out / "integrated.refl"))
    e, r, _ = run_cosym(e, r, CosymParams(stability="false"))
    return e, r, pdb, str(out / "true.mtz")


def test_model_intensities_match_a_direct_sum_of_the_truth(from_model):
    """|F_calc|² by FFT (k_sol = 0) against the simulator's direct-summed true intensities."""
    _, _, pdb, truth = from_model
    hkl, inten, sg, cell = model_intensities(gemmi.read_structure(pdb), 2.0, k_sol=0.0)
    assert sg.xhm() == "I 2 3" and cell == pytest.approx(CELL)
    data = np.array(gemmi.read_mtz_file(truth))
    ops = point_group_index_ops(sg)
    tk, mk = canonical_keys(data[:, :3].astype(int), ops), canonical_keys(hkl, ops)
    common, it, im = np.intersect1d(tk, mk, return_indices=True)
    assert len(common) > 0.95 * len(mk)
    assert np.corrcoef(data[it, 3], inten[im])[0, 1] > 0.9999
    # bulk solvent flattens the low-resolution terms and hardly touches the high ones
    _, with_solvent, _, _ = model_intensities(gemmi.read_structure(pdb), 2.0)
    d = 1.0 / np.sqrt(np.array([gemmi.UnitCell(*CELL).calculate_1_d2(list(map(int, h))) for h in hkl]))
    high, low = d < 2.5, d > 5.0
    assert np.corrcoef(with_solvent[high], inten[high])[0, 1] > 0.995
    assert np.corrcoef(with_solvent[low], inten[low])[0, 1] < 0.9
    assert with_solvent[low].mean() < 0.8 * inten[low].mean()


def test_scale_against_a_model_reproduces_the_truth(from_model):
    e, r, pdb, truth = from_model
    stage = STAGES["scale"]
    params = from_strings(ScaleParams, [f"reference={pdb}", "reference_model.k_sol=0"])
    out_e, out_r, summary = stage.execute(e, r, params)
    assert summary["reference"] == pdb
    assert cc_to_truth(out_e, out_r, truth) > 0.995
    # the same data scaled on their own agree with the truth no better
    own_e, own_r, _ = stage.execute(e, r, ScaleParams())
    assert cc_to_truth(out_e, out_r, truth) >= cc_to_truth(own_e, own_r, truth) - 0.002


def test_a_model_in_another_cell_or_without_atoms_is_one_error(tmp_path):
    empty = tmp_path / "empty.pdb"
    empty.write_text("CRYST1   78.000   78.000   78.000  90.00  90.00  90.00 I 2 3\nEND\n")
    with pytest.raises(XtalError) as err:
        read_reference(str(empty), 2.0)
    assert err.value.field == "reference" and "no atoms" in str(err.value)
    with pytest.raises(XtalError, match="no such file"):
        read_reference(str(tmp_path / "missing.pdb"), 2.0)
    garbage = tmp_path / "garbage.cif"
    garbage.write_text("this is not a model\n")
    with pytest.raises(XtalError, match="not a readable PDB or mmCIF"):
        read_reference(str(garbage), 2.0)


def test_cosym_takes_the_setting_of_a_reference_model(tmp_path):
    """Three quarters of the crystals in the alternative setting: with the model as
    reference= cosym puts every data set in the model's setting (dials.cosym reference=)."""
    import json

    pdb = write_model(tmp_path / "model.pdb")
    run_simulate(SimulateParams(preset="insulin-24", mode="reflections", n_crystals=8, model=pdb, b_factor=0.0,
                                alt_setting_fraction=0.75, output_dir=str(tmp_path), **QUIET))
    truth = [c["change_of_basis_op"] for c in json.loads((tmp_path / "truth.json").read_text())["truth"]["crystals"]]
    e, r = read_experiments(str(tmp_path / "integrated.expt")), read_reflections(str(tmp_path / "integrated.refl"))
    _, _, s = STAGES["cosym"].execute(e, r, from_strings(CosymParams, [f"reference={pdb}", "stability=false"]))
    ours = {d["id"]: d["operator"] for d in s["datasets"]}
    assert 0 < truth.count("a,b,c") < len(truth)
    assert {ours[k] for k, t in enumerate(truth) if t == "a,b,c"} == {"x,y,z"}
    others = {ours[k] for k, t in enumerate(truth) if t != "a,b,c"}
    assert len(others) == 1 and others != {"x,y,z"}
    # unscaled data against |F_model|² with bulk solvent: the right setting clearly the better
    ccs = sorted(x["cc"] for x in s["reference"]["settings"])
    assert len(ccs) == 2 and ccs[1] > ccs[0] + 0.2
