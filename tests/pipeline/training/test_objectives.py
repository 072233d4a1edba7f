"""Each objective on a tiny batch through the real encoder: finite, and gradients reach the encoder."""

import pytest
import torch

from pipeline.encoder import EncoderConfig, load_encoder, to_device
from pipeline.training import LOSSES
from pipeline.training.objectives import Objective, ObjectiveConfig

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
