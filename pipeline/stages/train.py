"""``gloss train``: fine-tune the encoder with G-Loss or a comparison loss (``--method finetune``).

Outputs (``RUN/train/``): ``model/`` (the best epoch's encoder, ``head.pt``, ``labels.json``),
``embeddings_{train,val,test}.npy`` and, with a head, ``logits_{val,test}.npy`` from the best epoch,
``history.jsonl`` (one record per epoch) and ``val_embeddings/epoch-K.npy`` (to follow the graph across
epochs). Checkpoints live in ``RUN/.scratch/train/`` until the stage finishes; ``--resume`` continues
from the last one.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.encoder import EncoderConfig, embed_texts, load_encoder, resolve_model_path
from pipeline.errors import GlossError
from pipeline.manifest import Manifest, StageContext, load_manifest, run_stage
from pipeline.artifacts import load_splits
from pipeline.training import GRAPH_MODES, LOSSES
from pipeline.training.loop import LoopConfig, fit, write_history
from pipeline.training.objectives import Objective, ObjectiveConfig

logger = logging.getLogger("gloss")

STAGE = "train"
METHODS = ("finetune", "textgcn", "bertgcn")
SIGMA_HEURISTICS = ("sqrt", "dicm")


@dataclass
class GCNConfig:
    """TextGCN / BertGCN hyperparameters (Yao et al. 2019; Lin et al. 2021)."""

    epochs: int = 200
    lr: float = 0.02
    hidden: int = 200
    dropout: float = 0.5
    early_stopping: int = 10
    window: int = 20
    pair_count: str = "windows"
    m: float = 0.7
    bertgcn_lr: float = 1e-3
    bertgcn_encoder_lr: float = 1e-5
    init_from: str | None = None


@dataclass
class TrainConfig:
    method: str = "finetune"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    gcn: GCNConfig = field(default_factory=GCNConfig)

    @property
    def loss(self) -> str:
        return self.objective.loss

    def stage_config(self) -> dict:
        """The sections this method uses (the cache key ignores the others)."""
        full = asdict(self)
        keep = {"finetune": ("method", "encoder", "objective", "loop"),
                "textgcn": ("method", "gcn"),
                "bertgcn": ("method", "encoder", "loop", "gcn")}[self.method]
        out = {k: full[k] for k in keep}
        if self.method == "textgcn":
            out["seed"] = self.loop.seed
        return out


def check_config(config: TrainConfig) -> None:
    """One-line errors for option values that cannot work."""
    if config.method not in METHODS:
        raise GlossError(f"--method {config.method}: expected one of {', '.join(METHODS)}")
    obj = config.objective
    if obj.loss not in LOSSES:
        raise GlossError(f"--loss {obj.loss}: expected one of {', '.join(LOSSES)}")
    if obj.graph not in GRAPH_MODES:
        raise GlossError(f"--graph {obj.graph}: expected one of {', '.join(GRAPH_MODES)}")
    if not 0.0 < obj.gamma < 1.0:
        raise GlossError(f"--gamma {obj.gamma}: the visible share must be between 0 and 1")
    if not 0.0 <= obj.lam <= 1.0:
        raise GlossError(f"--lambda {obj.lam}: must be between 0 and 1")
    if isinstance(obj.sigma, str) and obj.sigma not in SIGMA_HEURISTICS:
        raise GlossError(f"--sigma {obj.sigma}: expected a positive number, sqrt or dicm")
    if not isinstance(obj.sigma, str) and obj.sigma <= 0:
        raise GlossError(f"--sigma {obj.sigma}: must be positive")
    if config.loop.epochs < 1 or config.loop.batch_size < 2:
        raise GlossError("--epochs must be at least 1 and --batch-size at least 2")


def run(config: TrainConfig, run_dir: str | Path, force: bool = False, resume: bool = False, echo=print) -> Manifest:
    check_config(config)
    if config.method != "finetune":
        from pipeline.baselines.stage import run_baseline

        return run_baseline(config, run_dir, force=force, echo=echo)
    resolve_model_path(config.encoder.model)
    prepared = load_manifest(run_dir, "prepare")
    upstream = {"prepare": prepared}
    sigma_value = None
    uses_sigma = config.objective.loss in ("gloss", "gloss+ce")
    if uses_sigma and isinstance(config.objective.sigma, str):
        embedded = load_manifest(run_dir, "embed")
        upstream["embed"] = embedded
        sigma_value = json.loads(embedded.output("sigma.json").read_text())[config.objective.sigma]
    config_dict = config.stage_config()

    def body(ctx: StageContext) -> dict:
        return _finetune(ctx, config, config_dict, prepared, sigma_value, resume, echo)

    return run_stage(run_dir, STAGE, config_dict, body, upstream=upstream, force=force, echo=echo)


def _finetune(ctx: StageContext, config: TrainConfig, config_dict: dict, prepared: Manifest,
              sigma_value: float | None, resume: bool, echo) -> dict:
    import torch

    frames, label_names = load_splits(prepared)
    texts = {s: frames[s]["text"].tolist() for s in frames}
    labels = {s: frames[s]["label_id"].to_numpy() for s in frames}
    num_classes = len(label_names)
    if len(np.unique(labels["train"])) < 2:
        raise GlossError(f"{prepared.output('train.csv')}: the training split has a single class")
    torch.manual_seed(config.loop.seed)
    model = load_encoder(config.encoder)
    device = model.device
    dim = model.get_embedding_dimension()
    objective = _build_objective(config, num_classes, sigma_value, dim, len(texts["train"]))
    head = torch.nn.Linear(dim, num_classes).to(device) if objective.has_head else None
    objective.to(device)
    hooks = _bank_hooks(objective, model, texts["train"], labels["train"], config.loop.eval_batch_size)
    if not resume and (ctx.scratch_dir / "last.pt").is_file():
        echo(f"train: an interrupted run left checkpoints in {ctx.scratch_dir}; starting over (--resume continues it)")
    result = fit(
        model, head, objective, texts["train"], labels["train"], texts["val"], labels["val"], config.loop,
        checkpoint_dir=ctx.scratch_dir, run_config=config_dict, resume=resume,
        val_embeddings_dir=ctx.out_dir / "val_embeddings", echo=echo, **hooks,
    )
    write_history(result.history, ctx.output("history.jsonl", rows=len(result.history)))
    model_dir = ctx.out_dir / "model"
    model.save(str(model_dir))
    (model_dir / "labels.json").write_text(json.dumps(label_names) + "\n")
    if head is not None:
        torch.save({"state_dict": head.state_dict(), "dim": dim, "num_classes": num_classes}, model_dir / "head.pt")
    for split in ("train", "val", "test"):
        embeddings = embed_texts(model, texts[split], config.loop.eval_batch_size, progress=True)
        np.save(ctx.output(f"embeddings_{split}.npy"), embeddings)
        if head is not None and split != "train":
            with torch.inference_mode():
                logits = head(torch.from_numpy(embeddings).to(device)).float().cpu().numpy()
            np.save(ctx.output(f"logits_{split}.npy"), logits)
    for stale in ctx.scratch_dir.glob("*.pt"):
        stale.unlink()
    best = result.history[result.best_epoch - 1]
    seconds = [r["seconds"] for r in result.history]
    return {
        "method": "finetune",
        "loss": config.objective.loss,
        "has_head": head is not None,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "best_val": {k: v for k, v in best.items() if k.startswith("val_")},
        "seconds_per_epoch": round(float(np.mean(seconds)), 2),
        "docs_per_second": round(float(np.mean([r["docs_per_second"] for r in result.history])), 2),
        "sigma": sigma_value,
        "device": str(device),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _build_objective(config: TrainConfig, num_classes: int, sigma_value, dim: int, num_train: int) -> Objective:
    bank = None
    if config.objective.loss in ("gloss", "gloss+ce") and config.objective.graph == "bank":
        from graphs.memory_bank import MemoryBank

        bank = MemoryBank(num_train, dim)
    try:
        return Objective(config.objective, num_classes, sigma_value=sigma_value, seed=config.loop.seed, bank=bank)
    except ValueError as exc:
        raise GlossError(str(exc)) from None


def _bank_hooks(objective: Objective, model, train_texts, train_labels, batch_size: int) -> dict:
    """Bank mode: refresh the memory bank from the current encoder each epoch (G-Loss itself writes each
    batch's detached embeddings into it)."""
    bank = getattr(objective.embedding_loss, "memory_bank", None)
    if bank is None:
        return {}
    import torch

    labels = torch.as_tensor(train_labels, dtype=torch.long)

    def on_epoch_start(epoch: int) -> None:
        bank.fill(torch.from_numpy(embed_texts(model, train_texts, batch_size)), labels)

    return {"on_epoch_start": on_epoch_start}


def remove_checkpoints(run_dir: str | Path) -> None:
    shutil.rmtree(Path(run_dir) / ".scratch" / STAGE, ignore_errors=True)
