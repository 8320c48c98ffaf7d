"""Refinement: analytic derivatives, recovery of known geometry, scan-varying drift,
outliers, bad input, and (when the simulator and indexer are there) the tiny data set."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from processing.errors import XtalError
from processing.geometry.prediction import predict_rotation
from processing.models import Beam, Crystal, Detector, Experiment, ExperimentList, Goniometer, Panel, Scan
from processing.models.goniometer import axis_angle_matrix
from processing.reflections import Flags, ReflectionTable
from processing.refinement import RefineParams, run_refine
from processing.refinement.outliers import mcd_outliers, tukey
from processing.refinement.parameterisation import GaussianSmoother, metric_basis
from processing.refinement.refiner import _build, _Run
from processing.refinement.residuals import residuals_and_jacobian

PX = 0.075
OSC = 0.1
NOISE = (0.25, 0.25, 0.2)  # px, px, images
CELL = (57.8, 63.1, 71.4, 90.0, 90.0, 90.0)
SG = " P 2 2"  # Hall symbol of P 2 2 2: orthorhombic,: the cell parameterisation has three free parameters


def _instrument():
    beam = Beam(direction=[0.0, 0.0, 1.0], wavelength=0.9763)
    panel = Panel(fast_axis=[1.0, 0.0, 0.0], slow_axis=[0.0, -1.0, 0.0], origin=[-77.0, 80.0, -180.0],
                  image_size=(2068, 2162), pixel_size=(PX, PX))
    return beam, Detector([panel]), Goniometer()


def _observe(expt, A_of_phi=None, seed=0, d_min=2.0, noise=NOISE):
    """Indexed reflections of one experiment with Gaussian centroid noise.

    ``A_of_phi(phi_rad) -> A`` gives a drifting crystal: each reflection is predicted
    with the crystal at its own φ (two passes to converge)."""
    rng = np.random.default_rng(seed)
    p = predict_rotation(expt.crystal.A, expt.beam, expt.detector, expt.goniometer, expt.scan, d_min=d_min)
    if A_of_phi is not None:
        from processing.refinement.prediction_derivatives import predict
        D = np.array([q.d_matrix for q in expt.detector.panels])
        phi = p["xyzcal.mm"][:, 2]
        for _ in range(3):
            A = np.array([A_of_phi(f) for f in phi])
            pr = predict(p["miller_index"], phi, np.zeros(len(phi), int), expt.beam.s0, D, A,
                         expt.goniometer, p["entering"])
            phi = pr["xyz"][:, 2]
        p["xyzcal.mm"] = pr["xyz"]
        p["s1"] = pr["s1"]
        lo, hi = np.radians(expt.scan.oscillation_range)
        keep = pr["valid"] & (phi > lo) & (phi < hi)
        p = {k: v[keep] for k, v in p.items()}
    n = len(p["miller_index"])
    sig = np.array([noise[0] * PX, noise[1] * PX, np.radians(noise[2] * OSC)])
    obs = p["xyzcal.mm"] + rng.normal(size=(n, 3)) * sig
    return {"miller_index": p["miller_index"], "xyzobs.mm.value": obs,
            "xyzobs.mm.variance": np.tile(sig ** 2, (n, 1)), "panel": np.zeros(n, np.uint64),
            "entering": p["entering"], "flags": np.full(n, int(Flags.indexed), np.uint64),
            "s1": p["s1"], "xyzcal.mm": p["xyzcal.mm"]}


def _dataset(n_exp=2, width=5.0, seed=0, sg=SG, cell=CELL):
    rng = np.random.default_rng(seed)
    beam, det, gon = _instrument()
    experiments, tables = ExperimentList(), []
    for k in range(n_exp):
        U = axis_angle_matrix(rng.normal(size=3), rng.uniform(0.5, 3.0))
        crystal = Crystal.from_cell_and_U(cell, U, sg)
        scan = Scan(image_range=(1, int(round(width / OSC))), oscillation=(20.0 * k, OSC))
        e = Experiment(beam=beam, detector=det, goniometer=gon, scan=scan, crystal=crystal, identifier=f"x{k}")
        experiments.append(e)
        t = _observe(e, seed=seed + 10 + k)
        t["id"] = np.full(len(t["miller_index"]), k, np.int32)
        tables.append(ReflectionTable(t, experiment_identifiers={k: f"x{k}"}))
    return experiments, ReflectionTable.concatenate(tables)


def _perturb(experiments, seed=1, cell_rel=0.002, angle_deg=0.05, shift=(0.15, -0.1, 0.4)):
    rng = np.random.default_rng(seed)
    out = ExperimentList(copy.deepcopy(list(experiments)))
    for e in out:
        c = e.crystal
        cell = np.array(c.unit_cell)
        cell[:3] *= 1 + cell_rel * rng.choice([-1.0, 1.0], 3)
        R = axis_angle_matrix(rng.normal(size=3), np.radians(angle_deg))
        e.crystal = Crystal.from_cell_and_U(cell, R @ c.U, c.space_group_hall_symbol)
    p = out[0].detector[0]
    p.origin = p.origin + np.asarray(shift)
    return out


def _misorientation_deg(U1, U2):
    R = U1 @ U2.T
    return np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


@pytest.fixture(scope="module")
def dataset():
    return _dataset()


# ----------------------------------------------------------------- derivatives
@pytest.mark.parametrize("scan_varying", [False, True])
def test_analytic_derivatives_match_finite_differences(dataset, scan_varying):
    experiments, refl = dataset
    expts = ExperimentList(copy.deepcopy(list(experiments)))
    params = RefineParams(beam_fix=("wavelength",), absolute_num_intervals=3, sv_fix_beam=False)
    run = _Run(expts, refl, params, None)
    pset = _build(expts, [0, 1], params, scan_varying)
    data = []
    for i in (0, 1):
        rows = np.nonzero(run.accepted & (run.eidx == i))[0][:150]
        data.append(run._observations(i, rows, scan_varying))
    x0 = pset.get_x()
    # move away from the start so that the derivatives are tested at a general point
    x0 = x0 + np.random.default_rng(3).normal(size=len(x0)) * 0.05 * np.maximum(1.0, 1e-3 * np.abs(x0))
    pset.set_x(x0)
    r0, J, _ = residuals_and_jacobian(pset, data)
    J = J.toarray()
    n_values = 5 if scan_varying else 1  # 3 intervals → 5 smoother values
    assert J.shape[1] == pset.n == 2 + 6 + 2 * (3 + 3) * n_values
    worst = 0.0
    for k in range(pset.n):
        h = 1e-4 * max(1.0, abs(x0[k]) * 1e-3)
        xp, xm = x0.copy(), x0.copy()
        xp[k] += h
        xm[k] -= h
        pset.set_x(xp)
        rp, _, _ = residuals_and_jacobian(pset, data, False)
        pset.set_x(xm)
        rm, _, _ = residuals_and_jacobian(pset, data, False)
        fd = (rp - rm) / (2 * h)
        scale = max(np.abs(fd).max(), 1e-6)
        worst = max(worst, np.abs(fd - J[:, k]).max() / scale)
    assert worst < 1e-4


def test_metric_basis_follows_lattice_symmetry():
    import gemmi
    counts = {"P 1": 6, "P 1 2 1": 4, "P 2 2 2": 3, "P 4": 2, "P 6": 2, "P 2 3": 1, "I 21 3": 1}
    for hm, k in counts.items():
        basis, _ = metric_basis(gemmi.find_spacegroup_by_name(hm).operations())
        assert len(basis) == k, hm


def test_gaussian_smoother_weights_sum_to_one_and_interpolate_linear():
    sm = GaussianSmoother((0.0, 50.0), 1)
    W = sm.weights(np.linspace(0, 50, 11))
    assert np.allclose(W.sum(axis=1), 1.0)
    assert sm.nvalues == 2
    sm5 = GaussianSmoother((0.0, 500.0), 5)
    assert sm5.nvalues == 7
    assert np.allclose(sm5.weights(np.array([0.0, 250.0, 500.0])).sum(axis=1), 1.0)


# ---------------------------------------------------------------- static recovery
def test_static_refinement_recovers_truth(dataset):
    experiments, refl = dataset
    start = _perturb(experiments)
    # the beam is fixed: with 2 × 5° its tilt along the spindle trades off against the
    # detector and crystal rotations (a near-degeneracy of the geometry, not of the fit)
    params = RefineParams(scan_varying="false", outlier_recheck=True, beam_fix=("all",))
    out, table, summary = run_refine(start, refl, params)
    for e_true, e in zip(experiments, out):
        cell_t, cell = np.array(e_true.crystal.unit_cell), np.array(e.crystal.unit_cell)
        assert np.all(np.abs(cell[:3] / cell_t[:3] - 1) < 5e-4), (cell, cell_t)
        assert np.all(np.abs(cell[3:] - 90.0) < 1e-9)  # orthorhombic constraint kept
        assert _misorientation_deg(e.crystal.U, e_true.crystal.U) < 0.01
        sd = e.crystal.cell_parameter_sd()
        assert sd is not None and 0 < sd[0] < 0.05
    assert abs(out[0].detector[0].distance - experiments[0].detector[0].distance) < 0.05
    # RMSDs equal the noise level (px, px, images)
    for row in summary["rmsds_by_experiment"]:
        assert abs(row["rmsd_x_px"] - NOISE[0]) < 0.03
        assert abs(row["rmsd_y_px"] - NOISE[1]) < 0.03
        assert abs(row["rmsd_z_images"] - NOISE[2]) < 0.03
        assert row["nref"] > 500
    # inputs untouched, outputs flagged and predicted
    assert np.allclose(start[0].detector[0].origin, experiments[0].detector[0].origin + [0.15, -0.1, 0.4])
    used = table.get_flags(Flags.used_in_refinement)
    assert used.sum() == summary["n_used_in_refinement"]
    resid = table["xyzcal.mm"][used] - table["xyzobs.mm.value"][used]
    assert np.sqrt(np.mean(resid[:, 0] ** 2)) / PX == pytest.approx(NOISE[0], abs=0.03)


def test_mcd_flags_few_gaussian_points_and_injected_outliers(dataset):
    X = np.random.default_rng(1).normal(size=(2000, 3))
    assert 0.01 < mcd_outliers(X).mean() < 0.05
    assert tukey(X).mean() < 0.05
    experiments, refl = dataset
    refl = refl.copy()
    obs = refl["xyzobs.mm.value"]
    rng = np.random.default_rng(7)
    bad = rng.choice(len(refl), 60, replace=False)
    obs[bad, 0] += rng.choice([-1.0, 1.0], 60) * rng.uniform(1.0, 3.0, 60)  # 13–40 px off
    out, table, summary = run_refine(experiments, refl, RefineParams(scan_varying="false"))
    flagged = table.get_flags(Flags.centroid_outlier)
    assert flagged[bad].all()
    assert flagged.sum() < 60 + 0.05 * len(refl)
    assert not (table.get_flags(Flags.used_in_refinement) & flagged).any()
    for row in summary["rmsds_by_experiment"]:
        assert row["rmsd_x_px"] < 0.3


# ------------------------------------------------------------------ scan-varying
def test_scan_varying_recovers_linear_orientation_drift():
    beam, det, gon = _instrument()
    width = 20.0
    U0 = axis_angle_matrix([0.3, 0.5, 0.8], 1.1)
    crystal = Crystal.from_cell_and_U(CELL, U0, SG)
    B = crystal.B
    drift_axis = np.array([0.0, 1.0, 0.0])
    rate = np.radians(0.1) / np.radians(width)  # 0.1° drift about y over the scan

    def A_of_phi(phi):
        return axis_angle_matrix(drift_axis, rate * phi) @ U0 @ B

    scan = Scan(image_range=(1, int(width / OSC)), oscillation=(0.0, OSC))
    e = Experiment(beam=beam, detector=det, goniometer=gon, scan=scan,
                   crystal=Crystal.from_A(A_of_phi(np.radians(width / 2)), SG), identifier="sv")
    t = _observe(e, A_of_phi=A_of_phi, seed=4)
    t["id"] = np.zeros(len(t["miller_index"]), np.int32)
    refl = ReflectionTable(t, experiment_identifiers={0: "sv"})
    # beam and detector fixed: a rotation of beam, detector and crystal together about
    # y is nearly invisible in one sweep and would soak up the drift
    fixed = dict(beam_fix=("all",), detector_fix="all")
    static, _, s_static = run_refine(ExperimentList([e]), refl, RefineParams(scan_varying="false", **fixed))
    # 4 intervals (6 smoother values): a Gaussian smoother with 2 values cannot follow
    # a straight line to 0.01° at the scan ends
    out, _, summary = run_refine(ExperimentList([e]), refl,
                                 RefineParams(scan_varying="auto", interval_width_degrees=5.0, **fixed))
    A_sp = out[0].crystal.A_at_scan_points
    assert A_sp is not None and len(A_sp) == scan.num_images + 1
    for z in (0, len(A_sp) // 2, len(A_sp) - 1):
        phi = np.radians(scan.angle_from_frame(z))
        U_true = A_of_phi(phi) @ np.linalg.inv(B)
        U_fit = Crystal.from_A(A_sp[z]).U
        assert _misorientation_deg(U_fit, U_true) < 0.01
    # the static model cannot follow the drift: its φ residuals are larger
    z_static = s_static["rmsds_by_experiment"][0]["rmsd_z_images"]
    z_sv = summary["rmsds_by_experiment"][0]["rmsd_z_images"]
    assert z_sv < z_static - 0.05
    assert z_sv == pytest.approx(NOISE[2], abs=0.02)


# ------------------------------------------------------------ bad input / failures
def test_sweep_with_too_few_reflections_is_set_aside(dataset):
    experiments, refl = dataset
    ids = refl["id"]
    keep = (ids == 0) | (np.cumsum(ids == 1) <= 12)
    small = refl.select(keep)
    out, table, summary = run_refine(experiments, small, RefineParams(scan_varying="false"))
    assert [f["experiment"] for f in summary["failed"]] == [1]
    assert "sweep 1" in summary["failed"][0]["message"] and "12 reflections" in summary["failed"][0]["message"]
    assert [r["experiment"] for r in summary["rmsds_by_experiment"]] == [0]
    assert summary["rmsds_by_experiment"][0]["rmsd_x_px"] < 0.3
    assert np.allclose(out[1].crystal.A, experiments[1].crystal.A)


def test_bad_input_messages(dataset):
    experiments, refl = dataset
    no_var = refl.copy()
    del no_var["xyzobs.mm.variance"]
    with pytest.raises(XtalError, match="xyzobs.mm.variance"):
        run_refine(experiments, no_var, RefineParams())
    with pytest.raises(XtalError, match="no experiments"):
        run_refine(ExperimentList(), refl, RefineParams())
    with pytest.raises(XtalError, match="no sweep could be refined"):
        run_refine(experiments, refl.select(np.arange(20)), RefineParams())
    from processing.params import from_strings
    with pytest.raises(XtalError, match="scan_varying"):
        from_strings(RefineParams, ["scan_varying=maybe"])
    with pytest.raises(XtalError, match="beam.fix"):
        from_strings(RefineParams, ["beam_fix=sideways"])


def test_rmsd_table_matches_dials_layout():
    from processing.cli.tables import rmsd_table
    rows = [{"experiment": 0, "nref": 1097, "rmsd_x_px": 0.326931, "rmsd_y_px": 0.215461, "rmsd_z_images": 0.116211},
            {"experiment": 15, "nref": 189, "rmsd_x_px": 0.210209, "rmsd_y_px": 0.262371, "rmsd_z_images": 0.0953149},
            {"experiment": 3, "nref": 414, "rmsd_x_px": 0.298400, "rmsd_y_px": 0.247461, "rmsd_z_images": 0.2}]
    expected = """\
+-------+--------+----------+----------+------------+
|   Exp |   Nref |   RMSD_X |   RMSD_Y |     RMSD_Z |
|    id |        |     (px) |     (px) |   (images) |
|-------+--------+----------+----------+------------|
|     0 |   1097 |  0.32693 |  0.21546 |   0.11621  |
|    15 |    189 |  0.21021 |  0.26237 |   0.095315 |
|     3 |    414 |  0.2984  |  0.24746 |   0.2      |
+-------+--------+----------+----------+------------+"""
    assert rmsd_table(rows) == expected


# --------------------------------------------------------------------- tiny set
def test_tiny_simulated_data_refines(tiny_seed1):
    from processing import indexing as idx
    from processing import spotfinding as spots
    from processing.io.expt import read_experiments

    experiments = read_experiments(str(tiny_seed1[0] / "truth.expt"))
    for e in experiments:
        e.crystal = None
    strong, _ = spots.run_find_spots(experiments, spots.FindSpotsParams())
    indexed_expts, indexed, _ = idx.run_index(experiments, strong, idx.IndexParams(joint=False))
    out, table, summary = run_refine(indexed_expts, indexed, RefineParams())
    assert summary["rmsds_by_experiment"]
    for row in summary["rmsds_by_experiment"]:
        assert row["rmsd_x_px"] < 0.3 and row["rmsd_y_px"] < 0.3 and row["rmsd_z_images"] < 0.25
