r"""BertGCN model pieces (`Lin et al., "BertGCN: Transductive Text Classification by Combining GCN and
BERT", Findings of ACL 2021 <https://arxiv.org/abs/2105.05727>`_), without the encoder.

BertGCN runs a two-layer GCN over the TextGCN document-word graph whose document nodes carry encoder
embeddings (kept in a memory bank :math:`(N_{docs}, D)`) and whose word nodes carry zeros, and interpolates
its predictions with those of the encoder's own classifier:

.. math::
    p = m \cdot \mathrm{softmax}(Z_{GCN}) + (1 - m) \cdot \mathrm{softmax}(Z_{enc}), \qquad m = 0.7,

trained with the negative log-likelihood of :math:`\log p`. Node order follows
:class:`graphs.text.TextGraph`: document ``i`` is node ``i``, words come after all documents.

Expected call order for a joint training loop (written elsewhere):

1. Build the graph and ``adj = graph.to_torch_sparse()`` (normalised, symmetric).
2. Encode every document once without gradients and build ``model = BertGCN(adj, bank, num_classes)``
   (or keep your own bank tensor and use :class:`BertGCNHead` directly).
3. For each batch of document indices ``idx`` ``[B]``: ``emb = encoder(texts[idx])`` ``[B, D]`` (with
   gradients), ``enc_logits = classifier(emb)`` ``[B, C]``,
   ``log_probs = model(emb, enc_logits, idx)`` ``[B, C]``, ``loss = F.nll_loss(log_probs, y[idx])``,
   ``loss.backward()``, optimiser step, then ``model.update_bank(idx, emb)`` (stored detached).
4. To evaluate, run step 3 without gradients on the evaluation documents (no loss, no step) and take
   ``log_probs.argmax(-1)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module, Parameter
from torch_geometric.nn.inits import glorot, zeros

from .sparse import symmetric_spmm
from .textgcn import _check_dropout

__all__ = ["replace_rows", "doc_node_features", "BertGCNHead", "BertGCN"]

ACTIVATIONS = {"relu": F.relu, "elu": F.elu}  # between the GCN layers; the original BertGCN uses ELU


def replace_rows(bank: Tensor, index: Tensor, rows: Tensor) -> Tensor:
    r"""Returns a copy of ``bank`` (detached) with ``bank[index] = rows``; gradients flow to ``rows`` only.

    Out of place (:meth:`torch.Tensor.index_put`), so it is safe on leaf tensors and buffers.

    Shapes:
        - **input:** bank :math:`(N_{docs}, D)`, index :math:`(B)`, rows :math:`(B, D)`
        - **output:** :math:`(N_{docs}, D)`
    """
    if bank.dim() != 2:
        raise ValueError(f"Expected 'bank' to be 2-dimensional (got shape {tuple(bank.shape)})")
    index = index.to(device=bank.device, dtype=torch.long)
    if rows.shape != (index.numel(), bank.size(1)):
        raise ValueError(
            f"Expected 'rows' to have shape ({index.numel()}, {bank.size(1)}) (got {tuple(rows.shape)})"
        )
    return bank.detach().index_put((index,), rows.to(bank.dtype))  # [N_docs, D]


def doc_node_features(
    bank: Tensor,
    num_words: int,
    index: Tensor | None = None,
    rows: Tensor | None = None,
) -> Tensor:
    r"""Node feature matrix of the document-word graph: document rows from ``bank``, word rows zero.

    If ``index`` and ``rows`` are given, ``rows`` replace the bank's rows at ``index`` first (see
    :func:`replace_rows`), keeping their gradients.

    Shapes:
        - **input:** bank :math:`(N_{docs}, D)`, index :math:`(B)`, rows :math:`(B, D)`
        - **output:** :math:`(N_{docs} + V, D)`
    """
    if (index is None) != (rows is None):
        raise ValueError("Expected 'index' and 'rows' to be given together (got only one of them)")
    if index is not None and rows is not None:
        bank = replace_rows(bank, index, rows)
    words = bank.new_zeros(num_words, bank.size(1))  # [V, D]
    return torch.cat([bank, words], dim=0)  # [N_docs + V, D]


class BertGCNHead(Module):
    r"""The graph half of BertGCN: a two-layer GCN over document embeddings plus the prediction mix.

    .. math::
        Z_{GCN} = \hat{A}\, \mathrm{dropout}(\sigma(\hat{A} X W_1 + b_1))\, W_2 + b_2, \quad
        \log p = \log\big(m\, \mathrm{softmax}(Z_{GCN}) + (1 - m)\, \mathrm{softmax}(Z_{enc})\big),

    with :math:`X` the document bank stacked over zero word rows (:func:`doc_node_features`), :math:`\sigma`
    ReLU (default) or ELU (the original BertGCN), and biases :math:`b_1, b_2` only with ``bias=True`` (the
    original has them; the default, like TextGCN here, has none).

    Args:
        adj (torch.Tensor): Symmetric normalised adjacency :math:`(N, N)` (sparse), documents first.
        num_docs (int): Number of document nodes :math:`N_{docs}` (the words are the other nodes).
        in_channels (int): Embedding size :math:`D`.
        num_classes (int): Number of classes :math:`C`.
        hidden_channels (int, optional): GCN hidden size. (default: :obj:`200`)
        dropout (float, optional): Dropout on the GCN hidden layer. (default: :obj:`0.5`)
        m (float, optional): Weight of the GCN prediction, in :math:`[0, 1]`. (default: :obj:`0.7`)
        activation (str, optional): ``"relu"`` or ``"elu"`` between the layers. (default: ``"relu"``)
        bias (bool, optional): Add a learnable bias after each GCN layer. (default: :obj:`False`)

    Shapes:
        - **input:** doc_features_bank :math:`(N_{docs}, D)` with the batch rows already replaced by
          fresh embeddings (:func:`replace_rows`), encoder_logits :math:`(B, C)`, batch_doc_idx :math:`(B)`
        - **output:** log-probabilities :math:`(B, C)`
    """

    def __init__(
        self,
        adj: Tensor,
        num_docs: int,
        in_channels: int,
        num_classes: int,
        hidden_channels: int = 200,
        dropout: float = 0.5,
        m: float = 0.7,
        *,
        activation: str = "relu",
        bias: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Expected 'activation' to be one of {', '.join(ACTIVATIONS)} (got '{activation}')")
        if adj.dim() != 2 or adj.size(0) != adj.size(1):
            raise ValueError(f"Expected 'adj' to be a square matrix (got shape {tuple(adj.shape)})")
        if not 0 < num_docs <= adj.size(0):
            raise ValueError(f"Expected 'num_docs' to lie in [1, {adj.size(0)}] (got {num_docs})")
        if not 0.0 <= m <= 1.0:
            raise ValueError(f"Expected 'm' to lie in [0, 1] (got {m})")
        _check_dropout(dropout)
        self.register_buffer("adj", adj, persistent=False)
        self.num_docs = num_docs
        self.num_words = adj.size(0) - num_docs
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.dropout = dropout
        self.m = m
        self.weight1 = Parameter(torch.empty(in_channels, hidden_channels))  # [D, h]
        self.weight2 = Parameter(torch.empty(hidden_channels, num_classes))  # [h, C]
        self.activation = activation
        self.bias1 = Parameter(torch.empty(hidden_channels)) if bias else None  # [h]
        self.bias2 = Parameter(torch.empty(num_classes)) if bias else None  # [C]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        glorot(self.weight1)
        glorot(self.weight2)
        zeros(self.bias1)
        zeros(self.bias2)

    def gcn_logits(self, node_features: Tensor) -> Tensor:
        r"""GCN logits of every node :math:`(N, C)` from node features :math:`(N, D)`."""
        h = symmetric_spmm(self.adj, node_features @ self.weight1)  # [N, h]
        if self.bias1 is not None:
            h = h + self.bias1
        h = ACTIVATIONS[self.activation](h)
        h = F.dropout(h, p=self.dropout, training=self.training)
        out = symmetric_spmm(self.adj, h @ self.weight2)  # [N, C]
        return out if self.bias2 is None else out + self.bias2

    def forward(self, doc_features_bank: Tensor, encoder_logits: Tensor, batch_doc_idx: Tensor) -> Tensor:
        if doc_features_bank.shape != (self.num_docs, self.in_channels):
            raise ValueError(
                f"Expected 'doc_features_bank' to have shape ({self.num_docs}, {self.in_channels}) "
                f"(got {tuple(doc_features_bank.shape)})"
            )
        batch_doc_idx = batch_doc_idx.to(device=doc_features_bank.device, dtype=torch.long)
        if encoder_logits.shape != (batch_doc_idx.numel(), self.num_classes):
            raise ValueError(
                f"Expected 'encoder_logits' to have shape ({batch_doc_idx.numel()}, {self.num_classes}) "
                f"(got {tuple(encoder_logits.shape)})"
            )
        x = doc_node_features(doc_features_bank, self.num_words)  # [N, D]
        gcn = self.gcn_logits(x)[batch_doc_idx]  # [B, C] (document i is node i)
        return self.mix(gcn, encoder_logits)  # [B, C]

    def mix(self, gcn_logits: Tensor, encoder_logits: Tensor) -> Tensor:
        r""":math:`\log(m\,\mathrm{softmax}(Z_{GCN}) + (1-m)\,\mathrm{softmax}(Z_{enc}))`, computed stably."""
        log_m = math.log(self.m) if self.m > 0 else -math.inf
        log_1m = math.log1p(-self.m) if self.m < 1 else -math.inf
        parts = torch.stack(
            [log_m + F.log_softmax(gcn_logits, dim=-1), log_1m + F.log_softmax(encoder_logits, dim=-1)]
        )  # [2, B, C]
        return torch.logsumexp(parts, dim=0)  # [B, C]


class BertGCN(Module):
    r"""BertGCN without its encoder: a :class:`BertGCNHead` plus the document memory bank it reads.

    The bank is a buffer (no gradients). :meth:`forward` substitutes the batch's fresh embeddings (with
    gradients) into a copy of the bank; :meth:`update_bank` writes them into the bank afterwards.

    Args:
        adj (torch.Tensor): Symmetric normalised adjacency :math:`(N, N)` (sparse), documents first.
        doc_features_bank (torch.Tensor): Initial document embeddings :math:`(N_{docs}, D)`.
        num_classes (int): Number of classes :math:`C`.
        hidden_channels (int, optional): GCN hidden size. (default: :obj:`200`)
        dropout (float, optional): Dropout on the GCN hidden layer. (default: :obj:`0.5`)
        m (float, optional): Weight of the GCN prediction. (default: :obj:`0.7`)
        activation (str, optional): ``"relu"`` or ``"elu"`` (the original) between the GCN layers.
            (default: ``"relu"``)
        bias (bool, optional): Biases in the GCN layers (the original has them). (default: :obj:`False`)

    Shapes:
        - **input:** batch_features :math:`(B, D)`, encoder_logits :math:`(B, C)`, batch_doc_idx :math:`(B)`
        - **output:** log-probabilities :math:`(B, C)`
    """

    def __init__(
        self,
        adj: Tensor,
        doc_features_bank: Tensor,
        num_classes: int,
        hidden_channels: int = 200,
        dropout: float = 0.5,
        m: float = 0.7,
        *,
        activation: str = "relu",
        bias: bool = False,
    ) -> None:
        super().__init__()
        if doc_features_bank.dim() != 2:
            raise ValueError(
                f"Expected 'doc_features_bank' to be 2-dimensional "
                f"(got shape {tuple(doc_features_bank.shape)})"
            )
        num_docs, dim = doc_features_bank.shape
        self.head = BertGCNHead(adj, num_docs, dim, num_classes, hidden_channels, dropout, m, activation=activation,
                                bias=bias)
        self.register_buffer("bank", doc_features_bank.detach().clone())

    @torch.no_grad()
    def update_bank(self, batch_doc_idx: Tensor, batch_features: Tensor) -> None:
        r"""Writes fresh embeddings :math:`(B, D)`, detached, into the bank at rows ``batch_doc_idx``."""
        self.bank[batch_doc_idx.to(self.bank.device, torch.long)] = batch_features.detach().to(
            self.bank.dtype
        )

    def forward(self, batch_features: Tensor, encoder_logits: Tensor, batch_doc_idx: Tensor) -> Tensor:
        bank = replace_rows(self.bank, batch_doc_idx, batch_features)  # [N_docs, D]
        return self.head(bank, encoder_logits, batch_doc_idx)  # [B, C]
