"""Graph-guided losses on embeddings."""

from graphs.losses.g_loss import GLoss

__all__ = ["GLoss"]
