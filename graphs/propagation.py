"""Label propagation: an iterative differentiable PyG layer, the closed-form harmonic solution, and the
one recipe that propagates visible labels over the kNN graph of a corpus (:func:`knn_label_propagation`,
used by ``gloss evaluate`` and ``gloss inspect``).

Edges are PyG ``source_to_target``: ``edge_index[0]`` is the source :math:`j` (the neighbour that sends),
``edge_index[1]`` the target :math:`i` (the node that receives), and :math:`T_{ij}` is the weight of
:math:`j \\to i`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, spmm

from graphs.edge_weights import knn_edge_weight, normalize_edge_weight, symmetrize
from graphs.knn import knn_edge_index, knn_search

__all__ = [
    "DifferentiableLabelPropagation",
    "harmonic_label_propagation",
    "soft_labels",
    "holdout_mask",
    "graph_label_propagation",
    "knn_label_propagation",
    "graph_label_spreading",
    "neighbour_vote",
]


def soft_labels(labels: Tensor, num_classes: int | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Long class ids ``[N]`` become one-hot rows ``[N, C]``; floating ``[N, C]`` soft labels pass through."""
    if labels.is_floating_point():
        if labels.dim() != 2:
            raise ValueError(f"Expected soft labels to be two-dimensional (got {labels.dim()} dimensions)")
        return labels if dtype is None else labels.to(dtype)
    if labels.dim() != 1:
        raise ValueError(f"Expected 'labels' to be one-dimensional (got {labels.dim()} dimensions)")
    if labels.numel() > 0 and int(labels.min()) < 0:
        raise ValueError(f"Expected 'labels' to be non-negative (got {int(labels.min())})")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    out = torch.nn.functional.one_hot(labels, num_classes)  # [N, C]
    return out.to(dtype or torch.get_default_dtype())


def _check_visible(visible: Tensor, num_nodes: int) -> Tensor:
    if visible.dtype != torch.bool:
        raise ValueError(f"Expected 'visible' to be a boolean mask (got dtype {visible.dtype})")
    if visible.dim() != 1 or visible.size(0) != num_nodes:
        raise ValueError(f"Expected 'visible' to have shape [{num_nodes}] (got {list(visible.shape)})")
    return visible


class DifferentiableLabelPropagation(MessagePassing):
    r"""Label propagation with clamped seeds (Zhu and Ghahramani, "Learning from Labeled and Unlabeled
    Data with Label Propagation", 2002) as a differentiable PyG layer, the iterative form of the harmonic
    solution used by G-Loss (Sharma et al., "G-Loss: Graph-Guided Fine-Tuning of Language Models",
    LoG 2025). Each step propagates and then resets the visible rows to their labels:

    .. math::
        \mathbf{F}^{(t+1)} = \mathbf{M} \odot \mathbf{Y} + (1 - \mathbf{M}) \odot
        \mathbf{T} \mathbf{F}^{(t)}, \qquad \mathbf{F}^{(0)} = \mathbf{Y}

    for :obj:`num_iters` steps or until :math:`\max |\mathbf{F}^{(t+1)} - \mathbf{F}^{(t)}| <` :obj:`tol`,
    where :math:`\mathbf{T}` holds the (already normalised) edge weights, :math:`T_{ij}` the weight of the
    edge :math:`j \to i`, and :math:`\mathbf{M}` the visible mask. With :obj:`alpha` set, the soft
    variant of Zhou et al. (2004),
    :math:`\mathbf{F}^{(t+1)} = \alpha \mathbf{T} \mathbf{F}^{(t)} + (1 - \alpha) \mathbf{Y}`, is used
    instead of clamping. No operation is in-place, so gradients flow to the edge weights.

    The adjacency may be an ``edge_index`` with ``edge_weight`` (message passing), a
    :class:`torch.sparse` matrix or :class:`torch_sparse.SparseTensor` holding :math:`\mathbf{T}`
    (fused :meth:`message_and_aggregate`), or a dense floating :math:`\mathbf{T}` (``T @ F``).

    Args:
        num_iters (int, optional): Largest number of propagation steps. (default: :obj:`50`)
        tol (float, optional): Stop early once the largest change of an entry is below :obj:`tol`;
            :obj:`None` always runs :obj:`num_iters` steps. (default: :obj:`1e-6`)
        alpha (float, optional): Use the soft variant with this :math:`\alpha \in (0, 1)` instead of
            clamping. (default: :obj:`None`)
        **kwargs (optional): Additional arguments of :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** soft labels :math:`(N, C)` (or class ids :math:`(N)`), adjacency :math:`(2, E)`
          with edge weights :math:`(E)`, or :math:`(N, N)`; visible mask :math:`(N)`
        - **output:** propagated labels :math:`(N, C)`
    """

    def __init__(self, num_iters: int = 50, tol: float | None = 1e-6, alpha: float | None = None, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        if num_iters < 1:
            raise ValueError(f"Expected 'num_iters' to be a positive integer (got {num_iters})")
        if tol is not None and tol < 0:
            raise ValueError(f"Expected 'tol' to be non-negative (got {tol})")
        if alpha is not None and not 0 < alpha < 1:
            raise ValueError(f"Expected 'alpha' to lie in (0, 1) (got {alpha})")
        self.num_iters = num_iters
        self.tol = tol
        self.alpha = alpha
        self.last_num_iters = 0

    def forward(self, y: Tensor, edge_index: Adj, edge_weight: OptTensor = None,
                visible: OptTensor = None) -> Tensor:
        r"""Runs the propagation.

        Args:
            y (Tensor): Seeds: one-hot (or soft) rows for visible nodes, zeros or uniform rows for the
                others (their starting value), or long class ids of all nodes.
            edge_index (torch.Tensor or SparseTensor): ``edge_index`` :math:`(2, E)`, a sparse
                :math:`(N, N)` transition matrix or a dense floating :math:`(N, N)` one.
            edge_weight (Tensor, optional): Normalised weights of the edges of ``edge_index``.
                (default: all ones)
            visible (Tensor, optional): Boolean mask of the clamped nodes. (default: rows of
                :obj:`y` with a positive sum)
        """
        if not y.is_floating_point():
            matrix = self._is_dense(edge_index) or is_torch_sparse_tensor(edge_index)
            ref = edge_index if matrix else edge_weight
            y = soft_labels(y, dtype=ref.dtype if isinstance(ref, Tensor) else None)  # [N, C]
        num_nodes = y.size(0)
        visible = (y.sum(-1) > 0) if visible is None else _check_visible(visible, num_nodes)
        dense = self._is_dense(edge_index)
        if dense:
            if edge_index.shape != (num_nodes, num_nodes):
                raise ValueError(
                    f"Expected the dense transition matrix to have shape [{num_nodes}, {num_nodes}] "
                    f"(got {list(edge_index.shape)})"
                )
            if edge_weight is not None:
                raise ValueError("Expected 'edge_weight' to be None for a dense transition matrix")
        elif isinstance(edge_index, Tensor) and not is_torch_sparse_tensor(edge_index):
            if edge_index.dim() != 2:
                raise ValueError(
                    f"Expected 'edge_index' to be two-dimensional (got {edge_index.dim()} dimensions)"
                )
            if edge_weight is not None and edge_weight.size(0) != edge_index.size(1):
                raise ValueError(
                    f"Expected 'edge_weight' to have one entry per edge (got {edge_weight.size(0)} for "
                    f"{edge_index.size(1)} edges)"
                )

        if is_torch_sparse_tensor(edge_index) and edge_index.layout == torch.sparse_coo:
            # PyG marks COO inputs as coalesced in place, an op without a derivative; CSR keeps the
            # values differentiable (and is the faster layout for repeated products).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                edge_index = edge_index.to_sparse_csr()

        keep = visible.view(-1, 1)  # [N, 1]
        out = y  # [N, C]
        self.last_num_iters = 0
        for _ in range(self.num_iters):
            if dense:
                step = edge_index @ out  # [N, C]
            else:
                step = self.propagate(edge_index, x=out, edge_weight=edge_weight, size=(num_nodes, num_nodes))
            if self.alpha is None:
                step = torch.where(keep, y, step)  # [N, C]
            else:
                step = self.alpha * step + (1 - self.alpha) * y  # [N, C]
            self.last_num_iters += 1
            done = self.tol is not None and bool((step - out).detach().abs().max() < self.tol)
            out = step
            if done:
                break
        return out

    @staticmethod
    def _is_dense(edge_index: Adj) -> bool:
        return (isinstance(edge_index, Tensor) and not is_torch_sparse_tensor(edge_index)
                and edge_index.is_floating_point())

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j  # [E, C]

    def message_and_aggregate(self, adj_t: Adj, x: Tensor) -> Tensor:
        if is_torch_sparse_tensor(adj_t):
            # ``torch.sparse`` matmul is differentiable w.r.t. the values (PyG's ``spmm`` converts COO to
            # CSR through an op without a derivative).
            return adj_t @ x  # [N, C]
        if isinstance(adj_t, SparseTensor):
            return spmm(adj_t, x, reduce=self.aggr)  # [N, C]
        raise ValueError("Expected a sparse adjacency in 'message_and_aggregate'")

    def __repr__(self) -> str:
        extra = "" if self.alpha is None else f", alpha={self.alpha}"
        return f"{self.__class__.__name__}(num_iters={self.num_iters}, tol={self.tol}{extra})"


def harmonic_label_propagation(T: Tensor, labels: Tensor, visible: Tensor, num_classes: int | None = None,
                               eps: float = 0.0) -> Tensor:
    r"""Closed-form harmonic label propagation (Zhu, Ghahramani and Lafferty, ICML 2003), the exact
    variant used by G-Loss (Sharma et al., LoG 2025): the fixed point of clamped propagation,

    .. math::
        \mathbf{F}_u = (\mathbf{I} - \mathbf{T}_{uu})^{-1} \mathbf{T}_{ul} \mathbf{Y}_l

    solved with :func:`torch.linalg.solve` (differentiable w.r.t. :math:`\mathbf{T}`), where
    :math:`\mathbf{T}` is row-normalised, :math:`u` are the hidden and :math:`l` the visible nodes.

    Args:
        T (Tensor): Transition matrix, either all rows :math:`(N, N)` or only the rows of the hidden
            nodes :math:`(U, N)` in the order of ``visible.logical_not().nonzero()``.
        labels (Tensor): Class ids :math:`(N)` or soft labels :math:`(N, C)`; only visible rows are read.
        visible (Tensor): Boolean mask of the labelled nodes.
        num_classes (int, optional): Number of classes :math:`C`. (default: ``labels.max() + 1``)
        eps (float, optional): Damping, solves :math:`(\mathbf{I} - (1 - \epsilon)\mathbf{T}_{uu})`,
            which keeps the system non-singular when some hidden nodes have no path to a visible one.
            (default: :obj:`0.0`)

    Shapes:
        - **input:** T :math:`(N, N)` or :math:`(U, N)`, labels :math:`(N)` or :math:`(N, C)`,
          visible :math:`(N)`
        - **output:** :math:`(U, C)`, rows in the order of the hidden nodes
    """
    if T.dim() != 2:
        raise ValueError(f"Expected 'T' to be two-dimensional (got {T.dim()} dimensions)")
    num_nodes = T.size(1)
    visible = _check_visible(visible, num_nodes)
    hidden_idx = visible.logical_not().nonzero().view(-1)  # [U]
    visible_idx = visible.nonzero().view(-1)  # [L]
    if visible_idx.numel() == 0:
        raise ValueError("Expected at least one visible node in 'visible'")
    if T.size(0) == num_nodes:
        T_u = T[hidden_idx]  # [U, N]
    elif T.size(0) == hidden_idx.numel():
        T_u = T
    else:
        raise ValueError(
            f"Expected 'T' to have {num_nodes} or {hidden_idx.numel()} (hidden) rows (got {T.size(0)})"
        )
    y = soft_labels(labels, num_classes, dtype=T.dtype)  # [N, C]
    if y.size(0) != num_nodes:
        raise ValueError(f"Expected 'labels' to have {num_nodes} rows (got {y.size(0)})")
    eye = torch.eye(hidden_idx.numel(), dtype=T.dtype, device=T.device)  # [U, U]
    system = eye - (1 - eps) * T_u[:, hidden_idx]  # [U, U]
    rhs = T_u[:, visible_idx] @ y[visible_idx]  # [U, C]
    return torch.linalg.solve(system, rhs)  # [U, C]


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
    edge_index: Tensor,
    edge_weight: Tensor,
    labels: Tensor,
    visible: Tensor,
    num_classes: int | None = None,
    num_iters: int = 1000,
    tol: float = 1e-6,
) -> dict[str, Any]:
    r"""Clamped label propagation (Zhu and Ghahramani, 2002) from the visible nodes over a (kNN) graph.

    The graph is symmetrised by the maximum weight (an edge exists when either end lists the other),
    row-normalised into :math:`\mathbf{T} = \mathbf{D}^{-1}\mathbf{W}` and iterated with
    :class:`DifferentiableLabelPropagation` on a sparse :math:`\mathbf{T}`,
    :math:`\mathbf{F} \leftarrow \mathbf{T}\mathbf{F}` with the visible rows reset to their one-hot labels,
    until the largest change is below :obj:`tol`. A hidden node that no visible node reaches (its
    component holds none) is given the most frequent visible class and counted in ``unreached``.

    Args:
        edge_index (Tensor): Edges, ``source_to_target`` (they are symmetrised, so either direction gives
            the same result).
        edge_weight (Tensor): Non-negative edge weights (e.g. :func:`graphs.edge_weights.knn_edge_weight`).
        labels (Tensor): Class id of every node (only visible rows are read).
        visible (Tensor): Boolean mask of the clamped nodes.
        num_classes (int, optional): :math:`C`. (default: largest label + 1)
        num_iters (int, optional): Most propagation steps. (default: :obj:`1000`)
        tol (float, optional): Stop once no entry changes by more than this. (default: :obj:`1e-6`)

    Returns:
        ``predictions`` (long ``[N]``, visible rows = their label), ``scores`` (float64 ``[N, C]``, the
        propagated rows, each summing to one; all zeros for an unreached node), ``iterations``, ``converged``,
        ``unreached`` (hidden nodes without a path to a visible one), ``undirected_edges`` (node pairs
        joined by a positive weight).

    Shapes:
        - **input:** edge_index :math:`(2, E)`, edge_weight :math:`(E)`, labels :math:`(N)`,
          visible :math:`(N)`
    """
    num_nodes = labels.size(0)
    visible = visible.to(device=labels.device, dtype=torch.bool)
    if not bool(visible.any()):
        raise ValueError("Expected at least one visible node")
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    edge_index, w = symmetrize(edge_index.long(), edge_weight.double(), num_nodes, reduce="max")  # [2, E']
    undirected = int(((edge_index[0] < edge_index[1]) & (w > 0)).sum())
    w = normalize_edge_weight(edge_index, w, num_nodes, mode="row")  # rows of T sum to 1 (or 0)
    T = torch.sparse_coo_tensor(edge_index.flip(0), w, (num_nodes, num_nodes), check_invariants=False)  # [N, N]
    T = T.coalesce()  # T[i, j] = weight of j -> i; the layer turns it into CSR
    seeds = torch.nn.functional.one_hot(labels.clamp_min(0), c).double() * visible.unsqueeze(1)  # [N, C]
    layer = DifferentiableLabelPropagation(num_iters=num_iters, tol=tol)
    scores = layer(seeds, T, visible=visible)  # [N, C]
    reached = scores.sum(-1) > 0  # [N]
    majority = int(torch.bincount(labels[visible], minlength=c).argmax())
    predictions = torch.where(reached, scores.argmax(-1), torch.full_like(labels, majority))  # [N]
    return {
        "predictions": predictions,
        "scores": scores / scores.sum(-1, keepdim=True).clamp_min(1e-300),  # [N, C]
        "iterations": layer.last_num_iters,
        "converged": layer.last_num_iters < num_iters,
        "unreached": int((~reached & ~visible).sum()),
        "undirected_edges": undirected,
    }


@torch.no_grad()
def knn_label_propagation(
    x: Tensor,
    labels: Tensor,
    visible: Tensor,
    k: int = 10,
    *,
    metric: str = "cosine",
    backend: str = "auto",
    neighbors: tuple[Tensor, Tensor] | None = None,
    num_classes: int | None = None,
    num_iters: int = 1000,
    tol: float = 1e-6,
) -> dict[str, Any]:
    r"""Propagates the visible labels over the exact kNN graph of :obj:`x`: the one recipe of gloss.

    The :math:`k` nearest neighbours of every node (itself excluded) come from
    :func:`graphs.knn.knn_search`, their edges :math:`j \to i` from :func:`graphs.knn.knn_edge_index`
    (``source_to_target``), their weights from :func:`graphs.edge_weights.knn_edge_weight`
    (``clipped-cosine`` or ``median-gaussian``), and the propagation is :func:`graph_label_propagation`.

    Args:
        x (Tensor): Node features (any device).
        labels (Tensor): Class id of every node (only visible rows are read).
        visible (Tensor): Boolean mask of the clamped nodes.
        k (int, optional): Neighbours per node, capped at :math:`N - 1`. (default: :obj:`10`)
        metric (str, optional): ``"cosine"`` or ``"l2"``. (default: ``"cosine"``)
        backend (str, optional): ``"auto"``, ``"faiss"`` or ``"torch"``. (default: ``"auto"``)
        neighbors ((Tensor, Tensor), optional): The ``(scores, neighbours)`` of
            ``knn_search(x, x, k, metric=metric, exclude_self=True)`` when the caller already has them
            (``gloss inspect`` measures the same graph); nothing is searched then. (default: :obj:`None`)
        num_classes, num_iters, tol: As in :func:`graph_label_propagation`.

    Returns:
        The result of :func:`graph_label_propagation`, and ``k`` (after the cap).

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`, visible :math:`(N)`, neighbors
          :math:`(N, k)` each
    """
    k = min(k, x.size(0) - 1) if neighbors is None else neighbors[1].size(1)
    if neighbors is None and k >= 1:
        neighbors = knn_search(x, x, k, metric=metric, backend=backend, exclude_self=True)  # [N, k] each
    if k >= 1:
        scores, nbr = neighbors
        edge_index = knn_edge_index(nbr)  # [2, E], E = N k unless the search returned "none" (-1) ids
        edge_weight = knn_edge_weight(scores, metric).reshape(-1)[nbr.reshape(-1) >= 0]  # [E]
    else:
        edge_index = torch.zeros(2, 0, dtype=torch.long, device=x.device)
        edge_weight = torch.zeros(0, device=x.device)
    result = graph_label_propagation(edge_index, edge_weight, labels, visible, num_classes, num_iters, tol)
    return {**result, "k": k}


@torch.no_grad()
def graph_label_spreading(
    edge_index: Tensor,
    edge_weight: Tensor,
    labels: Tensor,
    visible: Tensor,
    alpha: float = 0.9,
    num_classes: int | None = None,
    num_iters: int = 1000,
    tol: float = 1e-6,
) -> Tensor:
    r"""Label spreading (Zhou et al., "Learning with Local and Global Consistency", NeurIPS 2003; the
    semantics of scikit-learn's ``LabelSpreading``): the visible labels are seeds that are *not* clamped,

    .. math::
        \mathbf{F}^{(t+1)} = \alpha \mathbf{S} \mathbf{F}^{(t)} + (1 - \alpha) \mathbf{Y}, \qquad
        \mathbf{S} = \mathbf{D}^{-1/2} \mathbf{W} \mathbf{D}^{-1/2}

    on the graph symmetrised by the maximum weight, iterated with :class:`DifferentiableLabelPropagation`
    until the largest change is below :obj:`tol`. Each row of the result is then divided by its sum (a class
    distribution); a node whose component holds no seed keeps a zero row.

    Args:
        edge_index (Tensor): Edges, ``source_to_target`` (symmetrised here).
        edge_weight (Tensor): Non-negative edge weights.
        labels (Tensor): Class id of every node (only visible rows are read).
        visible (Tensor): Boolean mask of the seeds.
        alpha (float, optional): :math:`\alpha \in (0, 1)`, the share of a node's scores that comes from its
            neighbours. (default: :obj:`0.9`)
        num_classes, num_iters, tol: As in :func:`graph_label_propagation`.

    Shapes:
        - **input:** edge_index :math:`(2, E)`, edge_weight :math:`(E)`, labels :math:`(N)`,
          visible :math:`(N)`
        - **output:** float64 :math:`(N, C)`
    """
    num_nodes = labels.size(0)
    visible = _check_visible(visible.to(device=labels.device, dtype=torch.bool), num_nodes)
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    edge_index, w = symmetrize(edge_index.long(), edge_weight.double(), num_nodes, reduce="max")  # [2, E']
    w = normalize_edge_weight(edge_index, w, num_nodes, mode="sym")  # S = D^-1/2 W D^-1/2
    S = torch.sparse_coo_tensor(edge_index.flip(0), w, (num_nodes, num_nodes), check_invariants=False).coalesce()
    seeds = torch.nn.functional.one_hot(labels.clamp_min(0), c).double() * visible.unsqueeze(1)  # [N, C]
    scores = DifferentiableLabelPropagation(num_iters=num_iters, tol=tol, alpha=alpha)(seeds, S)  # [N, C]
    return scores / scores.sum(-1, keepdim=True).clamp_min(1e-300)  # [N, C]


def neighbour_vote(node_scores: Tensor, neighbors: Tensor, weights: Tensor) -> Tensor:
    r"""The weighted mean of the score rows of each query's neighbours,
    :math:`\mathbf{p}_q = \sum_j w_{qj} \mathbf{F}_j / \sum_j w_{qj}`: a kNN vote when
    :obj:`node_scores` are one-hot labels, the inductive step of label spreading when they are spread scores.
    A query whose weights are all zero gets a zero row.

    Shapes:
        - **input:** node_scores :math:`(N, C)`, neighbors :math:`(Q, k)` long (ids into the rows of
          node_scores), weights :math:`(Q, k)` non-negative
        - **output:** :math:`(Q, C)`, rows summing to one (or zero)
    """
    if neighbors.shape != weights.shape:
        raise ValueError(f"Expected 'neighbors' and 'weights' to have the same shape (got {list(neighbors.shape)} "
                         f"and {list(weights.shape)})")
    weights = weights.to(node_scores.dtype)
    total = (weights.unsqueeze(-1) * node_scores[neighbors]).sum(1)  # [Q, C]
    return total / weights.sum(1, keepdim=True).clamp_min(1e-300)  # [Q, C]
