import numpy as np

from pipeline.evaluation.probe import linear_probe


def test_linear_probe_is_perfect_on_separable_data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    centres = rng.normal(size=(4, 16)) * 10
    x = (centres[y] + rng.normal(size=(120, 16))).astype(np.float32)
    train, test = np.arange(120) % 3 != 0, np.arange(120) % 3 == 0
    result = linear_probe(x[train], y[train], x[test], y[test])
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert result["converged"] and result["predictions"].shape == (40,)


def test_linear_probe_on_noisy_unit_norm_embeddings_is_deterministic():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(2), 100)
    x = rng.normal(size=(200, 32)) * 0.01
    x[:, 0] += np.where(y == 0, 0.03, -0.03)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    first = linear_probe(x[::2], y[::2], x[1::2], y[1::2])
    again = linear_probe(x[::2], y[::2], x[1::2], y[1::2])
    assert first["accuracy"] >= 0.9
    assert (first["predictions"] == again["predictions"]).all()
