r"""TextGCN: a two-layer featureless GCN on the document-word graph
(`Yao et al., "Graph Convolutional Networks for Text Classification", AAAI 2019
<https://arxiv.org/abs/1809.05679>`_).

.. math::
    Z = \hat{A}\, \mathrm{dropout}(\mathrm{ReLU}(\hat{A} W_1))\, W_2

The input features are the identity (one-hot nodes), so the first layer is :math:`\hat{A} W_1` with
:math:`W_1 \in \mathbb{R}^{N \times h}` a parameter; no identity matrix is materialised. As in the
released code, dropout acts only on the hidden layer (dropout of one-hot inputs has no effect there),
weights use Glorot initialisation and there are no biases by default.

Two implementations with the same parameters:

* :class:`TextGCN` (the default): :math:`\hat{A}` is a precomputed torch sparse CSR tensor and both
  layers are :func:`~graphs.models.sparse.symmetric_spmm` products.
* :class:`TextGCNPyG`: two :class:`torch_geometric.nn.GCNConv` layers with ``cached=True`` that normalise
  the raw adjacency themselves.

Measured on a 2-core CPU (see ``scripts/time_textgcn.py``), :class:`TextGCN` is the faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module, Parameter
from torch_geometric.nn import GCNConv
from torch_geometric.nn.inits import glorot, zeros

from .sparse import symmetric_spmm

__all__ = ["TextGCN", "TextGCNPyG"]


def _check_dropout(dropout: float) -> None:
    r"""The dropout check of every graph model here (also used by :mod:`graphs.models.bertgcn`)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"Expected 'dropout' to lie in [0, 1) (got {dropout})")


class TextGCN(Module):
    r"""Featureless two-layer GCN on a precomputed normalised adjacency (the TextGCN model).

    Args:
        num_nodes (int): Number of graph nodes :math:`N` (documents + words).
        out_channels (int): Number of classes :math:`C`.
        hidden_channels (int, optional): Hidden size :math:`h`. (default: :obj:`200`)
        dropout (float, optional): Dropout probability on the hidden layer. (default: :obj:`0.5`)
        bias (bool, optional): Add learnable biases. (default: :obj:`False`)

    Shapes:
        - **input:** adj :math:`(N, N)` sparse, symmetric :math:`D^{-1/2}(A + I)D^{-1/2}`;
          optionally ``h1`` :math:`(N, h)` from :meth:`first_layer`
        - **output:** logits :math:`(N, C)`
    """

    def __init__(
        self,
        num_nodes: int,
        out_channels: int,
        hidden_channels: int = 200,
        dropout: float = 0.5,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if num_nodes < 1 or out_channels < 1 or hidden_channels < 1:
            raise ValueError(
                f"Expected 'num_nodes', 'out_channels', 'hidden_channels' to be positive "
                f"(got {num_nodes}, {out_channels}, {hidden_channels})"
            )
        _check_dropout(dropout)
        self.num_nodes = num_nodes
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.dropout = dropout
        self.weight1 = Parameter(torch.empty(num_nodes, hidden_channels))  # W_1 [N, h]
        self.weight2 = Parameter(torch.empty(hidden_channels, out_channels))  # W_2 [h, C]
        self.bias1 = Parameter(torch.empty(hidden_channels)) if bias else None
        self.bias2 = Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        glorot(self.weight1)
        glorot(self.weight2)
        zeros(self.bias1)
        zeros(self.bias2)

    def first_layer(self, adj: Tensor) -> Tensor:
        r"""Pre-activation of the first layer, :math:`\hat{A} W_1` (+ bias) :math:`(N, h)`.

        The costly product of an epoch; a training loop may compute it once and pass it to
        :meth:`forward` for both its evaluation and its training pass.
        """
        h = symmetric_spmm(adj, self.weight1)  # [N, h]
        return h if self.bias1 is None else h + self.bias1

    def forward(self, adj: Tensor, h1: Tensor | None = None) -> Tensor:
        if adj.size(0) != self.num_nodes:
            raise ValueError(f"Expected 'adj' to have {self.num_nodes} rows (got {adj.size(0)})")
        if h1 is None:
            h1 = self.first_layer(adj)  # [N, h]
        h = F.dropout(F.relu(h1), p=self.dropout, training=self.training)  # [N, h]
        out = symmetric_spmm(adj, h @ self.weight2)  # [N, C]
        return out if self.bias2 is None else out + self.bias2

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.num_nodes}, {self.out_channels}, "
            f"hidden_channels={self.hidden_channels}, dropout={self.dropout})"
        )


class _OneHotLinear(Module):
    r"""``Linear`` applied to identity (one-hot) inputs: returns :math:`W^\top` without reading ``x``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = Parameter(torch.empty(out_channels, in_channels))  # [h, N] as in torch Linear
        self.reset_parameters()

    def reset_parameters(self) -> None:
        glorot(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.size(0) != self.in_channels:
            raise ValueError(f"Expected 'x' to have {self.in_channels} rows (got {x.size(0)})")
        return self.weight.t()  # [N, h] = I @ W^T


class TextGCNPyG(Module):
    r"""TextGCN built from two :class:`torch_geometric.nn.GCNConv` layers with cached normalisation.

    The first convolution's linear map is replaced by a one-hot one (:math:`I W^\top = W^\top`), so the
    model is featureless like :class:`TextGCN`. ``edge_index`` is either a ``[2, E]`` index tensor with
    ``edge_weight`` or a torch sparse adjacency, in both cases of the raw :math:`A` without self-loops
    (``GCNConv`` adds them and normalises, once). With a ``[2, E]`` index tensor, message passing
    materialises an :math:`(E, h)` tensor; prefer a sparse adjacency for large graphs.

    Args:
        num_nodes (int): Number of graph nodes :math:`N`.
        out_channels (int): Number of classes :math:`C`.
        hidden_channels (int, optional): Hidden size :math:`h`. (default: :obj:`200`)
        dropout (float, optional): Dropout probability on the hidden layer. (default: :obj:`0.5`)
        bias (bool, optional): Add learnable biases. (default: :obj:`False`)

    Shapes:
        - **input:** edge_index :math:`(2, E)` or sparse :math:`(N, N)`, edge_weight :math:`(E)` (optional)
        - **output:** logits :math:`(N, C)`
    """

    def __init__(
        self,
        num_nodes: int,
        out_channels: int,
        hidden_channels: int = 200,
        dropout: float = 0.5,
        bias: bool = False,
    ) -> None:
        super().__init__()
        _check_dropout(dropout)
        self.num_nodes = num_nodes
        self.dropout = dropout
        self.conv1 = GCNConv(num_nodes, hidden_channels, cached=True, bias=bias)
        self.conv1.lin = _OneHotLinear(num_nodes, hidden_channels)
        self.conv2 = GCNConv(hidden_channels, out_channels, cached=True, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def forward(self, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        x = self.conv1.lin.weight.new_empty(self.num_nodes, 0)  # [N, 0] placeholder for one-hot input
        h = F.relu(self.conv1(x, edge_index, edge_weight))  # [N, h]
        h = F.dropout(h, p=self.dropout, training=self.training)
        return self.conv2(h, edge_index, edge_weight)  # [N, C]
