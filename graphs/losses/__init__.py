"""Model-free losses on batch embeddings: ``loss(embeddings [B, D], labels [B]) -> dict of named parts``.

:class:`GLoss` is the graph-guided loss; the others are the comparison losses of the training stage.
Every loss returns a dict: its main part under a fixed name (``"g_loss"``, ``"scl"``, ``"triplet"``,
``"cosine"``, ``"lcl"``), plus optional statistics whose names start with ``"stat_"`` and are never summed
(see :mod:`graphs.losses.parts`).
"""

from graphs.losses.cosine_pairs import PairwiseCosineLoss
from graphs.losses.g_loss import VARIANTS, GLoss
from graphs.losses.label_aware_contrastive import LabelAwareContrastiveLoss
from graphs.losses.parts import STATISTIC_PREFIX, is_statistic, loss_parts, statistics
from graphs.losses.supervised_contrastive import SupervisedContrastiveLoss
from graphs.losses.triplet import BatchAllTripletLoss

__all__ = [
    "STATISTIC_PREFIX",
    "VARIANTS",
    "BatchAllTripletLoss",
    "GLoss",
    "LabelAwareContrastiveLoss",
    "PairwiseCosineLoss",
    "SupervisedContrastiveLoss",
    "is_statistic",
    "loss_parts",
    "statistics",
]
