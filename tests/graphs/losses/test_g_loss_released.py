"""``GLoss(variant="released")`` against an independent float64 re-derivation of the released code's arithmetic.

The reference below is written from the description of the released code (``Combined with CE/losses.py``,
``Standalone/losses_unsupervised.py``), with plain torch and no gloss function: visible nodes first, the
Gaussian kernel with a zero diagonal, ``A = W + W^T``, ``S = D^-1/2 A D^-1/2``, the columns of ``S``
normalised and then the rows, ``F_u = (I - T_uu)^-1 T_ul Y_l`` by an explicit inverse, and a class-weighted
cross-entropy with ``F_u`` as logits over all classes, divided once more by ``|u|`` in the combined code.
"""

import math

import pytest
import torch

from graphs.losses import VARIANTS, GLoss
from tests.released_reference import reference_loss as _reference_loss
from tests.released_reference import reference_scores as _reference_scores

NUM_CLASSES = 4


def _batch(n=24, d=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    labels = torch.randint(0, NUM_CLASSES - 1, (n,), generator=g)  # class 3 never occurs: a zero logit column
    visible = torch.randperm(n, generator=g) < 0.7 * n
    return x, labels, visible


WEIGHTS = torch.tensor([0.5, 2.0, 1.25, 3.0], dtype=torch.float64)


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("combined", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_released_equals_the_independent_reference(sigma, combined, weighted):
    x, labels, visible = _batch(seed=1)
    weights = WEIGHTS if weighted else None
    x1 = x.clone().requires_grad_()
    gloss = GLoss(variant="released", sigma=sigma, gamma=0.7, class_weights=weights, num_classes=NUM_CLASSES,
                  combined=combined)
    loss = gloss(x1, labels, visible=visible)["g_loss"]
    x2 = x.clone().requires_grad_()
    expected = _reference_loss(x2, labels, visible, sigma, NUM_CLASSES, weights, combined)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, atol=1e-10, rtol=0)
    (g1,) = torch.autograd.grad(loss, x1)
    (g2,) = torch.autograd.grad(expected, x2)
    assert g2.abs().max() > 1e-6  # a gradient worth comparing
    torch.testing.assert_close(g1, g2, atol=1e-10, rtol=0)


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0])
def test_released_scores_equal_the_reference(sigma):
    x, labels, visible = _batch(32, 16, seed=2)
    gloss = GLoss(variant="released", sigma=sigma, num_classes=NUM_CLASSES)
    scores = gloss.propagated_scores(x.float(), labels, visible)
    assert scores.dtype == torch.float64 and scores.shape == (int((~visible).sum()), NUM_CLASSES)
    # float32 input: the graph is float64 from the cast on, so only the input's rounding differs
    torch.testing.assert_close(scores, _reference_scores(x.float(), labels, visible, sigma, NUM_CLASSES),
                               atol=1e-10, rtol=0)


def test_class_weights_change_the_released_loss():
    x, labels, visible = _batch(seed=3)
    plain = GLoss(variant="released", sigma=0.5, num_classes=NUM_CLASSES)(x, labels, visible=visible)["g_loss"]
    weighted = GLoss(variant="released", sigma=0.5, num_classes=NUM_CLASSES, class_weights=WEIGHTS)(
        x, labels, visible=visible)["g_loss"]
    assert abs(float(weighted - plain)) > 1e-3
    expected = _reference_loss(x, labels, visible, 0.5, NUM_CLASSES, WEIGHTS, combined=True)
    torch.testing.assert_close(weighted, expected, atol=1e-10, rtol=0)


def test_combined_divides_by_the_hidden_count_once_more():
    x, labels, visible = _batch(seed=4)
    def loss(combined):
        gloss = GLoss(variant="released", sigma=0.5, num_classes=NUM_CLASSES, combined=combined)
        return gloss(x, labels, visible=visible)["g_loss"]

    torch.testing.assert_close(loss(True) * int((~visible).sum()), loss(False))


def test_released_transition_differs_from_the_row_stochastic_one():
    x, labels, visible = _batch(32, 16, seed=5)
    released = GLoss(variant="released", sigma=0.1, num_classes=NUM_CLASSES).propagated_scores(x, labels, visible)
    paper = GLoss(sigma=0.1, num_classes=NUM_CLASSES, damping=0.0).propagated_scores(x, labels, visible)
    assert (released - paper).abs().max() > 1e-2


def test_released_split_is_unstratified_randperm():
    labels = torch.tensor([0] * 120 + [1] * 8)
    gloss = GLoss(variant="released", gamma=0.7, seed=3)
    mask = gloss.split(labels)
    expected = torch.randperm(128, generator=torch.Generator().manual_seed(3)) < 0.7 * 128
    assert torch.equal(mask, expected)
    assert int(mask.sum()) == math.ceil(0.7 * 128) == 90  # 38 hidden, as at B=128, gamma=0.7
    # not stratified: over a few draws the small class is at some point entirely hidden or entirely visible
    draws = [gloss.split(labels)[120:].sum().item() for _ in range(200)]
    assert 0 in draws or 8 in draws


def test_released_keeps_hidden_nodes_without_a_seed_of_their_class():
    x, labels, _ = _batch(seed=6)
    visible = labels != 2  # class 2 only hidden
    visible[labels.ne(2).nonzero().view(-1)[::3]] = False
    out = GLoss(variant="released", sigma=0.5, num_classes=NUM_CLASSES)(x, labels, visible=visible)
    assert out["stat_unscored"].item() == 0
    expected = _reference_loss(x, labels, visible, 0.5, NUM_CLASSES)
    torch.testing.assert_close(out["g_loss"], expected, atol=1e-10, rtol=0)


def test_released_degenerate_batches_give_an_attached_zero():
    x = _batch(6)[0].requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    gloss = GLoss(variant="released", num_classes=NUM_CLASSES)
    for visible in (torch.ones(6, dtype=torch.bool), torch.zeros(6, dtype=torch.bool)):
        loss = gloss(x, labels, visible=visible)["g_loss"]
        assert loss.item() == 0.0 and loss.grad_fn is not None


def test_released_errors_and_config():
    assert VARIANTS == ("gloss", "released")
    with pytest.raises(ValueError, match=r"Expected graph='dense' for variant='released', which is dense-only "
                                         r"\(got 'knn'\)"):
        GLoss(graph="knn", variant="released")
    with pytest.raises(ValueError, match=r"\(got 'bank'\)"):
        GLoss(graph="bank", variant="released")
    with pytest.raises(ValueError, match=r"Expected the default loss_form='nll' for variant='released'"):
        GLoss(variant="released", loss_form="released")
    with pytest.raises(ValueError, match=r"Expected 'variant' to be one of \('gloss', 'released'\) \(got 'paper'\)"):
        GLoss(variant="paper")
    gloss = GLoss(variant="released", sigma=0.1, gamma=0.7, class_weights=[1.0, 2.0], combined=False)
    config = gloss.get_config_dict()
    assert config["variant"] == "released" and config["combined"] is False
    assert gloss.class_weights.dtype == torch.float64
    assert "variant='released'" in repr(gloss) and "combined=False" in repr(gloss)
