"""Model parameterisations for refinement: beam, detector, crystal orientation and cell.

Each parameterisation holds its initial model state and a parameter vector ``p``;
``state()`` returns the model state for the current ``p`` together with its first
derivatives with respect to every parameter. The definitions follow DIALS
(dials/algorithms/refinement/parameterisation):

beam
    ``s0 = ν · Mu2 · Mu1 · ŝ0₀`` with Mu1 a rotation (mrad) about the axis in the
    spindle–beam plane perpendicular to s0 (that is the spindle itself for a
    perpendicular beam: degenerate with the crystal φ, hence fixed by DIALS's default
    ``beam.fix=in_spindle_plane``), Mu2 about the normal to that plane, and ν = 1/λ.
detector
    a rigid body of panels: ``dist`` (mm) along the initial normal ``dn`` of the
    reference panel, in-plane shifts ``shift1``, ``shift2`` (mm) of the reference
    panel centre and three rotations ``tau1`` (about dn), ``tau2`` (about d1),
    ``tau3`` (about d2) in mrad, pivoting at the foot of the normal from the sample.
crystal orientation
    ``U = Φ3 · Φ2 · Φ1 · U₀`` with Φi rotations (mrad) about the lab x, y, z axes.
crystal unit cell
    the reciprocal metrical matrix G* = BᵀB constrained by the lattice symmetry (the
    symmetric matrices invariant under the space group's rotations); the parameters
    are the independent elements of G* times 10⁵ (DIALS's ``g_param_i``), and B is the
    lower-triangular factor of G* (a along x, c* along z).
scan-varying
    every parameter above becomes a set of values at checkpoints across the scan,
    smoothed with DIALS's Gaussian smoother (``interval_width_degrees=36``).
"""
from __future__ import annotations


import numpy as np

from ..models import Beam, Crystal, Detector, Goniometer

_EYE = np.eye(3)


def skew(axis) -> np.ndarray:
    x, y, z = axis
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def rotation(axis, angle_rad):
    """Rotation matrices about a unit ``axis`` for angles (scalar → 3×3, (M,) → M×3×3)."""
    K = skew(axis)
    a = np.asarray(angle_rad, dtype=float)
    c, s = np.cos(a)[..., None, None], np.sin(a)[..., None, None]
    return _EYE + s * K + (1.0 - c) * (K @ K)


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


class Parameterisation:
    """Base: a named parameter vector with a fixed/free mask and experiment ids."""

    kind = "model"

    def __init__(self, names, values, experiment_ids):
        self.names = list(names)
        self.p = np.asarray(values, dtype=float).copy()
        self.p0 = self.p.copy()
        self.free = np.ones(len(self.p), dtype=bool)
        self.experiment_ids = list(experiment_ids)
        self.esd = np.full(len(self.p), np.nan)
        self.scan_varying = False

    def __len__(self):
        return len(self.p)

    @property
    def n_free(self) -> int:
        return int(self.free.sum())

    def fix(self, names_or_mask):
        """Fix parameters by name (prefix match, as DIALS's fix_list) or boolean mask."""
        if isinstance(names_or_mask, np.ndarray) and names_or_mask.dtype == bool:
            self.free &= ~names_or_mask
            return
        for n in names_or_mask:
            for i, name in enumerate(self.names):
                if name == n or name.startswith(n + "_sample"):
                    self.free[i] = False


# --------------------------------------------------------------------------- beam
class BeamParameterisation(Parameterisation):
    kind = "beam"

    def __init__(self, beam: Beam, goniometer: Goniometer | None, experiment_ids):
        s0 = np.asarray(beam.s0, dtype=float)
        self.is0 = _unit(s0)
        if goniometer is not None:
            spindle = _unit(goniometer.rotation_axis_lab)
            d2 = np.cross(s0, spindle)
            if np.linalg.norm(d2) < 1e-12:
                d2 = np.cross(s0, _orthogonal(s0))
        else:
            d2 = np.cross(s0, _orthogonal(s0))
        self.axis2 = _unit(d2)
        self.axis1 = _unit(np.cross(self.axis2, s0))
        super().__init__(["Mu1", "Mu2", "nu"], [0.0, 0.0, float(np.linalg.norm(s0))], experiment_ids)

    def state(self):
        """s0 (3,) and ds0/dp (3 params × 3)."""
        mu1, mu2, nu = self.p[0] / 1000.0, self.p[1] / 1000.0, self.p[2]
        M1, M2 = rotation(self.axis1, mu1), rotation(self.axis2, mu2)
        K1, K2 = skew(self.axis1), skew(self.axis2)
        d = M2 @ M1 @ self.is0
        ds = np.array([nu * (M2 @ K1 @ M1 @ self.is0) / 1000.0,
                       nu * (K2 @ M2 @ M1 @ self.is0) / 1000.0,
                       d])
        return nu * d, ds

    def apply(self, beam: Beam):
        s0, _ = self.state()
        beam.direction = -_unit(s0)
        beam.wavelength = float(1.0 / np.linalg.norm(s0))


def _orthogonal(v):
    v = np.asarray(v, float)
    a = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 * np.linalg.norm(v) else np.array([0.0, 1.0, 0.0])
    return _unit(np.cross(v, a))


# ----------------------------------------------------------------------- detector
class DetectorParameterisation(Parameterisation):
    """Rigid-body parameterisation of some (default all) panels of a detector."""

    kind = "detector"

    def __init__(self, detector: Detector, experiment_ids, panels=None, s0=None):
        self.panels = list(range(len(detector))) if panels is None else list(panels)
        ref = self.panels[0]
        if s0 is not None and len(self.panels) > 1:  # reference: the panel the beam hits
            pid, _ = detector.get_ray_intersection(np.asarray(s0)[None, :])
            if pid[0] in self.panels:
                ref = int(pid[0])
        p = detector[ref]
        self.d1 = _unit(p.fast_axis)
        self.d2 = _unit(p.slow_axis)
        self.dn = _unit(np.cross(self.d1, self.d2))
        size = np.asarray(p.image_size) * np.asarray(p.pixel_size)
        dorg = p.origin + 0.5 * size[0] * p.fast_axis + 0.5 * size[1] * p.slow_axis
        dist = float(p.origin @ self.dn)
        shift = dorg - dist * self.dn
        self.fast0 = np.array([detector[j].fast_axis for j in self.panels], float)
        self.slow0 = np.array([detector[j].slow_axis for j in self.panels], float)
        self.rel0 = np.array([detector[j].origin - dorg for j in self.panels], float)
        super().__init__(["Dist", "Shift1", "Shift2", "Tau1", "Tau2", "Tau3"],
                         [dist, shift @ self.d1, shift @ self.d2, 0.0, 0.0, 0.0], experiment_ids)

    def state(self):
        """D matrices (npanel×3×3, columns fast, slow, origin) and dD/dp (6×npanel×3×3)."""
        dist, s1, s2 = self.p[:3]
        t = self.p[3:] / 1000.0
        axes = (self.dn, self.d1, self.d2)
        T = [rotation(a, x) for a, x in zip(axes, t)]
        K = [skew(a) for a in axes]
        R = T[2] @ T[1] @ T[0]
        dR = [T[2] @ T[1] @ K[0] @ T[0] / 1000.0,
              T[2] @ K[1] @ T[1] @ T[0] / 1000.0,
              K[2] @ T[2] @ T[1] @ T[0] / 1000.0]
        shift = s1 * self.d1 + s2 * self.d2
        rel = shift[None, :] + self.rel0  # vectors from the pivot, per panel
        n = len(self.panels)
        D = np.empty((n, 3, 3))
        D[:, :, 0] = self.fast0 @ R.T
        D[:, :, 1] = self.slow0 @ R.T
        D[:, :, 2] = dist * self.dn + rel @ R.T
        dD = np.zeros((6, n, 3, 3))
        dD[0, :, :, 2] = self.dn
        dD[1, :, :, 2] = R @ self.d1
        dD[2, :, :, 2] = R @ self.d2
        for k in range(3):
            dD[3 + k, :, :, 0] = self.fast0 @ dR[k].T
            dD[3 + k, :, :, 1] = self.slow0 @ dR[k].T
            dD[3 + k, :, :, 2] = rel @ dR[k].T
        return D, dD

    def apply(self, detector: Detector):
        D, _ = self.state()
        for k, j in enumerate(self.panels):
            detector[j].fast_axis = D[k, :, 0].copy()
            detector[j].slow_axis = D[k, :, 1].copy()
            detector[j].origin = D[k, :, 2].copy()


# ------------------------------------------------------------------------ crystal
_LAB = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
_K = [skew(a) for a in _LAB]


def orientation_state(U0, phi_mrad):
    """U (M×3×3) and dU/dφi (M×3×3×3, axis 1 the parameter) for angles M×3 (mrad)."""
    phi = np.atleast_2d(phi_mrad) / 1000.0
    P = [rotation(_LAB[k], phi[:, k]) for k in range(3)]
    U = P[2] @ P[1] @ P[0] @ U0
    dU = np.stack([P[2] @ P[1] @ _K[0] @ P[0] @ U0,
                   P[2] @ _K[1] @ P[1] @ P[0] @ U0,
                   _K[2] @ P[2] @ P[1] @ P[0] @ U0], axis=1) / 1000.0
    return U, dU


def metric_basis(space_group_ops) -> tuple[np.ndarray, np.ndarray]:
    """Basis of G* (3×3 symmetric) invariant under a group's rotations.

    Returns (basis k×3×3, pivots k×2): each basis matrix has coefficient 1 at its
    pivot element (i, j) and 0 at the other pivots, so a G* = Σ pₖ·Mₖ has pₖ = G*[pivot].
    """
    idx = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
    E = []
    for i, j in idx:
        m = np.zeros((3, 3))
        m[i, j] = m[j, i] = 1.0
        E.append(m)
    rots = []
    if space_group_ops is not None:
        for op in space_group_ops.sym_ops:
            rots.append(np.array(op.rot, dtype=float) / 24.0)
    if not rots:
        rots = [_EYE]
    # Reynolds projector on vec(G*) = (g11, g22, g33, g12, g13, g23)
    P = np.zeros((6, 6))
    for c, m in enumerate(E):
        avg = sum(R @ m @ R.T for R in rots) / len(rots)
        P[:, c] = [avg[i, j] for i, j in idx]
    u, s, _ = np.linalg.svd(P)
    V = u[:, s > 1e-8]  # 6×k
    # reduced row echelon form of Vᵀ → unit coefficients at pivot elements
    M = V.T.copy()
    pivots = []
    r = 0
    for c in range(6):
        if r >= len(M):
            break
        piv = r + int(np.argmax(np.abs(M[r:, c])))
        if abs(M[piv, c]) < 1e-8:
            continue
        M[[r, piv]] = M[[piv, r]]
        M[r] /= M[r, c]
        for q in range(len(M)):
            if q != r:
                M[q] -= M[q, c] * M[r]
        pivots.append(c)
        r += 1
    M[np.abs(M) < 1e-12] = 0.0
    basis = np.array([sum(M[q, c] * E[c] for c in range(6)) for q in range(len(M))])
    return basis, np.array([idx[c] for c in pivots])


def b_from_metric(G, dG=None):
    """B lower triangular with BᵀB = G* (M×3×3), and dB for dG (M×k×3×3) if given.

    With R = Bᵀ upper triangular, G* = R·Rᵀ and dR = R·Φ(R⁻¹·dG·R⁻ᵀ) where Φ keeps
    the upper triangle and halves the diagonal.
    """
    G = G if G.ndim == 3 else G[None]
    J = _EYE[::-1]
    L = np.linalg.cholesky(J @ G @ J)  # J G J = L Lᵀ → G = (J L J)(J L J)ᵀ
    R = J @ L @ J
    B = np.swapaxes(R, -1, -2)
    if dG is None:
        return B, None
    Ri = np.linalg.inv(R)
    X = Ri[:, None] @ dG @ np.swapaxes(Ri, -1, -2)[:, None]
    Phi = np.triu(X)
    Phi[..., [0, 1, 2], [0, 1, 2]] *= 0.5
    dR = R[:, None] @ Phi
    return B, np.swapaxes(dR, -1, -2)


G_SCALE = 1.0e5


class CrystalOrientationParameterisation(Parameterisation):
    kind = "crystal_orientation"

    def __init__(self, crystal: Crystal, experiment_ids):
        self.U0 = crystal.U
        super().__init__(["Phi1", "Phi2", "Phi3"], [0.0, 0.0, 0.0], experiment_ids)

    def state(self):
        U, dU = orientation_state(self.U0, self.p[None, :])
        return U[0], dU[0]


class CrystalUnitCellParameterisation(Parameterisation):
    kind = "crystal_unit_cell"

    def __init__(self, crystal: Crystal, experiment_ids):
        try:
            ops = crystal.space_group
        except Exception:  # noqa: BLE001 - an unreadable symbol: no constraint
            ops = None
        self.basis, pivots = metric_basis(ops)
        B = crystal.B
        G = B.T @ B
        values = [G_SCALE * G[i, j] for i, j in pivots]
        names = [f"g_param_{k}" for k in range(len(values))]
        super().__init__(names, values, experiment_ids)

    def metric(self, p):
        return np.einsum("mk,kij->mij", np.atleast_2d(p) / G_SCALE, self.basis)

    def state(self):
        B, dB = b_from_metric(self.metric(self.p), self.basis[None] / G_SCALE)
        return B[0], dB[0]


# ------------------------------------------------------------------ scan-varying
class GaussianSmoother:
    """DIALS's Gaussian smoother of checkpoint values across a scan (x = frame)."""

    def __init__(self, x_range, num_intervals: int):
        self.x0 = float(x_range[0])
        self.nsample = max(int(num_intervals), 1)
        n = self.nsample
        self.nvalues = 2 if n == 1 else 3 if n == 2 else n + 2
        self.spacing = (float(x_range[1]) - float(x_range[0])) / n
        if not self.spacing > 0:
            raise ValueError("scan range must be positive for a scan-varying model")
        self.positions = (np.arange(self.nvalues, dtype=float) if self.nvalues < 4
                          else np.arange(self.nvalues, dtype=float) - 0.5)
        self.naverage = min(3, self.nvalues)
        self.half = self.naverage / 2.0
        self.sigma = 0.65 + 0.05 * (self.naverage - 2)

    def weights(self, x) -> np.ndarray:
        """Normalised weights (M×nvalues): value(x) = W @ values."""
        z = (np.asarray(x, dtype=float) - self.x0) / self.spacing
        W = np.exp(-(((z[:, None] - self.positions[None, :]) / self.sigma) ** 2))
        if self.nvalues > 3:
            x = z - self.half  # boost iround: halves away from zero
            i1 = (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(int) + 1
            i2 = i1 + self.naverage
            lo0 = i1 < 0
            i2 = np.where(lo0, np.maximum(2, i2), i2)
            i1 = np.where(lo0, 0, i1)
            hi = i2 > self.nvalues
            i1 = np.where(hi, np.minimum(i1, self.nvalues - 2), i1)
            i2 = np.where(hi, self.nvalues, i2)
            k = np.arange(self.nvalues)[None, :]
            W = np.where((k >= i1[:, None]) & (k < i2[:, None]), W, 0.0)
        s = W.sum(axis=1, keepdims=True)
        return np.where(s > 0, W / np.where(s > 0, s, 1.0), 0.0)


def n_intervals(scan, interval_width_degrees: float, absolute_num_intervals: int | None) -> int:
    if absolute_num_intervals:
        return int(absolute_num_intervals)
    lo, hi = scan.oscillation_range
    return max(int(abs(hi - lo) / interval_width_degrees), 1)


class _ScanVarying(Parameterisation):
    """Shared machinery: base names × checkpoint samples, smoothed against frame z."""

    def __init__(self, base_names, base_values, smoother: GaussianSmoother, experiment_ids):
        self.smoother = smoother
        self.nbase = len(base_names)
        nv = smoother.nvalues
        names = [f"{n}_sample{j}" for n in base_names for j in range(nv)]
        values = np.repeat(np.asarray(base_values, float), nv)
        super().__init__(names, values, experiment_ids)
        self.scan_varying = True

    def base_values(self, W):
        """Smoothed base parameter values at points with weights W (M×nv) → M×nbase."""
        return W @ self.p.reshape(self.nbase, -1).T

    def expand(self, W, dbase):
        """d/d(samples) from d/d(base) (M×nbase×…) and weights → M×(nbase·nv)×…."""
        M, nb = dbase.shape[:2]
        out = dbase[:, :, None] * W[:, None, :].reshape((M, 1, -1) + (1,) * (dbase.ndim - 2))
        return out.reshape((M, nb * W.shape[1]) + dbase.shape[2:])


class ScanVaryingCrystalOrientation(_ScanVarying):
    kind = "crystal_orientation"

    def __init__(self, crystal: Crystal, smoother, experiment_ids):
        self.U0 = crystal.U
        super().__init__(["Phi1", "Phi2", "Phi3"], [0.0, 0.0, 0.0], smoother, experiment_ids)

    def state_at(self, z):
        W = self.smoother.weights(z)
        U, dU = orientation_state(self.U0, self.base_values(W))
        return U, self.expand(W, dU)


class ScanVaryingCrystalUnitCell(_ScanVarying):
    kind = "crystal_unit_cell"

    def __init__(self, crystal: Crystal, static: CrystalUnitCellParameterisation, smoother, experiment_ids):
        self.basis = static.basis
        super().__init__(static.names, static.p, smoother, experiment_ids)

    def state_at(self, z):
        W = self.smoother.weights(z)
        vals = self.base_values(W)
        G = np.einsum("mk,kij->mij", vals / G_SCALE, self.basis)
        dG = np.broadcast_to(self.basis[None] / G_SCALE, (len(G),) + self.basis.shape)
        B, dB = b_from_metric(G, dG)
        return B, self.expand(W, dB)
