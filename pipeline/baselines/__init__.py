"""Graph baselines trained on the same splits as the G-Loss encoders."""

from .textgcn import TextGCNResult, build_textgcn_graph, peak_rss_mb, stratified_val_split, train_textgcn

__all__ = [
    "TextGCNResult",
    "build_textgcn_graph",
    "peak_rss_mb",
    "stratified_val_split",
    "train_textgcn",
]
