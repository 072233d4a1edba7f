"""Classification metrics of predicted label ids, and the macro-silhouette of embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import GlossError


def check_label_ids(label_ids: np.ndarray, num_classes: int, source: str) -> None:
    """Fail with a one-line error naming ``source`` when a label id is not in ``[0, num_classes)``.

    Args:
        label_ids: integer label ids. Shapes: [N].
        num_classes: the number of classes C.
        source: what the ids came from (a file name), for the error message.
    """
    label_ids = np.asarray(label_ids)
    if label_ids.size == 0:
        return
    bad = (label_ids < 0) | (label_ids >= num_classes)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise GlossError(
            f"{source}: row {row}: label id {int(label_ids[row])} is out of range for {num_classes} classes "
            f"({int(bad.sum())} rows out of range)"
        )


def absent_classes(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> int:
    """How many of the ``num_classes`` training classes occur neither in gold nor in predictions.

    Each counts as an F1 of 0 in :func:`accuracy_and_macro_f1`'s macro mean, so a split or slice that
    misses classes scores lower than one that has them all; this count says how many there were.

    Shapes: y_true [N], y_pred [N] (label ids in ``[0, num_classes)``).
    """
    seen = np.union1d(np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64))
    return int(num_classes - np.isin(np.arange(num_classes), seen).sum())


def accuracy_and_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int) -> dict[str, float | int]:
    """Accuracy and macro-F1 over the training label set.

    The macro mean runs over all ``num_classes`` classes (``labels=range(C)``, ``zero_division=0``): a class
    absent from both gold and predictions counts as 0, so the value does not depend on which classes a split
    happens to hold, and runs on different splits or slices stay comparable. ``absent_classes`` says how many
    such classes there were (:func:`absent_classes`).

    Shapes: y_true [N], y_pred [N] (label ids).

    Returns:
        ``accuracy``, ``macro_f1``, ``absent_classes``.
    """
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro",
                                   zero_division=0)),
        "absent_classes": absent_classes(y_true, y_pred, num_classes),
    }


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str], source: str = "predictions"
) -> dict[str, Any]:
    """Accuracy, macro-/weighted-F1, per-class precision/recall/F1/support and the confusion matrix.

    Args:
        y_true: gold label ids. Shapes: [N].
        y_pred: predicted label ids. Shapes: [N].
        label_names: class names in id order (C of them).
        source: names the predictions in the error raised for an out-of-range id.

    Returns:
        ``accuracy``, ``macro_f1`` (over all C classes, :func:`accuracy_and_macro_f1`), ``absent_classes``,
        ``weighted_f1``, ``per_class`` (label name -> precision, recall, f1-score, support) and
        ``confusion_matrix`` (C x C counts; rows are gold labels, columns predictions).
    """
    from sklearn.metrics import classification_report, confusion_matrix, f1_score

    num_classes = len(label_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    check_label_ids(y_true, num_classes, "gold labels")
    check_label_ids(y_pred, num_classes, source)
    if y_true.shape != y_pred.shape:
        raise GlossError(f"{source}: {len(y_pred)} predictions for {len(y_true)} documents")
    report = classification_report(
        y_true, y_pred, labels=list(range(num_classes)), target_names=label_names, output_dict=True, zero_division=0
    )
    per_class = {
        name: {key: float(report[name][key]) for key in ("precision", "recall", "f1-score")}
        | {"support": int(report[name]["support"])}
        for name in label_names
    }
    counts = confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))  # [C, C]
    return {
        **accuracy_and_macro_f1(y_true, y_pred, num_classes=num_classes),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="weighted",
                                      zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": counts.astype(int).tolist(),
    }


def silhouette(
    embeddings: np.ndarray, labels: np.ndarray, max_samples: int = 10000, seed: int = 0
) -> dict[str, Any] | None:
    """Cosine silhouette of embeddings grouped by label: the plain mean and the macro mean over classes.

    The macro-silhouette is the per-class mean of scikit-learn's ``silhouette_samples`` (cosine metric),
    averaged over classes, so a large class does not dominate. Above ``max_samples`` points a seeded uniform
    sample of that size is scored (the pairwise distances are quadratic in N).

    Args:
        embeddings: Shapes: [N, D].
        labels: label ids. Shapes: [N].
        max_samples: the most points scored.
        seed: seed of the sample.

    Returns:
        ``macro_silhouette``, ``silhouette``, ``samples``, ``metric``; ``None`` when the silhouette is
        undefined (fewer than 2 classes, or every point its own class).
    """
    from sklearn.metrics import silhouette_samples

    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(len(labels), size=max_samples, replace=False))
        embeddings, labels = embeddings[rows], labels[rows]
    classes = np.unique(labels)
    if not 2 <= len(classes) <= len(labels) - 1:
        return None
    scores = silhouette_samples(embeddings, labels, metric="cosine")  # [n]
    per_class = [float(scores[labels == c].mean()) for c in classes]
    return {
        "macro_silhouette": float(np.mean(per_class)),
        "silhouette": float(scores.mean()),
        "samples": int(len(labels)),
        "metric": "cosine",
    }
