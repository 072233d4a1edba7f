"""Measurements of kNN graphs of embeddings: homophily, degrees and hubs, components and their purity,
leave-one-out kNN votes, distances, and the propagation accuracy of G-Loss batch graphs. Pure
torch/numpy/scipy; used by ``gloss inspect``.

This package only measures: the corpus kNN graph comes from :mod:`graphs.knn`, its edge weights from
:func:`graphs.edge_weights.knn_edge_weight`, label propagation over it from
:func:`graphs.propagation.knn_label_propagation` and the kernel widths from :func:`graphs.sigma.resolve_sigma`.
Edges are PyG ``source_to_target`` throughout (row 0 = neighbour, row 1 = node).
"""

from graphs.inspection.batches import BATCH_SIGMA, gloss_batch_graphs
from graphs.inspection.distances import distance_distribution, sigma_report
from graphs.inspection.structure import (
    component_ids,
    component_purity,
    degree_stats,
    edge_homophily,
    knn_vote,
    node_degrees,
    snowball_sample,
)

__all__ = [
    "BATCH_SIGMA",
    "component_ids",
    "component_purity",
    "degree_stats",
    "distance_distribution",
    "edge_homophily",
    "gloss_batch_graphs",
    "knn_vote",
    "node_degrees",
    "sigma_report",
    "snowball_sample",
]
