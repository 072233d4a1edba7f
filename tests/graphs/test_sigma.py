import math

import pytest
import torch

from graphs.sigma import (
    MIN_USEFUL_SIGMA,
    DicmResult,
    resolve_sigma,
    sigma_dicm,
    sigma_sqrt_median,
    sigma_with_fallback,
)


def test_sigma_sqrt_median_literal():
    x = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 2, 3 -> median 2
    assert sigma_sqrt_median(x) == pytest.approx(math.sqrt(2 / 3))
    assert sigma_sqrt_median(torch.tensor([[0.0, 0.0], [0.0, 3.0]])) == pytest.approx(1.0)


def test_sigma_dicm_literal():
    x = torch.tensor([[0.0], [1.0], [4.0], [9.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert sigma_dicm(x, labels) == pytest.approx(1.0)  # closest pair of different classes: 1 and 4


def test_sampling_is_seeded_and_bounded():
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(300) % 3
    assert sigma_sqrt_median(x, sample=50, seed=1) == sigma_sqrt_median(x, sample=50, seed=1)
    assert sigma_sqrt_median(x, sample=50, seed=1) != sigma_sqrt_median(x, sample=50, seed=2)
    assert sigma_sqrt_median(x, sample=None) == sigma_sqrt_median(x, sample=300)
    # a subsample can only miss close pairs, so its dicm is never smaller than the full one
    assert sigma_dicm(x, labels, sample=40, seed=3) >= sigma_dicm(x, labels, sample=None)


def test_heuristics_of_a_tensor_with_gradients_are_plain_floats_of_a_loop():
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(4), requires_grad=True)
    labels = torch.arange(9) % 2
    pairs = [(i, j) for i in range(9) for j in range(i + 1, 9)]
    distances = {(i, j): float((x[i] - x[j]).detach().double().norm()) for i, j in pairs}
    lower_median = sorted(distances.values())[(len(pairs) - 1) // 2]  # 36 distances: the 18th, not a mean of two
    closest_across = min(d for (i, j), d in distances.items() if labels[i] != labels[j])
    sqrt_sigma, dicm_sigma = sigma_sqrt_median(x), sigma_dicm(x, labels)
    assert type(sqrt_sigma) is float and type(dicm_sigma) is float and x.grad is None
    assert sqrt_sigma == pytest.approx(math.sqrt(lower_median / 3), rel=1e-6)
    assert dicm_sigma == pytest.approx(closest_across / 3, rel=1e-6)


def test_resolve_sigma():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    labels = torch.tensor([0, 1, 1])
    assert resolve_sigma(0.25) == 0.25
    assert resolve_sigma("sqrt", x) == pytest.approx(math.sqrt(2 / 3))
    assert resolve_sigma("dicm", x, labels) == pytest.approx(1 / 3)


def test_sigma_errors():
    x = torch.zeros(4, 2)
    match = r"Expected 'sigma' to be a positive float or one of \('sqrt', 'dicm'\)"
    with pytest.raises(ValueError, match=match):
        resolve_sigma("median", x)
    with pytest.raises(ValueError, match=r"Expected 'sigma' to be positive and finite \(got -1.0\)"):
        resolve_sigma(-1.0)
    with pytest.raises(ValueError, match="Expected 'labels' to be given for sigma='dicm'"):
        resolve_sigma("dicm", x)
    with pytest.raises(ValueError, match="at least two classes"):
        sigma_dicm(x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Expected 'x' to be two-dimensional \(got 1 dimensions\)"):
        sigma_sqrt_median(torch.zeros(4))
    assert sigma_sqrt_median(x) == pytest.approx(1e-6)  # identical points: floored, never zero


def test_batch_names_are_the_same_heuristics():
    from graphs.sigma import BATCH_SIGMA_HEURISTICS, SIGMA_HEURISTICS

    assert SIGMA_HEURISTICS == ("sqrt", "dicm") and BATCH_SIGMA_HEURISTICS == ("batch-sqrt", "batch-dicm")
    x = torch.tensor([[0.0], [1.0], [3.0]])
    labels = torch.tensor([0, 1, 1])
    assert resolve_sigma("batch-sqrt", x) == resolve_sigma("sqrt", x)
    assert resolve_sigma("batch-dicm", x, labels) == resolve_sigma("dicm", x, labels)
    with pytest.raises(ValueError, match="Expected 'labels' to be given for sigma='batch-dicm'"):
        resolve_sigma("batch-dicm", x)


def test_dicm_skips_duplicate_rows_with_different_labels_exactly():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)  # float32, as embeddings are
    labels = torch.arange(64) % 4
    x[1] = x[0]  # a duplicate text with another label: distance exactly 0
    x[6] = x[2]  # a duplicate with the same label: not a cross-label pair
    result = sigma_dicm(x, labels, return_stats=True)
    assert isinstance(result, DicmResult) and result.zero_distance_pairs == 1
    cross = labels.view(-1, 1) != labels.view(1, -1)
    exact = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")
    expected = exact[cross & (exact > 0)].min().item() / 3
    assert result.sigma == pytest.approx(expected, rel=1e-12) and result.sigma > MIN_USEFUL_SIGMA
    assert sigma_dicm(x, labels) == result.sigma


def test_dicm_with_only_coinciding_cross_label_pairs_uses_the_median():
    x = torch.tensor([[0.0], [0.0], [3.0], [3.0]])
    labels = torch.tensor([0, 1, 0, 1])  # two cross-label pairs coincide (skipped); the others are at 3
    assert sigma_dicm(x, labels, return_stats=True) == (1.0, 2)
    x = torch.tensor([[0.0], [0.0], [0.0]])
    result = sigma_dicm(x, torch.tensor([0, 1, 1]), return_stats=True)
    assert result.zero_distance_pairs == 2 and result.sigma == pytest.approx(1e-6)  # median 0, floored


def test_sigma_with_fallback(caplog):
    x = torch.tensor([[0.0], [0.001], [1.0], [3.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert MIN_USEFUL_SIGMA == 0.01
    value, note = sigma_with_fallback("dicm", x, labels)
    assert value == pytest.approx(sigma_sqrt_median(x)) and value == resolve_sigma("sqrt", x)
    assert "below 0.01" in note and "fallback 'sqrt'" in note
    assert any("below 0.01" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert sigma_with_fallback("dicm", x, labels, fallback=0.2)[0] == 0.2  # the released code's --optuna_sigma
    assert sigma_with_fallback(0.001, x, labels) == (0.001, None)  # a number is a choice, never replaced
    assert sigma_with_fallback("sqrt", x) == (resolve_sigma("sqrt", x), None)
    value, note = sigma_with_fallback("dicm", torch.tensor([[0.0], [0.0], [0.5]]), torch.tensor([0, 1, 1]))
    assert value == pytest.approx(0.5 / 3) and "skipped 1 zero-distance pairs" in note
