"""The physical scaling model of one data set (Beilsten-Edmands et al. 2020; dials.scale).

The inverse scale factor of an observation at rotation φ (deg), resolution d (Å), with
the beam's reversed incoming and outgoing directions u0, u1 in the crystal frame:

    g = C(φ) · exp(B(φ) / (2 d²)) · (1 + Σ_lm P_lm (Y_lm(u0) + Y_lm(u1)) / 2)

C and B are smooth in φ (``smoother.py``); the absorption surface uses real spherical
harmonics of orders 1 … lmax (``harmonics.py``). Each term can be switched off.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import harmonics, smoother


@dataclass
class PhysicalModel:
    """Configuration and parameters of one data set's model."""

    scale_at: np.ndarray
    decay_at: np.ndarray
    lmax: int
    scale: np.ndarray
    decay: np.ndarray
    absorption: np.ndarray
    #: standard deviations of the parameters (after scaling)
    sigmas: np.ndarray | None = None
    #: a data set scaled before whose model stays as it is (incremental scaling)
    fixed: bool = False
    extra: dict = field(default_factory=dict)
    #: (basis, parameters' bytes, components) of the last evaluation
    _last: tuple | None = field(default=None, repr=False, compare=False)

    @classmethod
    def new(cls, angle_range: tuple[float, float], params, n_obs: int) -> "PhysicalModel":
        """A fresh model for a data set spanning ``angle_range`` (deg) with ``n_obs`` observations;
        terms the observations cannot support (fewer than 10 per parameter) are left out."""
        lo, hi = angle_range
        width = hi - lo
        scale_interval, decay_interval = params.intervals(width)
        n_s = smoother.n_parameters(width, scale_interval) if params.scale_correction else 1
        n_d = smoother.n_parameters(width, decay_interval) if params.decay_correction else 0
        lmax, surface_weight = params.absorption(width)
        while lmax > 0 and n_obs < 10 * (n_s + n_d + harmonics.n_terms(lmax)):
            lmax -= 1
        if n_obs < 10 * (n_s + n_d):
            n_s, n_d = 1, (1 if params.decay_correction and n_obs >= 30 else 0)
        return cls(smoother.positions(lo, hi, n_s) if n_s > 1 else np.array([0.5 * (lo + hi)]),
                   smoother.positions(lo, hi, n_d) if n_d > 1 else np.array([0.5 * (lo + hi)])[:n_d],
                   lmax, np.ones(n_s), np.zeros(n_d), np.zeros(harmonics.n_terms(lmax) if lmax else 0),
                   extra={"surface_weight": surface_weight})

    def starting_from(self, previous: "PhysicalModel") -> "PhysicalModel":
        """This fresh model with ``previous``'s parameters when it has the same terms at the
        same knots (a data set scaled before, rescaled), else itself unchanged."""
        same = (np.array_equal(self.scale_at, previous.scale_at) and np.array_equal(self.decay_at, previous.decay_at)
                and self.lmax == previous.lmax and len(self.absorption) == len(previous.absorption))
        p = previous.parameters
        if same and np.all(np.isfinite(p)) and np.all(previous.scale > 0):
            self.parameters = p.copy()
        return self

    @property
    def parameters(self) -> np.ndarray:
        return np.concatenate([self.scale, self.decay, self.absorption])

    @parameters.setter
    def parameters(self, p: np.ndarray) -> None:
        a, b = len(self.scale), len(self.scale) + len(self.decay)
        self.scale, self.decay, self.absorption = p[:a].copy(), p[a:b].copy(), p[b:].copy()

    def basis(self, phi: np.ndarray, d: np.ndarray, u0: np.ndarray, u1: np.ndarray) -> "Basis":
        """The parameter-independent parts of the model at these observations."""
        ws = smoother.weights(phi, self.scale_at)
        wd = smoother.weights(phi, self.decay_at) if len(self.decay_at) else np.zeros((len(phi), 0))
        y = 0.5 * (harmonics.real_harmonics(u0, self.lmax) + harmonics.real_harmonics(u1, self.lmax)) \
            if self.lmax else np.zeros((len(phi), 0))
        return Basis(ws, wd, y, 0.5 / d ** 2)

    def components(self, basis: "Basis") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scale C, decay factor exp(B/2d²), absorption A) at each observation (read-only
        arrays; the last result is kept: a refinement cycle asks for it several times)."""
        key = self.parameters.tobytes()
        last = self._last
        if last is not None and last[0] is basis and last[1] == key:
            return last[2]
        out = self._components(basis)
        for x in out:
            x.setflags(write=False)
        self._last = (basis, key, out)
        return out

    def _components(self, basis: "Basis") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = basis.ws @ self.scale
        decay = np.exp(np.clip((basis.wd @ self.decay) * basis.half_inv_d2, -50, 50)) \
            if len(self.decay) else np.ones(len(c))
        a = 1.0 + basis.y @ self.absorption if len(self.absorption) else np.ones(len(c))
        return c, decay, a

    def value(self, basis: "Basis") -> np.ndarray:
        c, decay, a = self.components(basis)
        return c * decay * a

    def jacobian(self, basis: "Basis") -> tuple[np.ndarray, np.ndarray]:
        """(g, ∂g/∂p) with p = (scale, decay, absorption)."""
        c, decay, a = self.components(basis)
        g = c * decay * a
        parts = [basis.ws * (decay * a)[:, None]]
        if len(self.decay):
            parts.append(basis.wd * (g * basis.half_inv_d2)[:, None])
        if len(self.absorption):
            parts.append(basis.y * (c * decay)[:, None])
        return g, np.hstack(parts)

    def restraint(self, decay_weight: float, surface_weight: float) -> np.ndarray:
        """Diagonal weights of the restraints towards zero (none on the scale term); the
        model's own surface weight (``absorption_level``) wins over ``surface_weight``."""
        surface_weight = self.extra.get("surface_weight", surface_weight)
        return np.concatenate([np.zeros(len(self.scale)), np.full(len(self.decay), decay_weight),
                               np.full(len(self.absorption), surface_weight)])

    def curves(self, lo: float, hi: float, n: int = 50) -> dict:
        """The scale term and relative B against rotation (deg), for plots."""
        phi = np.linspace(lo, hi, n)
        ws = smoother.weights(phi, self.scale_at)
        out = {"phi": phi, "scale": ws @ self.scale}
        if len(self.decay):
            out["b"] = smoother.weights(phi, self.decay_at) @ self.decay
        return out

    def to_dict(self) -> dict:
        """The model as ``scaling_model`` in the .expt file (DIALS's layout: __id__, components)."""
        sig = self.sigmas if self.sigmas is not None else np.zeros(len(self.parameters))
        a, b = len(self.scale), len(self.scale) + len(self.decay)
        comps = {"scale": {"n_parameters": len(self.scale), "parameters": self.scale.tolist(),
                           "est_standard_devs": sig[:a].tolist(), "at_angles_deg": self.scale_at.tolist()}}
        if len(self.decay):
            comps["decay"] = {"n_parameters": len(self.decay), "parameters": self.decay.tolist(),
                              "est_standard_devs": sig[a:b].tolist(), "at_angles_deg": self.decay_at.tolist()}
        if len(self.absorption):
            comps["absorption"] = {"n_parameters": len(self.absorption), "parameters": self.absorption.tolist(),
                                   "est_standard_devs": sig[b:].tolist(), "lmax": self.lmax}
        return {"__id__": "physical", **comps,
                "configuration_parameters": {"corrections": list(comps), "lmax": self.lmax}}

    @classmethod
    def from_dict(cls, d: dict) -> "PhysicalModel":
        s = d["scale"]
        dec = d.get("decay") or {"parameters": [], "at_angles_deg": []}
        ab = d.get("absorption") or {"parameters": [], "lmax": 0}
        m = cls(np.array(s["at_angles_deg"], float), np.array(dec["at_angles_deg"], float), int(ab.get("lmax", 0)),
                np.array(s["parameters"], float), np.array(dec["parameters"], float),
                np.array(ab["parameters"], float), fixed=True)
        return m


@dataclass
class Basis:
    ws: np.ndarray
    wd: np.ndarray
    y: np.ndarray
    half_inv_d2: np.ndarray


__all__ = ["Basis", "PhysicalModel"]
