"""Label-aware contrastive loss (Suresh & Ong, EMNLP 2021, https://arxiv.org/abs/2109.05427)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphs.distributed import gather_rows


class LabelAwareContrastiveLoss(nn.Module):
    r"""Supervised contrastive loss whose negatives are weighted by how confusable their class is with the
    anchor's, as a weighting network judges it ("LCL").

    .. math::
        \ell_i = -\frac{w_i[y_i]}{|P(i)|} \sum_{p \in P(i)} \Big[ s_{ip} -
        \log \sum_{a \in A(i)} w_i[y_a] \exp(s_{ia}) \Big], \qquad
        \mathcal{L} = \frac{1}{|\mathcal{A}|} \sum_{i \in \mathcal{A}} \ell_i

    with :math:`s_{ia} = z_i \cdot z_a / \tau` on L2-normalised embeddings :math:`z`, :math:`w_i` the class
    distribution the weighting network gives text :math:`i` (``softmax`` of its class logits), :math:`A(i)` every
    other row of the batch, :math:`P(i)` those of :math:`i`'s class, and :math:`\mathcal{A}` the anchors with
    at least one positive. As in the official code (whose README corrects the paper's Eq. 3), the positive
    weight :math:`w_i[y_i]` stands outside the log; the denominator weighs every other row :math:`a` by the
    *anchor's* weight of :math:`a`'s class. With uniform weights :math:`w_i[c] = 1/C` the loss is
    SupCon / C - log(C) / C.

    Requirements:
        Anchors need a same-class partner in the batch; the others are skipped and counted
        (``stat_lcl_skipped_anchors``; the official code, whose batches always hold an augmented copy of each
        text, would give NaN). A batch without any positive pair gives a zero that stays attached to the graph.

    Args:
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.3`, the official code's)
        gather_across_devices (bool, optional): In a data-parallel run, contrast the **global** batch: the
            embeddings and the weighting network's logits of every rank are gathered with gradients, the labels
            without (:mod:`graphs.distributed`). (default: :obj:`False`)

    Inputs:
        - **embeddings** :math:`(B, D)`: sentence embeddings (normalised here).
        - **labels** :math:`(B)`: class ids below :math:`C`.
        - **logits** :math:`(B, C)`, keyword: the weighting network's class logits (softmax taken here), or
        - **weights** :math:`(B, C)`, keyword: class distributions :math:`w_i` given directly (rows >= 0).

    Shapes:
        - **output:** ``{"lcl": scalar, "stat_lcl_skipped_anchors": scalar}``

    Example::

        >>> loss = LabelAwareContrastiveLoss(0.3)
        >>> out = loss(torch.randn(4, 8), torch.tensor([0, 0, 1, 1]), logits=torch.randn(4, 2))
        >>> sorted(out)
        ['lcl', 'stat_lcl_skipped_anchors']
    """

    def __init__(self, temperature: float = 0.3, gather_across_devices: bool = False) -> None:
        super().__init__()
        self.gather_across_devices = gather_across_devices
        if temperature <= 0:
            raise ValueError(f"Expected 'temperature' to be positive (got {temperature})")
        self.temperature = temperature

    def forward(self, embeddings: Tensor, labels: Tensor, *, logits: Tensor | None = None,
                weights: Tensor | None = None) -> dict[str, Tensor]:
        log_w = self._check_log_weights(embeddings, labels, logits, weights)  # [B, C]
        if self.gather_across_devices:
            embeddings, labels, log_w = gather_rows(embeddings, labels, log_w, with_grad=(True, False, True))
        z = F.normalize(embeddings, dim=-1)
        scores = z @ z.T / self.temperature  # [B, B]
        self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
        log_w_pairs = log_w[:, labels]  # [B, B]: log w_i[y_a]
        log_denominator = torch.logsumexp((scores + log_w_pairs).masked_fill(self_mask, float("-inf")), dim=1)  # [B]
        positives = (labels[:, None] == labels[None, :]) & ~self_mask  # [B, B]
        counts = positives.sum(dim=1)  # [B]
        anchors = counts > 0
        skipped = (~anchors).sum().detach()
        if not anchors.any():
            return {"lcl": embeddings.sum() * 0.0 + log_w.sum() * 0.0, "stat_lcl_skipped_anchors": skipped}
        pos_scores = scores.masked_fill(~positives, 0.0).sum(dim=1)  # [B]
        mean_log_prob = (pos_scores - counts * log_denominator) / counts.clamp_min(1)  # [B]
        own_weight = log_w.gather(1, labels[:, None]).squeeze(1).exp()  # [B]: w_i[y_i]
        terms = -(own_weight * mean_log_prob)[anchors]  # [|A|]
        return {"lcl": terms.mean(), "stat_lcl_skipped_anchors": skipped}

    @staticmethod
    def _check_log_weights(embeddings: Tensor, labels: Tensor, logits: Tensor | None,
                           weights: Tensor | None) -> Tensor:
        """``log w`` ``[B, C]`` from exactly one of ``logits`` / ``weights``; one-line errors otherwise."""
        if (logits is None) == (weights is None):
            raise ValueError("Expected exactly one of 'logits' and 'weights'")
        given = logits if logits is not None else weights
        name = "logits" if logits is not None else "weights"
        if given.dim() != 2 or len(given) != len(embeddings):
            raise ValueError(f"Expected '{name}' of shape [{len(embeddings)}, C] (got {list(given.shape)})")
        if len(labels) and int(labels.max()) >= given.shape[1]:
            raise ValueError(f"Expected labels below {given.shape[1]}, the number of classes of '{name}' "
                             f"(got {int(labels.max())})")
        if logits is not None:
            return F.log_softmax(logits, dim=1)
        if not (weights >= 0).all():
            raise ValueError("Expected 'weights' to be non-negative")
        return weights.clamp_min(torch.finfo(weights.dtype).tiny).log()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(temperature={self.temperature})"
