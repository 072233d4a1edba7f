"""Inspection of kNN graphs of embeddings: homophily, degrees and hubs, components and their purity,
leave-one-out kNN votes, label propagation on the corpus graph and on G-Loss batch graphs, distances and
kernel widths. Pure torch/numpy/scipy; used by ``gloss inspect``."""

from graphs.inspection.batches import gloss_batch_graphs
from graphs.inspection.distances import distance_distribution, sigma_values
from graphs.inspection.propagation import graph_label_propagation, holdout_mask
from graphs.inspection.search import edge_weights, knn_neighbors, resolve_backend
from graphs.inspection.structure import (
    component_ids,
    component_purity,
    degree_stats,
    edge_homophily,
    knn_vote,
    neighbor_edges,
    node_degrees,
    snowball_sample,
)

__all__ = [
    "component_ids",
    "component_purity",
    "degree_stats",
    "distance_distribution",
    "edge_homophily",
    "edge_weights",
    "gloss_batch_graphs",
    "graph_label_propagation",
    "holdout_mask",
    "knn_neighbors",
    "knn_vote",
    "neighbor_edges",
    "node_degrees",
    "resolve_backend",
    "sigma_values",
    "snowball_sample",
]
