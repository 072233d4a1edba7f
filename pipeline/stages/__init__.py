"""Pipeline stages, in order: prepare, embed, graph, train, evaluate (plus compare, inspect, run)."""

STAGE_ORDER = ("prepare", "embed", "graph", "train", "evaluate", "compare", "inspect", "run")

__all__ = ["STAGE_ORDER"]
