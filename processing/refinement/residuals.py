"""Weighted residuals X, Y (mm), φ (rad) and their sparse Jacobian across experiments.

``ParameterSet`` collects the parameterisations of an experiment list (shared models
have one parameterisation used by all their experiments) and maps their free
parameters onto one vector. ``Observations`` holds one experiment's working
reflections. ``residuals_and_jacobian`` predicts every reflection with the current
parameters and returns r = √w·(calc − obs) (interleaved X, Y, φ per reflection) and
J = ∂r/∂x as a scipy.sparse CSR matrix: each experiment's rows touch only its own
crystal's columns and the shared beam/detector columns, so many-sweep refinement
stays sparse.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import prediction_derivatives as pdv
from .parameterisation import Parameterisation


@dataclass
class Observations:
    """One experiment's working reflections."""

    experiment: int
    rows: np.ndarray  # rows in the reflection table
    miller_index: np.ndarray  # N×3
    obs: np.ndarray  # N×3 (x mm, y mm, φ rad)
    weights: np.ndarray  # N×3 (1/variance)
    panel: np.ndarray  # N
    entering: np.ndarray | None
    z: np.ndarray  # frame at which a scan-varying model is evaluated

    def __len__(self):
        return len(self.rows)


@dataclass
class ExperimentModels:
    beam: Parameterisation | None = None
    detectors: list = field(default_factory=list)
    orientation: Parameterisation | None = None
    cell: Parameterisation | None = None


class ParameterSet:
    """All parameterisations of a refinement and the global vector of free parameters."""

    def __init__(self, experiments, models: list[ExperimentModels]):
        self.experiments = experiments
        self.models = models
        seen, self.params = set(), []
        for m in models:
            for p in [m.beam, *m.detectors, m.orientation, m.cell]:
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    self.params.append(p)
        self.reindex()

    def reindex(self):
        self.columns = {}
        k = 0
        for p in self.params:
            cols = np.full(len(p), -1, dtype=np.int64)
            nf = p.n_free
            cols[p.free] = np.arange(k, k + nf)
            self.columns[id(p)] = cols
            k += nf
        self.n = k

    def get_x(self) -> np.ndarray:
        return np.concatenate([p.p[p.free] for p in self.params]) if self.params else np.zeros(0)

    def set_x(self, x):
        for p in self.params:
            cols = self.columns[id(p)]
            p.p[p.free] = x[cols[p.free]]

    def names(self) -> list[str]:
        out = []
        for p in self.params:
            tag = f"{p.kind}[{','.join(map(str, p.experiment_ids[:3]))}{'…' if len(p.experiment_ids) > 3 else ''}]"
            out += [f"{tag}.{n}" for n, f in zip(p.names, p.free) if f]
        return out


def _crystal_state(m: ExperimentModels, crystal, z):
    """A (3×3 or N×3×3) and [(param, dA)] for the experiment's crystal."""
    grads = []
    o, c = m.orientation, m.cell
    sv = (o is not None and o.scan_varying) or (c is not None and c.scan_varying)
    if not sv:
        U, dU = o.state() if o is not None else (crystal.U, None)
        B, dB = c.state() if c is not None else (crystal.B, None)
        if dU is not None:
            grads.append((o, dU @ B))
        if dB is not None:
            grads.append((c, U @ dB))
        return U @ B, grads
    zu, inv = np.unique(z, return_inverse=True)
    if o is not None and o.scan_varying:
        U, dU = o.state_at(zu)
    elif o is not None:
        U1, dU1 = o.state()
        U, dU = np.broadcast_to(U1, (len(zu), 3, 3)), np.broadcast_to(dU1, (len(zu),) + dU1.shape)
    else:
        U, dU = np.broadcast_to(crystal.U, (len(zu), 3, 3)), None
    if c is not None and c.scan_varying:
        B, dB = c.state_at(zu)
    elif c is not None:
        B1, dB1 = c.state()
        B, dB = np.broadcast_to(B1, (len(zu), 3, 3)), np.broadcast_to(dB1, (len(zu),) + dB1.shape)
    else:
        B, dB = np.broadcast_to(crystal.B, (len(zu), 3, 3)), None
    A = (U @ B)[inv]
    if dU is not None:
        grads.append((o, (dU @ B[:, None])[inv]))
    if dB is not None:
        grads.append((c, (U[:, None] @ dB)[inv]))
    return A, grads


def predict_experiment(pset: ParameterSet, i: int, obs: Observations, gradients: bool = True):
    """Prediction dict for one experiment and [(param, N×k×3 gradients)]."""
    e = pset.experiments[i]
    m = pset.models[i]
    if m.beam is not None:
        s0, ds0 = m.beam.state()
    else:
        s0, ds0 = e.beam.s0, None
    D = np.array([p.d_matrix for p in e.detector.panels])
    det_grads = []
    for dp in m.detectors:
        Dp, dDp = dp.state()
        D[dp.panels] = Dp
        det_grads.append((dp, dDp))
    A, xgrads = _crystal_state(m, e.crystal, obs.z)
    pred = pdv.predict(obs.miller_index, obs.obs[:, 2], obs.panel, s0, D, A, e.goniometer, obs.entering)
    out = []
    if gradients:
        if ds0 is not None:
            out.append((m.beam, pdv.beam_gradients(pred, ds0)))
        for dp, dDp in det_grads:
            pos = np.full(len(e.detector), -1, dtype=np.int64)
            pos[dp.panels] = np.arange(len(dp.panels))
            out.append((dp, pdv.detector_gradients(pred, pos[obs.panel], dDp)))
        for p, dA in xgrads:
            out.append((p, pdv.crystal_gradients(pred, obs.miller_index, dA)))
    return pred, out


def residuals_and_jacobian(pset: ParameterSet, data: list[Observations], jacobian: bool = True):
    """Weighted residuals (3N), sparse Jacobian (3N × n free) and per-block predictions."""
    rs, rows, cols, vals, preds = [], [], [], [], []
    base = 0
    for obs in data:
        pred, grads = predict_experiment(pset, obs.experiment, obs, jacobian)
        preds.append(pred)
        sw = np.sqrt(obs.weights)
        res = np.where(pred["valid"][:, None], pred["xyz"] - obs.obs, 0.0)
        rs.append((sw * res).ravel())
        if jacobian:
            n = len(obs)
            rr = base + np.arange(3 * n).reshape(n, 3)
            for p, g in grads:
                c = pset.columns[id(p)]
                keep = c >= 0
                if not np.any(keep):
                    continue
                g = g[:, keep, :] * (sw * pred["valid"][:, None])[:, None, :]
                k = int(keep.sum())
                rows.append(np.broadcast_to(rr[:, None, :], (n, k, 3)).ravel())
                cols.append(np.broadcast_to(c[keep][None, :, None], (n, k, 3)).ravel())
                vals.append(g.ravel())
        base += 3 * len(obs)
    r = np.concatenate(rs) if rs else np.zeros(0)
    J = None
    if jacobian:
        if vals:
            J = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(base, pset.n))
        else:
            J = sp.csr_matrix((base, pset.n))
    return r, J, preds


def unweighted_residuals(data: list[Observations], preds) -> list[np.ndarray]:
    return [p["xyz"] - o.obs for o, p in zip(data, preds)]
