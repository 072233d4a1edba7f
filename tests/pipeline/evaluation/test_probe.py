import numpy as np

from pipeline.evaluation.probe import linear_probe


def test_linear_probe_is_perfect_on_separable_data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    centres = rng.normal(size=(4, 16)) * 10
    x = (centres[y] + rng.normal(size=(120, 16))).astype(np.float32)
    train, test = np.arange(120) % 3 != 0, np.arange(120) % 3 == 0
    result = linear_probe(x[train], y[train], x[test], y[test], num_classes=4)
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert result["converged"] and result["predictions"].shape == (40,)


def test_linear_probe_on_noisy_unit_norm_embeddings_is_deterministic():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(2), 100)
    x = rng.normal(size=(200, 32)) * 0.01
    x[:, 0] += np.where(y == 0, 0.03, -0.03)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    first = linear_probe(x[::2], y[::2], x[1::2], y[1::2], num_classes=2)
    again = linear_probe(x[::2], y[::2], x[1::2], y[1::2], num_classes=2)
    assert first["accuracy"] >= 0.9
    assert (first["predictions"] == again["predictions"]).all()


def _blobs(seed=0, n=30, scale=10.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n)
    centres = rng.normal(size=(3, 8)) * scale
    return (centres[y] + rng.normal(size=(len(y), 8))).astype(np.float32), y


def test_reference_probe_learns_keeps_the_best_epoch_and_stops_after_patience():
    from pipeline.evaluation.probe import reference_probe

    x, y = _blobs()
    train, val, test = np.arange(90) % 3 == 0, np.arange(90) % 3 == 1, np.arange(90) % 3 == 2
    result = reference_probe(x[train], y[train], x[val], y[val], x[test], num_classes=3, lr=0.1, seed=0)
    assert (result["predictions"] == y[test]).mean() >= 0.9
    assert result["best_val_macro_f1"] == 1.0
    # val macro-F1 cannot beat 1.0: stopped exactly `patience` epochs after the first perfect one
    assert result["epochs_run"] == result["best_epoch"] + 10 < 50
    again = reference_probe(x[train], y[train], x[val], y[val], x[test], num_classes=3, lr=0.1, seed=0)
    assert (again["predictions"] == result["predictions"]).all()


def test_reference_probe_defaults_are_the_released_codes():
    import inspect

    from pipeline.evaluation.probe import reference_probe

    defaults = {k: p.default for k, p in inspect.signature(reference_probe).parameters.items()}
    assert (defaults["lr"], defaults["max_epochs"], defaults["patience"]) == (1e-4, 50, 10)


def test_reference_probe_scores_the_best_epoch_not_the_last(monkeypatch):
    """Val macro-F1 peaks early and then falls: the test predictions must come from the peak's weights."""
    import pipeline.evaluation.probe as probe

    x, y = _blobs(1)
    scores = iter([0.9] + [0.1] * 60)
    monkeypatch.setattr(probe, "accuracy_and_macro_f1", lambda *_, **__: {"macro_f1": next(scores)})
    result = probe.reference_probe(x, y, x, y, x, num_classes=3, lr=0.5, seed=0)
    assert result["best_epoch"] == 1 and result["epochs_run"] == 11
    import torch

    torch.manual_seed(0)  # the same first epoch by hand: one Adam step from the same initial layer
    layer = torch.nn.Linear(8, 3)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.5)
    from pipeline.training.objectives import balanced_class_weights

    weights = balanced_class_weights(y, 3)
    torch.nn.functional.cross_entropy(layer(torch.tensor(x)), torch.tensor(y), weight=weights).backward()
    optimizer.step()
    with torch.no_grad():
        expected = layer(torch.tensor(x)).argmax(dim=1).numpy()
    assert (result["predictions"] == expected).all()
