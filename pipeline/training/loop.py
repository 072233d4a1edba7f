"""The fine-tuning loop: epochs of batches, validation, checkpoints, early stopping, resume.

Everything random in an epoch (batch plan, dropout, G-Loss's visible/hidden split) is seeded from
``(seed, epoch)``, and a checkpoint is written after every epoch, so a run killed at any point and resumed
from its last checkpoint ends with the same weights and metrics as an uninterrupted one.

:func:`fit` runs four named steps: :meth:`_Fit.resume` (the state of an interrupted run),
:meth:`_Fit.train_one_epoch`, :meth:`_Fit.end_epoch` (validate, record, checkpoint, early stopping,
``on_epoch_end``) and :meth:`_Fit.restore_best`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graphs.losses import is_statistic
from pipeline import options
from pipeline.artifacts import BEST_CHECKPOINT, HISTORY_FILE, LAST_CHECKPOINT, write_history
from pipeline.encoder import to_device
from pipeline.errors import GlossError
from pipeline.evaluation.metrics import accuracy_and_macro_f1, silhouette
from pipeline.hashing import config_differences
from pipeline.training.batching import plan_batches
from pipeline.training.distributed import (
    Ranks,
    from_main,
    raise_together,
    require_shared_folder,
    shard,
    sum_over_ranks,
    together,
)
from pipeline.training.objectives import Objective
from pipeline.training.partial import FullEncoder, param_groups
from pipeline.training.precision import autocast, grad_scaler, resolve_precision

logger = logging.getLogger("gloss")

EPOCH_SEED_STRIDE = 100_003  # the torch seed of epoch e is seed * EPOCH_SEED_STRIDE + e
RANK_SEED_STRIDE = 7_919  # ... plus rank * RANK_SEED_STRIDE: each rank of a data-parallel run its own dropout


@dataclass
class LoopConfig:
    epochs: int = options.EPOCHS
    batch_size: int = options.BATCH_SIZE
    lr: float = options.LR
    head_lr: float = options.HEAD_LR
    optimizer: str = options.DEFAULT_OPTIMIZER
    weight_decay: float = options.WEIGHT_DECAY
    schedule: str = options.DEFAULT_SCHEDULE
    warmup_ratio: float = options.WARMUP_RATIO
    milestones: tuple[int, ...] = field(default_factory=lambda: parse_milestones(options.MILESTONES))
    grad_clip: float = options.GRAD_CLIP
    patience: int = options.PATIENCE
    seed: int = options.SEED
    bucket: bool = True
    balanced: bool = False
    second_forward: bool = False
    eval_batch_size: int = options.EVAL_BATCH_SIZE
    train_layers: str = options.TRAIN_LAYERS  # what is trained (pipeline.training.partial); the stage resolves it
    precision: str = options.DEFAULT_PRECISION  # autocast of the training forward (pipeline.training.precision)
    compile: bool = False  # torch.compile the trained part's forward


def parse_milestones(text: str) -> tuple[int, ...]:
    """``"30"`` or ``"30,60"`` -> ``(30,)`` / ``(30, 60)``: the epochs after which ``multistep`` multiplies the
    learning rates by ``options.MULTISTEP_GAMMA``. ``ValueError`` for anything but positive integers."""
    try:
        milestones = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--milestones {text}: expected a comma list of epochs, e.g. 30 or 30,60") from None
    if not milestones or min(milestones) < 1:
        raise ValueError(f"--milestones {text}: expected a comma list of epochs, e.g. 30 or 30,60")
    return tuple(sorted(milestones))


@dataclass
class FitData:
    """The labelled texts :func:`fit` trains on and validates on (labels: int arrays [N])."""

    train_texts: list[str]
    train_labels: np.ndarray
    val_texts: list[str]
    val_labels: np.ndarray
    # texts without labels that join G-Loss's memory bank after the training rows (the encoder's split "unlabeled")
    unlabeled_texts: list[str] = field(default_factory=list)

    @classmethod
    def from_splits(cls, texts: dict[str, list[str]], labels: dict[str, np.ndarray],
                    unlabeled: list[str] | None = None) -> FitData:
        """From per-split dicts (``pipeline.artifacts.split_texts`` / ``split_labels``)."""
        return cls(texts["train"], labels["train"], texts["val"], labels["val"], list(unlabeled or []))


@dataclass
class Checkpoints:
    """Where :func:`fit` keeps its state: ``last.pt`` after every epoch, ``best.pt`` and ``history.jsonl``.

    ``run_config`` is stored in every checkpoint; with ``resume`` the run continues from ``last.pt`` and is
    refused when the stored config differs.
    """

    folder: Path
    run_config: dict = field(default_factory=dict)
    resume: bool = False

    @property
    def last(self) -> Path:
        return self.folder / LAST_CHECKPOINT

    @property
    def best(self) -> Path:
        return self.folder / BEST_CHECKPOINT

    def load_last(self, device) -> dict | None:
        """The last checkpoint when resuming and there is one (checked against ``run_config``), else None."""
        if not (self.resume and self.last.is_file()):
            return None
        import pickle

        try:
            state = torch.load(self.last, map_location=device, weights_only=True)
        except pickle.UnpicklingError:
            raise GlossError(f"--resume: {self.last} holds more than tensors and plain metadata (written by an "
                             "older gloss?); rerun without --resume to start over") from None
        differences = config_differences(state["run_config"], _plain(self.run_config))
        if differences:
            raise GlossError(
                f"--resume: {self.last} was written with a different config: {', '.join(differences)}"
            )
        return state


@dataclass
class FitCallbacks:
    """How :func:`fit` reports: ``echo`` (one line per epoch), a progress bar, and ``on_epoch_end``.

    ``on_epoch_end(epoch, record)`` runs after each epoch's record and checkpoints are written (the record
    as in ``history.jsonl``); raising from it stops training (e.g. a tuner's pruning), and the interrupted
    run can be resumed from its last checkpoint.
    """

    on_epoch_end: Callable[[int, dict], None] | None = None
    echo: Callable[[str], None] = print
    progress: bool = True


@dataclass
class FitResult:
    best_epoch: int
    history: list[dict]
    epochs_run: int
    stopped_early: bool


@dataclass
class _State:
    """What survives an epoch (and a checkpoint): the history and the early-stopping bookkeeping."""

    history: list[dict] = field(default_factory=list)
    best_value: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    start_epoch: int = 1
    stopped_early: bool = False

    def observe(self, epoch: int, value: float | None, patience: int, epochs: int) -> bool:
        """Track the monitored score of ``epoch``; whether it improved on the best so far."""
        value = -math.inf if value is None else value
        improved = value > self.best_value
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped_early = self.bad_epochs >= patience and epoch < epochs
        return improved


@dataclass
class _Sums:
    """Running sums of an epoch: loss parts weighted by batch size, statistics (``stat_*``) plain."""

    parts: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    docs: int = 0
    started: float = field(default_factory=time.perf_counter)
    mean_padded_length: float | None = None  # of the epoch's batches (what length bucketing saves)

    def add(self, parts: dict[str, torch.Tensor], size: int) -> None:
        for name, value in parts.items():
            if is_statistic(name):
                self.stats[name] = self.stats.get(name, 0.0) + float(value)
            else:
                self.parts[name] = self.parts.get(name, 0.0) + float(value.detach()) * size
        self.docs += size

    def means(self) -> dict[str, float]:
        """``train_<part>`` means per document, then ``train_stat_*`` totals over the epoch."""
        out = {f"train_{k}": v / max(1, self.docs) for k, v in self.parts.items()}
        return out | {f"train_{k}": v for k, v in self.stats.items()}

    def rate(self) -> float:
        return self.docs / max(1e-9, time.perf_counter() - self.started)


def _plain(value):
    """JSON-able metadata as plain Python (no numpy scalars, tuples as lists): loadable with
    ``torch.load(weights_only=True)``."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _make_optimizer(config: LoopConfig, model: nn.Module, head: nn.Module | None, encoder=None,
                    objective: Objective | None = None):
    """AdamW/Adam: the model's trainable pre-trained weights at ``lr``; the head and the batch encoder's fresh
    modules (the adapter of ``--train-layers 0``) at ``head_lr`` (:func:`partial.param_groups`); then what the
    objective trains itself (LCL's weighting network)."""
    groups = param_groups(model, encoder, config.lr, config.head_lr, head.parameters() if head is not None else ())
    if objective is not None:
        groups.extend(objective.param_groups(config.lr, config.head_lr))
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=config.weight_decay)
    raise GlossError(options.choice_error("--optimizer", config.optimizer, options.OPTIMIZERS))


def _make_schedule(config: LoopConfig, optimizer, steps_per_epoch: int):
    """A per-step ``LambdaLR``: warmup then linear or cosine decay; ``constant``; or ``multistep`` (no warmup;
    x ``MULTISTEP_GAMMA`` once each milestone epoch has ended, as ``MultiStepLR`` stepped every epoch)."""
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "multistep":
            epochs_done = step // max(1, steps_per_epoch)
            return options.MULTISTEP_GAMMA ** sum(epochs_done >= m for m in config.milestones)
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.schedule == "linear":
            return max(0.0, 1.0 - progress)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        raise GlossError(options.choice_error("--schedule", config.schedule, options.SCHEDULES))

    factor(0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def score_embeddings(embeddings: np.ndarray, labels: np.ndarray, head: nn.Module | None) -> dict:
    """Validation scores of embeddings [N, D]: macro-silhouette and, with a head, accuracy and macro-F1."""
    if not np.isfinite(embeddings).all():
        raise GlossError("validation embeddings contain NaN or Inf: the model diverged (lower --lr)")
    scored = silhouette(embeddings, labels, max_samples=5000)
    scores = {"val_macro_silhouette": None if scored is None else scored["macro_silhouette"]}
    if head is not None:
        with torch.inference_mode():
            logits = head(torch.from_numpy(embeddings).to(next(head.parameters()).device))
        predictions = logits.argmax(dim=1).cpu().numpy()
        # macro-F1 over the head's C classes (the training label set), however many the val split holds
        scores.update({f"val_{k}": v
                       for k, v in accuracy_and_macro_f1(labels, predictions, num_classes=logits.shape[1]).items()})
    return scores


def fit(
    model,
    head: nn.Module | None,
    objective: Objective,
    data: FitData,
    config: LoopConfig,
    checkpoints: Checkpoints,
    *,
    val_embeddings_dir: Path | None = None,
    callbacks: FitCallbacks | None = None,
    encoder=None,
    ranks: Ranks | None = None,
) -> FitResult:
    """Train ``model`` (and ``head``) with ``objective``; leave the best epoch's weights in ``model``/``head``.

    Early stopping watches ``objective.monitor`` (val macro-F1 with a head, else val macro-silhouette); the
    best epoch's weights are restored at the end. ``val_embeddings_dir`` receives ``epoch-K.npy``, the
    validation embeddings of every epoch. ``encoder`` maps the splits' rows to pooled embeddings
    (:mod:`pipeline.training.partial`: cached frozen layers, adapter); default every layer
    (:class:`~pipeline.training.partial.FullEncoder` over ``data``'s texts).

    ``ranks`` (a :class:`~pipeline.training.distributed.Ranks` of an initialised process group): data-parallel
    training; each rank trains on its shard of every global batch under ``DistributedDataParallel``, rank 0
    alone validates and writes (see :mod:`pipeline.training.distributed`). ``checkpoints.folder`` must be one
    folder every rank sees (a shared filesystem across nodes): checked first, refused in one line otherwise.
    A failure on one rank (a non-finite loss or embedding, a validation or write error) stops every rank with
    the same one-line error.
    """
    encoder = encoder or FullEncoder(model, {"train": data.train_texts, "val": data.val_texts}
                                     | ({"unlabeled": data.unlabeled_texts} if data.unlabeled_texts else {}))
    checkpoints.folder.mkdir(parents=True, exist_ok=True)
    require_shared_folder(checkpoints.folder, ranks or Ranks())
    run = _Fit(model, head, objective, data, config, checkpoints, val_embeddings_dir, callbacks or FitCallbacks(),
               encoder, ranks or Ranks())
    state = run.resume()
    for epoch in range(state.start_epoch, config.epochs + 1):
        if state.stopped_early:
            break
        sums = run.train_one_epoch(epoch)
        run.end_epoch(epoch, state, sums)
    return run.restore_best(state)


class _TrainStep(nn.Module):
    """The modules one training batch runs (model, head, objective), as one module ``DistributedDataParallel``
    can wrap; ``forward(epoch, number, rows)`` gives the batch's loss parts (:meth:`_Fit._forward`)."""

    def __init__(self, run: _Fit) -> None:
        super().__init__()
        self.model, self.head, self.objective = run.model, run.head, run.objective
        self._forward = run._forward  # a bound method, not a submodule

    def forward(self, epoch: int, number: int, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return self._forward(epoch, number, rows)


def _data_parallel(step: _TrainStep, device, train_layers: str) -> nn.Module:
    """``step`` under ``DistributedDataParallel``: gradients averaged over the ranks; buffers (the memory bank)
    are synchronised once at the start, then each rank keeps its own (equal) copy. Full fine-tuning trains the
    encoder's pooler, which mean pooling never uses: DDP is told to expect unused parameters there."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    return DistributedDataParallel(step, device_ids=device_ids, forward_sync_buffers=False,
                                   find_unused_parameters=train_layers == options.TRAIN_LAYERS_ALL)


class _Fit:
    """One call of :func:`fit`: what its steps share (model, optimizer, schedule, data, where to write)."""

    def __init__(self, model, head, objective: Objective, data: FitData, config: LoopConfig,
                 checkpoints: Checkpoints, val_embeddings_dir: Path | None, callbacks: FitCallbacks, encoder,
                 ranks: Ranks) -> None:
        self.model, self.head, self.objective, self.data, self.config = model, head, objective, data, config
        self.encoder, self.ranks = encoder, ranks
        self.checkpoints, self.val_embeddings_dir, self.callbacks = checkpoints, val_embeddings_dir, callbacks
        self.echo = callbacks.echo
        self.device = model.device
        checkpoints.folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        self.lengths = np.asarray(encoder.lengths("train"))
        self.labels = torch.tensor(np.asarray(data.train_labels), dtype=torch.long)
        steps_per_epoch = len(self._plan(0))
        self.echo(f"train: {len(data.train_texts)} training documents tokenised in "
                  f"{time.perf_counter() - started:.1f}s; {steps_per_epoch} batches per epoch, "
                  f"{len(data.val_texts)} validation documents")
        self.optimizer = _make_optimizer(config, model, head, encoder, objective)
        self.schedule = _make_schedule(config, self.optimizer, steps_per_epoch)
        self.second_forward = config.second_forward and objective.combines
        self.precision = resolve_precision(config.precision, self.device)
        self.scaler = grad_scaler(self.device, self.precision)
        if config.compile:
            encoder.compile()
        self.step = _TrainStep(self)
        if ranks.active:
            self.step = _data_parallel(self.step, self.device, config.train_layers)

    def _plan(self, epoch: int) -> list[np.ndarray]:
        """The global batches of ``epoch`` (every rank plans the same; each trains on its :func:`shard`)."""
        c = self.config
        return plan_batches(self.lengths, self.data.train_labels, c.batch_size, c.seed, epoch, c.bucket, c.balanced,
                            min_size=max(2, self.ranks.world_size))

    def _modules(self) -> list[nn.Module]:
        return [self.model] + ([self.head] if self.head is not None else []) + [self.objective]

    # ------------------------------------------------------------------ step 1: resume state

    def resume(self) -> _State:
        """The state to start from: fresh, or restored from the last checkpoint with ``resume``."""
        state = _State()
        with together(self.ranks):  # every rank reads the last checkpoint; one failing stops all
            saved = self.checkpoints.load_last(self.device)
        if saved is None:
            if self.checkpoints.resume:
                self.echo(f"train: --resume found no checkpoint in {self.checkpoints.folder}; starting from epoch 1")
            return state
        self.model.load_state_dict(saved["model"])
        if self.head is not None:
            self.head.load_state_dict(saved["head"])
        self.objective.load_network_state(saved.get("objective"))
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.schedule.load_state_dict(saved["schedule"])
        state.history, state.best_value = saved["history"], saved["best_value"]
        state.best_epoch, state.bad_epochs = saved["best_epoch"], saved["bad_epochs"]
        state.start_epoch = saved["epoch"] + 1
        self.echo(f"train: resumed from {self.checkpoints.last} after epoch {saved['epoch']}")
        if saved.get("stopped"):
            state.start_epoch = self.config.epochs + 1
        state.stopped_early = bool(state.history and state.history[-1].get("stopped_early"))
        return state

    # ------------------------------------------------------------------ step 2: one epoch

    def _encode_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.encoder.embed("train", self.config.eval_batch_size, progress=self._label("memory bank"),
                                        echo=self.echo)
        if not self.data.unlabeled_texts:
            return torch.from_numpy(embeddings), self.labels
        from graphs.memory_bank import UNLABELLED

        extra = self.encoder.embed("unlabeled", self.config.eval_batch_size,
                                   progress=self._label("memory bank, unlabelled"), echo=self.echo)  # [U, D]
        unlabelled = torch.full((len(extra),), UNLABELLED, dtype=torch.long)  # [U]
        return torch.from_numpy(np.concatenate([embeddings, extra])), torch.cat([self.labels, unlabelled])

    def train_one_epoch(self, epoch: int) -> _Sums:
        """Seed the epoch, let the objective refresh (memory bank), then one pass over the batch plan."""
        epoch_seed = self.config.seed * EPOCH_SEED_STRIDE + epoch
        torch.manual_seed(epoch_seed + self.ranks.rank * RANK_SEED_STRIDE)
        self.objective.reseed(epoch_seed)  # the same on every rank: one visible/hidden split of the global batch
        self.objective.on_epoch_start(self._encode_train)
        batches = self._plan(epoch)
        for module in self._modules():
            module.train()
        sums = _Sums(mean_padded_length=round(float(np.mean([self.lengths[rows].max() for rows in batches])), 2))
        bar = self._progress_bar(epoch, len(batches))
        for number, rows in enumerate(batches, start=1):
            rows = shard(rows, self.ranks)
            sums.add(self._step(epoch, number, rows), len(rows))
            self._report(bar, sums, epoch, number, len(batches))
        if bar is not None:
            bar.close()
        return sums

    def _stop_unless(self, finite: bool, epoch: int, number: int, what: str) -> None:
        """Stop training unless ``finite``; in a data-parallel run the ranks agree first (a collective: every
        rank calls it at the same point), so all stop with the same line, naming the rank that diverged."""
        where = f" on rank {self.ranks.rank}" if self.ranks.active else ""
        raise_together(None if finite else GlossError(
            f"epoch {epoch} batch {number}: {what}{where}; stopped, the last good checkpoint is kept in "
            f"{self.checkpoints.folder} (lower --lr and rerun with --resume)"), self.ranks)

    def _forward(self, epoch: int, number: int, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The loss parts of one batch (under the precision's autocast)."""
        batch_labels = self.labels[rows].to(self.device)
        with autocast(self.device, self.precision):
            embeddings = self.encoder.batch("train", rows)
            logits = self.head(embeddings) if self.head is not None else None
            # second_forward: the embedding loss scores a second pass of the same batch (fresh dropout), as the
            # released G-Loss code does; CE keeps the first.
            second = self.encoder.batch("train", rows) if self.second_forward else None
            finite = all(bool(torch.isfinite(e).all()) for e in (embeddings, second) if e is not None)
            self._stop_unless(finite, epoch, number, "NaN or Inf in the embeddings")
            return self.objective(embeddings, logits, batch_labels, indices=torch.as_tensor(rows, device=self.device),
                                  loss_embeddings=second, features=self._weighting_features(rows))

    def _weighting_features(self, rows: np.ndarray) -> dict[str, torch.Tensor] | torch.Tensor | None:
        """The input of LCL's weighting network for the batch: the pooled embeddings of its own batch encoder
        (its --train-layers), else the tokenised texts; ``None`` when the objective has none."""
        weighting = getattr(self.objective, "weighting", None)
        if weighting is None:
            return None
        if weighting.batch_encoder is not None:
            return weighting.batch_encoder.batch("train", rows)  # [B, D]
        return to_device(self.model.preprocess([self.data.train_texts[i] for i in rows]), self.device)

    def _step(self, epoch: int, number: int, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Forward, loss, backward and an optimizer step on one batch (this rank's shard); its loss parts."""
        parts = self.step(epoch, number, rows)
        total = parts["total"]
        finite = bool(torch.isfinite(total))
        self._stop_unless(finite, epoch, number, "" if finite else f"the loss is {total.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.scaler is None:
            total.backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            self.optimizer.step()
        else:  # fp16 on CUDA: scaled loss, unscaled before clipping; a step with inf gradients is skipped
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.schedule.step()
        return parts

    def _label(self, what: str) -> str | bool:
        """A progress label for :func:`embed_texts` (False without progress)."""
        return f"train: {what}" if self.callbacks.progress else False

    def _progress_bar(self, epoch: int, total: int):
        if not self.callbacks.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"epoch {epoch}/{self.config.epochs}", unit="batch", leave=False,
                    disable=None)

    def _report(self, bar, sums: _Sums, epoch: int, number: int, total: int) -> None:
        rate = sums.rate()
        if bar is not None and not bar.disable:
            shown = {k: f"{v / sums.docs:.4f}" for k, v in sums.parts.items()}
            bar.set_postfix({**shown, "docs/s": f"{rate:.1f}"})
            bar.update(1)
        elif self.callbacks.progress and number % max(1, total // 4) == 0 and number < total:
            # No terminal (a log file): a line per quarter epoch instead of a progress bar.
            self.echo(f"train: epoch {epoch}: {number}/{total} batches, "
                      f"training loss so far {sums.parts['total'] / sums.docs:.4f}, {rate:.1f} docs/s")

    # ------------------------------------------------------------------ step 3: end of epoch

    def end_epoch(self, epoch: int, state: _State, sums: _Sums) -> dict:
        """Validate, record the epoch, checkpoint, decide on early stopping, call ``on_epoch_end``."""
        train_seconds = time.perf_counter() - sums.started
        self._sum_over_ranks(sums)
        scores = from_main(lambda: self._validate(epoch), self.ranks)
        record = {
            "epoch": epoch,
            **sums.means(),
            **scores,
            "train_seconds": round(train_seconds, 2),
            "seconds": round(time.perf_counter() - sums.started, 2),
            "docs_per_second": round(sums.docs / max(1e-9, train_seconds), 2),
            "mean_padded_length": sums.mean_padded_length,
        }
        improved = state.observe(epoch, scores.get(self.objective.monitor), self.config.patience,
                                 self.config.epochs)
        record.update(best_so_far=state.best_epoch, stopped_early=state.stopped_early)
        state.history.append(record)
        # rank 0 writes; the others wait (they read best.pt / last.pt only once written) and stop with it
        from_main(lambda: self._write_epoch(epoch, state, record, improved), self.ranks)
        if self.callbacks.on_epoch_end is not None:
            with together(self.ranks):
                self.callbacks.on_epoch_end(epoch, record)
        return record

    def _write_epoch(self, epoch: int, state: _State, record: dict, improved: bool) -> None:
        """The epoch's checkpoints (``best.pt`` when it improved, ``last.pt``), history and line."""
        if improved:
            _atomic_save({"epoch": epoch, "model": self.model.state_dict(), "head": self._head_state(),
                          "objective": self.objective.network_state()}, self.checkpoints.best)
        self._save_last(epoch, state)
        self._echo_epoch(record, improved, state)

    def _validate(self, epoch: int) -> dict:
        """The validation scores of the current weights (rank 0 of a data-parallel run); writes the epoch's
        validation embeddings when asked to."""
        val_embeddings = self.encoder.embed("val", self.config.eval_batch_size,
                                            self._label(f"epoch {epoch}: validation"), self.echo)
        scores = score_embeddings(val_embeddings, self.data.val_labels, self.head)
        if self.val_embeddings_dir is not None:
            self.val_embeddings_dir.mkdir(parents=True, exist_ok=True)
            np.save(self.val_embeddings_dir / f"epoch-{epoch}.npy", val_embeddings)
        return scores

    def _sum_over_ranks(self, sums: _Sums) -> None:
        """A data-parallel epoch's loss parts and document count summed over the ranks (each rank weighed its
        shard's parts by its rows). Statistics stay rank 0's: the gathering losses count the global batch."""
        if self.ranks.active:
            totals = sum_over_ranks({**sums.parts, "__docs": float(sums.docs)}, self.ranks)
            sums.docs = int(round(totals.pop("__docs")))
            sums.parts = totals

    def _head_state(self) -> dict | None:
        return self.head.state_dict() if self.head is not None else None

    def _save_last(self, epoch: int, state: _State) -> None:
        _atomic_save({
            "epoch": epoch, "model": self.model.state_dict(), "head": self._head_state(),
            "objective": self.objective.network_state(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "history": _plain(state.history), "best_value": float(state.best_value), "best_epoch": state.best_epoch,
            "bad_epochs": state.bad_epochs, "run_config": _plain(self.checkpoints.run_config),
            "stopped": state.stopped_early,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }, self.checkpoints.last)
        write_history(state.history, self.checkpoints.folder / HISTORY_FILE)

    def _echo_epoch(self, record: dict, improved: bool, state: _State) -> None:
        self.echo(epoch_line(record, improved))
        if state.stopped_early:
            self.echo(f"train: early stop after epoch {record['epoch']}: {self.objective.monitor} has not "
                      f"improved for {state.bad_epochs} epochs")

    # ------------------------------------------------------------------ step 4: restore best

    def restore_best(self, state: _State) -> FitResult:
        """Load the best epoch's weights back into ``model``/``head``."""
        if state.best_epoch == 0:
            raise GlossError("train: no epoch produced a finite validation score")
        with together(self.ranks):  # every rank has read best.pt before rank 0 moves on (and deletes it)
            best = torch.load(self.checkpoints.best, map_location=self.device, weights_only=True)
            self.model.load_state_dict(best["model"])
            if self.head is not None:
                self.head.load_state_dict(best["head"])
            self.objective.load_network_state(best.get("objective"))
        return FitResult(state.best_epoch, state.history, len(state.history), state.stopped_early)


VAL_SCORE_WORDS = {"val_accuracy": "accuracy", "val_macro_f1": "macro-F1", "val_macro_silhouette": "macro-silhouette"}


def epoch_line(record: dict, improved: bool) -> str:
    """The console line of an epoch, in words: the training loss per document and its parts, the validation
    scores, the time. Statistics (``train_stat_*``: unreached or unscored nodes, ...) stay in
    ``history.jsonl``, whose keys are the record's.

    ``train: epoch 2: training loss 0.9472 (ce 1.0650, g_loss 0.9178); validation accuracy 0.9000, macro-F1
    0.8800; 12s (best so far)``
    """
    def number(key: str) -> float | None:
        value = record.get(key)
        return float(value) if isinstance(value, int | float) else None

    parts = [f"{key[len('train_'):]} {record[key]:.4f}" for key in record
             if key.startswith("train_") and key not in ("train_total", "train_seconds")
             and not is_statistic(key[len("train_"):]) and number(key) is not None]
    words = [f"training loss {record['train_total']:.4f}" + (f" ({', '.join(parts)})" if len(parts) > 1 else "")
             if number("train_total") is not None else ""]
    scores = [f"{word} {record[key]:.4f}" for key, word in VAL_SCORE_WORDS.items() if number(key) is not None]
    if scores:
        words.append("validation " + ", ".join(scores))
    words.append(f"{record.get('seconds', 0):.0f}s" + (" (best so far)" if improved else ""))
    return f"train: epoch {record['epoch']}: " + "; ".join(word for word in words if word)
