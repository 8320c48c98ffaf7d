"""Refinement recovers a wrong header's detector distance, beam centre and tilt, keeps
the good reflections and rejects zingers (single-pixel spots off the predictions)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from processing.geometry.prediction import predict_rotation
from processing.models import (
    Beam,
    Crystal,
    Detector,
    Experiment,
    ExperimentList,
    Goniometer,
    Panel,
    Scan,
)
from processing.models.goniometer import axis_angle_matrix
from processing.refinement import RefineParams, run_refine
from processing.reflections import Flags, ReflectionTable

PX = 0.075
OSC = 0.5


def _truth():
    """A 10° sweep of cubic insulin on a 1M Eiger at 71.5 mm (the `tiny` geometry)."""
    beam = Beam(direction=[0.0, 0.0, 1.0], wavelength=0.9763)
    panel = Panel(fast_axis=[1.0, 0.0, 0.0], slow_axis=[0.0, -1.0, 0.0],
                  origin=[-515.3 * PX, 529.6 * PX, -71.5], image_size=(1028, 1062), pixel_size=(PX, PX))
    crystal = Crystal.from_cell_and_U((78.1, 78.1, 78.1, 90, 90, 90),
                                      axis_angle_matrix([0.4, 0.7, 0.2], 0.9), " I 2b 2c 3")
    scan = Scan(image_range=(1, 20), oscillation=(0.0, OSC))
    return Experiment(beam=beam, detector=Detector([panel]), goniometer=Goniometer(), scan=scan, crystal=crystal,
                      identifier="g")


def _header(e, distance=1.0, centre_px=(3.0, -2.0), tilt_deg=0.5):
    """The header's detector: ``distance`` mm further, tilted about x through the beam
    centre, and the beam centre moved by ``centre_px`` (fast, slow)."""
    h = copy.deepcopy(e)
    p = h.detector[0]
    bc = p.get_lab_coord(p.get_beam_centre(h.beam.s0)[None])[0]
    R = axis_angle_matrix([1.0, 0.0, 0.0], np.radians(tilt_deg))
    p.fast_axis, p.slow_axis = R @ p.fast_axis, R @ p.slow_axis
    p.origin = bc + R @ (p.origin - bc) + np.array([0.0, 0.0, -distance])
    p.origin = p.origin - centre_px[0] * PX * p.fast_axis - centre_px[1] * PX * p.slow_axis
    return h


def _observed(e, n_zingers=60, seed=0):
    """Indexed reflections: true positions with a scale mixture of centroid errors (weak
    spots 10× less precise in X, Y than strong ones, as simulated images give), DIALS's 1/12 px²
    variance floor, and zingers indexed as their nearest reflection but pixels away."""
    rng = np.random.default_rng(seed)
    p = predict_rotation(e.crystal.A, e.beam, e.detector, e.goniometer, e.scan, d_min=2.2)
    n = len(p["miller_index"])
    weak = rng.random(n) < 0.5  # px, px, images: as measured on the simulated `tiny` images
    sig = np.where(weak[:, None], [0.13, 0.13, 0.32], [0.01, 0.01, 0.17]) * np.array([PX, PX, np.radians(OSC)])
    obs = p["xyzcal.mm"] + rng.normal(size=(n, 3)) * sig
    z = rng.choice(n, n_zingers, replace=False)
    ang = rng.uniform(0, 2 * np.pi, n_zingers)
    off = rng.uniform(2.0, 5.0, n_zingers) * PX  # off the prediction by 2–5 px ...
    zobs = p["xyzcal.mm"][z] + np.column_stack([off * np.cos(ang), off * np.sin(ang), np.zeros(n_zingers)])
    zobs[:, 2] = np.radians(OSC) * (np.floor(np.degrees(zobs[:, 2]) / OSC + rng.uniform(-1.5, 1.5, n_zingers)) + 0.5)
    obs = np.vstack([obs, zobs])  # ... on one image, at its centre
    hkl = np.vstack([p["miller_index"], p["miller_index"][z]])
    m = len(hkl)
    var = np.tile([PX ** 2 / 12, PX ** 2 / 12, np.radians(OSC) ** 2 / 12], (m, 1))
    t = ReflectionTable({"miller_index": hkl, "xyzobs.mm.value": obs, "xyzobs.mm.variance": var,
                         "panel": np.zeros(m, np.uint64), "entering": np.concatenate([p["entering"], p["entering"][z]]),
                         "flags": np.full(m, int(Flags.indexed), np.uint64), "id": np.zeros(m, np.int32)},
                        experiment_identifiers={0: "g"})
    return t, np.arange(n, m)


def _geometry(e):
    p = e.detector[0]
    return p.distance, p.get_beam_centre_px(e.beam.s0), p.normal


@pytest.fixture(scope="module")
def recovered():
    truth = _truth()
    refl, zingers = _observed(truth)
    header = _header(truth)
    out, table, summary = run_refine(ExperimentList([header]), refl, RefineParams())
    return truth, header, out[0], table, summary, zingers


def test_wrong_header_geometry_is_recovered(recovered):
    truth, header, refined, _, summary, _ = recovered
    d0, bc0, n0 = _geometry(truth)
    dh, bch, nh = _geometry(header)
    d1, bc1, n1 = _geometry(refined)
    assert abs(dh - d0) > 0.9 and np.abs(bch - bc0).max() > 1.9  # the header was wrong
    assert np.degrees(np.arccos(abs(nh @ n0))) == pytest.approx(0.5, abs=1e-6)
    assert abs(d1 - d0) < 0.05  # mm
    assert np.abs(bc1 - bc0).max() < 0.1  # px
    assert np.degrees(np.arccos(min(abs(n1 @ n0), 1.0))) < 0.02  # deg
    row = summary["rmsds_by_experiment"][0]
    assert row["rmsd_x_px"] < 0.5 and row["rmsd_y_px"] < 0.5


def test_good_reflections_are_kept_and_zingers_rejected(recovered):
    *_, table, _, zingers = recovered
    outlier = table.get_flags(Flags.centroid_outlier)
    good = np.ones(len(table), bool)
    good[zingers] = False
    assert outlier[zingers].mean() > 0.95
    assert (~outlier[good]).mean() >= 0.9


def test_dials_outlier_rejection_throws_away_precise_data():
    """Without the scatter floor (DIALS's MCD) a quarter of the good reflections go."""
    truth = _truth()
    refl, _ = _observed(truth, n_zingers=0)
    _, table, _ = run_refine(ExperimentList([truth]), refl, RefineParams(scan_varying="false", outlier_min_scatter=0))
    assert table.get_flags(Flags.centroid_outlier).mean() > 0.15
