"""Fast re-merge: merged intensities and merging statistics for a new resolution range or a
subset of the data sets, from the scaled observations, without scaling again.

:class:`ScaledObservations` holds the few arrays a re-merge needs (Miller index, scaled
I and σ², d, data set) plus the symmetry, so a caller that re-merges often (the web's
d_min slider) extracts them from scaled.refl once and keeps them: ``to_arrays()`` gives
plain numpy arrays for ``numpy.savez`` and ``from_arrays`` takes them back.
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from ..errors import XtalError
from .merge import asu_index, d_spacing, merge_intensities
from .stage import scaled_rows, space_group_and_cell
from .statistics import merging_statistics


@dataclass
class ScaledObservations:
    """The rows scaling kept, scaled (I = intensity.scale.value / g, σ² = variance / g²)."""

    hkl: np.ndarray          # (n, 3) int32: ASU index, negated for observations of I(−)
    intensity: np.ndarray    # (n,) float64
    variance: np.ndarray     # (n,) float64
    d: np.ndarray            # (n,) float64: in the median cell (the merge's), not the table's "d"
    dataset: np.ndarray      # (n,) int32: the experiment's index (the table's "id")
    identifiers: list[str]   # experiment identifier of each index
    space_group: gemmi.SpaceGroup
    cell: tuple[float, ...]
    wavelength: float

    def __len__(self) -> int:
        return len(self.intensity)

    @classmethod
    def from_reflections(cls, experiments, reflections) -> "ScaledObservations":
        sg, cell = space_group_and_cell(experiments)
        ok, value, var = scaled_rows(reflections)
        ids = reflections["id"] if "id" in reflections else np.zeros(len(reflections), dtype=np.int32)
        wavelength = float(np.median([e.beam.wavelength for e in experiments]))
        # the ASU index, or its Friedel mate for an observation of I(−): the merge's symmetry
        # mapping of these is one pass, and I(+)/I(−) stay apart
        asu, plus, _ = asu_index(reflections["miller_index"][ok], sg, anomalous=True)
        hkl = np.where(plus[:, None], asu, -asu).astype(np.int32)
        # d in the cell the data are merged in (the median cell), so that a cut at d_min is the
        # same cut for the observations, the merged reflections and the statistics' shells
        return cls(hkl=hkl, intensity=value[ok], variance=var[ok], d=d_spacing(hkl, cell),
                   dataset=np.asarray(ids[ok], dtype=np.int32), identifiers=[e.identifier for e in experiments],
                   space_group=sg, cell=tuple(float(x) for x in cell), wavelength=wavelength)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for ``numpy.savez``); :meth:`from_arrays` reverses it."""
        return {"hkl": self.hkl, "intensity": self.intensity, "variance": self.variance, "d": self.d,
                "dataset": self.dataset, "identifiers": np.array(self.identifiers, dtype=str),
                "space_group": np.array(self.space_group.hm), "cell": np.array(self.cell, dtype=np.float64),
                "wavelength": np.array(self.wavelength)}

    @classmethod
    def from_arrays(cls, arrays) -> "ScaledObservations":
        return cls(hkl=np.asarray(arrays["hkl"], dtype=np.int32), intensity=np.asarray(arrays["intensity"]),
                   variance=np.asarray(arrays["variance"]), d=np.asarray(arrays["d"]),
                   dataset=np.asarray(arrays["dataset"], dtype=np.int32),
                   identifiers=[str(x) for x in np.asarray(arrays["identifiers"]).tolist()],
                   space_group=gemmi.SpaceGroup(str(np.asarray(arrays["space_group"]))),
                   cell=tuple(float(x) for x in np.asarray(arrays["cell"])),
                   wavelength=float(np.asarray(arrays["wavelength"])))


def _excluded_ids(obs: ScaledObservations, exclude_datasets) -> list[int]:
    """Data-set ids from ids (int) or experiment identifiers (str)."""
    out = []
    for x in exclude_datasets or ():
        if isinstance(x, str) and not x.lstrip("-").isdigit():
            if x not in obs.identifiers:
                raise XtalError(f"exclude_datasets: no data set with identifier {x!r}")
            out.append(obs.identifiers.index(x))
        else:
            k = int(x)
            if not 0 <= k < len(obs.identifiers):
                raise XtalError(f"exclude_datasets: no data set {k} (there are {len(obs.identifiers)})")
            out.append(k)
    return sorted(set(out))


def remerge_observations(obs: ScaledObservations, d_min: float | None = None, d_max: float | None = None,
                         exclude_datasets=(), anomalous: bool = False, n_bins: int = 20, seed: int = 0,
                         merge: bool = True):
    """``(merged or None, summary)`` of ``obs`` cut to [d_min, d_max] without the excluded data
    sets; the summary has run_merge's keys (merging_statistics with shells ending exactly at
    d_min, n_observations, n_unique …) and the data sets used."""
    if d_min is not None and d_max is not None and d_min >= d_max:
        raise XtalError(f"d_min ({d_min}) must be below d_max ({d_max})")
    excluded = _excluded_ids(obs, exclude_datasets)
    ok = np.ones(len(obs), dtype=bool)
    if excluded:
        ok &= ~np.isin(obs.dataset, excluded)
    if d_min is not None:
        ok &= obs.d >= d_min
    if d_max is not None:
        ok &= obs.d <= d_max
    if not ok.any():
        raise XtalError("no scaled observations left to merge")
    hkl, value, var = obs.hkl[ok], obs.intensity[ok], obs.variance[ok]
    merged = merge_intensities(hkl, value, var, obs.space_group, obs.cell, obs.wavelength,
                               anomalous=anomalous) if merge else None
    stats = merging_statistics(hkl, value, var, obs.space_group, obs.cell, anomalous=anomalous, d_min=d_min,
                               d_max=d_max, n_bins=n_bins, seed=seed)
    used = sorted(set(np.unique(obs.dataset[ok]).tolist()))
    summary = {"n_observations": int(ok.sum()), "n_unique": stats["overall"]["n_unique"],
               "space_group": obs.space_group.xhm(), "unit_cell": list(obs.cell), "wavelength": obs.wavelength,
               "anomalous": anomalous, "merging_statistics": stats, "d_min": stats.get("d_min"),
               "d_max": stats.get("d_max"), "n_datasets": len(used),
               "datasets": [{"id": k, "identifier": obs.identifiers[k]} for k in used],
               "excluded_datasets": [{"id": k, "identifier": obs.identifiers[k]} for k in excluded]}
    return merged, summary


def remerge(experiments, reflections, d_min: float | None = None, exclude_datasets=(), d_max: float | None = None,
            anomalous: bool = False, n_bins: int = 20, seed: int = 0, merge: bool = True):
    """Re-merge scaled.expt/.refl at a new resolution range or without some data sets (ids or
    identifiers): ``(MergedIntensities or None, summary)``, no rescaling."""
    obs = ScaledObservations.from_reflections(experiments, reflections)
    return remerge_observations(obs, d_min=d_min, d_max=d_max, exclude_datasets=exclude_datasets,
                                anomalous=anomalous, n_bins=n_bins, seed=seed, merge=merge)


__all__ = ["ScaledObservations", "remerge", "remerge_observations"]
