import math

import pytest
import torch
import torch.nn.functional as F

from graphs.losses import LabelAwareContrastiveLoss, SupervisedContrastiveLoss, loss_parts, statistics

LABELS = torch.tensor([0, 0, 1, 1, 2, 1])


def _lcl_loop(x, y, w, t):
    """The official code's formula, one anchor at a time (anchors without a positive skipped)."""
    z, w = F.normalize(x.detach(), dim=-1), w.detach()
    terms = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(float(w[i, y[a]]) * math.exp(float(z[i] @ z[a]) / t) for a in range(len(z)) if a != i)
        inner = sum(float(z[i] @ z[p]) / t - math.log(denominator) for p in positives)
        terms.append(-float(w[i, y[i]]) / len(positives) * inner)
    return sum(terms) / len(terms)


def _inputs(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(LABELS), 4, generator=g, dtype=dtype, requires_grad=True)
    logits = torch.randn(len(LABELS), 3, generator=g, dtype=dtype, requires_grad=True)
    return x, logits


def test_repr_and_parts():
    loss = LabelAwareContrastiveLoss(0.5)
    assert repr(loss) == "LabelAwareContrastiveLoss(temperature=0.5)"
    out = loss(*_inputs()[:1], LABELS, logits=_inputs()[1])
    assert list(loss_parts(out)) == ["lcl"] and list(statistics(out)) == ["stat_lcl_skipped_anchors"]
    assert int(out["stat_lcl_skipped_anchors"]) == 1  # the single class-2 row


def test_four_rows_by_hand():
    # z0 = (1, 0), z1 = (0.6, 0.8), z2 = (0, 1), z3 = (-1, 0); tau = 1; labels 0, 0, 1, 1.
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[0.5, 0.5], [0.8, 0.2], [0.25, 0.75], [0.1, 0.9]], dtype=torch.float64)
    e = math.exp
    d0 = 0.5 * e(0.6) + 0.5 * e(0.0) + 0.5 * e(-1.0)  # anchor 0: w_0[y_a] exp(s_0a), a = 1, 2, 3
    d1 = 0.8 * e(0.6) + 0.2 * e(0.8) + 0.2 * e(-0.6)
    d2 = 0.25 * e(0.0) + 0.25 * e(0.8) + 0.75 * e(0.0)
    d3 = 0.1 * e(-1.0) + 0.1 * e(-0.6) + 0.9 * e(0.0)
    terms = [-0.5 * (0.6 - math.log(d0)), -0.8 * (0.6 - math.log(d1)),
             -0.75 * (0.0 - math.log(d2)), -0.9 * (0.0 - math.log(d3))]
    out = LabelAwareContrastiveLoss(1.0)(z, torch.tensor([0, 0, 1, 1]), weights=w)
    assert out["lcl"].item() == pytest.approx(sum(terms) / 4, rel=1e-12)
    assert out["lcl"].item() == pytest.approx(0.0843025264, rel=1e-9)
    assert int(out["stat_lcl_skipped_anchors"]) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_loop_reference(dtype):
    x, logits = _inputs(1, dtype)
    w = torch.softmax(logits, dim=1)
    got = LabelAwareContrastiveLoss(0.3)(x, LABELS, logits=logits)["lcl"].item()
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert got == pytest.approx(_lcl_loop(x, LABELS, w, 0.3), rel=tol)
    assert LabelAwareContrastiveLoss(0.3)(x, LABELS, weights=w)["lcl"].item() == pytest.approx(got, rel=tol)


@pytest.mark.parametrize("num_classes", [3, 5, 8])
def test_uniform_weights_are_supcon_over_c_plus_a_constant(num_classes):
    # w_i[c] = 1/C: log sum_a (1/C) exp(s_ia) = LSE_i - log C, so l_i = scl_i / C - log(C) / C.
    x, _ = _inputs(2)
    w = torch.full((len(LABELS), num_classes), 1.0 / num_classes, dtype=torch.float64)
    lcl = LabelAwareContrastiveLoss(0.3)(x, LABELS, weights=w)["lcl"].item()
    scl = SupervisedContrastiveLoss(0.3)(x, LABELS)["scl"].item()
    assert lcl == pytest.approx(scl / num_classes - math.log(num_classes) / num_classes, rel=1e-10)


def test_gradients_reach_embeddings_and_weighting_logits():
    x, logits = _inputs(3)
    assert torch.autograd.gradcheck(lambda a, b: LabelAwareContrastiveLoss(0.5)(a, LABELS, logits=b)["lcl"],
                                    (x, logits))
    LabelAwareContrastiveLoss(0.5)(x, LABELS, logits=logits)["lcl"].backward()
    assert x.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0


def test_no_positive_pair_gives_an_attached_zero():
    x, logits = _inputs(4)
    out = LabelAwareContrastiveLoss()(x[:3], torch.tensor([0, 1, 2]), logits=logits[:3])
    assert out["lcl"].item() == 0.0 and out["lcl"].requires_grad
    assert int(out["stat_lcl_skipped_anchors"]) == 3


def test_errors():
    x, logits = _inputs()
    loss = LabelAwareContrastiveLoss()
    with pytest.raises(ValueError, match="exactly one of 'logits' and 'weights'"):
        loss(x, LABELS)
    with pytest.raises(ValueError, match=r"Expected 'logits' of shape \[6, C\] \(got \[5, 3\]\)"):
        loss(x, LABELS, logits=logits[:5])
    with pytest.raises(ValueError, match="labels below 2"):
        loss(x, LABELS, logits=logits[:, :2])
    with pytest.raises(ValueError, match="non-negative"):
        loss(x, LABELS, weights=-torch.ones(6, 3))
    with pytest.raises(ValueError, match="positive"):
        LabelAwareContrastiveLoss(0.0)
