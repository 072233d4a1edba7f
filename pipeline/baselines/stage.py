"""``gloss train --method textgcn|bertgcn|tfidf|frozen``: the baselines, written like the fine-tuning runs
(``history.jsonl``, ``logits_{val,test}.npy`` as log-probabilities, embeddings where there are any) so that
``evaluate`` and ``compare`` treat every method alike.

``tfidf`` and ``frozen`` (:mod:`pipeline.baselines.linear`) are not trained in epochs: their history is one
record (the chosen ``C``'s validation scores), and the summary holds the grid, every ``C``'s validation
scores and the chosen ``C``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline import options
from pipeline.artifacts import HISTORY_FILE, SPLITS, load_splits, split_labels, split_texts, write_history
from pipeline.errors import GlossError
from pipeline.manifest import Manifest, StageContext, load_manifest, run_stage
from pipeline.resources import peak_rss_mb


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
    body = {"textgcn": _textgcn_body, "bertgcn": _bertgcn_body, "tfidf": _linear_body,
            "frozen": _linear_body}[config.method]

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


def _frozen_embeddings(config, texts: dict[str, list[str]], echo) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every split's pre-trained pooled embeddings ``[N_split, D]`` from the shared cache (the encoder is
    loaded only when a split is missing there; train and val share one entry with every validation split of
    the dataset); and the splits the cache already had."""
    from pipeline.encoder import cached_split_embeddings, load_encoder

    loaded = []

    def model():
        if not loaded:
            loaded.append(load_encoder(config.encoder))
        return loaded[0]

    embeddings, hits = cached_split_embeddings(model, config.encoder, texts, config.loop.eval_batch_size,
                                               "train: frozen embeddings", echo)
    echo(f"train: frozen embeddings of {', '.join(texts)}: "
         f"{'read from the cache' if len(hits) == len(texts) else 'encoded into the cache'}")
    return embeddings, hits


def _linear_body(ctx: StageContext, config, prepared: Manifest, echo) -> dict:
    """``--method tfidf|frozen``: features, ``C`` chosen on val, log-probabilities of val and test."""
    from pipeline.baselines.linear import choose_c, log_proba_by_label_id, tfidf_features

    frames, label_names = load_splits(prepared)
    texts, labels = split_texts(frames), split_labels(frames)
    if len(np.unique(labels["train"])) < 2:
        raise GlossError(f"{prepared.output('train.csv')}: the training split has a single class")
    splits = SPLITS if config.write_test_outputs else ("train", "val")
    texts = {split: texts[split] for split in splits}
    name = options.REPORTED_METHODS[config.method]
    started = time.perf_counter()
    hits = None
    if config.method == "tfidf":
        features = tfidf_features(texts)
    else:
        features, hits = _frozen_embeddings(config, texts, echo)
        for split in splits:
            np.save(ctx.output(f"embeddings_{split}.npy"), features[split])
    echo(f"train: {name}: {features['train'].shape[1]} features; choosing C on val macro-F1 "
         f"({', '.join(f'{c:g}' for c in config.linear.c_grid)})")
    chosen = choose_c(features["train"], labels["train"], features["val"], labels["val"], config.linear,
                      num_classes=len(label_names), seed=config.loop.seed, echo=echo)
    for split in splits[1:]:
        np.save(ctx.output(f"logits_{split}.npy"), log_proba_by_label_id(chosen.model, features[split],
                                                                         len(label_names)))
    seconds = round(time.perf_counter() - started, 2)
    best = next(s for s in chosen.scores if s["c"] == chosen.c)
    history = [{"epoch": 1, "train_loss": None, "val_accuracy": best["val_accuracy"],
                "val_macro_f1": best["val_macro_f1"], "seconds": seconds}]
    write_history(history, ctx.output(HISTORY_FILE, rows=1))
    echo(f"train: {name}: chose C={chosen.c:g} (val macro-F1 {best['val_macro_f1']:.4f})")
    return {
        "method": name, "loss": None, "has_head": True, "best_epoch": 1, "epochs_run": 1, "stopped_early": False,
        "best_val": {"val_accuracy": best["val_accuracy"], "val_macro_f1": best["val_macro_f1"]},
        "seconds_per_epoch": seconds, "c": chosen.c, "c_grid": list(config.linear.c_grid), "c_scores": chosen.scores,
        "converged": best["converged"], "features": int(features["train"].shape[1]),
        "embedding_cache_hits": hits, "peak_rss_mb": round(peak_rss_mb(), 1),
    }
