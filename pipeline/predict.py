"""``gloss predict``: labels and class probabilities for new documents with a trained run's encoder.

This is the inductive use a transductive TextGCN cannot offer. Input: a text file (one document per
line), a CSV with a ``text`` column, or a JSONL file with a ``text`` field. Empty documents get no
prediction and are reported; documents longer than the encoder's max length are truncated and counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline import options
from pipeline.artifacts import LABELS_FILE, load_head, load_matrix, load_splits, model_dir, split_labels
from pipeline.errors import GlossError
from pipeline.jsonl import json_objects
from pipeline.manifest import load_manifest
from pipeline.textfile import decode_file, split_lines


def read_documents(path: str | Path, encoding: str = options.ENCODING) -> list[str]:
    """Documents of a .txt (one per line: lines end at ``\\n`` or ``\\r\\n`` only), .csv (``text`` column)
    or .jsonl (``text`` field) file, decoded as :func:`pipeline.textfile.decode_file` does (``--encoding``)."""
    path = Path(path)
    if not path.is_file():
        raise GlossError(f"--input {path}: file not found")
    text, _ = decode_file(path, encoding)
    if path.suffix == ".csv":
        from pipeline.datasets import column_hint, read_csv_text

        frame = read_csv_text(path, text)
        if "text" not in frame:
            columns = [c for c in frame.columns if c != "source_row"]
            raise GlossError(f"{path}: missing column 'text' (found: {', '.join(columns)})"
                             f"{column_hint(columns, ['text'])}")
        return frame["text"].tolist()
    if path.suffix == ".jsonl":
        docs = []
        expected = "an object with a 'text' field"
        for number, row in json_objects(text, path, expected=expected, keep_blank=True):
            if row is not None and "text" not in row:
                raise GlossError(f"{path}: line {number}: expected {expected}")
            docs.append("" if row is None else str(row["text"]))
        return docs
    return split_lines(text)


def _probabilities(trained, embeddings: np.ndarray, num_classes: int) -> np.ndarray:
    """Class probabilities [N, C] from the trained head, or from a linear probe for standalone losses."""
    import torch

    head = load_head(model_dir(trained.stage_dir))
    if head is not None:
        with torch.inference_mode():
            return torch.softmax(head(torch.from_numpy(embeddings)), dim=1).numpy()
    # Standalone losses train no head: a linear probe on the training embeddings stands in for one.
    from sklearn.linear_model import LogisticRegression

    frames, _ = load_splits(load_manifest(trained.stage_dir.parent, "prepare"))
    train_labels = split_labels(frames)["train"]
    train_embeddings = load_matrix(trained.output("embeddings_train.npy"), len(train_labels), "train")
    probe = LogisticRegression(max_iter=1000).fit(train_embeddings, train_labels)
    out = np.zeros((len(embeddings), num_classes))
    out[:, probe.classes_] = probe.predict_proba(embeddings)
    return out


def predict(run_dir: str | Path, input_path: str | Path, batch_size: int = 64, device: str = "cpu",
            encoding: str = options.ENCODING) -> dict:
    """Predict every document of ``input_path``; returns rows and a report of skipped/truncated documents."""
    from pipeline.encoder import EncoderConfig, embed_texts, load_encoder, token_lengths

    docs = read_documents(input_path, encoding)  # bad input stops before the model is loaded
    trained = load_manifest(run_dir, "train")
    if trained.config.get("method", "finetune") != "finetune":
        raise GlossError(
            f"{trained.path}: method '{trained.config['method']}' is transductive and cannot predict new "
            "documents; use a fine-tuned run"
        )
    folder = model_dir(trained.stage_dir)
    label_names = json.loads((folder / LABELS_FILE).read_text())
    encoder = trained.config["encoder"]
    model = load_encoder(EncoderConfig(model=str(folder), pooling=encoder["pooling"],
                                       max_length=encoder["max_length"], device=device))
    keep = [i for i, d in enumerate(docs) if d.strip()]
    texts = [docs[i] for i in keep]
    lengths = token_lengths(model, texts) if texts else []
    truncated = sum(1 for n in lengths if n >= model.max_seq_length)
    probabilities = np.zeros((0, len(label_names)))
    if texts:
        probabilities = _probabilities(trained, embed_texts(model, texts, batch_size), len(label_names))
    rows: list[dict] = [{"row": i + 1, "label": None, "skipped": "empty"} for i in range(len(docs))]
    for position, i in enumerate(keep):
        p = probabilities[position]
        rows[i] = {"row": i + 1, "label": label_names[int(p.argmax())],
                   "probabilities": {name: round(float(v), 6) for name, v in zip(label_names, p, strict=True)}}
    return {"rows": rows, "documents": len(docs), "empty": len(docs) - len(keep), "truncated": truncated,
            "max_length": model.max_seq_length}
