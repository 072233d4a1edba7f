"""Reading text-classification datasets from disk, with one-line errors for bad input.

Three layouts are accepted for a dataset ``NAME`` under a data root ``ROOT``:

1. ``ROOT/NAME/train.csv`` and ``ROOT/NAME/test.csv`` with columns ``text,label`` (the benchmarks);
2. one file with a ``split`` column (``train``/``test``, optionally ``val``): ``ROOT/NAME.csv``,
   ``ROOT/NAME.jsonl``, ``ROOT/NAME/NAME.csv`` or ``ROOT/NAME/NAME.jsonl``;
3. the TextGCN repository's ``data/`` layout: ``ROOT/NAME.txt`` (lines ``id<TAB>train|test<TAB>label``)
   and ``ROOT/corpus/NAME.txt`` (one document per line, same order).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.artifacts import SPLITS
from pipeline.errors import GlossError
from pipeline.jsonl import json_objects

logger = logging.getLogger("gloss")

BENCHMARKS = ("mr", "R8", "R52", "ohsumed", "20ng")
# Python's csv module refuses fields above this by default; 20ng has a 160,615-character post.
CSV_FIELD_LIMIT = 131_072
SOURCE_HINT = (
    "the public benchmark files come from the TextGCN repository's data/ folder "
    "(github.com/yao8839836/text_gcn), readable directly in its own layout"
)


@dataclass
class RawDataset:
    """Documents of one dataset as read from disk.

    Attributes:
        name: the dataset name.
        frames: ``{"train": DataFrame, "test": DataFrame[, "val": DataFrame]}`` with columns
            ``text``, ``label`` and ``source_row`` (1-based data row in its file).
        files: every file read, for hashing.
        layout: which layout was found.
    """

    name: str
    frames: dict
    files: list[Path]
    layout: str


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise GlossError(
            f"{path}: line {line}: bytes that are not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _read_csv(path: Path):
    import pandas as pd

    text = _decode(path)
    try:
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    except pd.errors.ParserError as exc:
        raise GlossError(f"{path}: not a readable CSV ({str(exc).strip()})") from None
    except pd.errors.EmptyDataError:
        raise GlossError(f"{path}: the file is empty (expected a header 'text,label')") from None
    frame.insert(len(frame.columns), "source_row", range(1, len(frame) + 1))
    return frame


def _read_jsonl(path: Path):
    import pandas as pd

    rows = [{**row, "source_row": number} for number, row in json_objects(_decode(path), path)]
    if not rows:
        raise GlossError(f"{path}: the file is empty (expected one JSON object per line)")
    frame = pd.DataFrame(rows)
    for column in ("text", "label", "split"):
        if column in frame:
            frame[column] = frame[column].map(lambda v: "" if v is None else str(v))
    return frame


def _read_table(path: Path):
    return _read_jsonl(path) if path.suffix == ".jsonl" else _read_csv(path)


def _check_columns(frame, path: Path, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(c for c in frame.columns if c != "source_row") or "none"
        raise GlossError(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)} (found: {found})")


def _clean_frame(frame, path: Path):
    """Validate one split's rows: non-empty text and label."""
    empty = frame["text"].str.strip() == ""
    if empty.any():
        row = int(frame.loc[empty, "source_row"].iloc[0])
        raise GlossError(
            f"{path}: row {row}: empty or whitespace-only text ({int(empty.sum())} such rows in this file)"
        )
    no_label = frame["label"].str.strip() == ""
    if no_label.any():
        row = int(frame.loc[no_label, "source_row"].iloc[0])
        raise GlossError(f"{path}: row {row}: empty label ({int(no_label.sum())} such rows in this file)")
    frame = frame.copy()
    frame["label"] = frame["label"].str.strip()
    return frame[["text", "label", "source_row"]].reset_index(drop=True)


def _split_file_candidates(root: Path, name: str) -> list[Path]:
    return [root / f"{name}.csv", root / f"{name}.jsonl", root / name / f"{name}.csv", root / name / f"{name}.jsonl"]


def _textgcn_candidates(root: Path, name: str) -> list[tuple[Path, Path]]:
    return [(root / f"{name}.txt", root / "corpus" / f"{name}.txt"),
            (root / name / f"{name}.txt", root / name / "corpus" / f"{name}.txt")]


def _read_split_file(path: Path, name: str) -> RawDataset:
    frame = _read_table(path)
    _check_columns(frame, path, ("text", "label", "split"))
    split = frame["split"].str.strip().str.lower().replace({"validation": "val", "dev": "val"})
    unknown = ~split.isin(SPLITS)
    if unknown.any():
        row = int(frame.loc[unknown, "source_row"].iloc[0])
        raise GlossError(
            f"{path}: row {row}: unknown split '{frame.loc[unknown, 'split'].iloc[0]}' (expected train, val or test)"
        )
    frames = {s: _clean_frame(frame[split == s], path) for s in SPLITS if (split == s).any()}
    for needed in ("train", "test"):
        if needed not in frames:
            raise GlossError(f"{path}: no rows with split '{needed}'")
    return RawDataset(name, frames, [path], "split-column")


def _read_textgcn(meta: Path, corpus: Path, name: str) -> RawDataset:
    import pandas as pd

    meta_lines = _decode(meta).splitlines()
    docs = _decode(corpus).splitlines()
    if len(meta_lines) != len(docs):
        raise GlossError(
            f"{meta}: {len(meta_lines)} lines but {corpus} has {len(docs)} documents (expected one per line)"
        )
    rows = []
    for number, (line, doc) in enumerate(zip(meta_lines, docs, strict=True), start=1):
        parts = line.split("\t")
        if len(parts) != 3:
            raise GlossError(f"{meta}: line {number}: expected 'id<TAB>train|test<TAB>label' (got {len(parts)} fields)")
        split = parts[1].strip().lower()
        if split not in ("train", "test"):
            raise GlossError(f"{meta}: line {number}: unknown split '{parts[1]}' (expected train or test)")
        rows.append({"text": doc, "label": parts[2], "split": split, "source_row": number})
    frame = pd.DataFrame(rows)
    frames = {s: _clean_frame(frame[frame["split"] == s], corpus) for s in ("train", "test")}
    return RawDataset(name, frames, [meta, corpus], "textgcn")


def known_datasets(root: Path) -> list[str]:
    """Benchmarks plus whatever dataset-looking entries the data root holds."""
    names = set(BENCHMARKS)
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and (entry / "train.csv").is_file():
                names.add(entry.name)
            elif entry.suffix in (".csv", ".jsonl"):
                names.add(entry.stem)
    return sorted(names, key=str.lower)


def load_dataset(name: str, root: str | Path) -> RawDataset:
    """Read dataset ``name`` under ``root`` in whichever supported layout is present.

    Raises:
        GlossError: one line naming what was looked for, or the file, row and problem.
    """
    root = Path(root)
    if not root.is_dir():
        raise GlossError(
            f"data root {root} is not a directory (set --data-root or GLOSS_DATA); {SOURCE_HINT}"
        )
    folder = root / name
    train, test = folder / "train.csv", folder / "test.csv"
    if train.is_file() or test.is_file():
        for path in (train, test):
            if not path.is_file():
                raise GlossError(f"{path} not found (the dataset folder {folder} needs train.csv and test.csv)")
        frames = {}
        for split, path in (("train", train), ("test", test)):
            frame = _read_csv(path)
            _check_columns(frame, path, ("text", "label"))
            frames[split] = _clean_frame(frame, path)
        return RawDataset(name, frames, [train, test], "train-test-csv")
    for path in _split_file_candidates(root, name):
        if path.is_file():
            return _read_split_file(path, name)
    for meta, corpus in _textgcn_candidates(root, name):
        if meta.is_file() and corpus.is_file():
            return _read_textgcn(meta, corpus, name)
    looked = [str(train), str(test), *map(str, _split_file_candidates(root, name)),
              *(f"{m} + {c}" for m, c in _textgcn_candidates(root, name))]
    if name not in known_datasets(root):
        raise GlossError(
            f"unknown dataset '{name}' under {root} (known: {', '.join(known_datasets(root))}); "
            f"looked for {'; '.join(looked[:3])} and the TextGCN layout; {SOURCE_HINT}"
        )
    raise GlossError(f"dataset '{name}' not found: looked for {'; '.join(looked)}; {SOURCE_HINT}")
