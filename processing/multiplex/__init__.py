"""Multi-crystal clustering (xia2.multiplex, Gildea et al. 2022): the science only.

* ``unit_cell``: Niggli-reduced G6 vectors, the Andrews–Bernstein NCDist, single-linkage
  clustering cut at dials.cluster_unit_cell's threshold (``cluster_unit_cells``).
* ``intensity``: the correlation matrix of the data sets' merged intensities and the
  cos-angles of their vectors in its embedding, each clustered by average linkage, every
  merge node a candidate cluster (``correlation_clustering``, ``cos_angle_clustering``,
  ``intensity_clustering``).
* ``selection``: the candidates to merge by completeness, multiplicity and max_clusters,
  largest first, duplicates once (``select_clusters``).
* ``params``: ``MultiplexParams``, ``ClusterParams``.
* ``stage``: ``run_cluster``, all of the above on scaled data as the ``cluster`` stage.

Every result is a strict-JSON dict; nothing is read, written or printed; results repeat
exactly for the same input and seed.
"""
from .intensity import (correlation_clustering, correlation_embedding, cos_angle_clustering,
                        intensity_clustering, scaled_observations)
from .params import ClusterParams, MultiplexParams
from .selection import candidates_of, cluster_statistics, select_clusters
from .stage import run_cluster
from .unit_cell import cluster_unit_cells, ncdist, ncdist_matrix, niggli_g6

__all__ = ["ClusterParams", "MultiplexParams", "run_cluster", "cluster_unit_cells", "ncdist", "ncdist_matrix",
           "niggli_g6",
           "correlation_clustering", "correlation_embedding", "cos_angle_clustering", "intensity_clustering",
           "scaled_observations", "candidates_of", "cluster_statistics", "select_clusters"]
