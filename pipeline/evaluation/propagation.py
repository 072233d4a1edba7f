"""Transductive label propagation over the exact kNN graph of train + test embeddings.

A small self-contained helper (FAISS + scipy.sparse) for ``gloss evaluate``:

* :func:`knn_graph`: exact k nearest neighbours by cosine similarity (FAISS ``IndexFlatIP`` on L2-normalised
  float32 vectors), self excluded; edge weight = cosine similarity clipped at 0; symmetrised by the element-wise
  maximum ``W = max(W, W^T)`` (an edge exists when either end lists the other among its k neighbours).
* :func:`label_propagation`: iterate ``F <- D^-1 W F`` with the labelled rows clamped to their one-hot labels
  until the largest change is below ``tol`` (Zhu & Ghahramani's harmonic solution on each component that
  holds a labelled node).
* :func:`transductive_propagation`: both, with train labels clamped, predicting the test nodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def knn_graph(x: np.ndarray, k: int) -> sp.csr_matrix:
    """Symmetric kNN graph weighted by clipped cosine similarity.

    Args:
        x: node vectors (any scale; rows are L2-normalised here). Shapes: [N, D].
        k: neighbours per node, self excluded (capped at N - 1).

    Returns:
        ``W``: symmetric, non-negative, zero diagonal, zero-weight edges dropped. Shapes: [N, N] (CSR).
    """
    import faiss

    x = np.array(x, dtype=np.float32, copy=True)  # [N, D]
    n = x.shape[0]
    k = min(int(k), n - 1)
    if k < 1:
        return sp.csr_matrix((n, n), dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # [N, 1]
    x /= np.maximum(norms, 1e-12)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, idx = index.search(x, k + 1)  # [N, k+1] each, best first
    # Drop each row's own entry; where exact duplicates pushed it out of the k+1, drop the last instead.
    is_self = idx == np.arange(n)[:, None]  # [N, k+1]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    neighbours = idx[keep].reshape(n, k)  # [N, k]
    weights = np.clip(sims[keep].reshape(n, k), 0.0, None)  # [N, k]
    rows = np.repeat(np.arange(n), k)
    w = sp.csr_matrix((weights.ravel(), (rows, neighbours.ravel())), shape=(n, n))
    w = w.maximum(w.T).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    return w


def label_propagation(
    w: sp.spmatrix,
    labels: np.ndarray,
    labelled: np.ndarray,
    num_classes: int,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> dict[str, Any]:
    """Propagate clamped labels: ``F <- D^-1 W F``, labelled rows reset to one-hot after every step.

    Args:
        w: non-negative (symmetric) edge weights. Shapes: [N, N].
        labels: label ids; only the labelled rows are read. Shapes: [N].
        labelled: which nodes are clamped. Shapes: [N] (bool).
        num_classes: C.
        max_iter: the most iterations.
        tol: stop once ``max |F_new - F|`` is below it.

    Returns:
        ``scores`` (float64 [N, C]; a zero row for a node no labelled node reaches), ``iterations``,
        ``converged``.
    """
    n = w.shape[0]
    labelled = np.asarray(labelled, dtype=bool)
    seeds = np.zeros((n, num_classes))  # [N, C]
    seeds[np.flatnonzero(labelled), np.asarray(labels)[labelled]] = 1.0
    degree = np.asarray(w.sum(axis=1)).ravel()  # [N]
    inv_degree = np.divide(1.0, degree, out=np.zeros_like(degree, dtype=np.float64), where=degree > 0)
    transition = (sp.diags(inv_degree) @ sp.csr_matrix(w, dtype=np.float64)).tocsr()  # [N, N], rows sum to 1
    scores = seeds.copy()
    converged = False
    iterations = 0
    while iterations < max_iter and not converged:
        updated = transition @ scores  # [N, C]
        updated[labelled] = seeds[labelled]
        converged = (float(np.abs(updated - scores).max()) if n else 0.0) < tol
        scores = updated
        iterations += 1
    return {"scores": scores, "iterations": iterations, "converged": converged}


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
        k: neighbours per node.

    Returns:
        ``predictions`` (int64 [N_test]), ``iterations``, ``converged``, ``unreached``, ``k``, ``edges``
        (undirected edges of the graph), ``weights`` (a description of the edge weights).
    """
    train_y = np.asarray(train_y, dtype=np.int64)
    x = np.concatenate([np.asarray(train_x), np.asarray(test_x)], axis=0)  # [N_train + N_test, D]
    n_train = len(train_y)
    w = knn_graph(x, k)
    labels = np.concatenate([train_y, np.zeros(len(x) - n_train, dtype=np.int64)])
    labelled = np.arange(len(x)) < n_train
    result = label_propagation(w, labels, labelled, num_classes, max_iter=max_iter, tol=tol)
    test_scores = result["scores"][n_train:]  # [N_test, C]
    unreached = test_scores.sum(axis=1) <= 0
    predictions = test_scores.argmax(axis=1).astype(np.int64)
    predictions[unreached] = np.bincount(train_y, minlength=num_classes).argmax()
    return {
        "predictions": predictions,
        "iterations": result["iterations"],
        "converged": result["converged"],
        "unreached": int(unreached.sum()),
        "k": int(min(k, len(x) - 1)),
        "edges": int(w.nnz // 2),
        "weights": "cosine similarity clipped at 0, symmetrised by max",
    }
