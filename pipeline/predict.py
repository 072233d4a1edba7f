"""``gloss predict``: labels and class probabilities for new documents with a trained run's encoder.

This is the inductive use a transductive TextGCN cannot offer. Input: a text file (one document per
line), a CSV with a ``text`` column, or a JSONL file with a ``text`` field. Empty documents get no
prediction and are reported; documents longer than the encoder's max length are truncated and counted.

``--predictor head|knn|lpa|mix`` (default: the headline ``gloss evaluate`` chose, else the head) predicts with
the head or with the kNN graph of the training embeddings (:mod:`pipeline.evaluation.graph_predictors`), using
the ``k`` and ``alpha`` that ``gloss evaluate`` chose on validation. Prediction is inductive (each new document
on its own) unless ``--transductive``: then ``lpa``/``mix`` propagate over the training documents and all the
given documents together, so the given documents influence each other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline import options
from pipeline.artifacts import (
    HEAD_FILE,
    LABELS_FILE,
    PredictionSetup,
    load_head,
    load_matrix,
    load_prediction_setup,
    load_splits,
    model_dir,
    split_labels,
)
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


class Predictor:
    """Class probabilities of embedded documents by one predictor of a run, everything loaded once.

    Args:
        key: predictor key (``head``, ``knn``, ``lpa-inductive``, ``lpa-transductive``, ``mix-inductive``,
            ``mix-transductive``).
        setup: what :func:`pipeline.artifacts.load_prediction_setup` read.
        head_probabilities: ``embeddings [N, D] -> [N, C]`` of the head (needed by ``head`` and ``mix``).
    """

    def __init__(self, key: str, setup: PredictionSetup, head_probabilities=None):
        from pipeline.evaluation.graph_predictors import TrainingGraph

        self.key, self.setup, self.head_probabilities = key, setup, head_probabilities
        chosen = setup.chosen.get(key, {})
        self.k, self.alpha = chosen.get("k"), chosen.get("alpha")
        self.graph = None
        if key != "head":
            self.graph = TrainingGraph(setup.train_embeddings, setup.train_labels, len(setup.label_names),
                                       spread=dict(setup.spread))
            if key.endswith("-inductive"):
                self.graph.spread_scores(self.k)  # part of loading, not of each prediction

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Shapes: embeddings [N, D] -> [N, C], rows summing to one (a document the graph does not reach gets
        the most frequent training class)."""
        from pipeline.evaluation.graph_predictors import transductive_scores

        if self.key == "head":
            return self.head_probabilities(embeddings)
        predictor, _, setting = self.key.partition("-")
        if setting == "transductive":
            scores = next(iter(transductive_scores(self.graph, embeddings, [self.k]).values()))  # [N, C]
        else:
            weights, ids = self.graph.query(embeddings, self.k)
            scores = (self.graph.knn_scores if predictor == "knn" else self.graph.lpa_scores)(weights, ids, self.k)
        if predictor == "mix":
            scores = self.alpha * scores + (1 - self.alpha) * self.head_probabilities(embeddings)
        total = scores.sum(1, keepdims=True)  # [N, 1]
        majority = np.eye(len(self.setup.label_names))[self.graph.majority]  # [C]
        return np.where(total > 0, scores / np.where(total > 0, total, 1), majority)


def resolve_predictor(setup: PredictionSetup, predictor: str | None, transductive: bool, run_dir: str | Path,
                      has_head: bool) -> str:
    """The predictor key ``gloss predict`` uses; one-line errors for what this run cannot do."""
    from pipeline.evaluation.graph_predictors import predictor_key

    name = predictor or setup.predictor
    if name not in options.PREDICTORS:
        raise GlossError(options.choice_error("--predictor", name, options.PREDICTORS))
    if transductive and name not in ("lpa", "mix"):
        raise GlossError(f"--transductive applies to --predictor lpa or mix (got {name})")
    key = predictor_key(name, "transductive" if transductive else "inductive")
    if key == "head":
        return key
    if setup.train_embeddings is None:
        raise GlossError(f"--predictor {name}: {Path(run_dir) / 'train'} has no embeddings_train.npy")
    if name == "mix" and not has_head:
        raise GlossError(f"--predictor mix: {Path(run_dir) / 'train'} has no head to mix with the graph")
    if setup.chosen.get(key, {}).get("k") is None:
        raise GlossError(f"--predictor {name}: {Path(run_dir) / 'evaluate'} holds no k chosen for '{key}'; "
                         f"run `gloss evaluate --run-dir {run_dir}` first")
    return key


def predict(run_dir: str | Path, input_path: str | Path, batch_size: int = 64, device: str = "cpu",
            encoding: str = options.ENCODING, predictor: str | None = None, transductive: bool = False) -> dict:
    """Predict every document of ``input_path``; returns rows, the predictor key and a report of
    skipped/truncated documents."""
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
    setup = load_prediction_setup(run_dir)
    key = resolve_predictor(setup, predictor, transductive, run_dir, has_head=(folder / HEAD_FILE).is_file())
    encoder = trained.config["encoder"]
    model = load_encoder(EncoderConfig(model=str(folder), pooling=encoder["pooling"],
                                       max_length=encoder["max_length"], device=device))
    keep = [i for i, d in enumerate(docs) if d.strip()]
    texts = [docs[i] for i in keep]
    lengths = token_lengths(model, texts) if texts else []
    truncated = sum(1 for n in lengths if n >= model.max_seq_length)
    probabilities = np.zeros((0, len(label_names)))
    if texts:
        head = lambda x: _probabilities(trained, x, len(label_names))  # noqa: E731
        probabilities = Predictor(key, setup, head).probabilities(embed_texts(model, texts, batch_size))
    rows: list[dict] = [{"row": i + 1, "label": None, "skipped": "empty"} for i in range(len(docs))]
    for position, i in enumerate(keep):
        p = probabilities[position]
        rows[i] = {"row": i + 1, "label": label_names[int(p.argmax())],
                   "probabilities": {name: round(float(v), 6) for name, v in zip(label_names, p, strict=True)}}
    return {"rows": rows, "predictor": key, "documents": len(docs), "empty": len(docs) - len(keep), "truncated": truncated,
            "max_length": model.max_seq_length, "labels": list(label_names)}


JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


def output_format(output: str | None) -> str:
    """``"csv"`` for an ``--output`` ending in ``.csv``, else ``"jsonl"`` (also standard output)."""
    return "csv" if output is not None and Path(output).suffix.lower() == ".csv" else "jsonl"


def format_rows(rows: list[dict], label_names: list[str], output: str | None) -> str:
    """``gloss predict``'s rows as text in :func:`output_format`'s format: CSV (columns ``row``, ``label``,
    ``skipped``, then ``p_<class>`` per class, empty for a skipped document) or JSON lines."""
    import csv
    import io

    if output_format(output) == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "label", "skipped", *(f"p_{name}" for name in label_names)])
    for row in rows:
        probabilities = row.get("probabilities") or {}
        writer.writerow([row["row"], row["label"] if row["label"] is not None else "", row.get("skipped", ""),
                         *(probabilities.get(name, "") for name in label_names)])
    return buffer.getvalue()
