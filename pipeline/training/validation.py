"""Per-epoch validation scores: accuracy and macro-F1 of the head, macro-silhouette of the embeddings."""

from __future__ import annotations

import numpy as np


def macro_silhouette(embeddings: np.ndarray, labels: np.ndarray, max_points: int = 5000, seed: int = 0) -> float | None:
    """Mean over classes of the mean cosine silhouette of each class's points (None below two classes).

    Shapes:
        embeddings [N, D], labels [N] -> float
    """
    from sklearn.metrics import silhouette_samples

    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return None
    if len(labels) > max_points:
        rows = np.random.default_rng(seed).choice(len(labels), size=max_points, replace=False)
        embeddings, labels = embeddings[rows], labels[rows]
    values = silhouette_samples(embeddings, labels, metric="cosine")
    return float(np.mean([values[labels == c].mean() for c in np.unique(labels)]))


def classification_scores(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }
