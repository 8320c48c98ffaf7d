"""Static refinement of one crystal's orientation and cell against X, Y (mm) and φ.

A small self-contained least squares (Levenberg–Marquardt on the normal equations
of the weighted residuals, Jacobian by central finite differences): A = R(θ₁,θ₂,θ₃)·U₀·B(p), where p are the
independent cell parameters of a lattice family (``a`` triclinic: a b c α β γ;
``m``: a b c β; ``o``: a b c; ``t``/``h``: a c; ``c``: a). Optionally each sweep's
detector moves too (``detector=`` "shift": the in-plane shifts Shift1, Shift2 of
processing.refinement's rigid-body detector parameterisation, i.e. the beam centre;
"shift+distance": also Dist); tilts, beam and goniometer stay fixed. Predictions use the rotation-scan Ewald condition (the
crossing nearest the observed φ) and the ray–panel intersection. Outliers are
rejected with Tukey's rule on the X, Y and φ residuals separately (DIALS's default
for indexing, iqr_multiplier 1.5). Parameter covariance is (JᵀWJ)⁻¹ times the
reduced χ², as DIALS; it is propagated to the 9 elements of B for
``Crystal.B_covariance``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..geometry.prediction import ewald_crossings
from ..models import Detector, Experiment
from ..models.crystal import b_matrix, cell_from_real_space
from ..models.goniometer import axis_angle_matrix
from ..refinement.parameterisation import DetectorParameterisation
from .lattice import closest_rotation

_FREE = {"a": (0, 1, 2, 3, 4, 5), "m": (0, 1, 2, 4), "o": (0, 1, 2), "t": (0, 2), "h": (0, 2), "c": (0,)}


def cell_from_free(family: str, p: np.ndarray, template) -> tuple[float, ...]:
    """Full cell (6) from the free parameters of a lattice family."""
    if family == "a":
        return tuple(float(x) for x in p)
    if family == "m":
        return (p[0], p[1], p[2], 90.0, p[3], 90.0)
    if family == "o":
        return (p[0], p[1], p[2], 90.0, 90.0, 90.0)
    if family == "t":
        return (p[0], p[0], p[1], 90.0, 90.0, 90.0)
    if family == "h":
        return (p[0], p[0], p[1], 90.0, 90.0, 120.0)
    return (p[0], p[0], p[0], 90.0, 90.0, 90.0)


@dataclass
class Block:
    """The indexed reflections of one sweep with that sweep's fixed geometry."""

    experiment: Experiment
    miller_index: np.ndarray  # N×3
    obs: np.ndarray  # N×3: x mm, y mm, φ rad
    var: np.ndarray  # N×3 variances
    panel: np.ndarray  # N
    sigma_phi_deg: float | None = None  # overrides the φ sigmas (DIALS's sigma_phi_deg)


def predict(A: np.ndarray, experiment: Experiment, h: np.ndarray, phi_obs: np.ndarray,
            panel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(xyzcal.mm N×3, s1 N×3, entering N, valid N) for indices h, with the crossing
    angle nearest the observed φ and the intersection with each reflection's panel."""
    g, beam, det = experiment.goniometer, experiment.beam, experiment.detector
    s0 = beam.s0
    x = ewald_crossings(A, h, s0, g)
    S, e, s0p, valid = x.S, x.e, x.s0p, x.valid.copy()
    rpar, rperp, exr, base, delta = x.r_par, x.r_perp, x.e_x_r, x.base, x.delta
    p1, p2 = base + delta, base - delta
    wrap = lambda x: (x + math.pi) % (2 * math.pi) - math.pi
    d1, d2 = wrap(p1 - phi_obs), wrap(p2 - phi_obs)
    phi = np.where(np.abs(d1) <= np.abs(d2), phi_obs + d1, phi_obs + d2)
    cph, sph = np.cos(phi)[:, None], np.sin(phi)[:, None]
    rphi = rpar + cph * rperp + sph * exr
    s1 = (s0p + rphi) @ S.T
    entering = s1 @ np.cross(s0, S @ e) < 0.0
    mm = np.zeros((len(h), 2))
    for i, p in enumerate(det.panels):
        sel = panel == i
        if sel.any():
            m, ok = p.get_ray_intersection(s1[sel])
            mm[sel] = m
            valid[sel] &= ok
    return np.column_stack([mm, phi]), s1, entering, valid


def _sigmas(block: Block) -> np.ndarray:
    p = block.experiment.detector[0]
    osc = block.experiment.scan.oscillation[1] if block.experiment.scan is not None else 0.1
    n_images = block.experiment.scan.num_images if block.experiment.scan is not None else 1
    # narrow wedges: most spots are partials whose φ centroids are biased, so φ is
    # down-weighted (σφ ≥ 2 images) unless sigma_phi_deg says otherwise
    phi_floor = 2.0 if n_images < 20 else 0.05
    floor = np.array([(0.1 * p.pixel_size[0]) ** 2, (0.1 * p.pixel_size[1]) ** 2, math.radians(phi_floor * osc) ** 2])
    sig = np.sqrt(np.maximum(block.var, 0) + floor)
    if block.sigma_phi_deg is not None:
        sig[:, 2] = math.radians(block.sigma_phi_deg)
    return sig


def tukey_outliers(res: np.ndarray, iqr_multiplier: float = 1.5) -> np.ndarray:
    """Rows with any residual component outside [Q1 − k·IQR, Q3 + k·IQR]."""
    out = np.zeros(len(res), bool)
    if len(res) < 10:
        return out
    for k in range(res.shape[1]):
        q1, q3 = np.percentile(res[:, k], [25, 75])
        iqr = q3 - q1
        out |= (res[:, k] < q1 - iqr_multiplier * iqr) | (res[:, k] > q3 + iqr_multiplier * iqr)
    return out


@dataclass
class _Solution:
    x: np.ndarray
    fun: np.ndarray
    jac: np.ndarray


def levenberg_marquardt(fun, x0: np.ndarray, max_iter: int = 20, step: float = 1e-3,
                        tol: float = 1e-8) -> _Solution:
    """Minimise |fun(x)|² (fun: R^p → R^n, p small) with a numerical Jacobian."""
    x = np.asarray(x0, float).copy()
    f = fun(x)
    cost = float(f @ f)
    lam = 1e-3
    J = None
    for _ in range(max_iter):
        J = np.empty((len(f), len(x)))
        for k in range(len(x)):
            dx = np.zeros_like(x)
            dx[k] = step
            J[:, k] = (fun(x + dx) - fun(x - dx)) / (2 * step)
        JtJ = J.T @ J
        g = J.T @ f
        improved = False
        for _ in range(10):
            H = JtJ + lam * np.diag(np.maximum(np.diag(JtJ), 1e-12))
            try:
                delta = -np.linalg.solve(H, g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            f_new = fun(x + delta)
            c_new = float(f_new @ f_new)
            if c_new < cost:
                x, f = x + delta, f_new
                rel = (cost - c_new) / max(cost, 1e-300)
                cost = c_new
                lam = max(lam / 10, 1e-9)
                improved = True
                break
            lam *= 10
        if not improved or rel < tol:
            break
    return _Solution(x, f, J if J is not None else np.zeros((len(f), len(x))))


@dataclass
class RefineResult:
    A: np.ndarray
    cell: tuple
    B_covariance: np.ndarray | None
    used: list  # per block: bool mask of reflections used (not outliers)
    rmsd_px_img: tuple  # (x px, y px, z images) over used reflections
    n_used: int
    cell_sd: tuple | None
    experiments: list | None = None  # per block, the experiment with the refined detector (None: fixed)


class _CrystalModel:
    """A(x) = R(θ₁,θ₂,θ₃)·U₀·B(p) for the scaled parameter vector x: three rotations
    about lab x, y, z in mrad, then the family's free cell parameters in units of
    1e-3 of their starting values (Å, deg)."""

    def __init__(self, A0: np.ndarray, family: str):
        self.family = family
        self.cell0 = cell0 = cell_from_real_space(np.linalg.inv(A0))
        p_cell0 = np.array([cell0[i] for i in _FREE[family]], dtype=float)
        if family in ("t", "h"):
            p_cell0 = np.array([(cell0[0] + cell0[1]) / 2, cell0[2]])
        elif family == "c":
            p_cell0 = np.array([np.mean(cell0[:3])])
        self.p_cell0 = p_cell0
        B0 = b_matrix(cell_from_free(family, p_cell0, cell0))
        self.U0 = closest_rotation(A0 @ np.linalg.inv(B0))
        self.scale = np.concatenate([np.full(3, 1e-3), np.maximum(np.abs(p_cell0), 1.0) * 1e-3])

    def cell_parameters(self, x: np.ndarray) -> np.ndarray:
        """The free cell parameters (Å, deg) at x."""
        return self.p_cell0 + x[3:] * self.scale[3:]

    def A(self, x: np.ndarray) -> np.ndarray:
        """The setting matrix A = U·B (Å⁻¹, lab frame at φ = 0) at x."""
        th = x[:3] * self.scale[:3]
        R = axis_angle_matrix([1, 0, 0], th[0]) @ axis_angle_matrix([0, 1, 0], th[1]) @ axis_angle_matrix([0, 0, 1], th[2])
        return R @ self.U0 @ b_matrix(cell_from_free(self.family, self.cell_parameters(x), self.cell0))


DETECTOR_UNIT_MM = 0.01  # scaled detector parameters are in units of 10 µm


class _DetectorModel:
    """Each block's detector moved by x (units of DETECTOR_UNIT_MM): Shift1, Shift2 and,
    with ``distance``, Dist of processing.refinement's DetectorParameterisation."""

    def __init__(self, blocks: list[Block], distance: bool):
        self.blocks = blocks
        self.pars = [DetectorParameterisation(b.experiment.detector, [0]) for b in blocks]
        self.idx = [1, 2, 0] if distance else [1, 2]
        self.n = len(self.idx) * len(blocks)

    def experiments(self, x: np.ndarray) -> list[Experiment]:
        m = len(self.idx)
        out = []
        for k, (b, par) in enumerate(zip(self.blocks, self.pars)):
            par.p = par.p0.copy()
            par.p[self.idx] += x[k * m:(k + 1) * m] * DETECTOR_UNIT_MM
            D, _ = par.state()  # columns fast, slow, origin of each panel
            det = b.experiment.detector
            panels = [dataclasses.replace(p, fast_axis=D[i, :, 0], slow_axis=D[i, :, 1], origin=D[i, :, 2])
                      for i, p in enumerate(det.panels)]
            out.append(dataclasses.replace(b.experiment, detector=Detector(panels, det.hierarchy)))
        return out


def _raw_residuals(A: np.ndarray, blocks: list[Block], experiments: list | None = None) -> list[np.ndarray]:
    """Per block, calculated − observed (x mm, y mm, φ rad); NaN rows where nothing is predicted.
    ``experiments`` (per block) replace the blocks' own geometry."""
    out = []
    for k, b in enumerate(blocks):
        e = b.experiment if experiments is None else experiments[k]
        cal, _, _, valid = predict(A, e, b.miller_index, b.obs[:, 2], b.panel)
        r = cal - b.obs
        r[~valid] = np.nan
        out.append(r)
    return out


def _objective(model: _CrystalModel, blocks: list[Block], sig: list[np.ndarray], used: list[np.ndarray],
               det: _DetectorModel | None):
    """x → weighted residuals of the used reflections (an unpredicted one counts as 30σ)."""
    nc = 3 + len(model.p_cell0)

    def fun(x):
        parts = []
        exps = det.experiments(x[nc:]) if det is not None else None
        for s, u, r in zip(sig, used, _raw_residuals(model.A(x[:nc]), blocks, exps)):
            w = r[u] / s[u]
            parts.append(np.nan_to_num(w, nan=30.0).ravel())
        return np.concatenate(parts) if parts else np.zeros(0)
    return fun


def _tukey_inliers(residuals: list[np.ndarray], iqr_multiplier: float) -> list[np.ndarray]:
    """Per block, the predicted reflections that are not Tukey outliers in X, Y or φ."""
    used = []
    for r in residuals:
        good = np.all(np.isfinite(r), axis=1)
        out = np.zeros(len(r), bool)
        out[good] = tukey_outliers(r[good], iqr_multiplier)
        used.append(good & ~out)
    return used


def _covariances(sol: _Solution | None, x: np.ndarray, model: _CrystalModel):
    """(B covariance 9×9, cell standard deviations (Å, deg)) from the final Jacobian:
    (JᵀJ)⁻¹ times the reduced χ², propagated by finite differences; (None, None) if singular."""
    if sol is None:
        return None, None
    Bcov = cell_sd = None
    try:
        J = sol.jac
        n_obs, n_par = J.shape
        chi2 = float(sol.fun @ sol.fun) / max(n_obs - n_par, 1)
        cov = np.linalg.inv(J.T @ J) * chi2
        nc = len(model.scale)
        D = np.diag(model.scale)
        cov = D @ cov[:nc, :nc] @ D
        cov_cell = cov[3:, 3:]
        pc = model.cell_parameters(x)
        Jb = np.zeros((9, len(pc)))
        Jc = np.zeros((6, len(pc)))
        for k in range(len(pc)):
            hstep = 1e-5 * max(abs(pc[k]), 1.0)
            up, dn = pc.copy(), pc.copy()
            up[k] += hstep
            dn[k] -= hstep
            cu, cd = cell_from_free(model.family, up, model.cell0), cell_from_free(model.family, dn, model.cell0)
            Jb[:, k] = (b_matrix(cu).ravel() - b_matrix(cd).ravel()) / (2 * hstep)
            Jc[:, k] = (np.array(cu) - np.array(cd)) / (2 * hstep)
        Bcov = Jb @ cov_cell @ Jb.T
        cell_sd = tuple(float(math.sqrt(max(v, 0))) for v in np.diag(Jc @ cov_cell @ Jc.T))
    except (np.linalg.LinAlgError, ValueError):
        pass
    return Bcov, cell_sd


def _rmsds(A: np.ndarray, blocks: list[Block], used: list[np.ndarray], experiments=None) -> tuple[tuple, int]:
    """((X px, Y px, Z images) RMSDs over the used, predicted reflections, their number)."""
    rx = ry = rz = 0.0
    n_used = 0
    for b, u, r in zip(blocks, used, _raw_residuals(A, blocks, experiments)):
        rr = r[u]
        rr = rr[np.all(np.isfinite(rr), axis=1)]
        if not len(rr):
            continue
        p = b.experiment.detector[0]
        osc = math.radians(b.experiment.scan.oscillation[1]) if b.experiment.scan is not None else 1.0
        rx += float(np.sum((rr[:, 0] / p.pixel_size[0]) ** 2))
        ry += float(np.sum((rr[:, 1] / p.pixel_size[1]) ** 2))
        rz += float(np.sum((rr[:, 2] / osc) ** 2))
        n_used += len(rr)
    n = max(n_used, 1)
    return (math.sqrt(rx / n), math.sqrt(ry / n), math.sqrt(rz / n)), n_used


def refine_crystal(A0: np.ndarray, blocks: list[Block], family: str = "a", *,
                   outlier_rejection: bool = True, iqr_multiplier: float = 1.5,
                   max_nfev: int = 20, n_rounds: int = 2, detector: str = "none") -> RefineResult:
    """Refine orientation and the ``family``'s free cell parameters, and with ``detector``
    "shift" or "shift+distance" each block's detector position (see module doc)."""
    model = _CrystalModel(np.asarray(A0, dtype=float), family)
    det = _DetectorModel(blocks, detector == "shift+distance") if detector != "none" else None
    nc = 3 + len(model.p_cell0)
    sig = [_sigmas(b) for b in blocks]
    used = [np.ones(len(b.miller_index), bool) for b in blocks]
    x = np.zeros(nc + (det.n if det is not None else 0))

    def experiments(x):
        return det.experiments(x[nc:]) if det is not None else None

    sol = None
    for _ in range(n_rounds):
        if outlier_rejection:
            used = _tukey_inliers(_raw_residuals(model.A(x[:nc]), blocks, experiments(x)), iqr_multiplier)
        n_obs = sum(int(u.sum()) for u in used) * 3
        if n_obs <= len(x) + 3:
            break
        sol = levenberg_marquardt(_objective(model, blocks, sig, used, det), x, max_iter=max_nfev)
        x = sol.x
    A = model.A(x[:nc])
    Bcov, cell_sd = _covariances(sol, x[:nc], model)
    exps = experiments(x)
    rmsd, n_used = _rmsds(A, blocks, used, exps)
    return RefineResult(A=A, cell=cell_from_real_space(np.linalg.inv(A)), B_covariance=Bcov, used=used,
                        rmsd_px_img=rmsd, n_used=n_used, cell_sd=cell_sd, experiments=exps)
