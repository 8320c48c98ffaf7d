"""Integration predicts with the scan-varying crystal (A at every image boundary, as
dials.refine writes it and dials.integrate uses it) when the experiment has one."""
import copy

import numpy as np
import pytest

from processing.geometry.prediction import A_at_frames, predict_rotation
from processing.integration import IntegrateParams, run_integrate
from processing.integration.integrator import _hkl_key
from processing.io.expt import read_experiments
from processing.io.refl import read_reflections
from processing.models import (
    Beam,
    Crystal,
    Detector,
    ExperimentList,
    Goniometer,
    Panel,
    Scan,
)
from processing.models.goniometer import axis_angle_matrix
from processing.reflections import Flags, ReflectionTable
from processing.simulate import SimulateParams, run_simulate


def test_prediction_follows_a_linear_drift_of_the_crystal():
    beam = Beam(direction=[0.0, 0.0, 1.0], wavelength=0.9763)
    det = Detector([Panel(fast_axis=[1.0, 0.0, 0.0], slow_axis=[0.0, -1.0, 0.0], origin=[-77.0, 80.0, -180.0],
                          image_size=(2068, 2162), pixel_size=(0.075, 0.075))])
    gon = Goniometer()
    scan = Scan(image_range=(1, 100), oscillation=(0.0, 0.1))
    U0 = axis_angle_matrix([0.3, 0.5, 0.8], 1.1)
    B = Crystal.from_cell_and_U((57.8, 63.1, 71.4, 90, 90, 90), U0, " P 2 2").B
    rate = 0.02  # 0.2° about y over the 10° scan

    def A_of(phi):
        return axis_angle_matrix([0.0, 1.0, 0.0], rate * (phi - np.radians(5.0))) @ U0 @ B

    A_sp = np.array([A_of(np.radians(scan.angle_from_frame(z))) for z in range(101)])
    sv = predict_rotation(A_sp[50], beam, det, gon, scan, d_min=2.0, A_at_scan_points=A_sp)
    static = predict_rotation(A_sp[50], beam, det, gon, scan, d_min=2.0)
    # every scan-varying prediction is on the Ewald sphere of the crystal at its own φ
    phi = sv["xyzcal.mm"][:, 2]
    R = np.array([axis_angle_matrix([1.0, 0.0, 0.0], f) for f in phi])
    s1 = beam.s0 + np.einsum("nij,njk,nk->ni", R, np.array([A_of(f) for f in phi]), sv["miller_index"])
    off = np.abs(s1 - sv["s1"]).max(axis=1)
    assert np.percentile(off, 99) < 1e-8  # 1/Å; only points right next to the spindle converge slowly
    assert off[np.abs(sv["zeta"]) > 0.05].max() < 1e-6
    assert np.abs(np.linalg.norm(sv["s1"], axis=1) - 1 / 0.9763).max() < 1e-6
    # at the scan ends the static model is ~0.1° off: its spots move by pixels
    k_s, k_v = _hkl_key(static["miller_index"]), _hkl_key(sv["miller_index"])
    _, i_s, i_v = np.intersect1d(k_s, k_v, return_indices=True)
    shift = np.linalg.norm(static["xyzcal.px"][i_s, :2] - sv["xyzcal.px"][i_v, :2], axis=1)
    ends = np.abs(sv["xyzcal.px"][i_v, 2] - 50) > 40
    middle = np.abs(sv["xyzcal.px"][i_v, 2] - 50) < 5
    assert np.median(shift[ends]) > 0.2 > 10 * np.median(shift[middle])
    # interpolation between the scan points is linear and held at the ends
    assert np.allclose(A_at_frames(A_sp, scan, [20.5])[0], 0.5 * (A_sp[20] + A_sp[21]))
    assert np.allclose(A_at_frames(A_sp, scan, [-3.0, 140.0]), A_sp[[0, -1]])


@pytest.fixture(scope="module")
def one_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sv_int")
    files, _ = run_simulate(SimulateParams(preset="tiny", output_dir=str(out), n_crystals=1, seed=5))
    return read_experiments(files["truth_experiments"]), read_reflections(files["truth_reflections"][0])


def test_integration_uses_a_at_scan_points(one_sweep):
    """The crystal's static A is 0.2° off while its A at the scan points is the truth:
    integration follows the scan points (predicted centroids on the true ones)."""
    truth_expts, truth = one_sweep
    e = truth_expts[0]
    sel = (truth["intensity.true.value"] > 2000) & (truth["partiality"] > 0.9)
    idx = ReflectionTable()
    idx["miller_index"] = truth["miller_index"][sel]
    idx["id"] = np.zeros(int(sel.sum()), np.int32)
    idx["xyzobs.px.value"] = truth["xyzcal.px"][sel]
    idx["flags"] = np.full(int(sel.sum()), int(Flags.indexed | Flags.strong), np.uint64)
    idx.experiment_identifiers = {0: e.identifier}
    A_true = e.crystal.A
    wrong = axis_angle_matrix([0.2, 1.0, 0.3], np.radians(0.2)) @ A_true
    results = {}
    for name, A_sp in (("static", None), ("scan_varying", np.repeat(A_true[None], e.scan.num_images + 1, 0))):
        x = copy.deepcopy(e)
        x.crystal = Crystal.from_A(wrong, e.crystal.space_group_hall_symbol, A_at_scan_points=A_sp)
        _, table, _ = run_integrate(ExperimentList([x]), idx, IntegrateParams(nproc=1, d_min=2.5))
        kt, kc = _hkl_key(truth["miller_index"]), _hkl_key(table["miller_index"])
        _, it, ic = np.intersect1d(kt, kc, return_indices=True)
        ok = _flag_set(table, Flags.integrated_sum)[ic] & (truth["partiality"][it] > 0.9) \
            & (truth["intensity.true.value"][it] > 500)
        d = table["xyzcal.px"][ic][ok, :2] - truth["xyzcal.px"][it][ok, :2]
        cc = np.corrcoef(table["intensity.sum.value"][ic][ok], truth["intensity.true.value"][it][ok])[0, 1]
        results[name] = (float(np.sqrt(np.mean(np.sum(d ** 2, axis=1)))), cc, int(ok.sum()))
    (rms_s, _, n_s), (rms_v, cc_v, n_v) = results["static"], results["scan_varying"]
    assert rms_v < 0.05 and rms_s > 0.4  # px: the scan points are the truth, the static A is not
    assert cc_v > 0.999 and n_v >= n_s > 200  # summation boxes are wide: intensities barely suffer


def _flag_set(table, flag):
    return (table["flags"] & np.uint64(int(flag))) != 0
