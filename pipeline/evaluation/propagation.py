"""Transductive label propagation over the exact kNN graph of train + test embeddings, for
``gloss evaluate``.

The graph and the propagation are the ones ``gloss inspect`` reports on (one implementation in
:mod:`graphs`): exact k nearest neighbours by cosine similarity (:func:`graphs.inspection.search.knn_neighbors`,
FAISS on CPU), edge weight = cosine similarity clipped at 0, symmetrised by the maximum, then clamped label
propagation (:func:`graphs.inspection.propagation.graph_label_propagation`, Zhu and Ghahramani's harmonic
solution on each component that holds a train node) with the train labels visible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def transductive_propagation(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    num_classes: int,
    *,
    k: int = 10,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> dict[str, Any]:
    """Predict test nodes by propagating the train labels over the kNN graph of train + test.

    A test node that no train node reaches (its component holds no train node) gets the most frequent
    train class; ``unreached`` counts them.

    Args:
        train_x: Shapes: [N_train, D].
        train_y: train label ids. Shapes: [N_train].
        test_x: Shapes: [N_test, D].
        num_classes: C.
        k: neighbours per node (capped at N - 1).

    Returns:
        ``predictions`` (int64 [N_test]), ``iterations``, ``converged``, ``unreached``, ``k``, ``edges``
        (undirected edges of the graph), ``weights`` (a description of the edge weights).
    """
    from graphs.edge_weights import symmetrize
    from graphs.inspection.propagation import graph_label_propagation
    from graphs.inspection.search import edge_weights, knn_neighbors

    train_y = np.asarray(train_y, dtype=np.int64)
    x = torch.from_numpy(np.concatenate([np.asarray(train_x), np.asarray(test_x)]).astype(np.float32))  # [N, D]
    n, n_train = x.size(0), len(train_y)
    k = int(min(k, n - 1))
    labels = torch.zeros(n, dtype=torch.long)  # [N]; test rows are hidden, their value is never read
    labels[:n_train] = torch.from_numpy(train_y)
    visible = torch.arange(n) < n_train  # [N]
    if k < 1:
        edges, weight = torch.zeros(2, 0, dtype=torch.long), torch.zeros(0)
    else:
        scores, neighbours = knn_neighbors(x, k, metric="cosine")  # [N, k] each
        edges = torch.stack([neighbours.reshape(-1), torch.arange(n).repeat_interleave(k)])  # [2, N k]
        weight = edge_weights(scores, "cosine").reshape(-1)  # [N k]
    result = graph_label_propagation(edges, weight, labels, visible, num_classes, num_iters=max_iter, tol=tol)
    undirected, w = symmetrize(edges, weight.double(), n, reduce="max")
    return {
        "predictions": result["predictions"][n_train:].numpy().astype(np.int64),
        "iterations": result["iterations"],
        "converged": result["converged"],
        "unreached": result["unreached"],
        "k": k,
        "edges": int(((undirected[0] < undirected[1]) & (w > 0)).sum()),
        "weights": "cosine similarity clipped at 0, symmetrised by max",
    }
