"""``gloss train --method textgcn|bertgcn``: the graph baselines, written like the fine-tuning runs
(``history.jsonl``, ``logits_{val,test}.npy`` as log-probabilities, embeddings where there are any) so that
``evaluate`` and ``compare`` treat every method alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.artifacts import HISTORY_FILE, SPLITS, load_splits, split_texts, write_history
from pipeline.manifest import Manifest, StageContext, load_manifest, run_stage


def _columns_in_label_order(proba: np.ndarray, classes: list[str], label_names: list[str]) -> np.ndarray:
    """Reorder probability columns from the model's class order into the prepared label-id order."""
    out = np.zeros((len(proba), len(label_names)), dtype=np.float64)
    position = {name: i for i, name in enumerate(label_names)}
    for column, name in enumerate(classes):
        out[:, position[name]] = proba[:, column]
    return out


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p).astype(np.float32)


def run_baseline(config, run_dir: str | Path, force: bool = False, echo=print) -> Manifest:
    prepared = load_manifest(run_dir, "prepare")
    body = _textgcn_body if config.method == "textgcn" else _bertgcn_body

    def stage_body(ctx: StageContext) -> dict:
        return body(ctx, config, prepared, echo)

    return run_stage(run_dir, "train", config.stage_config(), stage_body, upstream={"prepare": prepared},
                     force=force, echo=echo)


def _textgcn_body(ctx: StageContext, config, prepared: Manifest, echo) -> dict:
    from pipeline.baselines.textgcn import TextGCNConfig, train_textgcn

    frames, label_names = load_splits(prepared)
    texts = split_texts(frames)
    labels = {split: frames[split]["label"].tolist() for split in SPLITS}
    gcn = config.gcn
    echo(f"train: TextGCN on {prepared.config['dataset']} (graph of train+val+test documents and words)")
    textgcn_config = TextGCNConfig(epochs=gcn.epochs, lr=gcn.lr, hidden=gcn.hidden, dropout=gcn.dropout,
                                   early_stopping=gcn.early_stopping, window_size=gcn.window,
                                   pair_count=gcn.pair_count)
    result = train_textgcn(texts["train"], labels["train"], texts["val"], labels["val"], texts["test"],
                           labels["test"], prepared.config["dataset"], config.loop.seed, textgcn_config)
    proba = _columns_in_label_order(np.asarray(result.test_proba), result.classes, label_names)
    np.save(ctx.output("logits_test.npy"), _log(proba))
    history = [
        {"epoch": h["epoch"], "train_loss": h.get("train_loss"), "val_loss": h.get("val_loss"),
         "val_accuracy": h.get("val_acc"), "val_macro_f1": h.get("val_macro_f1"), "seconds": h.get("seconds")}
        for h in result.history
    ]
    write_history(history, ctx.output(HISTORY_FILE, rows=len(history)))
    echo(f"train: TextGCN best epoch {result.best_epoch}, stopped at {result.stopped_epoch}, "
         f"test accuracy {result.test_accuracy:.4f}")
    return {
        "method": "textgcn", "loss": None, "has_head": True, "best_epoch": result.best_epoch,
        "epochs_run": result.stopped_epoch, "stopped_early": result.stopped_epoch < gcn.epochs,
        "best_val": {"val_accuracy": history[result.best_epoch - 1]["val_accuracy"],
                     "val_macro_f1": history[result.best_epoch - 1]["val_macro_f1"]},
        "seconds_per_epoch": round(result.seconds_per_epoch, 4),
        "graph": {"nodes": result.num_nodes, "words": result.num_words, "edges": result.num_edges,
                  "build_seconds": round(result.graph_build_seconds, 2)},
        "peak_rss_mb": round(result.peak_memory_mb, 1),
    }


def _bertgcn_body(ctx: StageContext, config, prepared: Manifest, echo) -> dict:
    from pipeline.baselines.bertgcn import train_bertgcn

    return train_bertgcn(ctx, config, prepared, echo)
