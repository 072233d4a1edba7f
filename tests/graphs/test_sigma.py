import math

import pytest
import torch

from graphs.sigma import resolve_sigma, sigma_dicm, sigma_sqrt_median


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


def test_heuristics_ignore_gradients():
    x = torch.randn(10, 3, requires_grad=True)
    assert isinstance(sigma_sqrt_median(x), float)
    assert isinstance(sigma_dicm(x, torch.arange(10) % 2), float)


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
