"""Fine-tuning: batch sampling, loss objectives, the epoch loop with checkpoints and early stopping.

The option vocabularies live here (no heavy imports) so the CLI can list them without importing torch.
"""

LOSSES = ("ce", "gloss", "gloss+ce", "scl+ce", "triplet", "cosine")
GRAPH_MODES = ("dense", "knn", "bank")

__all__ = ["GRAPH_MODES", "LOSSES"]
