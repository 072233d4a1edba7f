"""Fine-tuning: batch sampling (:mod:`~pipeline.training.batching`), loss objectives
(:mod:`~pipeline.training.objectives`), the epoch loop with checkpoints and early stopping
(:mod:`~pipeline.training.loop`) and the sentence-transformers adapter of G-Loss
(:mod:`~pipeline.training.st_loss`).

The option vocabularies (losses, graph modes, ...) live in :mod:`pipeline.options`.
"""
