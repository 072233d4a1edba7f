"""The files stages hand each other, in one place: where they live, how they are written and read back.

A stage writes into ``RUN/<stage>/`` through :class:`~pipeline.manifest.StageContext` and reads upstream
outputs through :class:`~pipeline.manifest.Manifest`; this module owns the formats in between:

============================  ===========================================================================
the prepared splits           ``RUN/prepare/{train,val,test}.csv`` + ``labels.json``: :func:`load_splits`
per-epoch history             ``RUN/train/history.jsonl``: :func:`write_history`, :func:`read_history`
the linear head               ``RUN/train/model/head.pt``: :func:`save_head`, :func:`load_head`
embeddings, logits            2-D ``.npy`` arrays checked on load: :func:`load_matrix`
run paths and names           :func:`model_dir`, :func:`checkpoint_path`, :func:`default_run_name`
a run's setting               :func:`run_identity`, :func:`run_config_hash` (replicates share it)
what prediction needs         ``RUN/train/embeddings_train.npy`` + the train labels, and from ``RUN/evaluate``
                              the predictor, ``k``/``alpha`` and spread scores: :func:`load_prediction_setup`
============================  ===========================================================================

Heavy libraries (numpy, pandas, torch) are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic
from pipeline.errors import GlossError
from pipeline.hashing import config_identity, sha256_json
from pipeline.jsonl import json_objects

SPLITS = ("train", "val", "test")
LABELS_FILE = "labels.json"
HISTORY_FILE = "history.jsonl"
MODEL_DIR = "model"
HEAD_FILE = "head.pt"
SCRATCH_DIR = ".scratch"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
TRAIN_STAGE = "train"
EVALUATE_STAGE = "evaluate"
METRICS_FILE = "metrics.json"
SPREAD_FILE = "spread_scores.npz"


# --- run paths and names -------------------------------------------------------------------------------
def model_dir(stage_dir: str | Path) -> Path:
    """The saved encoder folder of a train stage directory (``RUN/train/model``)."""
    return Path(stage_dir) / MODEL_DIR


def scratch_dir(run_dir: str | Path, stage: str) -> Path:
    """A stage's persistent scratch space (``RUN/.scratch/<stage>``), removed once the stage finishes."""
    return Path(run_dir) / SCRATCH_DIR / stage


def checkpoint_path(run_dir: str | Path, stage: str = TRAIN_STAGE) -> Path:
    """The last checkpoint of an interrupted training stage (``RUN/.scratch/train/last.pt``)."""
    return scratch_dir(run_dir, stage) / LAST_CHECKPOINT


def method_slug(name: str) -> str:
    """A method or loss name as it appears in a directory name (``gloss+ce`` -> ``gloss-ce``)."""
    return name.replace("+", "-")


def default_run_name(dataset: str, method: str, seed: int, config_hash: str | None = None) -> str:
    """A run-directory name: ``R8-gloss-ce-seed0``, with ``-<8 hex digits>`` of :func:`run_config_hash`
    when given (``gloss run``'s default, so two settings never share a directory; compare sweeps name
    their runs by the spec's method names instead)."""
    name = f"{dataset}-{method_slug(method)}-seed{seed}"
    return f"{name}-{config_hash[:SHORT_HASH]}" if config_hash else name


# --- a run's setting -----------------------------------------------------------------------------------
SHORT_HASH = 8
TRAINING_SEED = "seed"  # the one key replicates differ in (``loop.seed``; TextGCN's top-level ``seed``)


def run_identity(prepare_config: dict, train_config: dict) -> dict[str, Any]:
    """The setting of a run, as dotted keys: ``data.*`` (the prepare config: dataset, limit, val fraction,
    split seed, ...) and ``train.*`` (the train stage config without the training seed). Paths are reduced
    to what identifies them (the data root and the device are dropped, a model folder or ``--init-from``
    run counts by its name: see :func:`pipeline.hashing.config_identity`)."""
    data = {f"data.{k}": v for k, v in config_identity(prepare_config).items()}
    train = {f"train.{k}": v for k, v in config_identity(train_config, ignore=(TRAINING_SEED,)).items()}
    return data | train


def run_config_hash(prepare_config: dict, train_config: dict) -> str:
    """The sha256 of :func:`run_identity`: equal exactly for runs identical but for the training seed."""
    return sha256_json(run_identity(prepare_config, train_config))


# --- prepared splits -----------------------------------------------------------------------------------
def load_splits(manifest, splits: tuple[str, ...] = SPLITS) -> tuple[dict, list[str]]:
    """Read the prepared ``splits`` of a prepare manifest: ``({"train": df, "val": df, "test": df}, label_names)``
    (only the files of ``splits`` are opened: tuning reads no test file).

    Each frame has the columns ``text, label, label_id, source_row``.
    """
    import pandas as pd

    frames = {
        split: pd.read_csv(manifest.output(f"{split}.csv"), keep_default_na=False, dtype={"text": str, "label": str})
        for split in splits
    }
    label_names = json.loads(manifest.output(LABELS_FILE).read_text())
    return frames, label_names


def split_labels(frames: dict) -> dict:
    """Integer label ids per split (``int64`` arrays)."""
    import numpy as np

    return {split: frames[split]["label_id"].to_numpy().astype(np.int64) for split in frames}


def split_texts(frames: dict) -> dict[str, list[str]]:
    """Texts per split."""
    return {split: frames[split]["text"].tolist() for split in frames}


# --- history -------------------------------------------------------------------------------------------
def write_history(records: list[dict], path: str | Path) -> None:
    """One JSON object per epoch and line; written to a temporary file and renamed into place."""
    write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in records))


def read_history(path: str | Path) -> list[dict]:
    """The epoch records of a ``history.jsonl``; a one-line error naming the line that is not an object."""
    path = Path(path)
    return [record for _, record in json_objects(path.read_text(), path, expected="a JSON object per epoch")]


def history_summary(records: list[dict]) -> dict[str, Any]:
    """Epoch count and the best finite value of each validation score."""
    summary: dict[str, Any] = {"epochs": len(records)}
    for key in ("val_accuracy", "val_macro_f1", "val_macro_silhouette"):
        values = [r[key] for r in records if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
        summary[f"best_{key}"] = max(values) if values else None
    return summary


# --- the linear head -----------------------------------------------------------------------------------
def save_head(head, folder: str | Path) -> Path:
    """Save a ``torch.nn.Linear`` head as ``folder/head.pt`` (state dict, input dim, class count)."""
    import torch

    path = Path(folder) / HEAD_FILE
    torch.save({"state_dict": head.state_dict(), "dim": head.in_features, "num_classes": head.out_features}, path)
    return path


def load_head(folder: str | Path, device: str = "cpu", num_classes: int | None = None):
    """The ``torch.nn.Linear`` saved by :func:`save_head` in ``folder``, or ``None`` when there is none.

    ``num_classes``, when given, must match the saved head (a one-line error otherwise).
    """
    import torch

    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    if num_classes is not None and state["num_classes"] != num_classes:
        raise GlossError(f"{path}: the head has {state['num_classes']} classes, this run {num_classes}")
    head = torch.nn.Linear(state["dim"], state["num_classes"]).to(device)
    head.load_state_dict(state["state_dict"])
    return head


# --- checked arrays ------------------------------------------------------------------------------------
def read_npy(path: str | Path):
    """A ``.npy`` array (never a pickle); a one-line error naming the file when it cannot be read."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GlossError(f"{path}: not a readable .npy array ({exc})") from None


def load_matrix(
    path: str | Path,
    rows: int | None = None,
    split: str | None = None,
    columns: int | None = None,
    allow_inf: bool = False,
    dtype: Any = None,
):
    """Load a 2-D numeric ``.npy`` and check its rows, columns and values; one-line errors naming the file.

    Shapes: -> [rows, columns]. ``allow_inf`` admits -inf/+inf (log-probabilities) but never NaN;
    ``dtype`` converts (e.g. ``np.float32``) after the checks of shape and kind.
    """
    import numpy as np

    path = Path(path)
    array = read_npy(path)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise GlossError(
            f"{path}: expected a 2-D numeric array [documents, columns] (got shape {list(array.shape)}, "
            f"{array.dtype})"
        )
    if rows is not None and array.shape[0] != rows:
        where = f"the {split} split" if split else "the split"
        raise GlossError(f"{path}: {array.shape[0]} rows, but {where} has {rows} documents")
    if columns is not None and array.shape[1] != columns:
        raise GlossError(f"{path}: {array.shape[1]} class columns, but the dataset has {columns} classes")
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    bad = np.isnan(array) if allow_inf else ~np.isfinite(array)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        kind = "NaN" if allow_inf else "NaN or infinite values"
        raise GlossError(f"{path}: row {row} holds {kind} ({int(bad.any(axis=1).sum())} rows affected)")
    return array


# --- what gloss predict needs --------------------------------------------------------------------------
@dataclass
class PredictionSetup:
    """What ``gloss predict`` reads from a run, besides the encoder: the training documents of the graph
    predictors and the choices ``gloss evaluate`` made on validation.

    ``predictor``/``setting`` are the evaluate headline (``head``/``inductive`` when evaluate has not run or
    predates the graph predictors); ``chosen`` maps a predictor key (``lpa-inductive``) to its ``k`` and
    ``alpha``; ``spread`` holds saved spread scores by ``k`` ([N_train, C]).
    """

    label_names: list[str]
    train_embeddings: Any  # [N_train, D] float32, or None when the train stage wrote none
    train_labels: Any  # [N_train] int64
    predictor: str = "head"
    setting: str = "inductive"
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)
    spread: dict[int, Any] = field(default_factory=dict)
    evaluate_dir: Path | None = None


def load_prediction_setup(run_dir: str | Path) -> PredictionSetup:
    """The one loader of what prediction needs from ``RUN/train``, ``RUN/prepare`` and (when present)
    ``RUN/evaluate``; folders written before the graph predictors existed read as the head predictor."""
    import numpy as np

    from pipeline.manifest import load_manifest

    trained = load_manifest(run_dir, TRAIN_STAGE)
    frames, label_names = load_splits(load_manifest(run_dir, "prepare"))
    train_labels = split_labels(frames)["train"]
    embeddings = None
    if "embeddings_train.npy" in trained.data.get("outputs", {}):
        embeddings = load_matrix(trained.output("embeddings_train.npy"), len(train_labels), "train", dtype=np.float32)
    setup = PredictionSetup(label_names, embeddings, train_labels)
    metrics_path = Path(run_dir) / EVALUATE_STAGE / METRICS_FILE
    if not metrics_path.is_file():
        return setup
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as exc:
        raise GlossError(f"{metrics_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    setup.evaluate_dir = metrics_path.parent
    setup.predictor = metrics.get("predictor") or "head"
    setup.setting = metrics.get("setting") or "inductive"
    setup.chosen = {key: {"k": block.get("k"), "alpha": block.get("alpha")}
                    for key, block in (metrics.get("predictors") or {}).items()}
    spread_path = metrics_path.parent / SPREAD_FILE
    if spread_path.is_file():
        with np.load(spread_path, allow_pickle=False) as saved:
            setup.spread = {int(name[1:]): saved[name] for name in saved.files}
    for k, scores in setup.spread.items():
        if scores.shape != (len(train_labels), len(label_names)):
            raise GlossError(f"{spread_path}: k{k} has shape {list(scores.shape)}, expected "
                             f"[{len(train_labels)}, {len(label_names)}] (training documents, classes)")
    return setup
