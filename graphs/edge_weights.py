r"""Edge weights: Gaussian / cosine kernels at given edges (differentiable), the weights of a kNN search,
symmetrisation, self-loop policy and normalisation (linear and log-space), plus the dense helpers of the
G-Loss paper.

Every edge is :math:`j \to i` in PyG's ``source_to_target`` convention (``edge_index[0]`` = :math:`j`, the
neighbour that sends, ``edge_index[1]`` = :math:`i`, the node that receives; see :mod:`graphs.knn`).

Edge-weight vocabulary (the one set of names used in code, reports and file formats):

===================  ==================================================  ==========================================
name                 :math:`w_{j \to i}`                                 where
===================  ==================================================  ==========================================
``gaussian``         :math:`\exp(-\lVert x_i - x_j \rVert^2 / 2\sigma^2)`  G-Loss batch graphs:
                                                                         :func:`gaussian_edge_weight`,
                                                                         :func:`dense_gaussian_kernel`,
                                                                         :func:`dense_transition`
``exp-cosine``       :math:`\exp((\cos(x_i, x_j) - 1) / t) \in (0, 1]`   :func:`exp_cosine_edge_weight`
                                                                         (differentiable, a temperature :math:`t`)
``cosine``           :math:`\cos(x_i, x_j) \in [-1, 1]`, unclipped       :func:`edge_cosine`; the ``weight`` of
                                                                         ``gloss graph``'s ``graph.npz``
``clipped-cosine``   :math:`\max(\cos(x_i, x_j), 0)`                     :func:`knn_edge_weight` for
                                                                         ``metric="cosine"``: corpus label
                                                                         propagation (``gloss evaluate``,
                                                                         ``gloss inspect``) and its edge exports
``median-gaussian``  :math:`\exp(-d_{ij}^2 / \operatorname{median} d^2)`  :func:`knn_edge_weight` for
                     over the kNN squared distances                      ``metric="l2"`` (same uses)
===================  ==================================================  ==========================================
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch_geometric.utils import (
    add_remaining_self_loops,
    remove_self_loops,
    scatter,
    softmax,
    to_undirected,
)
from torch_geometric.utils.num_nodes import maybe_num_nodes

__all__ = [
    "KNN_EDGE_WEIGHTS",
    "gaussian_edge_weight",
    "exp_cosine_edge_weight",
    "knn_edge_weight",
    "edge_cosine",
    "edge_dot",
    "edge_squared_distance",
    "symmetrize",
    "set_self_loops",
    "normalize_edge_weight",
    "log_normalize_edge_weight",
    "scatter_logsumexp",
    "pairwise_squared_distances",
    "dense_gaussian_kernel",
    "dense_normalize",
    "dense_transition",
]

PairTensor = tuple[Tensor, Tensor]

# The weight :func:`knn_edge_weight` gives the edges of a kNN search with each metric (names of the vocabulary).
KNN_EDGE_WEIGHTS = {"cosine": "clipped-cosine", "l2": "median-gaussian"}


def _check_edge_index(edge_index: Tensor) -> None:
    if edge_index.dim() != 2:
        raise ValueError(f"Expected 'edge_index' to be two-dimensional (got {edge_index.dim()} dimensions)")
    if edge_index.size(0) != 2:
        raise ValueError(f"Expected 'edge_index' to have two rows (got {edge_index.size(0)})")


def _check_positive(name: str, value: float | Tensor) -> None:
    v = value.detach() if isinstance(value, Tensor) else torch.tensor(float(value))
    if not bool(torch.all(v > 0)) or not bool(torch.all(torch.isfinite(v))):
        raise ValueError(f"Expected '{name}' to be positive and finite (got {value})")


class _EdgeDot(torch.autograd.Function):
    """Per-edge inner products without an ``[E, D]`` buffer in the backward pass (two sparse matmuls)."""

    @staticmethod
    def forward(ctx, x_src: Tensor, x_dst: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(x_src, x_dst, src, dst)
        try:
            return _sampled_dot(x_src, x_dst, src, dst)
        except (RuntimeError, NotImplementedError):  # pragma: no cover - layouts/devices without SDDMM
            return _chunked_dot(x_src, x_dst, src, dst)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x_src, x_dst, src, dst = ctx.saved_tensors
        grad_src = grad_dst = None
        if ctx.needs_input_grad[0]:  # d/dx_src[j] = sum_{e = (j -> i)} g_e x_dst[i]
            adj = torch.sparse_coo_tensor(torch.stack([src, dst]), grad, (x_src.size(0), x_dst.size(0)),
                                          check_invariants=False)
            grad_src = torch.sparse.mm(adj, x_dst)  # [N_s, D]
        if ctx.needs_input_grad[1]:  # d/dx_dst[i] = sum_{e = (j -> i)} g_e x_src[j]
            adj = torch.sparse_coo_tensor(torch.stack([dst, src]), grad, (x_dst.size(0), x_src.size(0)),
                                          check_invariants=False)
            grad_dst = torch.sparse.mm(adj, x_src)  # [N_t, D]
        return grad_src, grad_dst, None, None


_EDGE_CHUNK_ELEMENTS = 2**22


def _sampled_dot(x_src: Tensor, x_dst: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """Edge dots by a sampled dense-dense matmul (SDDMM) on the CSR pattern of the edges."""
    num_edges, n_src, n_dst = src.numel(), x_src.size(0), x_dst.size(0)
    perm = torch.argsort(dst * n_src + src)  # [E], CSR order
    crow = torch.zeros(n_dst + 1, dtype=torch.long, device=src.device)  # [N_t + 1]
    crow[1:] = torch.cumsum(torch.bincount(dst, minlength=n_dst), 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        pattern = torch.sparse_csr_tensor(crow, src[perm], x_src.new_zeros(num_edges), (n_dst, n_src),
                                          check_invariants=False)
        values = torch.sparse.sampled_addmm(pattern, x_dst, x_src.t()).values()  # [E], CSR order
    return torch.empty_like(values).scatter_(0, perm, values)  # [E]


def _chunked_dot(x_src: Tensor, x_dst: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """Edge dots by gathering chunks of at most ``2**22`` feature values."""
    num_edges = src.numel()
    out = x_src.new_empty(num_edges)  # [E]
    chunk = max(1, _EDGE_CHUNK_ELEMENTS // max(x_src.size(1), 1))
    for start in range(0, num_edges, chunk):
        end = start + chunk
        out[start:end] = (x_src[src[start:end]] * x_dst[dst[start:end]]).sum(-1)
    return out


def edge_dot(x: Tensor | PairTensor, edge_index: Tensor) -> Tensor:
    r"""Inner products :math:`\langle \mathbf{x}_j, \mathbf{x}_i \rangle` of the endpoints of every edge
    :math:`j \to i`, differentiable, with memory :math:`O(E + N D)`: the forward pass gathers in chunks
    and the backward pass is two sparse-dense matmuls instead of an ``[E, D]`` scatter.

    Shapes:
        - **input:** x :math:`(N, D)` or :math:`((N_s, D), (N_t, D))`, edge_index :math:`(2, E)`
        - **output:** :math:`(E)`
    """
    _check_edge_index(edge_index)
    x_src, x_dst = x if isinstance(x, (tuple, list)) else (x, x)
    for name, t in (("x_src", x_src), ("x_dst", x_dst)):
        if t.dim() != 2:
            raise ValueError(f"Expected '{name}' to be two-dimensional (got {t.dim()} dimensions)")
    return _EdgeDot.apply(x_src, x_dst, edge_index[0], edge_index[1])


def edge_squared_distance(x: Tensor | PairTensor, edge_index: Tensor) -> Tensor:
    r"""Squared distances :math:`\lVert \mathbf{x}_i - \mathbf{x}_j \rVert^2` of the endpoints of every
    edge as :math:`\lVert \mathbf{x}_i \rVert^2 + \lVert \mathbf{x}_j \rVert^2 - 2 \langle \mathbf{x}_i,
    \mathbf{x}_j \rangle` (clamped at zero; see :func:`edge_dot` for the memory).

    Shapes:
        - **input:** x :math:`(N, D)` or :math:`((N_s, D), (N_t, D))`, edge_index :math:`(2, E)`
        - **output:** :math:`(E)`
    """
    _check_edge_index(edge_index)
    x_src, x_dst = x if isinstance(x, (tuple, list)) else (x, x)
    dot = edge_dot((x_src, x_dst), edge_index)  # [E]
    sq_src = x_src.pow(2).sum(-1)  # [N_s]
    sq_dst = sq_src if x_dst is x_src else x_dst.pow(2).sum(-1)  # [N_t]
    return (sq_src[edge_index[0]] + sq_dst[edge_index[1]] - 2 * dot).clamp_min(0)  # [E]


def gaussian_edge_weight(x: Tensor | PairTensor, edge_index: Tensor, sigma: float | Tensor,
                         log: bool = False) -> Tensor:
    r"""Gaussian kernel weights recomputed at the given edges, differentiable w.r.t. the features:

    .. math::
        w_{j \to i} = \exp\left(-\frac{\lVert \mathbf{x}_i - \mathbf{x}_j \rVert^2}{2 \sigma^2}\right)

    Args:
        x (Tensor or (Tensor, Tensor)): Node features, or a pair ``(x_src, x_dst)`` for bipartite
            graphs (``edge_index[0]`` indexes ``x_src``, ``edge_index[1]`` indexes ``x_dst``).
        edge_index (Tensor): Edges in PyG convention (row 0 = source, row 1 = target).
        sigma (float or Tensor): Kernel width.
        log (bool, optional): Return :math:`\log w` (finite for any :obj:`sigma`, use it with
            :func:`log_normalize_edge_weight` when the weights themselves may underflow).
            (default: :obj:`False`)

    Shapes:
        - **input:** x :math:`(N, D)` or :math:`((N_s, D), (N_t, D))`, edge_index :math:`(2, E)`
        - **output:** :math:`(E)`
    """
    _check_positive("sigma", sigma)
    log_w = -edge_squared_distance(x, edge_index) / (2 * sigma**2)  # [E]
    return log_w if log else log_w.exp()


def edge_cosine(x: Tensor | PairTensor, edge_index: Tensor) -> Tensor:
    r"""Cosine similarities :math:`\cos(\mathbf{x}_i, \mathbf{x}_j)` of the endpoints of every edge (the
    ``cosine`` of the vocabulary above, unclipped), differentiable (see :func:`edge_dot` for the memory).

    Shapes:
        - **input:** x :math:`(N, D)` or :math:`((N_s, D), (N_t, D))`, edge_index :math:`(2, E)`
        - **output:** :math:`(E)`
    """
    _check_edge_index(edge_index)
    x_src, x_dst = x if isinstance(x, (tuple, list)) else (x, x)
    norm_src = x_src.norm(dim=-1).clamp_min(1e-12)  # [N_s]
    norm_dst = norm_src if x_dst is x_src else x_dst.norm(dim=-1).clamp_min(1e-12)  # [N_t]
    dot = edge_dot((x_src, x_dst), edge_index)  # [E]
    return dot / (norm_src[edge_index[0]] * norm_dst[edge_index[1]])  # [E]


def exp_cosine_edge_weight(x: Tensor | PairTensor, edge_index: Tensor, temperature: float | Tensor = 0.1,
                           log: bool = False) -> Tensor:
    r"""Positive ``exp-cosine`` weights recomputed at the given edges:

    .. math::
        w_{j \to i} = \exp\left(\frac{\cos(\mathbf{x}_i, \mathbf{x}_j) - 1}{t}\right) \in (0, 1]

    Args:
        x (Tensor or (Tensor, Tensor)): Node features, or a pair ``(x_src, x_dst)``.
        edge_index (Tensor): Edges in PyG convention.
        temperature (float or Tensor, optional): Temperature :math:`t`. (default: :obj:`0.1`)
        log (bool, optional): Return :math:`\log w`. (default: :obj:`False`)

    Shapes:
        - **input:** x :math:`(N, D)` or :math:`((N_s, D), (N_t, D))`, edge_index :math:`(2, E)`
        - **output:** :math:`(E)`
    """
    _check_positive("temperature", temperature)
    log_w = (edge_cosine(x, edge_index) - 1) / temperature  # [E]
    return log_w if log else log_w.exp()


def knn_edge_weight(scores: Tensor, metric: str) -> Tensor:
    r"""Non-negative weights of kNN edges from the scores of :func:`graphs.knn.knn_search`, as the corpus
    label propagation uses them: ``clipped-cosine`` :math:`\max(\cos, 0)` for ``"cosine"`` (scores are
    similarities), and ``median-gaussian`` :math:`\exp(-d^2 / \overline{d^2})` for ``"l2"`` (scores are
    squared distances; :math:`\overline{d^2}` is their median, so raw embeddings of any norm work).

    Shapes:
        - **input:** scores :math:`(N, k)` (or any shape)
        - **output:** the same shape
    """
    if metric == "cosine":
        return scores.clamp_min(0)
    if metric == "l2":
        scale = scores.float().median().clamp_min(1e-12)
        return torch.exp(-scores / scale)
    raise ValueError(f"Expected 'metric' to be one of {tuple(KNN_EDGE_WEIGHTS)} (got '{metric}')")


def symmetrize(edge_index: Tensor, edge_weight: Tensor | None = None, num_nodes: int | None = None,
               reduce: str = "max") -> tuple[Tensor, Tensor | None]:
    r"""Makes a directed (e.g. kNN) graph undirected: every edge :math:`j \to i` gets its reverse, and
    the weights of an edge present in both directions are merged with :obj:`reduce` (an edge present in
    one direction keeps its weight). Differentiable w.r.t. :obj:`edge_weight`; the output is coalesced.

    ``"max"`` keeps :math:`\max(w_{ij}, w_{ji})` (the union of the kNN relations), ``"mean"`` their
    average and ``"sum"`` their sum. ``"max"`` commutes with :math:`\log`, so it can be applied to
    log-weights as well.

    Args:
        edge_index (Tensor): Edges in PyG convention.
        edge_weight (Tensor, optional): Edge weights. (default: :obj:`None`)
        num_nodes (int, optional): Number of nodes. (default: :obj:`None`)
        reduce (str, optional): ``"max"``, ``"mean"`` or ``"sum"``. (default: ``"max"``)

    Shapes:
        - **input:** edge_index :math:`(2, E)`, edge_weight :math:`(E)`
        - **output:** edge_index :math:`(2, E')`, edge_weight :math:`(E')` with
          :math:`E \le E' \le 2E`
    """
    _check_edge_index(edge_index)
    if reduce not in ("max", "mean", "sum"):
        raise ValueError(f"Expected 'reduce' to be one of ('max', 'mean', 'sum') (got '{reduce}')")
    if edge_weight is not None and edge_weight.size(0) != edge_index.size(1):
        raise ValueError(
            f"Expected 'edge_weight' to have one entry per edge (got {edge_weight.size(0)} for "
            f"{edge_index.size(1)} edges)"
        )
    num_nodes = maybe_num_nodes(edge_index, num_nodes)
    if edge_weight is None:
        return to_undirected(edge_index, num_nodes=num_nodes), None
    return to_undirected(edge_index, edge_weight, num_nodes=num_nodes, reduce=reduce)


def set_self_loops(edge_index: Tensor, edge_weight: Tensor | None = None, num_nodes: int | None = None,
                   mode: str = "remove", fill_value: float = 1.0) -> tuple[Tensor, Tensor | None]:
    r"""Applies a self-loop policy: ``"remove"`` drops all self-loops (G-Loss: zero diagonal),
    ``"add"`` adds a self-loop of weight :obj:`fill_value` to every node without one
    (:func:`~torch_geometric.utils.add_remaining_self_loops`, GCN style), ``"keep"`` does nothing.

    Shapes:
        - **input:** edge_index :math:`(2, E)`, edge_weight :math:`(E)`
        - **output:** edge_index :math:`(2, E')`, edge_weight :math:`(E')`
    """
    _check_edge_index(edge_index)
    if mode == "remove":
        return remove_self_loops(edge_index, edge_weight)
    if mode == "add":
        return add_remaining_self_loops(edge_index, edge_weight, fill_value, num_nodes)
    if mode == "keep":
        return edge_index, edge_weight
    raise ValueError(f"Expected 'mode' to be one of ('remove', 'add', 'keep') (got '{mode}')")


def _safe_pow(deg: Tensor, exponent: float, eps: float) -> Tensor:
    """``deg ** exponent`` where ``deg > eps`` and 0 elsewhere, with finite gradients everywhere."""
    return torch.where(deg > eps, deg.clamp_min(eps).pow(exponent), torch.zeros_like(deg))


def normalize_edge_weight(edge_index: Tensor, edge_weight: Tensor | None = None, num_nodes: int | None = None,
                          mode: str = "sym", eps: float = 1e-12) -> Tensor:
    r"""Normalises edge weights by the (in-)degree :math:`d_i = \sum_j w_{j \to i}` of the targets.

    ``"sym"`` gives :math:`\mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` (the same values as
    :func:`torch_geometric.nn.conv.gcn_conv.gcn_norm` without self-loops) and ``"row"`` gives
    :math:`\mathbf{D}^{-1} \mathbf{A}` (every node's incoming weights sum to one, a random-walk
    transition matrix). Unlike ``gcn_norm``, nodes with degree :math:`\le` :obj:`eps` get zero weights
    *and zero, not NaN, gradients*. Use :func:`log_normalize_edge_weight` when weights may underflow.

    Shapes:
        - **input:** edge_index :math:`(2, E)`, edge_weight :math:`(E)`
        - **output:** :math:`(E)`
    """
    _check_edge_index(edge_index)
    num_nodes = maybe_num_nodes(edge_index, num_nodes)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
    src, dst = edge_index[0], edge_index[1]
    deg = scatter(edge_weight, dst, dim=0, dim_size=num_nodes, reduce="sum")  # [N]
    if mode == "sym":
        deg_inv_sqrt = _safe_pow(deg, -0.5, eps)  # [N]
        return deg_inv_sqrt[src] * edge_weight * deg_inv_sqrt[dst]  # [E]
    if mode == "row":
        return edge_weight * _safe_pow(deg, -1.0, eps)[dst]  # [E]
    raise ValueError(f"Expected 'mode' to be one of ('sym', 'row') (got '{mode}')")


def scatter_logsumexp(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    r"""Numerically stable :math:`\log \sum_{e: \mathrm{index}_e = i} \exp(\mathrm{src}_e)`; empty groups
    give :math:`-\infty`.

    Shapes:
        - **input:** src :math:`(E)`, index :math:`(E)`
        - **output:** :math:`(N)`
    """
    peak = scatter(src.detach(), index, dim=0, dim_size=dim_size, reduce="max")  # [N]
    total = scatter((src - peak[index]).exp(), index, dim=0, dim_size=dim_size, reduce="sum")  # [N]
    return peak + total.log()  # [N]


def log_normalize_edge_weight(edge_index: Tensor, log_weight: Tensor, num_nodes: int | None = None,
                              mode: str = "sym_row") -> Tensor:
    r"""Normalises edge weights given as :math:`\log w` without ever forming :math:`w` (so any kernel
    width works: nothing underflows to a zero degree). Returns the *normalised weights* (not logs).

    ``"row"``: :math:`w_{j \to i} / d_i` (a softmax over each node's incoming edges).
    ``"sym"``: :math:`w_{j \to i} / \sqrt{d_i d_j}`.
    ``"sym_row"``: ``"sym"`` followed by ``"row"``, the transition matrix of G-Loss,
    :math:`T_{ij} = \tilde w_{ij} / \sum_k \tilde w_{ik}` with
    :math:`\tilde{\mathbf{W}} = \mathbf{D}^{-1/2} \mathbf{W} \mathbf{D}^{-1/2}`.

    Degrees are in-degrees :math:`d_i = \sum_j w_{j \to i}`, as in :func:`normalize_edge_weight`.

    Shapes:
        - **input:** edge_index :math:`(2, E)`, log_weight :math:`(E)`
        - **output:** :math:`(E)`
    """
    _check_edge_index(edge_index)
    if mode not in ("row", "sym", "sym_row"):
        raise ValueError(f"Expected 'mode' to be one of ('row', 'sym', 'sym_row') (got '{mode}')")
    num_nodes = maybe_num_nodes(edge_index, num_nodes)
    src, dst = edge_index[0], edge_index[1]
    if mode == "row":
        return softmax(log_weight, dst, num_nodes=num_nodes)  # [E]
    log_deg = scatter_logsumexp(log_weight, dst, num_nodes)  # [N]
    # A node without incoming edges gets weight 0 on its outgoing edges (log-degree +inf).
    log_deg = torch.where(torch.isfinite(log_deg), log_deg, torch.full_like(log_deg, float("inf")))
    if mode == "sym":
        return (log_weight - 0.5 * log_deg[src] - 0.5 * log_deg[dst]).exp()  # [E]
    return softmax(log_weight - 0.5 * log_deg[src], dst, num_nodes=num_nodes)  # [E]


def pairwise_squared_distances(x: Tensor, y: Tensor | None = None) -> Tensor:
    r"""Squared Euclidean distances :math:`\lVert \mathbf{x}_i - \mathbf{y}_j \rVert^2` through one
    matmul, clamped at zero (no square root, so the gradient at coinciding points is finite).

    Shapes:
        - **input:** x :math:`(N, D)`, y :math:`(M, D)` (default: :obj:`x`)
        - **output:** :math:`(N, M)`
    """
    if x.dim() != 2:
        raise ValueError(f"Expected 'x' to be two-dimensional (got {x.dim()} dimensions)")
    y = x if y is None else y
    x_sq = x.pow(2).sum(-1)  # [N]
    y_sq = x_sq if y is x else y.pow(2).sum(-1)  # [M]
    return (x_sq.unsqueeze(1) + y_sq.unsqueeze(0) - 2 * x @ y.t()).clamp_min(0)  # [N, M]


def dense_gaussian_kernel(x: Tensor, sigma: float | Tensor, zero_diagonal: bool = True,
                          log: bool = False) -> Tensor:
    r"""Full Gaussian kernel :math:`W_{ij} = \exp(-\lVert \mathbf{x}_i - \mathbf{x}_j \rVert^2 / 2\sigma^2)`
    with a zero diagonal (or :math:`\log W` with :math:`-\infty` on the diagonal when :obj:`log`).

    Shapes:
        - **input:** x :math:`(N, D)`
        - **output:** :math:`(N, N)`
    """
    _check_positive("sigma", sigma)
    log_w = -pairwise_squared_distances(x) / (2 * sigma**2)  # [N, N]
    if zero_diagonal:
        eye = torch.eye(x.size(0), dtype=torch.bool, device=x.device)
        log_w = log_w.masked_fill(eye, float("-inf"))
    return log_w if log else log_w.exp()


def dense_normalize(weight: Tensor, mode: str = "sym", eps: float = 1e-12) -> Tensor:
    r"""Dense :math:`\mathbf{D}^{-1/2} \mathbf{W} \mathbf{D}^{-1/2}` (``"sym"``) or
    :math:`\mathbf{D}^{-1} \mathbf{W}` (``"row"``) with :math:`D_{ii} = \sum_j W_{ij}`; rows with
    degree :math:`\le` :obj:`eps` become zero with finite gradients.

    Shapes:
        - **input:** :math:`(N, N)`
        - **output:** :math:`(N, N)`
    """
    if weight.dim() != 2 or weight.size(0) != weight.size(1):
        raise ValueError(f"Expected 'weight' to be a square matrix (got shape {list(weight.shape)})")
    deg = weight.sum(-1)  # [N]
    if mode == "sym":
        d = _safe_pow(deg, -0.5, eps)  # [N]
        return d.unsqueeze(1) * weight * d.unsqueeze(0)  # [N, N]
    if mode == "row":
        return _safe_pow(deg, -1.0, eps).unsqueeze(1) * weight  # [N, N]
    raise ValueError(f"Expected 'mode' to be one of ('sym', 'row') (got '{mode}')")


def dense_transition(x: Tensor, sigma: float | Tensor, rows: Tensor | None = None,
                     column_first: bool = False) -> Tensor:
    r"""The G-Loss transition matrix of a full Gaussian graph, computed in log-space:

    .. math::
        \mathbf{T} = \mathrm{row\_normalise}(\mathbf{S}), \quad
        \mathbf{S} = \mathbf{D}^{-1/2} \mathbf{W} \mathbf{D}^{-1/2},
        \qquad T_{ij} = \frac{W_{ij} d_j^{-1/2}}{\sum_k W_{ik} d_k^{-1/2}}
        = \mathrm{softmax}_j\left(\log W_{ij} - \tfrac{1}{2} \log d_j\right)

    with :math:`W_{ii} = 0`. With :obj:`column_first` the columns of :math:`\mathbf{S}` are normalised
    first, as the released G-Loss code does (``Tran = S / S.sum(0)``, then ``T = Tran / Tran.sum(1)``):
    :math:`T_{ij} = \mathrm{softmax}_j(\log W_{ij} - \tfrac{1}{2} \log d_j - \log s_j)` with
    :math:`s_j = \sum_i S_{ij}`. The log-space form equals the direct one wherever that is representable
    and stays finite for any :obj:`sigma` (tiny :obj:`sigma` tends to a nearest-neighbour graph, huge
    :obj:`sigma` to uniform weights).

    Args:
        x (Tensor): Node features.
        sigma (float or Tensor): Kernel width.
        rows (Tensor, optional): Only compute these rows of :math:`\mathbf{T}`. (default: all)
        column_first (bool, optional): Normalise the columns of :math:`\mathbf{S}` before the rows (the
            released code). (default: :obj:`False`)

    Shapes:
        - **input:** x :math:`(N, D)`, rows :math:`(R)`
        - **output:** :math:`(N, N)` or :math:`(R, N)`
    """
    log_w = dense_gaussian_kernel(x, sigma, zero_diagonal=True, log=True)  # [N, N]
    log_deg = log_w.logsumexp(dim=-1)  # [N]
    log_col = 0.5 * log_deg  # [N], the factor of column j that survives the row normalisation
    if column_first:
        log_s = log_w - 0.5 * log_deg.unsqueeze(1) - log_col.unsqueeze(0)  # [N, N], log S
        log_col = log_col + log_s.logsumexp(dim=0)  # [N], + log s_j
    if rows is not None:
        log_w = log_w[rows]  # [R, N]
    return torch.softmax(log_w - log_col.unsqueeze(0), dim=-1)  # [R, N]
