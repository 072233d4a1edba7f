"""Graph core of gloss: kNN graphs, edge weights, differentiable label propagation, G-Loss,
TextGCN and BertGCN. Pure torch / PyG / FAISS; nothing here imports from :mod:`pipeline`.

Edges are PyG ``source_to_target`` everywhere (``edge_index[0]`` = neighbour / source, ``edge_index[1]`` =
the node that receives); the edge-weight vocabulary is in :mod:`graphs.edge_weights`.
"""

from graphs.edge_weights import (
    dense_gaussian_kernel,
    dense_normalize,
    dense_transition,
    edge_cosine,
    exp_cosine_edge_weight,
    gaussian_edge_weight,
    knn_edge_weight,
    log_normalize_edge_weight,
    normalize_edge_weight,
    set_self_loops,
    symmetrize,
)
from graphs.knn import knn_edge_index, knn_graph, knn_search
from graphs.losses import GLoss
from graphs.memory_bank import MemoryBank
from graphs.propagation import (
    DifferentiableLabelPropagation,
    graph_label_propagation,
    harmonic_label_propagation,
    knn_label_propagation,
)
from graphs.sigma import resolve_sigma, sigma_dicm, sigma_sqrt_median

__all__ = [
    "knn_search",
    "knn_graph",
    "knn_edge_index",
    "gaussian_edge_weight",
    "exp_cosine_edge_weight",
    "edge_cosine",
    "knn_edge_weight",
    "symmetrize",
    "set_self_loops",
    "normalize_edge_weight",
    "log_normalize_edge_weight",
    "dense_gaussian_kernel",
    "dense_normalize",
    "dense_transition",
    "sigma_sqrt_median",
    "sigma_dicm",
    "resolve_sigma",
    "DifferentiableLabelPropagation",
    "harmonic_label_propagation",
    "graph_label_propagation",
    "knn_label_propagation",
    "MemoryBank",
    "GLoss",
]
