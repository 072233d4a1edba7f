"""The fine-tuning loop: epochs of batches, validation, checkpoints, early stopping, resume.

Everything random in an epoch (batch plan, dropout, G-Loss's visible/hidden split) is seeded from
``(seed, epoch)``, and a checkpoint is written after every epoch, so a run killed at any point and resumed
from its last checkpoint ends with the same weights and metrics as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.encoder import embed_texts, to_device, token_lengths
from pipeline.errors import GlossError
from pipeline.evaluation.metrics import accuracy_and_macro_f1, silhouette
from pipeline.training.batching import plan_batches
from pipeline.training.objectives import Objective

logger = logging.getLogger("gloss")

LAST, BEST = "last.pt", "best.pt"


@dataclass
class LoopConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 2e-5
    head_lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    schedule: str = "linear"
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    patience: int = 2
    seed: int = 0
    bucket: bool = True
    balanced: bool = False
    eval_batch_size: int = 64


@dataclass
class FitResult:
    best_epoch: int
    history: list[dict]
    epochs_run: int
    stopped_early: bool


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _make_optimizer(config: LoopConfig, model: nn.Module, head: nn.Module | None):
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": config.head_lr})
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=config.weight_decay)
    raise GlossError(f"--optimizer {config.optimizer}: expected adam or adamw")


def _make_schedule(config: LoopConfig, optimizer, total_steps: int):
    warmup = int(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.schedule == "linear":
            return max(0.0, 1.0 - progress)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        raise GlossError(f"--schedule {config.schedule}: expected linear, cosine or constant")

    factor(0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _seed_epoch(seed: int, epoch: int, objective: Objective) -> None:
    torch.manual_seed(seed * 100_003 + epoch)
    generator = getattr(objective.embedding_loss, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed * 100_003 + epoch)


def config_differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in keys if old.get(k) != new.get(k)]


def validate(model, head, texts, labels: np.ndarray, batch_size: int) -> tuple[dict, np.ndarray]:
    """Validation scores of the current model, and the embeddings they came from ([N, D])."""
    embeddings = embed_texts(model, texts, batch_size)
    if not np.isfinite(embeddings).all():
        raise GlossError("validation embeddings contain NaN or Inf: the model diverged (lower --lr)")
    scored = silhouette(embeddings, labels, max_samples=5000)
    scores = {"val_macro_silhouette": None if scored is None else scored["macro_silhouette"]}
    if head is not None:
        with torch.inference_mode():
            logits = head(torch.from_numpy(embeddings).to(next(head.parameters()).device))
        predictions = logits.argmax(dim=1).cpu().numpy()
        scores.update({f"val_{k}": v for k, v in accuracy_and_macro_f1(labels, predictions).items()})
    return scores, embeddings


def fit(
    model,
    head: nn.Module | None,
    objective: Objective,
    train_texts: list[str],
    train_labels: np.ndarray,
    val_texts: list[str],
    val_labels: np.ndarray,
    config: LoopConfig,
    checkpoint_dir: Path,
    run_config: dict,
    resume: bool = False,
    on_epoch_start: Callable[[int], None] | None = None,
    on_batch_end: Callable[[np.ndarray, torch.Tensor], None] | None = None,
    val_embeddings_dir: Path | None = None,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` (and ``head``) with ``objective``; leave the best epoch's weights in ``model``/``head``.

    Early stopping watches val macro-F1 when there is a head, else val macro-silhouette; the best epoch's
    weights are restored at the end. ``run_config`` is stored in every checkpoint; ``resume`` continues
    from ``checkpoint_dir/last.pt`` and refuses when the stored config differs.
    """
    device = model.device
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    monitor = "val_macro_f1" if head is not None else "val_macro_silhouette"
    lengths = np.asarray(token_lengths(model, train_texts))
    labels_t = torch.tensor(np.asarray(train_labels), dtype=torch.long)
    steps_per_epoch = len(plan_batches(lengths, train_labels, config.batch_size, config.seed, 0,
                                       config.bucket, config.balanced))
    optimizer = _make_optimizer(config, model, head)
    schedule = _make_schedule(config, optimizer, steps_per_epoch * config.epochs)
    history: list[dict] = []
    best_value, best_epoch, bad_epochs, start_epoch = -math.inf, 0, 0, 1
    last_path = checkpoint_dir / LAST
    if resume and last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=False)
        differences = config_differences(state["run_config"], run_config)
        if differences:
            raise GlossError(
                f"--resume: {last_path} was written with a different config: {', '.join(differences)}"
            )
        model.load_state_dict(state["model"])
        if head is not None:
            head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, best_value, best_epoch, bad_epochs = (
            state["history"], state["best_value"], state["best_epoch"], state["bad_epochs"])
        start_epoch = state["epoch"] + 1
        echo(f"train: resumed from {last_path} after epoch {state['epoch']}")
        if state.get("stopped"):
            start_epoch = config.epochs + 1
    elif resume:
        echo(f"train: --resume found no checkpoint in {checkpoint_dir}; starting from epoch 1")

    stopped_early = bool(history and history[-1].get("stopped_early"))
    for epoch in range(start_epoch, config.epochs + 1):
        if stopped_early:
            break
        _seed_epoch(config.seed, epoch, objective)
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        batches = plan_batches(lengths, train_labels, config.batch_size, config.seed, epoch,
                               config.bucket, config.balanced)
        model.train()
        if head is not None:
            head.train()
        sums: dict[str, float] = {}
        started = time.perf_counter()
        docs = 0
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batches), desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False,
                       disable=None)
        for number, rows in enumerate(batches, start=1):
            features = to_device(model.preprocess([train_texts[i] for i in rows]), device)
            batch_labels = labels_t[rows].to(device)
            embeddings = model(features)["sentence_embedding"]
            if not torch.isfinite(embeddings).all():
                raise GlossError(
                    f"epoch {epoch} batch {number}: NaN or Inf in the embeddings; stopped, the last good "
                    f"checkpoint is kept in {checkpoint_dir} (lower --lr and rerun with --resume)"
                )
            logits = head(embeddings) if head is not None else None
            parts = objective(embeddings, logits, batch_labels, indices=torch.as_tensor(rows, device=device))
            total = parts["total"]
            if not torch.isfinite(total):
                raise GlossError(
                    f"epoch {epoch} batch {number}: the loss is {total.item()}; stopped, the last good "
                    f"checkpoint is kept in {checkpoint_dir} (lower --lr and rerun with --resume)"
                )
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if config.grad_clip > 0:
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            schedule.step()
            if on_batch_end is not None:
                on_batch_end(rows, embeddings.detach())
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(rows)
            docs += len(rows)
            rate = docs / max(1e-9, time.perf_counter() - started)
            if bar is not None and not bar.disable:
                bar.set_postfix({**{k: f"{v / docs:.4f}" for k, v in sums.items()}, "docs/s": f"{rate:.1f}"})
                bar.update(1)
            elif progress and number % max(1, len(batches) // 4) == 0 and number < len(batches):
                # No terminal (a log file): a line per quarter epoch instead of a progress bar.
                echo(f"train: epoch {epoch}: {number}/{len(batches)} batches, total={sums['total'] / docs:.4f}, "
                     f"{rate:.1f} docs/s")
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - started
        scores, val_embeddings = validate(model, head, val_texts, val_labels, config.eval_batch_size)
        if val_embeddings_dir is not None:
            val_embeddings_dir.mkdir(parents=True, exist_ok=True)
            np.save(val_embeddings_dir / f"epoch-{epoch}.npy", val_embeddings)
        record = {
            "epoch": epoch,
            **{f"train_{k}": v / max(1, docs) for k, v in sums.items()},
            **scores,
            "train_seconds": round(train_seconds, 2),
            "seconds": round(time.perf_counter() - started, 2),
            "docs_per_second": round(docs / max(1e-9, train_seconds), 2),
        }
        value = scores.get(monitor)
        value = -math.inf if value is None else value
        improved = value > best_value
        if improved:
            best_value, best_epoch, bad_epochs = value, epoch, 0
            _atomic_save({"epoch": epoch, "model": model.state_dict(),
                          "head": head.state_dict() if head is not None else None}, checkpoint_dir / BEST)
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= config.patience and epoch < config.epochs
        record.update(best_so_far=best_epoch, stopped_early=stopped_early)
        history.append(record)
        _atomic_save({
            "epoch": epoch, "model": model.state_dict(), "head": head.state_dict() if head is not None else None,
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "history": history,
            "best_value": best_value, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "run_config": run_config, "stopped": stopped_early,
        }, last_path)
        write_history(history, checkpoint_dir / "history.jsonl")
        shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items()
                          if isinstance(v, float) and k.startswith(("train_", "val_")) and k != "train_seconds")
        echo(f"train: epoch {epoch}: {shown}, {record['seconds']:.0f}s" + (" (best)" if improved else ""))
        if stopped_early:
            echo(f"train: early stop after epoch {epoch}: {monitor} has not improved for {bad_epochs} epochs")
    if best_epoch == 0:
        raise GlossError("train: no epoch produced a finite validation score")
    best = torch.load(checkpoint_dir / BEST, map_location=device, weights_only=False)
    model.load_state_dict(best["model"])
    if head is not None:
        head.load_state_dict(best["head"])
    return FitResult(best_epoch, history, len(history), stopped_early)


def write_history(history: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in history))


def loop_config_dict(config: LoopConfig) -> dict:
    return asdict(config)
