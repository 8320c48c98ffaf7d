"""The clustering parameters, names as xia2.multiplex's: ``MultiplexParams`` (``xtal multiplex``) and
``ClusterParams`` (the ``cluster`` stage: the same fields, minus the crystal forms' ``min_cluster_size``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..params import StageParams, param


@dataclass(frozen=True)
class MultiplexParams(StageParams):
    """Clustering parameters of ``xtal multiplex`` (xia2.multiplex, Gildea et al. 2022)."""

    unit_cell_threshold: float = param(
        5000.0, "unit-cell clustering: the NCDist height (Å², G6 units) at which the single-linkage tree is cut, "
                "as dials.cluster_unit_cell's threshold", gt=0,
        aliases=("unit_cell.threshold", "unit_cell_clustering.threshold"))
    min_cluster_size: int = param(
        5, "unit-cell clusters with fewer data sets are left out (their data sets reported as outliers)", ge=1,
        aliases="unit_cell_clustering.min_cluster_size")
    cluster_method: str = param(
        "cos_angle", "intensity clustering whose clusters are merged: cos_angle (angles between the data sets' "
                     "vectors in the correlation embedding) or correlation (1 − CC of merged intensities)",
        choices=("cos_angle", "correlation"), aliases="clustering.method")
    min_completeness: float | None = param(
        None, "merge only clusters at least this complete (fraction 0–1, over the whole data's resolution "
              "range)", ge=0, le=1, aliases="clustering.min_completeness")
    min_multiplicity: float | None = param(
        None, "merge only clusters of at least this multiplicity", ge=0, aliases="clustering.min_multiplicity")
    max_clusters: int | None = param(
        None, "merge at most this many clusters, the largest first", ge=1, aliases="clustering.max_clusters")
    min_common: int = param(
        10, "fewest unique reflections two data sets must share for their correlation to count (fewer: "
            "distance 1)", ge=3)
    dimensions: int | None = param(
        None, "dimensions of the correlation embedding for cos_angle; None: chosen from the functional's "
              "elbow (at least 2)", ge=2, le=10)
    seed: int = param(0, "seed of the embedding's start and of the statistics' random halves (results repeat "
                         "exactly)", ge=0)


def _as_in_multiplex(name: str):
    """A field with the default, help, limits and aliases of ``MultiplexParams.<name>``."""
    f = MultiplexParams.__dataclass_fields__[name]
    return dataclasses.field(default=f.default, metadata=f.metadata)


@dataclass(frozen=True)
class ClusterParams(StageParams):
    """Parameters of xtal cluster: unit-cell and intensity clustering of scaled data, the candidate
    clusters and which of them xia2.multiplex would merge (each field as in xtal multiplex)."""

    cluster_method: str = _as_in_multiplex("cluster_method")
    min_completeness: float | None = _as_in_multiplex("min_completeness")
    min_multiplicity: float | None = _as_in_multiplex("min_multiplicity")
    max_clusters: int | None = _as_in_multiplex("max_clusters")
    unit_cell_threshold: float = _as_in_multiplex("unit_cell_threshold")
    min_common: int = _as_in_multiplex("min_common")
    dimensions: int | None = _as_in_multiplex("dimensions")
    seed: int = _as_in_multiplex("seed")


__all__ = ["ClusterParams", "MultiplexParams"]
