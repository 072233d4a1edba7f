"""Published accuracies (``published.toml``), shown beside measurements and marked as published."""

from __future__ import annotations

import tomllib
from pathlib import Path

PUBLISHED = Path(__file__).with_name("published.toml")


def published_rows(datasets: list[str]) -> list[dict]:
    """``[{method, source, accuracy: {dataset: percent}}]`` restricted to ``datasets``, keyed by the
    benchmark's name as the datasets spell it (a slice label such as ``R8 (train<=1000)`` counts as ``R8``)."""
    data = tomllib.loads(PUBLISHED.read_text())
    from pipeline.compare.aggregate import benchmark_name

    lowered = {benchmark_name(d).lower(): benchmark_name(d) for d in datasets}
    rows = []
    for entry in data["entry"]:
        accuracy = {lowered[k.lower()]: v for k, v in entry["accuracy"].items() if k.lower() in lowered}
        if accuracy:
            rows.append({"method": entry["method"], "source": data["sources"][entry["source"]], "accuracy": accuracy})
    return rows
