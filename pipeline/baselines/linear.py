"""Logistic regression baselines whose regularisation is chosen on the validation split.

``--method tfidf`` (reported as ``tfidf-lr``): TF-IDF features (scikit-learn's ``TfidfVectorizer`` with its
defaults, fitted on the training texts only) and logistic regression: the sanity anchor of `Galke & Scherp,
"Bag-of-Words vs. Graph vs. Sequence in Text Classification", ACL 2022 <https://aclanthology.org/2022.acl-long.279>`_.

``--method frozen`` (reported as ``frozen-lr``): the pre-trained encoder's pooled embeddings, not fine-tuned
and not rescaled, and logistic regression: the classification protocol of MTEB (Muennighoff et al., EACL
2023). The embeddings come from the shared ``embeddings`` cache (:func:`pipeline.encoder.cached_split_embeddings`),
so replicates, every validation split, ``gloss embed`` and ``--train-layers 0`` or ``N`` encode a corpus
once.

Both fit one ``LogisticRegression`` (L-BFGS) on the training split per value of ``C`` in the grid, score
each on the validation split by macro-F1 and keep the best, ties to the smaller ``C``. The test split is
only predicted, with the chosen model; its labels are never read here.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline import options
from pipeline.evaluation.metrics import accuracy_and_macro_f1

__all__ = ["ChosenC", "LinearConfig", "choose_c", "log_proba_by_label_id", "parse_c_grid", "tfidf_features"]


def parse_c_grid(text: str) -> tuple[float, ...]:
    """``"0.1,1,10"`` -> ``(0.1, 1.0, 10.0)`` (sorted); ``ValueError`` unless positive numbers."""
    try:
        grid = tuple(sorted({float(part) for part in str(text).split(",") if part.strip()}))
    except ValueError:
        grid = ()
    if not grid or min(grid) <= 0:
        raise ValueError(f"--c-grid {text}: expected a comma list of positive numbers, e.g. 0.1,1,10")
    return grid


@dataclass
class LinearConfig:
    """Options of ``--method tfidf|frozen``: the ``C`` values tried and L-BFGS's iteration cap."""

    c_grid: tuple[float, ...] = field(default_factory=lambda: parse_c_grid(options.LR_C_GRID))
    max_iter: int = options.LR_MAX_ITER


@dataclass
class ChosenC:
    """:func:`choose_c`'s result: the fitted model of the chosen ``c`` and every grid value's val scores."""

    model: Any
    c: float
    scores: list[dict[str, Any]]  # per C, ascending: c, val_accuracy, val_macro_f1, converged, seconds


def _fit(x, y: np.ndarray, c: float, max_iter: int, seed: int) -> tuple[Any, bool]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    return model, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def choose_c(train_x, train_y: np.ndarray, val_x, val_y: np.ndarray, config: LinearConfig, *, num_classes: int,
             seed: int = 0, echo=None) -> ChosenC:
    """Fit on train for every ``C`` of ``config.c_grid``; keep the best val macro-F1 over the ``num_classes``
    training classes (ties: the smaller ``C``).

    Shapes: train_x [N_train, F] (dense or sparse), train_y [N_train], val_x [N_val, F], val_y [N_val].
    """
    best, scores = None, []
    for c in sorted(config.c_grid):
        started = time.perf_counter()
        model, converged = _fit(train_x, train_y, c, config.max_iter, seed)
        val = accuracy_and_macro_f1(val_y, model.predict(val_x), num_classes=num_classes)
        scores.append({"c": c, "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
                       "converged": converged, "seconds": round(time.perf_counter() - started, 3)})
        if echo is not None:
            echo(f"train: C={c:g}: val macro-F1 {val['macro_f1']:.4f}, accuracy {val['accuracy']:.4f}"
                 f"{'' if converged else ' (not converged)'}")
        if best is None or val["macro_f1"] > best[2]:
            best = (model, c, val["macro_f1"])
    return ChosenC(best[0], best[1], scores)


def log_proba_by_label_id(model, x, num_classes: int) -> np.ndarray:
    """Log-probabilities ``[N, C]`` float32 with column ``j`` for label id ``j`` (``-inf`` for a class the
    model never saw)."""
    out = np.full((x.shape[0], num_classes), -np.inf, dtype=np.float32)
    out[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_log_proba(x)
    return out


def tfidf_features(texts: dict[str, list[str]]) -> dict[str, Any]:
    """TF-IDF matrices (sparse ``[N_split, V]``) of every split, the vocabulary and IDF from ``train`` only."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer()
    features = {"train": vectorizer.fit_transform(texts["train"])}
    for split, split_texts in texts.items():
        if split != "train":
            features[split] = vectorizer.transform(split_texts)
    return features
