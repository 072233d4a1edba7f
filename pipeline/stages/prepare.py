"""``gloss prepare``: read a dataset, validate it, carve the seeded validation split, save the splits.

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
from pipeline.manifest import Manifest, StageContext, run_stage
from pipeline.splits import stratified_holdout, stratified_sample

logger = logging.getLogger("gloss")

STAGE = "prepare"


@dataclass
class PrepareConfig:
    dataset: str
    data_root: str
    val_fraction: float = options.VAL_FRACTION
    seed: int = options.SEED
    limit: int | None = None


def _unseen_labels_check(frames: dict, train_labels: set, files: list[Path]) -> None:
    for split in ("val", "test"):
        if split not in frames:
            continue
        frame = frames[split]
        unseen = ~frame["label"].isin(train_labels)
        if unseen.any():
            first = frame.loc[unseen].iloc[0]
            where = files[-1] if split == "test" else files[0]
            raise GlossError(
                f"{where}: row {int(first['source_row'])}: label '{first['label']}' in {split} does not occur "
                f"in train ({int(unseen.sum())} {split} rows have labels unseen in train)"
            )


def _build_splits(raw, config: PrepareConfig):
    frames = dict(raw.frames)
    train = frames["train"]
    label_names = sorted(set(train["label"]))
    if len(label_names) < 2:
        raise GlossError(
            f"{raw.files[0]}: the training data has a single class ('{label_names[0]}'); "
            "classification needs at least two"
        )
    _unseen_labels_check(frames, set(label_names), raw.files)
    label_ids = {name: i for i, name in enumerate(label_names)}
    if "val" not in frames:
        keep, held = stratified_holdout(train["label"].to_numpy(), config.val_fraction, config.seed)
        frames["val"] = train.iloc[held].reset_index(drop=True)
        frames["train"] = train.iloc[keep].reset_index(drop=True)
    if config.limit is not None:
        fraction = config.limit / len(frames["train"])
        for split in SPLITS:
            frame = frames[split]
            size = config.limit if split == "train" else max(1, math.ceil(len(frame) * fraction))
            rows = stratified_sample(frame["label"].to_numpy(), size, config.seed)
            frames[split] = frame.iloc[rows].reset_index(drop=True)
    for frame in frames.values():
        frame["label_id"] = frame["label"].map(label_ids).astype(np.int64)
    return frames, label_names


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
    raw = load_dataset(config.dataset, config.data_root)
    raw_files = {f"data:{path.name}": path for path in raw.files}

    def body(ctx: StageContext) -> dict:
        frames, label_names = _build_splits(raw, config)
        for split in SPLITS:
            frame = frames[split][["text", "label", "label_id", "source_row"]]
            frame.to_csv(ctx.output(f"{split}.csv", rows=len(frame)), index=False)
        ctx.output(LABELS_FILE).write_text(json.dumps(label_names, indent=1) + "\n")
        return {"layout": raw.layout, **_summary(frames, label_names)}

    return run_stage(run_dir, STAGE, asdict(config), body, input_files=raw_files, force=force, echo=echo)
