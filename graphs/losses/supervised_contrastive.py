"""Supervised contrastive loss (Khosla et al., NeurIPS 2020, https://arxiv.org/abs/2004.11362)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SupervisedContrastiveLoss(nn.Module):
    r"""Supervised contrastive loss over one batch (the "L_out" form).

    .. math::
        \mathcal{L} = \frac{1}{|A|}\sum_{i \in A} \frac{-1}{|P(i)|} \sum_{p \in P(i)}
        \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \neq i} \exp(z_i \cdot z_a / \tau)}

    with :math:`z` the L2-normalised embeddings, :math:`P(i)` the other batch members of :math:`i`'s class and
    :math:`A` the anchors with at least one positive. A batch with no positive pair gives a zero that stays
    attached to the graph.

    Args:
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.1`)

    Shapes:
        - **input:** embeddings :math:`(B, D)`, labels :math:`(B)`
        - **output:** ``{"scl": scalar}``
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"Expected 'temperature' to be positive (got {temperature})")
        self.temperature = temperature

    def forward(self, embeddings: Tensor, labels: Tensor) -> dict[str, Tensor]:
        z = F.normalize(embeddings, dim=-1)
        logits = z @ z.T / self.temperature  # [B, B]
        self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # [B, B]
        positives = (labels[:, None] == labels[None, :]) & ~self_mask  # [B, B]
        counts = positives.sum(dim=1)  # [B]
        anchors = counts > 0
        if not anchors.any():
            return {"scl": embeddings.sum() * 0.0}
        pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)  # [B]
        return {"scl": -(pos_log_prob[anchors] / counts[anchors]).mean()}

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(temperature={self.temperature})"
