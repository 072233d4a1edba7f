"""Model-free losses on batch embeddings: ``loss(embeddings [B, D], labels [B])``."""

from graphs.losses.cosine_pairs import PairwiseCosineLoss
from graphs.losses.supervised_contrastive import SupervisedContrastiveLoss
from graphs.losses.triplet import BatchAllTripletLoss

__all__ = ["BatchAllTripletLoss", "PairwiseCosineLoss", "SupervisedContrastiveLoss"]
