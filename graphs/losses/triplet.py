"""Batch-all triplet loss (Hermans et al., 2017, https://arxiv.org/abs/1703.07737)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BatchAllTripletLoss(nn.Module):
    r"""Mean hinge over every valid triplet (anchor, positive, negative) of a batch with a positive loss.

    .. math::
        \mathcal{L} = \frac{1}{|T_+|} \sum_{(a,p,n) \in T_+} \left[ d(a,p) - d(a,n) + m \right]_+

    with :math:`d` the Euclidean distance between L2-normalised embeddings and :math:`T_+` the triplets whose
    hinge is positive (as in sentence-transformers' ``BatchAllTripletLoss``).

    Args:
        margin (float, optional): :math:`m`. (default: :obj:`0.5`)

    Shapes:
        - **input:** embeddings :math:`(B, D)`, labels :math:`(B)`
        - **output:** ``{"triplet": scalar}``
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: Tensor, labels: Tensor) -> dict[str, Tensor]:
        z = F.normalize(embeddings, dim=-1)
        sq = (2.0 - 2.0 * z @ z.T).clamp_min(1e-12)  # [B, B] squared distances of unit vectors
        dist = sq.sqrt()
        same = labels[:, None] == labels[None, :]  # [B, B]
        not_self = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
        valid = (same & not_self)[:, :, None] & (~same)[:, None, :]  # [B, B(p), B(n)]
        hinge = (dist[:, :, None] - dist[:, None, :] + self.margin).clamp_min(0.0)  # [B, B, B]
        active = valid & (hinge > 1e-16)
        if not active.any():
            return {"triplet": embeddings.sum() * 0.0}
        return {"triplet": hinge[active].mean()}

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(margin={self.margin})"
