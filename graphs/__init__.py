"""Graph core of gloss: kNN graphs, edge weights, differentiable label propagation, G-Loss,
TextGCN and BertGCN. Pure torch / PyG / FAISS; nothing here imports from :mod:`pipeline`."""

from graphs.edge_weights import (
    cosine_edge_weight,
    dense_gaussian_kernel,
    dense_normalize,
    dense_transition,
    gaussian_edge_weight,
    log_normalize_edge_weight,
    normalize_edge_weight,
    set_self_loops,
    symmetrize,
)
from graphs.knn import knn_graph, knn_search
from graphs.losses import GLoss
from graphs.memory_bank import MemoryBank
from graphs.propagation import DifferentiableLabelPropagation, harmonic_label_propagation
from graphs.sigma import resolve_sigma, sigma_dicm, sigma_sqrt_median

__all__ = [
    "knn_search",
    "knn_graph",
    "gaussian_edge_weight",
    "cosine_edge_weight",
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
    "MemoryBank",
    "GLoss",
]
