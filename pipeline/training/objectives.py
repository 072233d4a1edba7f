"""Training objectives by name: which loss parts a batch contributes and whether a linear head is trained.

| name       | parts                                   | head | early stopping on       |
|------------|-----------------------------------------|------|-------------------------|
| `ce`       | cross-entropy of the head               | yes  | val macro-F1            |
| `gloss`    | G-Loss alone (standalone)               | no   | val macro-silhouette    |
| `gloss+ce` | lambda * G-Loss + (1 - lambda) * CE     | yes  | val macro-F1            |
| `scl+ce`   | lambda * SupCon + (1 - lambda) * CE     | yes  | val macro-F1            |
| `triplet`  | batch-all triplet (standalone)          | no   | val macro-silhouette    |
| `cosine`   | pairwise cosine vs same-label target    | no   | val macro-silhouette    |
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.training import LOSSES


@dataclass
class ObjectiveConfig:
    """Hyperparameters of every objective (each uses the ones it needs)."""

    loss: str = "gloss+ce"
    lam: float = 0.8
    gamma: float = 0.6
    sigma: float | str = "sqrt"
    graph: str = "dense"
    k: int = 10
    loss_form: str = "nll"
    temperature: float = 0.1
    margin: float = 0.5
    class_weights: list[float] | None = field(default=None)


class Objective(nn.Module):
    """Maps (embeddings, head logits, labels) of a batch to named loss parts and their weighted total."""

    def __init__(self, config: ObjectiveConfig, num_classes: int, sigma_value: float | None = None,
                 seed: int = 0, bank=None) -> None:
        super().__init__()
        if config.loss not in LOSSES:
            raise ValueError(f"Expected 'loss' to be one of {', '.join(LOSSES)} (got '{config.loss}')")
        self.config = config
        self.num_classes = num_classes
        self.has_head = config.loss in ("ce", "gloss+ce", "scl+ce")
        self.weights = {}
        self.embedding_loss: nn.Module | None = None
        name = config.loss
        if name in ("gloss", "gloss+ce"):
            from graphs.losses import GLoss

            self.embedding_loss = GLoss(
                graph=config.graph, sigma=sigma_value if sigma_value is not None else config.sigma,
                gamma=config.gamma, k=config.k, loss_form=config.loss_form, num_classes=num_classes, seed=seed,
                memory_bank=bank,
            )
        elif name == "scl+ce":
            from graphs.losses import SupervisedContrastiveLoss

            self.embedding_loss = SupervisedContrastiveLoss(config.temperature)
        elif name == "triplet":
            from graphs.losses import BatchAllTripletLoss

            self.embedding_loss = BatchAllTripletLoss(config.margin)
        elif name == "cosine":
            from graphs.losses import PairwiseCosineLoss

            self.embedding_loss = PairwiseCosineLoss()
        part = {"gloss": "g_loss", "gloss+ce": "g_loss", "scl+ce": "scl", "triplet": "triplet", "cosine": "cosine"}
        if name == "ce":
            self.weights = {"ce": 1.0}
        elif self.has_head:
            self.weights = {part[name]: config.lam, "ce": 1.0 - config.lam}
        else:
            self.weights = {part[name]: 1.0}
        self._embedding_part = part.get(name)
        weights = torch.tensor(config.class_weights, dtype=torch.float32) if config.class_weights else None
        self.register_buffer("class_weights", weights)

    def forward(self, embeddings: Tensor, logits: Tensor | None, labels: Tensor,
                indices: Tensor | None = None) -> dict[str, Tensor]:
        """Loss parts of one batch plus their weighted sum under ``"total"``.

        Shapes:
            embeddings [B, D], logits [B, C] or None, labels [B], indices [B] (dataset rows, bank mode)
        """
        parts: dict[str, Tensor] = {}
        if "ce" in self.weights:
            parts["ce"] = F.cross_entropy(logits, labels, weight=self.class_weights)
        if self.embedding_loss is not None:
            if self._embedding_part == "g_loss":
                out = self.embedding_loss(embeddings, labels, indices=indices)
                parts["g_loss"] = out["g_loss"] if isinstance(out, dict) else out
            else:
                parts[self._embedding_part] = self.embedding_loss(embeddings, labels)
        parts["total"] = sum(self.weights[name] * value for name, value in parts.items())
        return parts
