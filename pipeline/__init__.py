"""gloss pipeline: staged CLI (prepare, embed, graph, train, evaluate, compare, inspect, run)."""

__version__ = "0.1.0"
