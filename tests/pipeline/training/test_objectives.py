"""Each objective on a tiny batch through the real encoder: finite, and gradients reach the encoder."""

import pytest
import torch

from pipeline.encoder import EncoderConfig, load_encoder, to_device
from pipeline.options import LOSSES
from pipeline.training.objectives import OBJECTIVES, Objective, ObjectiveConfig

TEXTS = ["oil prices rose", "crude output fell", "profit was up", "earnings grew", "grain exports", "wheat crop"]
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderConfig(max_length=16, device="cpu"))


@pytest.mark.parametrize("loss", LOSSES)
def test_objective_is_finite_and_reaches_the_encoder(encoder, loss):
    torch.manual_seed(0)
    objective = Objective(ObjectiveConfig(loss=loss, sigma=0.5, gamma=0.5), num_classes=3, seed=0)
    head = torch.nn.Linear(384, 3) if objective.has_head else None
    encoder.zero_grad()
    embeddings = encoder(to_device(encoder.preprocess(TEXTS), "cpu"))["sentence_embedding"]
    parts = objective(embeddings, head(embeddings) if head else None, LABELS)
    assert torch.isfinite(parts["total"])
    assert parts["total"].item() > 0
    parts["total"].backward()
    grad = encoder[0].auto_model.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0


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
        objective = Objective(ObjectiveConfig(loss=name, sigma=0.5), 3, train_size=8, dim=4)
        assert objective.has_head == spec.head
        assert objective.monitor == ("val_macro_f1" if spec.head else "val_macro_silhouette")
        assert (spec.part is None) == (objective.embedding_loss is None)


def test_statistics_pass_through_but_stay_out_of_the_total():
    objective = Objective(ObjectiveConfig(loss="gloss+ce", sigma=0.5, lam=0.8), 3)
    embeddings = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    parts = objective(embeddings, torch.randn(6, 3), LABELS)
    assert list(parts) == ["ce", "g_loss", "stat_unscored", "total"]
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
