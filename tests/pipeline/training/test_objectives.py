"""Each objective on a tiny batch through the real encoder: finite, and gradients reach the encoder."""

import numpy as np
import pytest
import torch

from pipeline.encoder import EncoderConfig, load_encoder, to_device
from pipeline.options import LOSSES
from pipeline.training.objectives import (
    OBJECTIVES,
    Objective,
    ObjectiveConfig,
    WeightingNetwork,
    balanced_class_weights,
    uses_weighting_network,
)

TEXTS = ["oil prices rose", "crude output fell", "profit was up", "earnings grew", "grain exports", "wheat crop"]
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderConfig(max_length=16, device="cpu"))


def _word_grad(encoder):
    return encoder[0].auto_model.embeddings.word_embeddings.weight.grad


@pytest.mark.parametrize("loss", LOSSES)
def test_objective_is_finite_and_reaches_the_encoder(encoder, loss):
    """Every part on its own (not just the total: CE alone would pass for ``gloss+ce``) is finite, positive and
    reaches the encoder, and the total is the lambda-weighted sum of the parts (``lcl+ce`` here with the main
    head as its weighting network; the separate one has its own test)."""
    torch.manual_seed(0)
    config = ObjectiveConfig(loss=loss, sigma=0.5, gamma=0.5, lam=0.7, lcl_weighting="head")
    objective = Objective(config, num_classes=3, seed=0)
    head = torch.nn.Linear(384, 3) if objective.has_head else None
    embeddings = encoder(to_device(encoder.preprocess(TEXTS), "cpu"))["sentence_embedding"]
    parts = objective(embeddings, head(embeddings) if head else None, LABELS)
    weighted = {name: parts[name] for name in objective.weights}
    assert set(weighted) == ({"ce"} if OBJECTIVES[loss].part is None else
                             {OBJECTIVES[loss].part} | ({"ce"} if objective.has_head else set()))
    if len(weighted) == 2:
        assert objective.weights == {OBJECTIVES[loss].part: 0.7, "ce": pytest.approx(0.3)}
    torch.testing.assert_close(parts["total"], sum(objective.weights[n] * v for n, v in weighted.items()))
    for name, value in weighted.items():
        assert torch.isfinite(value) and value.item() > 0, name
        encoder.zero_grad()
        value.backward(retain_graph=True)
        assert _word_grad(encoder) is not None and _word_grad(encoder).abs().sum() > 0, name


def test_has_head_and_weights():
    assert Objective(ObjectiveConfig(loss="ce"), 3).weights == {"ce": 1.0}
    obj = Objective(ObjectiveConfig(loss="scl+ce", lam=0.7), 3)
    assert obj.has_head and obj.weights["scl"] == 0.7 and obj.weights["ce"] == pytest.approx(0.3)
    assert not Objective(ObjectiveConfig(loss="triplet"), 3).has_head


def test_unknown_loss():
    with pytest.raises(ValueError, match="Expected 'loss' to be one of"):
        Objective(ObjectiveConfig(loss="hinge"), 3)


def test_the_table_covers_every_loss_option_and_picks_the_monitor():
    assert set(OBJECTIVES) == set(LOSSES)
    for name, spec in OBJECTIVES.items():
        objective = Objective(ObjectiveConfig(loss=name, sigma=0.5, lcl_weighting="head"), 3, train_size=8, dim=4)
        assert objective.has_head == spec.head
        assert objective.monitor == ("val_macro_f1" if spec.head else "val_macro_silhouette")
        assert (spec.part is None) == (objective.embedding_loss is None)


def test_statistics_pass_through_but_stay_out_of_the_total():
    objective = Objective(ObjectiveConfig(loss="gloss+ce", sigma=0.5, lam=0.8), 3)
    embeddings = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    parts = objective(embeddings, torch.randn(6, 3), LABELS)
    assert [name for name in parts if not name.startswith("stat_")] == ["ce", "g_loss", "total"]
    assert "stat_unscored" in parts
    torch.testing.assert_close(parts["total"], 0.8 * parts["g_loss"] + 0.2 * parts["ce"])


def test_reseed_restarts_the_split_and_the_bank_is_refilled_each_epoch():
    config = ObjectiveConfig(loss="gloss", sigma=0.5, graph="bank", k=2)
    objective = Objective(config, 3, train_size=6, dim=4)
    objective.reseed(7)
    first = objective.embedding_loss.split(LABELS)
    objective.reseed(7)
    assert torch.equal(first, objective.embedding_loss.split(LABELS))
    assert objective.uses_bank and objective.embedding_loss.memory_bank.num_filled == 0
    calls = []

    def encode_train():
        calls.append(1)
        return torch.randn(6, 4), LABELS

    objective.on_epoch_start(encode_train)
    assert calls == [1] and objective.embedding_loss.memory_bank.num_filled == 6
    Objective(ObjectiveConfig(loss="ce"), 3).on_epoch_start(encode_train)  # nothing to refresh: not called
    assert calls == [1]


def test_bank_needs_its_shape():
    with pytest.raises(ValueError, match="Expected 'train_size' and 'dim'"):
        Objective(ObjectiveConfig(loss="gloss", sigma=0.5, graph="bank"), 3)


def test_variant_and_combined_reach_g_loss():
    released = Objective(ObjectiveConfig(loss="gloss+ce", sigma=0.5, variant="released"), 3)
    assert released.embedding_loss.variant == "released" and released.embedding_loss.combined is True
    standalone = Objective(ObjectiveConfig(loss="gloss", sigma=0.5, variant="released"), 3)
    assert standalone.embedding_loss.combined is False
    assert Objective(ObjectiveConfig(loss="gloss", sigma=0.5), 3).embedding_loss.variant == "gloss"


def test_class_weights_reach_ce_g_loss_and_supcon():
    weights = torch.tensor([1.0, 2.0, 4.0])
    embeddings = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    for loss, part in (("gloss+ce", "g_loss"), ("scl+ce", "scl")):
        plain = Objective(ObjectiveConfig(loss=loss, sigma=0.5), 3, seed=0)
        weighted = Objective(ObjectiveConfig(loss=loss, sigma=0.5), 3, seed=0, class_weights=weights)
        a, b = plain(embeddings, logits, LABELS), weighted(embeddings, logits, LABELS)
        torch.testing.assert_close(b["ce"], torch.nn.functional.cross_entropy(logits, LABELS, weight=weights))
        assert not torch.isclose(a["ce"], b["ce"])
        assert not torch.isclose(a[part], b[part]), part
    with pytest.raises(ValueError, match=r"'class_weights' of shape \[3\]"):
        Objective(ObjectiveConfig(loss="ce"), 3, class_weights=torch.ones(2))


def test_balanced_class_weights_are_sklearns_on_the_whole_split():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    weights = balanced_class_weights(labels, 3)
    np.testing.assert_allclose(weights.numpy(), compute_class_weight("balanced", classes=np.arange(3), y=labels),
                               rtol=1e-6)
    np.testing.assert_allclose(weights.numpy(), [7 / 12, 7 / 6, 7 / 3], rtol=1e-6)
    with pytest.raises(ValueError, match=r"missing class ids \[2\]"):
        balanced_class_weights(np.array([0, 1, 1]), 3)


def test_second_forward_embeddings_are_what_the_embedding_loss_scores():
    objective = Objective(ObjectiveConfig(loss="scl+ce"), 3)
    first = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    second = torch.randn(6, 4, generator=torch.Generator().manual_seed(4))
    logits = torch.randn(6, 3)
    both = objective(first, logits, LABELS, loss_embeddings=second)
    torch.testing.assert_close(both["scl"], objective(second, logits, LABELS)["scl"])
    torch.testing.assert_close(both["ce"], objective(first, logits, LABELS)["ce"])
    assert objective.combines and not Objective(ObjectiveConfig(loss="ce"), 3).combines


def test_lcl_separate_weighting_network_gets_gradients_from_lcl_and_its_ce(encoder):
    """lcl+ce with a separate weighting network: parts ce, ce_weighting, lcl; total (1 - lambda) * (ce +
    ce_weighting) + lambda * lcl; LCL's gradient reaches both encoders (g is not detached), ce_weighting only g."""
    torch.manual_seed(0)
    config = ObjectiveConfig(loss="lcl+ce")
    assert (config.lam, config.temperature, config.lcl_weighting) == (0.5, 0.3, "separate")
    assert uses_weighting_network(config) and not uses_weighting_network(ObjectiveConfig(loss="scl+ce"))
    weighting = WeightingNetwork.from_encoder_config(EncoderConfig(max_length=16, device="cpu"), 3)
    objective = Objective(config, 3, weighting=weighting)
    assert objective.weights == {"lcl": 0.5, "ce": 0.5, "ce_weighting": 0.5}
    features = to_device(encoder.preprocess(TEXTS), "cpu")
    embeddings = encoder(dict(features))["sentence_embedding"]
    head = torch.nn.Linear(384, 3)
    parts = objective(embeddings, head(embeddings), LABELS, features=features)
    assert [n for n in parts if not n.startswith("stat_")] == ["ce", "ce_weighting", "lcl", "total"]
    assert int(parts["stat_lcl_skipped_anchors"]) == 0
    torch.testing.assert_close(parts["total"], 0.5 * (parts["ce"] + parts["ce_weighting"]) + 0.5 * parts["lcl"])
    g_encoder = weighting.encoder
    for name, main_reached in (("lcl", True), ("ce_weighting", False)):
        encoder.zero_grad()
        weighting.zero_grad()
        parts[name].backward(retain_graph=True)
        main = _word_grad(encoder)
        assert (main is not None and main.abs().sum() > 0) == main_reached, name
        assert _word_grad(g_encoder).abs().sum() > 0 and weighting.head.weight.grad.abs().sum() > 0, name
    groups = objective.param_groups(2e-5, 1e-3)
    assert [g["lr"] for g in groups] == [2e-5, 1e-3]
    assert sum(len(g["params"]) for g in groups) == len(list(weighting.parameters()))
    assert set(objective.network_state()) == set(weighting.state_dict())


def test_lcl_weighting_network_errors():
    with pytest.raises(ValueError, match="Expected a 'weighting' network"):
        Objective(ObjectiveConfig(loss="lcl+ce"), 3)
    with pytest.raises(ValueError, match="Expected no 'weighting' network"):
        Objective(ObjectiveConfig(loss="scl+ce"), 3, weighting=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="--lcl-weighting both: expected one of separate, head"):
        Objective(ObjectiveConfig(loss="lcl+ce", lcl_weighting="both"), 3)
    head_mode = Objective(ObjectiveConfig(loss="lcl+ce", lcl_weighting="head"), 3)
    assert head_mode.weights == {"lcl": 0.5, "ce": 0.5} and head_mode.network_state() == {}
    assert head_mode.param_groups(1.0, 1.0) == []


def test_per_loss_defaults_resolve_only_when_unset():
    assert (ObjectiveConfig().lam, ObjectiveConfig().temperature) == (0.8, 0.1)
    assert (ObjectiveConfig(loss="scl+ce").lam, ObjectiveConfig(loss="scl+ce").temperature) == (0.8, 0.1)
    assert (ObjectiveConfig(loss="lcl+ce").lam, ObjectiveConfig(loss="lcl+ce").temperature) == (0.5, 0.3)
    given = ObjectiveConfig(loss="lcl+ce", lam=0.9, temperature=0.05)
    assert (given.lam, given.temperature) == (0.9, 0.05)


def test_lcl_head_mode_weighs_with_the_head_but_trains_it_by_ce_alone():
    """--lcl-weighting head: the head's softmax weighs the negatives, but LCL's gradient (which lowers the
    probability of the true class, the loss being proportional to it) does not reach the head."""
    torch.manual_seed(0)
    objective = Objective(ObjectiveConfig(loss="lcl+ce", lcl_weighting="head"), 3)
    embeddings = torch.randn(6, 8, requires_grad=True)
    head = torch.nn.Linear(8, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    parts = objective(embeddings, head(embeddings), labels)
    parts["lcl"].backward(retain_graph=True)
    assert head.weight.grad is None or not head.weight.grad.any()
    assert embeddings.grad.abs().sum() > 0
    uniform = objective.embedding_loss(embeddings, labels, weights=torch.full((6, 3), 1 / 3))["lcl"]
    assert not torch.isclose(parts["lcl"], uniform)  # the head's weights were used, not ignored
