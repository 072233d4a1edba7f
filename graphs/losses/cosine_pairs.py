"""Pairwise cosine-similarity regression onto same-label targets (as SBERT's ``CosineSimilarityLoss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PairwiseCosineLoss(nn.Module):
    r"""Mean squared error between the cosine similarity of every pair and a same-label target.

    .. math::
        \mathcal{L} = \frac{1}{B(B-1)} \sum_{i \neq j} \left( \cos(x_i, x_j) - t_{ij} \right)^2,
        \quad t_{ij} = 1 \text{ if } y_i = y_j \text{ else } t_{-}

    Args:
        negative_target (float, optional): :math:`t_{-}`, the target for different labels. (default: :obj:`0.0`)

    Shapes:
        - **input:** embeddings :math:`(B, D)`, labels :math:`(B)`
        - **output:** ``{"cosine": scalar}``
    """

    def __init__(self, negative_target: float = 0.0) -> None:
        super().__init__()
        self.negative_target = negative_target

    def forward(self, embeddings: Tensor, labels: Tensor) -> dict[str, Tensor]:
        if len(embeddings) < 2:
            return {"cosine": embeddings.sum() * 0.0}
        z = F.normalize(embeddings, dim=-1)
        cosine = z @ z.T  # [B, B]
        same = labels[:, None] == labels[None, :]
        target = torch.where(same, torch.ones_like(cosine), torch.full_like(cosine, self.negative_target))
        off_diagonal = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
        return {"cosine": ((cosine - target) ** 2)[off_diagonal].mean()}

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(negative_target={self.negative_target})"
