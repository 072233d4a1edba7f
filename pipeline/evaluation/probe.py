"""Linear probes on frozen embeddings: the headline number of a model without a classification head
(standalone G-Loss); they measure how linearly separable the learned embedding space is.

- :func:`linear_probe`: scikit-learn's logistic regression fitted on the train embeddings, scored on test.
  Features are standardised with the train statistics, so the L2 penalty (C = 1) acts alike whatever the
  scale of the embeddings (unit-norm or not).
- :func:`reference_probe`: the released G-Loss code's standalone protocol (full-batch Adam lr 1e-4, at most
  50 epochs, patience 10 on val macro-F1, balanced class-weighted CE, un-normalised embeddings).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pipeline import options
from pipeline.evaluation.metrics import accuracy_and_macro_f1


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_classes: int,
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
        num_classes: C, the training label set that macro-F1 averages over.
        c: inverse L2 regularisation strength.
        max_iter: L-BFGS iterations.
        seed: the estimator's random_state.

    Returns:
        ``accuracy``, ``macro_f1``, ``absent_classes``, ``predictions`` (int64 [N_test], removed by callers before JSON),
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
        **accuracy_and_macro_f1(test_y, predictions, num_classes=num_classes),
        "predictions": predictions,
        "converged": converged,
        "c": c,
        "max_iter": max_iter,
    }


def reference_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    *,
    num_classes: int,
    lr: float = options.REFERENCE_PROBE_LR,
    max_epochs: int = options.REFERENCE_PROBE_EPOCHS,
    patience: int = options.REFERENCE_PROBE_PATIENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """The released G-Loss code's standalone probe (``train_linear_classifier``): a linear layer on the
    frozen, un-normalised embeddings, trained full-batch with Adam and balanced class-weighted CE, at most
    ``max_epochs`` steps, stopping after ``patience`` epochs without a higher val macro-F1; the best epoch's
    layer predicts test.

    One departure: the released code keeps ``state_dict().copy()``, a shallow copy whose tensors keep
    training, so it effectively scores the *last* epoch's layer; here the best epoch's weights are cloned.

    Shapes:
        train_x [N_train, D], train_y [N_train], val_x [N_val, D], val_y [N_val], test_x [N_test, D]

    Returns:
        ``predictions`` (int64 [N_test]), ``best_epoch`` (1-based), ``epochs_run``, ``best_val_macro_f1``,
        ``lr``, ``max_epochs``, ``patience``.
    """
    import torch
    import torch.nn.functional as F

    from pipeline.training.objectives import balanced_class_weights

    torch.manual_seed(seed)
    x = torch.tensor(np.asarray(train_x, dtype=np.float32))  # [N_train, D]
    y = torch.tensor(np.asarray(train_y, dtype=np.int64))
    xv = torch.tensor(np.asarray(val_x, dtype=np.float32))  # [N_val, D]
    weights = balanced_class_weights(y.numpy(), num_classes)  # [C]
    layer = torch.nn.Linear(x.shape[1], num_classes)
    optimizer = torch.optim.Adam(layer.parameters(), lr=lr)
    best_f1, best_epoch, bad, best_state, epochs_run = -1.0, 0, 0, None, 0
    for epoch in range(1, max_epochs + 1):
        epochs_run = epoch
        optimizer.zero_grad()
        F.cross_entropy(layer(x), y, weight=weights).backward()
        optimizer.step()
        with torch.no_grad():
            val_f1 = accuracy_and_macro_f1(val_y, layer(xv).argmax(dim=1).numpy(), num_classes=num_classes)["macro_f1"]
        if val_f1 > best_f1:
            best_f1, best_epoch, bad = val_f1, epoch, 0
            best_state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    layer.load_state_dict(best_state)
    with torch.no_grad():
        predictions = layer(torch.tensor(np.asarray(test_x, dtype=np.float32))).argmax(dim=1).numpy()
    return {
        "predictions": predictions.astype(np.int64),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "best_val_macro_f1": best_f1,
        "lr": lr,
        "max_epochs": max_epochs,
        "patience": patience,
    }
