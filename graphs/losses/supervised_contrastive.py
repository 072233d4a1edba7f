"""Supervised contrastive loss (Khosla et al., NeurIPS 2020, https://arxiv.org/abs/2004.11362)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphs.distributed import gather_rows


class SupervisedContrastiveLoss(nn.Module):
    r"""Supervised contrastive loss over one batch (the "L_out" form).

    .. math::
        \mathcal{L} = \frac{1}{|A|}\sum_{i \in A} \frac{-1}{|P(i)|} \sum_{p \in P(i)}
        \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \neq i} \exp(z_i \cdot z_a / \tau)}

    with :math:`z` the L2-normalised embeddings, :math:`P(i)` the other batch members of :math:`i`'s class and
    :math:`A` the anchors with at least one positive. A batch with no positive pair gives a zero that stays
    attached to the graph.

    With class weights :math:`w`, each anchor's term is weighted by its class and the mean becomes a weighted
    mean (as :func:`~torch.nn.functional.cross_entropy` weighs its targets):
    :math:`\mathcal{L} = \sum_{i \in A} w_{y_i} \ell_i / \sum_{i \in A} w_{y_i}`, with :math:`\ell_i` the
    anchor's term above. Equal weights give the unweighted loss.

    Args:
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.1`)
        class_weights (Sequence[float] or Tensor, optional): Weight :math:`w_c` of each class's anchors.
            (default: :obj:`None`, every anchor alike)
        gather_across_devices (bool, optional): In a data-parallel run, contrast the **global** batch: the
            embeddings of every rank are gathered with gradients, the labels without
            (:mod:`graphs.distributed`). (default: :obj:`False`)

    Shapes:
        - **input:** embeddings :math:`(B, D)`, labels :math:`(B)`
        - **output:** ``{"scl": scalar}``
    """

    def __init__(self, temperature: float = 0.1, class_weights: Sequence[float] | Tensor | None = None,
                 gather_across_devices: bool = False) -> None:
        super().__init__()
        self.gather_across_devices = gather_across_devices
        if temperature <= 0:
            raise ValueError(f"Expected 'temperature' to be positive (got {temperature})")
        self.temperature = temperature
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32).flatten()
        if weights is not None and not (weights >= 0).all():
            raise ValueError("Expected 'class_weights' to be non-negative")
        self.register_buffer("class_weights", weights)

    def forward(self, embeddings: Tensor, labels: Tensor) -> dict[str, Tensor]:
        if self.gather_across_devices:
            embeddings, labels = gather_rows(embeddings, labels, with_grad=(True, False))
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
        terms = -(pos_log_prob[anchors] / counts[anchors])  # [|A|]
        if self.class_weights is None:
            return {"scl": terms.mean()}
        if int(labels.max()) >= len(self.class_weights):
            raise ValueError(f"Expected labels below {len(self.class_weights)}, the number of class weights "
                             f"(got {int(labels.max())})")
        weights = self.class_weights.to(terms.dtype)[labels[anchors]]  # [|A|]
        return {"scl": (weights * terms).sum() / weights.sum().clamp_min(torch.finfo(terms.dtype).tiny)}

    def __repr__(self) -> str:
        weighted = "" if self.class_weights is None else f", class_weights={self.class_weights.tolist()}"
        return f"{self.__class__.__name__}(temperature={self.temperature}{weighted})"
