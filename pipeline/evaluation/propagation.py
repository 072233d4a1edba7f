"""Transductive label propagation over the exact kNN graph of train + test embeddings, for
``gloss evaluate``: a thin caller of :func:`graphs.propagation.knn_label_propagation`, the recipe
``gloss inspect`` reports on too (cosine kNN, ``clipped-cosine`` edge weights, symmetrised by the maximum,
clamped propagation with the train labels visible).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.options import K

WEIGHTS = "clipped-cosine (cosine similarity clipped at 0), symmetrised by max"


def transductive_propagation(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    num_classes: int,
    *,
    k: int = K,
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
        (undirected edges of the graph with a positive weight), ``weights`` (the edge weights, by name).
    """
    import torch

    from graphs.propagation import knn_label_propagation

    # Copies: pandas hands out read-only arrays, and torch warns on (and must not write to) those.
    train_y = np.array(train_y, dtype=np.int64)
    x = torch.from_numpy(np.concatenate([np.asarray(train_x), np.asarray(test_x)]).astype(np.float32))  # [N, D]
    n, n_train = x.size(0), len(train_y)
    labels = torch.zeros(n, dtype=torch.long)  # [N]; test rows are hidden, their value is never read
    labels[:n_train] = torch.tensor(train_y)
    visible = torch.arange(n) < n_train  # [N]
    result = knn_label_propagation(x, labels, visible, k, metric="cosine", num_classes=num_classes,
                                   num_iters=max_iter, tol=tol)
    return {
        "predictions": result["predictions"][n_train:].numpy().astype(np.int64),
        "iterations": result["iterations"],
        "converged": result["converged"],
        "unreached": result["unreached"],
        "k": result["k"],
        "edges": result["undirected_edges"],
        "weights": WEIGHTS,
    }
