"""Pipeline stages, in order: prepare, embed, graph, train, evaluate (plus tune, compare, inspect, run)."""

STAGE_ORDER = ("prepare", "embed", "graph", "train", "tune", "evaluate", "compare", "inspect", "run")

__all__ = ["STAGE_ORDER"]
