"""Reading text-classification datasets from disk, with one-line errors for bad input.

Three layouts are accepted for a dataset ``NAME`` under a data root ``ROOT``:

1. ``ROOT/NAME/train.csv`` and ``ROOT/NAME/test.csv`` with columns ``text,label`` (the benchmarks), and
   optionally ``ROOT/NAME/val.csv``: a given validation split, used as is (the G-Loss reference
   repository's layout, whose CSVs carry an extra unnamed index column);
2. one file with a ``split`` column (``train``/``test``, optionally ``val``): ``ROOT/NAME.csv``,
   ``ROOT/NAME.jsonl``, ``ROOT/NAME/NAME.csv`` or ``ROOT/NAME/NAME.jsonl``;
3. the TextGCN repository's ``data/`` layout: ``ROOT/NAME.txt`` (lines ``id<TAB>train|test<TAB>label``)
   and ``ROOT/corpus/NAME.txt`` (one document per line, same order).

Columns are found by name; other columns (an index column included) are ignored, and listed. Files are
decoded by :func:`pipeline.textfile.decode_file` (``--encoding``) and lines split by
:func:`pipeline.textfile.split_lines`.
"""

from __future__ import annotations

import difflib
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import options
from pipeline.artifacts import SPLITS
from pipeline.errors import GlossError
from pipeline.jsonl import json_objects
from pipeline.labels import is_missing
from pipeline.textfile import decode_file, split_lines

logger = logging.getLogger("gloss")

BENCHMARKS = ("mr", "R8", "R52", "ohsumed", "20ng")
# Python's csv module refuses fields above this by default; 20ng has a 160,615-character post.
CSV_FIELD_LIMIT = 131_072
SOURCE_HINT = (
    "the public benchmark files come from the TextGCN repository's data/ folder "
    "(github.com/yao8839836/text_gcn), readable directly in its own layout"
)
# A column without a name: pandas calls it "Unnamed: 0" (the index column of a DataFrame saved with its index).
INDEX_COLUMN = re.compile(r"^(Unnamed: \d+)?$")


@dataclass
class RawDataset:
    """Documents of one dataset as read from disk.

    Attributes:
        name: the dataset name.
        frames: ``{"train": DataFrame, "test": DataFrame[, "val": DataFrame]}`` with columns
            ``text``, ``label`` and ``source_row`` (1-based data row in its file).
        files: every file read, for hashing.
        layout: which layout was found.
        split_files: the file each split's rows come from (for messages).
        encodings: the encoding each file was read with, by its path under the data root.
        ignored_columns: columns found and ignored, by the file's path under the data root.
    """

    name: str
    frames: dict
    files: list[Path]
    layout: str
    split_files: dict = field(default_factory=dict)
    encodings: dict = field(default_factory=dict)
    ignored_columns: dict = field(default_factory=dict)


@dataclass
class _Reader:
    """Reads the files of one dataset with one encoding, remembering what it used and what it ignored."""

    root: Path
    encoding: str = options.ENCODING
    keep_nan_labels: bool = False
    encodings: dict = field(default_factory=dict)
    ignored_columns: dict = field(default_factory=dict)

    def key(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def decode(self, path: Path) -> str:
        text, used = decode_file(path, self.encoding)
        self.encodings[self.key(path)] = used
        return text

    def table(self, path: Path, required: tuple[str, ...]):
        frame = _read_jsonl(path, self.decode(path)) if path.suffix == ".jsonl" else read_csv_text(path, self.decode(path))
        _check_columns(frame, path, required)
        extra = [str(c) for c in frame.columns if c not in (*required, "source_row")]
        if extra:
            self.ignored_columns[self.key(path)] = extra
            kinds = ["an index column" if INDEX_COLUMN.match(c) else repr(c) for c in extra]
            logger.info("%s: ignored column(s) %s (only %s are read)", path, ", ".join(kinds), ", ".join(required))
        return frame

    def dataset(self, name: str, frames: dict, files: list[Path], layout: str, split_files: dict) -> RawDataset:
        for split, frame in frames.items():
            if len(frame) == 0:
                what = " (a header only)" if split_files[split].suffix == ".csv" else ""
                raise GlossError(f"{split_files[split]}: no {split} documents{what}; {split} needs at least one")
        return RawDataset(name, frames, files, layout, split_files, self.encodings, self.ignored_columns)


def read_csv_text(path: Path, text: str):
    """The rows of CSV ``text`` (decoded from ``path``) as strings, plus ``source_row`` (1-based); one-line errors
    naming ``path`` for an unreadable or empty file."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    except pd.errors.ParserError as exc:
        raise GlossError(f"{path}: not a readable CSV ({str(exc).strip()})") from None
    except pd.errors.EmptyDataError:
        raise GlossError(f"{path}: the file is empty (expected a header 'text,label')") from None
    frame.insert(len(frame.columns), "source_row", range(1, len(frame) + 1))
    return frame


def _read_jsonl(path: Path, text: str):
    import pandas as pd

    rows = [{**row, "source_row": number} for number, row in json_objects(text, path)]
    if not rows:
        raise GlossError(f"{path}: the file is empty (expected one JSON object per line)")
    frame = pd.DataFrame(rows)
    for column in ("text", "label", "split"):
        if column in frame:
            frame[column] = frame[column].map(lambda v: "" if v is None else str(v))
    return frame


def column_hint(columns: list[str], missing: list[str]) -> str:
    """``"; ..."``: the likely cause of ``missing`` columns among the ``columns`` found (names that differ in
    case only, as ``Text,Label``; a header separated by ``;`` or tabs, read as one column), else ``""``."""
    hints = []
    cased = {c.lower(): c for c in columns}
    renames = [f"'{cased[m.lower()]}' -> '{m}'" for m in missing if m.lower() in cased]
    if renames:
        hints.append(f"column names are case-sensitive: rename {', '.join(renames)}")
    if len(columns) == 1:
        separator = next((name for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'"))
                          if sep in columns[0]), None)
        if separator:
            hints.append(f"the header looks separated by {separator}: a .csv must be comma-separated")
    return f"; {'; '.join(hints)}" if hints else ""


def _check_columns(frame, path: Path, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        columns = [str(c) for c in frame.columns if c != "source_row"]
        raise GlossError(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)} "
                         f"(found: {', '.join(columns) or 'none'}){column_hint(columns, missing)}")


def _clean_frame(frame, path: Path, keep_nan_labels: bool = False):
    """Validate one split's rows: non-empty text and label; a missing-value spelling (``nan``, ``None``) as
    a label is refused like an empty one unless ``keep_nan_labels``."""
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
    missing = frame["label"].map(is_missing)
    if missing.any() and not keep_nan_labels:
        first = frame.loc[missing].iloc[0]
        raise GlossError(f"{path}: row {int(first['source_row'])}: label '{first['label'].strip()}' reads as a "
                         f"missing value ({int(missing.sum())} such rows in this file); --keep-nan-labels keeps "
                         "it as a class")
    frame = frame.copy()
    frame["label"] = frame["label"].str.strip()
    return frame[["text", "label", "source_row"]].reset_index(drop=True)


def _split_file_candidates(root: Path, name: str) -> list[Path]:
    return [root / f"{name}.csv", root / f"{name}.jsonl", root / name / f"{name}.csv", root / name / f"{name}.jsonl"]


def _textgcn_candidates(root: Path, name: str) -> list[tuple[Path, Path]]:
    return [(root / f"{name}.txt", root / "corpus" / f"{name}.txt"),
            (root / name / f"{name}.txt", root / name / "corpus" / f"{name}.txt")]


def _read_split_file(reader: _Reader, path: Path, name: str) -> RawDataset:
    frame = reader.table(path, ("text", "label", "split"))
    split = frame["split"].str.strip().str.lower().replace({"validation": "val", "dev": "val"})
    unknown = ~split.isin(SPLITS)
    if unknown.any():
        row = int(frame.loc[unknown, "source_row"].iloc[0])
        raise GlossError(
            f"{path}: row {row}: unknown split '{frame.loc[unknown, 'split'].iloc[0]}' (expected train, val or test)"
        )
    frames = {s: _clean_frame(frame[split == s], path, reader.keep_nan_labels) for s in SPLITS if (split == s).any()}
    for needed in ("train", "test"):
        if needed not in frames:
            raise GlossError(f"{path}: no rows with split '{needed}'")
    return reader.dataset(name, frames, [path], "split-column", dict.fromkeys(frames, path))


def _read_textgcn(reader: _Reader, meta: Path, corpus: Path, name: str) -> RawDataset:
    import pandas as pd

    meta_lines = split_lines(reader.decode(meta))
    docs = split_lines(reader.decode(corpus))
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
    frame = pd.DataFrame(rows, columns=["text", "label", "split", "source_row"])
    frames = {s: _clean_frame(frame[frame["split"] == s], corpus, reader.keep_nan_labels) for s in ("train", "test")}
    return reader.dataset(name, frames, [meta, corpus], "textgcn", dict.fromkeys(frames, meta))


def _read_folder(reader: _Reader, folder: Path, name: str) -> RawDataset:
    """``NAME/train.csv`` + ``NAME/test.csv``, and ``NAME/val.csv`` when there is one (the given split)."""
    paths = {split: folder / f"{split}.csv" for split in SPLITS}
    for split in ("train", "test"):
        if not paths[split].is_file():
            raise GlossError(f"{paths[split]} not found (the dataset folder {folder} needs train.csv and test.csv)")
    if not paths["val"].is_file():
        del paths["val"]
    frames = {split: _clean_frame(reader.table(path, ("text", "label")), path, reader.keep_nan_labels)
              for split, path in paths.items()}
    layout = "train-val-test-csv" if "val" in paths else "train-test-csv"
    return reader.dataset(name, frames, list(paths.values()), layout, paths)


def present_datasets(root: Path) -> list[str]:
    """The dataset names the data root holds, in any supported layout."""
    names = set()
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and ((entry / "train.csv").is_file() or any(
                    p.is_file() for p in _split_file_candidates(root, entry.name)[2:])):
                names.add(entry.name)
            elif entry.suffix in (".csv", ".jsonl"):
                names.add(entry.stem)
            elif entry.suffix == ".txt" and (root / "corpus" / entry.name).is_file():
                names.add(entry.stem)
    return sorted(names, key=str.lower)


def _not_found(name: str, root: Path) -> GlossError:
    """The error for a dataset in no layout: the closest present name, the present ones, what was looked for."""
    folder = root / name
    looked = [str(folder / "train.csv"), str(folder / "test.csv"), *map(str, _split_file_candidates(root, name)),
              *(f"{m} + {c}" for m, c in _textgcn_candidates(root, name))]
    present = present_datasets(root)
    listed = f"present: {', '.join(present)}" if present else "no datasets present"
    if name in BENCHMARKS:
        return GlossError(f"dataset '{name}' not found: looked for {'; '.join(looked)} ({listed} under {root}); "
                          f"{SOURCE_HINT}")
    lowered = {p.lower(): p for p in present}
    close = [lowered[name.lower()]] if name.lower() in lowered else difflib.get_close_matches(name, present, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return GlossError(f"unknown dataset '{name}' under {root} ({hint}{listed}); looked for "
                      f"{'; '.join(looked[:3])} and the TextGCN layout; {SOURCE_HINT}")


def load_dataset(name: str, root: str | Path, encoding: str = options.ENCODING,
                 keep_nan_labels: bool = False) -> RawDataset:
    """Read dataset ``name`` under ``root`` in whichever supported layout is present.

    ``encoding``: ``auto`` (UTF-8, else detected) or a codec name, for every file (see
    :func:`pipeline.textfile.decode_file`). ``keep_nan_labels``: keep ``nan``/``None`` labels as a class
    instead of refusing them.

    Raises:
        GlossError: one line naming what was looked for, or the file, row and problem.
    """
    root = Path(root)
    if not root.is_dir():
        raise GlossError(
            f"data root {root} is not a directory (set --data-root or GLOSS_DATA); {SOURCE_HINT}"
        )
    reader = _Reader(root, encoding, keep_nan_labels)
    folder = root / name
    if (folder / "train.csv").is_file() or (folder / "test.csv").is_file():
        return _read_folder(reader, folder, name)
    for path in _split_file_candidates(root, name):
        if path.is_file():
            return _read_split_file(reader, path, name)
    for meta, corpus in _textgcn_candidates(root, name):
        if meta.is_file() and corpus.is_file():
            return _read_textgcn(reader, meta, corpus, name)
    raise _not_found(name, root)
