"""The corpus kNN graph of an inspection: exact neighbour lists through :mod:`graphs.knn`, and the edge
weights used by label propagation and exports."""

from __future__ import annotations

import torch
from torch import Tensor

from graphs import knn as knn_module
from graphs.knn import knn_search

__all__ = ["resolve_backend", "knn_neighbors", "edge_weights"]


def resolve_backend(backend: str, x: Tensor) -> str:
    """The backend :func:`graphs.knn.knn_search` runs for a graph over ``x`` (``"auto"`` resolved): FAISS
    on CPU above a size threshold, FAISS GPU on CUDA when importable, torch top-k otherwise. With FAISS
    on a CUDA tensor the answer is ``"faiss-gpu"``.

    Shapes:
        - **input:** x :math:`(N, D)`
    """
    chosen = knn_module._pick_backend(backend, x, x)
    if chosen == "faiss" and x.is_cuda and knn_module.faiss_gpu_available():
        return "faiss-gpu"
    return chosen


@torch.no_grad()
def knn_neighbors(x: Tensor, k: int, metric: str = "cosine", backend: str = "auto") -> tuple[Tensor, Tensor]:
    r"""Exact :math:`k` nearest neighbours of every row of :obj:`x` among the others (itself excluded).

    Args:
        x: Node features (any device; FAISS GPU or torch top-k run on CUDA).
        k: Neighbours per node (at most :math:`N - 1`).
        metric: ``"cosine"`` (scores are cosine similarities, largest first) or ``"l2"`` (scores are
            squared Euclidean distances, smallest first).
        backend: ``"auto"``, ``"faiss"`` or ``"torch"`` (see :func:`graphs.knn.knn_search`).

    Shapes:
        - **input:** x :math:`(N, D)`
        - **output:** scores :math:`(N, k)`, neighbours :math:`(N, k)` long, nearest first
    """
    if metric not in ("cosine", "l2"):
        raise ValueError(f"Expected 'metric' to be 'cosine' or 'l2' (got '{metric}')")
    return knn_search(x, x, k, metric=metric, backend=backend, exclude_self=True)


def edge_weights(scores: Tensor, metric: str) -> Tensor:
    r"""Non-negative edge weights from kNN scores: the cosine similarity clipped at 0 for ``"cosine"``,
    and a Gaussian kernel :math:`\exp(-d^2 / \overline{d^2})` scaled by the median squared kNN distance
    :math:`\overline{d^2}` for ``"l2"`` (scale-free, so raw embeddings of any norm work).

    Shapes:
        - **input:** scores :math:`(N, k)` (or any shape)
        - **output:** the same shape
    """
    if metric == "cosine":
        return scores.clamp_min(0)
    if metric == "l2":
        scale = scores.float().median().clamp_min(1e-12)
        return torch.exp(-scores / scale)
    raise ValueError(f"Expected 'metric' to be 'cosine' or 'l2' (got '{metric}')")
