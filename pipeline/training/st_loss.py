"""The sentence-transformers adapter of G-Loss: :class:`GLossST` encodes, :class:`graphs.losses.GLoss` scores."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sentence_transformers import SentenceTransformer
from torch import Tensor, nn

from graphs.losses import GLoss

__all__ = ["GLossST"]


class GLossST(nn.Module):
    r"""G-Loss (Sharma et al., "G-Loss: Graph-Guided Fine-Tuning of Language Models", LoG 2025) as a
    sentence-transformers loss, usable with :class:`~sentence_transformers.SentenceTransformerTrainer`.
    It encodes the single text column and hands the embeddings to :class:`graphs.losses.GLoss`:

    .. math::
        \mathcal{L} = \mathrm{GLoss}(f_\theta(\text{texts}), \mathbf{y})

    Inputs are single texts with an integer class label. For ``graph="bank"`` the label column must
    hold pairs ``[label, row_id]`` (dataset row ids locate the batch in the memory bank); the bank is
    only updated while the model is in training mode.

    Args:
        model (SentenceTransformer): The encoder being fine-tuned.
        **gloss_kwargs: Arguments of :class:`graphs.losses.GLoss` (``graph``, ``sigma``, ``gamma``, ...).

    Shapes:
        - **input:** one feature dict of a batch of :math:`B` texts, labels :math:`(B)` or :math:`(B, 2)`
        - **output:** scalar, the ``"g_loss"`` part alone (the sentence-transformers trainer sums every value
          of a returned dict, and G-Loss's ``stat_*`` statistics must never be summed)
    """

    def __init__(self, model: SentenceTransformer, **gloss_kwargs: Any):
        super().__init__()
        self.model = model
        self.gloss = GLoss(**gloss_kwargs)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = list(sentence_features)
        if len(features) != 1:
            raise ValueError(
                f"Expected a single text column for {self.__class__.__name__} (got {len(features)})"
            )
        embeddings = self.model(features[0])["sentence_embedding"]  # [B, D]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        indices = None
        if labels.dim() == 2:
            if labels.size(1) != 2:
                raise ValueError(f"Expected 'labels' of shape [B] or [B, 2] (got {list(labels.shape)})")
            labels, indices = labels[:, 0], labels[:, 1]
        self.gloss.train(self.model.training)  # the trainer toggles the model, not the loss
        return self.gloss(embeddings, labels.long(), indices=indices)["g_loss"]

    def get_config_dict(self) -> dict[str, Any]:
        return self.gloss.get_config_dict()

    @property
    def citation(self) -> str:
        return self.gloss.citation
