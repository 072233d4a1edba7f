"""Graph baselines trained on the same splits as the G-Loss encoders."""

from .textgcn import (
    TextGCNConfig,
    TextGCNResult,
    build_textgcn_graph,
    peak_rss_mb,
    stratified_val_split,
    train_textgcn,
)

__all__ = [
    "TextGCNConfig",
    "TextGCNResult",
    "build_textgcn_graph",
    "peak_rss_mb",
    "stratified_val_split",
    "train_textgcn",
]
