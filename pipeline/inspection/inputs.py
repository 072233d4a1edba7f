"""What ``gloss inspect`` reads: a run's embeddings (pre-trained, trained, or the validation embeddings
after each epoch) with the labels of ``RUN/prepare``, or an arbitrary ``.npy`` with a labels file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import SPLITS, load_matrix, read_npy
from pipeline.errors import GlossError
from pipeline.manifest import Manifest, load_manifest
from pipeline.options import INSPECT_SOURCES, choice_error
from pipeline.textfile import decode_file, split_lines

SOURCES = dict(zip(INSPECT_SOURCES, ("embed", "train"), strict=True))  # --source -> the stage that wrote it
EPOCH_FILE = re.compile(r"^val_embeddings/epoch-(\d+)\.npy$")


@dataclass
class Embeddings:
    """Nodes of an inspection.

    Attributes:
        x: embeddings, float32. Shapes: [N, D].
        labels: class ids. Shapes: [N].
        split: index into ``split_names`` of every node. Shapes: [N].
        split_names: the splits present, e.g. ``("train", "val", "test")`` or ``("all",)``.
        label_names: name of every class id.
        source: where the embeddings came from (for reports).
    """

    x: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    split_names: tuple[str, ...]
    label_names: list[str]
    source: str

    @property
    def num_classes(self) -> int:
        return max(len(self.label_names), int(self.labels.max()) + 1 if len(self.labels) else 0)

    def rows(self, split: str) -> np.ndarray:
        """Node ids of ``split`` (empty when absent)."""
        if split not in self.split_names:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.split == self.split_names.index(split))


def _prepared_labels(prepared: Manifest) -> tuple[dict[str, np.ndarray], list[str]]:
    from pipeline.artifacts import load_splits, split_labels

    frames, names = load_splits(prepared)
    return split_labels(frames), list(names)


def run_embeddings(run_dir: str | Path, source: str) -> tuple[Embeddings, dict[str, Manifest]]:
    """train + val + test embeddings of a run, from ``RUN/embed`` (``pretrained``) or ``RUN/train``
    (``trained``, the best epoch), with the labels of ``RUN/prepare``; and the manifests read."""
    if source not in SOURCES:
        raise GlossError(choice_error("--source", source, INSPECT_SOURCES))
    prepared = load_manifest(run_dir, "prepare")
    stage = load_manifest(run_dir, SOURCES[source])
    labels, names = _prepared_labels(prepared)
    parts = [
        load_matrix(stage.output(f"embeddings_{s}.npy"), len(labels[s]), split=s, dtype=np.float32) for s in SPLITS
    ]
    dims = {p.shape[1] for p in parts}
    if len(dims) != 1:
        raise GlossError(f"{stage.stage_dir}: embeddings of the splits differ in dimension ({sorted(dims)})")
    data = Embeddings(
        x=np.concatenate(parts),
        labels=np.concatenate([labels[s] for s in SPLITS]),
        split=np.concatenate([np.full(len(labels[s]), i, dtype=np.int8) for i, s in enumerate(SPLITS)]),
        split_names=SPLITS,
        label_names=names,
        source=f"{source} ({stage.stage_dir})",
    )
    return data, {"prepare": prepared, SOURCES[source]: stage}


def epoch_embeddings(
    run_dir: str | Path,
) -> tuple[list[tuple[int, Path]], np.ndarray, list[str], dict[str, Manifest]]:
    """The validation embeddings after every epoch of ``RUN/train`` (``val_embeddings/epoch-K.npy``),
    preceded by epoch 0 = the pre-trained ones of ``RUN/embed`` when that stage exists; the val labels,
    the label names and the manifests read."""
    prepared = load_manifest(run_dir, "prepare")
    trained = load_manifest(run_dir, "train")
    labels, names = _prepared_labels(prepared)
    files = []
    for rel in trained.data.get("outputs", {}):
        match = EPOCH_FILE.match(rel)
        if match:
            files.append((int(match.group(1)), trained.output(rel)))
    if not files:
        raise GlossError(
            f"{trained.stage_dir}: no val_embeddings/epoch-K.npy (this method saves no embeddings)"
        )
    manifests = {"prepare": prepared, "train": trained}
    if (Path(run_dir) / "embed" / "manifest.json").is_file():
        embedded = load_manifest(run_dir, "embed")
        files.append((0, embedded.output("embeddings_val.npy")))
        manifests["embed"] = embedded
    return sorted(files), labels["val"], names, manifests


def read_labels(path: str | Path, rows: int) -> tuple[np.ndarray, list[str]]:
    """Labels of ``--embeddings``: a 1-D integer ``.npy``; a CSV/TSV with a header (its ``label`` column,
    or its only column); or a text file with one label per line. Integer labels are class ids; other
    labels are numbered in sorted order.

    Returns:
        class ids (int64 [N]) and the name of every id.
    """
    path = Path(path)
    if path.suffix == ".npy":
        values = read_npy(path)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise GlossError(
                f"{path}: expected a 1-D integer array of labels (got shape {list(values.shape)}, "
                f"{values.dtype})"
            )
        raw = [str(v) for v in values.tolist()]
    elif path.suffix in (".csv", ".tsv"):
        import pandas as pd

        frame = pd.read_csv(
            path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False
        )
        if "label" in frame.columns:
            raw = frame["label"].tolist()
        elif len(frame.columns) == 1:
            raw = frame.iloc[:, 0].tolist()
        else:
            raise GlossError(f"{path}: expected a 'label' column (has: {', '.join(map(str, frame.columns))})")
    else:
        raw = split_lines(decode_file(path, "utf-8")[0])  # lines end at \n or \r\n only
        while raw and not raw[-1].strip():
            raw.pop()
    raw = [str(v).strip() for v in raw]
    if len(raw) != rows:
        raise GlossError(f"{path}: {len(raw)} labels for {rows} embeddings")
    empty = [i for i, v in enumerate(raw) if not v]
    if empty:
        raise GlossError(f"{path}: empty label at row {empty[0] + 1}")
    if all(re.fullmatch(r"\d+", v) for v in raw):
        ids = np.array([int(v) for v in raw], dtype=np.int64)
        return ids, [str(i) for i in range(int(ids.max()) + 1 if len(ids) else 0)]
    if any(re.fullmatch(r"-\d+", v) for v in raw):
        raise GlossError(f"{path}: negative class ids are not allowed")
    names = sorted(set(raw))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in raw], dtype=np.int64), names


def file_embeddings(embeddings: str | Path, labels: str | Path) -> Embeddings:
    """Arbitrary embeddings and labels: one split (``all``)."""
    x = load_matrix(embeddings, dtype=np.float32)
    ids, names = read_labels(labels, len(x))
    return Embeddings(
        x=x,
        labels=ids,
        split=np.zeros(len(x), dtype=np.int8),
        split_names=("all",),
        label_names=names,
        source=str(Path(embeddings).resolve()),
    )
