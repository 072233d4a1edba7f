"""Linear probe: a logistic regression fitted on frozen train embeddings, scored on test embeddings.

This is the headline number of a model without a classification head (standalone G-Loss): it measures how
linearly separable the learned embedding space is. Features are standardised with the train statistics, so
the L2 penalty (C = 1) acts alike whatever the scale of the embeddings (unit-norm or not).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pipeline.evaluation.metrics import accuracy_and_macro_f1


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit ``StandardScaler + LogisticRegression`` on train, predict test.

    Args:
        train_x: train embeddings. Shapes: [N_train, D].
        train_y: train label ids. Shapes: [N_train].
        test_x: test embeddings. Shapes: [N_test, D].
        test_y: test label ids. Shapes: [N_test].
        c: inverse L2 regularisation strength.
        max_iter: L-BFGS iterations.
        seed: the estimator's random_state.

    Returns:
        ``accuracy``, ``macro_f1``, ``predictions`` (int64 [N_test], removed by callers before JSON),
        ``converged`` (False when L-BFGS hit ``max_iter``), ``c``, ``max_iter``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y))
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    predictions = model.predict(np.asarray(test_x, dtype=np.float64)).astype(np.int64)  # [N_test]
    return {
        **accuracy_and_macro_f1(test_y, predictions),
        "predictions": predictions,
        "converged": converged,
        "c": c,
        "max_iter": max_iter,
    }
