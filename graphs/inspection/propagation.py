"""Label propagation over the corpus kNN graph: how far the visible labels carry (an accuracy on the
hidden nodes), with :class:`graphs.propagation.DifferentiableLabelPropagation` on a sparse transition
matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from graphs.edge_weights import normalize_edge_weight, symmetrize
from graphs.propagation import DifferentiableLabelPropagation

__all__ = ["holdout_mask", "graph_label_propagation"]


def holdout_mask(num_nodes: int, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """A seeded visible mask hiding ``round(fraction * N)`` uniformly drawn nodes (at least one hidden
    and one visible when ``N >= 2``).

    Shapes:
        - **output:** :math:`(N)` bool, ``True`` = visible
    """
    if not 0 < fraction < 1:
        raise ValueError(f"Expected 'fraction' to lie in (0, 1) (got {fraction})")
    hidden = min(max(round(fraction * num_nodes), 1), num_nodes - 1) if num_nodes >= 2 else 0
    visible = np.ones(num_nodes, dtype=bool)
    visible[np.random.default_rng(seed).permutation(num_nodes)[:hidden]] = False
    return visible


@torch.no_grad()
def graph_label_propagation(
    edges: Tensor,
    weight: Tensor,
    labels: Tensor,
    visible: Tensor,
    num_classes: int | None = None,
    num_iters: int = 1000,
    tol: float = 1e-6,
) -> dict[str, Any]:
    r"""Clamped label propagation (Zhu and Ghahramani, 2002) from the visible nodes over a kNN graph.

    The graph is symmetrised by the maximum weight (an edge exists when either end lists the other),
    row-normalised into :math:`\mathbf{T} = \mathbf{D}^{-1}\mathbf{W}` and iterated as
    :math:`\mathbf{F} \leftarrow \mathbf{T}\mathbf{F}` with the visible rows reset to their one-hot
    labels, until the largest change is below :obj:`tol`. A hidden node that no visible node reaches
    (its component holds none) is given the most frequent visible class and counted in ``unreached``.

    Args:
        edges: ``[2, E]`` kNN edges (any direction; they are symmetrised).
        weight: non-negative edge weights ``[E]`` (see :func:`graphs.inspection.search.edge_weights`).
        labels: class id of every node ``[N]`` (only visible rows are read).
        visible: boolean mask of the clamped nodes ``[N]``.
        num_classes: :math:`C` (default: largest label + 1).
        num_iters: most propagation steps.
        tol: stop once no entry changes by more than this.

    Returns:
        ``predictions`` (long ``[N]``, visible rows = their label), ``iterations``, ``converged``,
        ``unreached`` (hidden nodes without a path to a visible one).

    Shapes:
        - **input:** edges :math:`(2, E)`, weight :math:`(E)`, labels :math:`(N)`, visible :math:`(N)`
    """
    num_nodes = labels.size(0)
    visible = visible.to(device=labels.device, dtype=torch.bool)
    if not bool(visible.any()):
        raise ValueError("Expected at least one visible node")
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    edge_index, w = symmetrize(edges.long(), weight.double(), num_nodes, reduce="max")  # [2, E'], [E']
    w = normalize_edge_weight(edge_index, w, num_nodes, mode="row")  # rows of T sum to 1 (or 0)
    # T[i, j] = weight of the edge j -> i (row 0 of edge_index is the source j).
    T = torch.sparse_coo_tensor(
        edge_index.flip(0), w, (num_nodes, num_nodes), check_invariants=False
    )  # [N, N]
    T = T.coalesce()  # the layer turns it into CSR
    seeds = torch.nn.functional.one_hot(labels.clamp_min(0), c).double() * visible.unsqueeze(1)  # [N, C]
    layer = DifferentiableLabelPropagation(num_iters=num_iters, tol=tol)
    scores = layer(seeds, T, visible=visible)  # [N, C]
    reached = scores.sum(-1) > 0  # [N]
    majority = int(torch.bincount(labels[visible], minlength=c).argmax())
    predictions = torch.where(reached, scores.argmax(-1), torch.full_like(labels, majority))  # [N]
    return {
        "predictions": predictions,
        "iterations": layer.last_num_iters,
        "converged": layer.last_num_iters < num_iters,
        "unreached": int((~reached & ~visible).sum()),
    }
