import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from graphs.losses import BatchAllTripletLoss, PairwiseCosineLoss, SupervisedContrastiveLoss, loss_parts

LABELS = torch.tensor([0, 0, 1, 1, 2])


def _embeddings(seed=0, dtype=torch.float64):
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(seed), dtype=dtype, requires_grad=True)


def _supcon_loop(x, y, t):
    z = F.normalize(x, dim=-1).detach()  # the reference is plain arithmetic on values
    total, anchors = 0.0, 0
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(len(z)) if a != i)
        total += -sum(float(z[i] @ z[p]) / t - math.log(denominator) for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def _triplet_loop(x, y, m):
    z = F.normalize(x, dim=-1).detach()  # the reference is plain arithmetic on values
    hinges = []
    for a, p, n in itertools.permutations(range(len(z)), 3):
        if y[a] == y[p] and y[a] != y[n]:
            h = float((z[a] - z[p]).norm() - (z[a] - z[n]).norm()) + m
            if h > 1e-16:
                hinges.append(h)
    return sum(hinges) / len(hinges)


def test_supcon_matches_loop_reference():
    x = _embeddings()
    assert SupervisedContrastiveLoss(0.5)(x, LABELS)["scl"].item() == pytest.approx(_supcon_loop(x, LABELS, 0.5), rel=1e-9)


def test_triplet_matches_loop_reference():
    x = _embeddings(1)
    assert BatchAllTripletLoss(0.5)(x, LABELS)["triplet"].item() == pytest.approx(_triplet_loop(x, LABELS, 0.5), rel=1e-9)


def test_cosine_loss_is_zero_for_perfect_geometry():
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]], requires_grad=True)
    loss = PairwiseCosineLoss()(x, torch.tensor([0, 0, 1, 1]))["cosine"]
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("loss, part", [(SupervisedContrastiveLoss(), "scl"), (BatchAllTripletLoss(), "triplet"),
                                        (PairwiseCosineLoss(), "cosine")])
def test_losses_are_finite_and_have_gradients(loss, part):
    x = _embeddings(2, torch.float32)
    value = loss(x, LABELS)[part]
    value.backward()
    assert torch.isfinite(value) and x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("loss, part", [(SupervisedContrastiveLoss(), "scl"), (BatchAllTripletLoss(), "triplet")])
def test_batch_without_pairs_gives_attached_zero(loss, part):
    x = _embeddings(3, torch.float32)
    value = loss(x, torch.arange(5))[part]
    assert value.item() == 0.0 and value.requires_grad


def test_repr_and_bad_temperature():
    assert repr(SupervisedContrastiveLoss(0.2)) == "SupervisedContrastiveLoss(temperature=0.2)"
    with pytest.raises(ValueError, match="Expected 'temperature' to be positive"):
        SupervisedContrastiveLoss(0.0)


@pytest.mark.parametrize("loss, part", [(SupervisedContrastiveLoss(), "scl"), (BatchAllTripletLoss(), "triplet"),
                                        (PairwiseCosineLoss(), "cosine")])
def test_every_loss_returns_a_dict_with_its_main_part(loss, part):
    out = loss(_embeddings(4, torch.float32), LABELS)
    assert list(loss_parts(out)) == [part]


def _weighted_supcon_loop(x, y, t, w):
    z = F.normalize(x, dim=-1).detach()  # the reference is plain arithmetic on values
    total, norm = 0.0, 0.0
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(len(z)) if a != i)
        term = -sum(float(z[i] @ z[p]) / t - math.log(denominator) for p in positives) / len(positives)
        total += w[int(y[i])] * term
        norm += w[int(y[i])]
    return total / norm


def test_supcon_class_weights_weigh_anchors_by_class():
    x = _embeddings(2)
    weights = [1.0, 3.0, 0.5]
    got = SupervisedContrastiveLoss(0.5, class_weights=weights)(x, LABELS)["scl"].item()
    assert got == pytest.approx(_weighted_supcon_loop(x, LABELS, 0.5, weights), rel=1e-9)
    equal = SupervisedContrastiveLoss(0.5, class_weights=[2.0, 2.0, 2.0])(x, LABELS)["scl"].item()
    assert equal == pytest.approx(_supcon_loop(x, LABELS, 0.5), rel=1e-9)
    assert "class_weights=[1.0, 3.0, 0.5]" in repr(SupervisedContrastiveLoss(0.5, class_weights=weights))
    with pytest.raises(ValueError, match="non-negative"):
        SupervisedContrastiveLoss(class_weights=[1.0, -1.0])
