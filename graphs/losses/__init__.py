"""Model-free losses on batch embeddings: ``loss(embeddings [B, D], labels [B])``.

:class:`GLoss` is the graph-guided loss; the others are the comparison losses of the training stage.
"""

from graphs.losses.cosine_pairs import PairwiseCosineLoss
from graphs.losses.g_loss import GLoss
from graphs.losses.supervised_contrastive import SupervisedContrastiveLoss
from graphs.losses.triplet import BatchAllTripletLoss

__all__ = ["BatchAllTripletLoss", "GLoss", "PairwiseCosineLoss", "SupervisedContrastiveLoss"]
