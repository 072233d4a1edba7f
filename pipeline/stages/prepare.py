"""``gloss prepare``: read a dataset, validate it, carve the seeded validation split (unless the dataset
gives one), save the splits.

Outputs (``RUN/prepare/``): ``train.csv``, ``val.csv``, ``test.csv`` (columns ``text,label,label_id,
source_row``) and ``labels.json`` (label names in id order). Every later stage reads these, so all
methods share the same split.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import options
from pipeline.artifacts import LABELS_FILE, SPLITS
from pipeline.datasets import CSV_FIELD_LIMIT, load_dataset
from pipeline.errors import GlossError
from pipeline.labels import closest_label, describe_pairs, suspect_pairs
from pipeline.manifest import Manifest, StageContext, run_stage
from pipeline.output_paths import check_output_dir
from pipeline.splits import stratified_holdout, stratified_sample
from pipeline.textfile import check_encoding

logger = logging.getLogger("gloss")

STAGE = "prepare"


@dataclass
class PrepareConfig:
    """Options of ``gloss prepare``.

    Args:
        dataset: the dataset name under ``data_root``.
        data_root: the folder holding the datasets.
        val_fraction: share of each training class carved out for validation (when no split is given).
        seed: seed of the validation split and the ``limit`` slices.
        limit: a stratified slice of at most this many training documents (val in proportion); test is kept.
        limit_test: a stratified slice of at most this many test documents (``None``: the whole test set).
        encoding: ``auto`` (UTF-8, else detected) or a codec name, for every input file.
        drop_unseen_labels: drop val/test rows whose label is not in train (counted) instead of refusing.
        keep_nan_labels: keep a ``nan``/``None`` label as a class instead of refusing it.
    """

    dataset: str
    data_root: str
    val_fraction: float = options.VAL_FRACTION
    seed: int = options.SEED
    limit: int | None = None
    limit_test: int | None = None
    encoding: str = options.ENCODING
    drop_unseen_labels: bool = False
    keep_nan_labels: bool = False

    def stage_config(self) -> dict:
        """The config as recorded and hashed; ``keep_nan_labels`` only when set (earlier runs' hashes)."""
        config = asdict(self)
        if not self.keep_nan_labels:
            del config["keep_nan_labels"]
        return config


def _drop_unseen_labels(frames: dict, train_labels: set, raw, drop: bool) -> dict[str, int]:
    """Refuse val/test labels unseen in train, or with ``drop`` remove those rows; the rows dropped per split."""
    dropped = {"val": 0, "test": 0}  # a carved val split comes from train: nothing unseen
    for split in ("val", "test"):
        if split not in frames:
            continue
        frame, where = frames[split], raw.split_files[split]
        unseen = ~frame["label"].isin(train_labels)
        dropped[split] = int(unseen.sum())
        if not unseen.any():
            continue
        first = frame.loc[unseen].iloc[0]
        if not drop:
            raise GlossError(
                f"{where}: row {int(first['source_row'])}: label '{first['label']}' in {split} does not occur "
                f"in train{closest_label(first['label'], train_labels)} ({int(unseen.sum())} {split} rows have "
                "labels unseen in train; --drop-unseen-labels drops them)"
            )
        if unseen.all():
            raise GlossError(f"{where}: every {split} row has a label unseen in train: nothing would be left")
        labels = sorted(set(frame.loc[unseen, "label"]))
        logger.warning("%s: dropped %d %s rows with labels unseen in train (%s)", where, int(unseen.sum()), split,
                       ", ".join(labels))
        frames[split] = frame[~unseen].reset_index(drop=True)
    return dropped


def _carve_val(frames: dict, config: PrepareConfig, train_file) -> None:
    """Hold out the seeded, stratified validation split from train; refuse a train set too small for one."""
    train = frames["train"]
    keep, held = stratified_holdout(train["label"].to_numpy(), config.val_fraction, config.seed)
    if len(held) == 0:
        raise GlossError(
            f"{train_file}: too small for a validation split ({len(train)} documents, every class has one; "
            "a class with at least 2 documents gives one to validation)"
        )
    frames["val"] = train.iloc[held].reset_index(drop=True)
    frames["train"] = train.iloc[keep].reset_index(drop=True)


def _slice(frames: dict, config: PrepareConfig, num_classes: int) -> None:
    """``--limit``: train to at most N documents, val in proportion; ``--limit-test``: test to at most N."""
    if config.limit is not None:
        if config.limit < num_classes:
            raise GlossError(f"--limit {config.limit}: fewer than the {num_classes} classes (every class needs a "
                             "training document)")
        fraction = config.limit / len(frames["train"])
        sizes = {"train": config.limit, "val": max(1, math.ceil(len(frames["val"]) * fraction))}
        for split, size in sizes.items():
            rows = stratified_sample(frames[split]["label"].to_numpy(), size, config.seed)
            frames[split] = frames[split].iloc[rows].reset_index(drop=True)
    if config.limit_test is not None:
        rows = stratified_sample(frames["test"]["label"].to_numpy(), config.limit_test, config.seed)
        frames["test"] = frames["test"].iloc[rows].reset_index(drop=True)


def _build_splits(raw, config: PrepareConfig):
    """``(frames, label names, facts for the summary)``: the checked, carved and sliced splits."""
    frames = dict(raw.frames)
    train = frames["train"]
    label_names = sorted(set(train["label"]))
    if len(label_names) < 2:
        raise GlossError(
            f"{raw.split_files['train']}: the training data has a single class ('{label_names[0]}'); "
            "classification needs at least two"
        )
    pairs = suspect_pairs(label_names)
    if pairs:
        logger.warning("%s: labels that differ only in form are separate classes: %s", raw.split_files["train"],
                       describe_pairs(pairs))
    dropped = _drop_unseen_labels(frames, set(label_names), raw, config.drop_unseen_labels)
    label_ids = {name: i for i, name in enumerate(label_names)}
    given = "val" in frames
    if not given:
        _carve_val(frames, config, raw.split_files["train"])
    _slice(frames, config, len(label_names))
    for frame in frames.values():
        frame["label_id"] = frame["label"].map(label_ids).astype(np.int64)
    facts = {"val_split": "given" if given else "carved", "dropped_unseen_labels": dropped}
    return frames, label_names, facts


def _summary(frames: dict, label_names: list[str]) -> dict:
    summary = {"num_classes": len(label_names), "labels": label_names, "rows": {}, "class_counts": {}}
    for split, frame in frames.items():
        summary["rows"][split] = len(frame)
        summary["class_counts"][split] = {k: int(v) for k, v in frame["label"].value_counts().sort_index().items()}
    duplicates = {split: int(frame.duplicated(["text", "label"]).sum()) for split, frame in frames.items()}
    long_fields = {split: int((frame["text"].str.len() > CSV_FIELD_LIMIT).sum()) for split, frame in frames.items()}
    summary["duplicate_rows_kept"] = duplicates
    summary["texts_over_131072_chars"] = long_fields
    if any(duplicates.values()):
        logger.info("duplicate (text, label) rows kept: %s", duplicates)
    if any(long_fields.values()):
        logger.info("texts longer than %d characters kept whole: %s", CSV_FIELD_LIMIT, long_fields)
    return summary


def run(config: PrepareConfig, run_dir: str | Path, force: bool = False, echo=print) -> Manifest:
    """Prepare ``config.dataset`` into ``run_dir/prepare``."""
    if not 0.0 < config.val_fraction < 1.0:
        raise GlossError(f"--val-fraction must be between 0 and 1 (got {config.val_fraction})")
    if config.limit is not None and config.limit < 2:
        raise GlossError(f"--limit must be at least 2 (got {config.limit})")
    if config.limit_test is not None and config.limit_test < 1:
        raise GlossError(f"--limit-test must be at least 1 (got {config.limit_test})")
    check_encoding(config.encoding)
    check_output_dir(run_dir)
    raw = load_dataset(config.dataset, config.data_root, encoding=config.encoding,
                       keep_nan_labels=config.keep_nan_labels)
    names = [path.name for path in raw.files]
    if len(set(names)) < len(names):  # the TextGCN layout: NAME.txt and corpus/NAME.txt
        names = [path.relative_to(config.data_root).as_posix() for path in raw.files]
    raw_files = {f"data:{name}": path for name, path in zip(names, raw.files, strict=True)}

    def body(ctx: StageContext) -> dict:
        frames, label_names, facts = _build_splits(raw, config)
        for split in SPLITS:
            frame = frames[split][["text", "label", "label_id", "source_row"]]
            frame.to_csv(ctx.output(f"{split}.csv", rows=len(frame)), index=False)
        ctx.output(LABELS_FILE).write_text(json.dumps(label_names, indent=1) + "\n")
        return {"layout": raw.layout, **facts, "encodings": raw.encodings, "ignored_columns": raw.ignored_columns,
                **_summary(frames, label_names)}

    return run_stage(run_dir, STAGE, config.stage_config(), body, input_files=raw_files, force=force, echo=echo)
