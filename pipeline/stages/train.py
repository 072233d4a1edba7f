"""``gloss train``: fine-tune the encoder with G-Loss or a comparison loss (``--method finetune``).

Outputs (``RUN/train/``): ``model/`` (the best epoch's encoder, ``head.pt``, ``labels.json`` and the model
card ``README.md``, :mod:`pipeline.model_card`; load it as a classifier with
:meth:`pipeline.classifier.GlossClassifier.from_pretrained`),
``embeddings_{train,val,test}.npy`` and, with a head, ``logits_{val,test}.npy`` from the best epoch,
``history.jsonl`` (one record per epoch) and ``val_embeddings/epoch-K.npy`` (to follow the graph across
epochs). Checkpoints live in ``RUN/.scratch/train/`` until the stage finishes; ``--resume`` continues
from the last one.

``--sigma sqrt|dicm`` is the corpus value ``gloss embed`` computed on the pre-trained train embeddings
(read from ``RUN/embed/sigma.json``); ``batch-sqrt|batch-dicm`` are recomputed by G-Loss on every batch
and need no embed stage; a number is used as is. A corpus value below ``options.MIN_USEFUL_SIGMA`` (0.01;
``dicm`` on a corpus with near-duplicate documents of different classes) falls back to the ``sqrt``
heuristic's value, with a warning and ``sigma_fallback`` in the manifest summary (the released code falls
back to a sigma given by hand).

``--class-weights balanced`` is scikit-learn's ``compute_class_weight("balanced")`` on the whole training
split, computed once here and handed to the objective (CE, G-Loss and SupCon). ``--preset NAME`` is recorded
as ``preset`` in the config.

``--loss lcl+ce --lcl-weighting separate`` loads a second copy of the encoder as LCL's weighting network; it
trains what ``--train-layers`` says of it, on the main encoder's cached inputs, and is
trained and checkpointed with the run and saved in ``RUN/train/weighting/`` (a sentence-transformers folder
and ``head.pt``; the best epoch's, like ``model/``).

``--train-layers auto`` is resolved here (:func:`resolve_protocol`: full fine-tuning on CUDA,
``options.TRAIN_LAYERS_CPU`` on a CPU) and said in one line; the config and manifest hold the resolved value,
so the protocol is part of the run's identity. ``--precision auto`` is resolved the same way.

Under ``torchrun --nproc-per-node N --no-python gloss train ...`` the stage trains data-parallel
(:mod:`pipeline.training.distributed`): every rank runs it, rank 0 alone writes ``RUN/train`` and says what
happens; the others train their shards and write nothing. Across several machines the run directory must be on
a filesystem every machine mounts at the same path (rank 0 writes the checkpoints, every rank reads them): this
is checked before the first epoch and refused in one line otherwise. A failure on one rank (a non-finite loss,
a validation or write error on rank 0) stops every rank with the same one-line error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline import options
from pipeline.artifacts import (
    HISTORY_FILE,
    LABELS_FILE,
    LAST_CHECKPOINT,
    SPLITS,
    TRAIN_STAGE,
    load_splits,
    model_dir,
    save_head,
    scratch_dir,
    split_labels,
    split_texts,
    write_history,
)
from pipeline.baselines.linear import LinearConfig
from pipeline.encoder import EncoderConfig, load_encoder, resolve_device, resolve_model_path
from pipeline.errors import GlossError
from pipeline.manifest import Manifest, StageContext, current_stage, load_manifest, run_stage
from pipeline.model_card import card_facts, write_card
from pipeline.resources import peak_rss_mb
from pipeline.training import distributed
from pipeline.training.loop import Checkpoints, FitCallbacks, FitData, LoopConfig, fit
from pipeline.training.objectives import Objective, ObjectiveConfig, WeightingNetwork, uses_weighting_network
from pipeline.training.partial import (
    build_encoder,
    describe,
    encoder_for_copy,
    parse_train_layers,
    resolve_train_layers,
)
from pipeline.training.precision import resolve_precision

logger = logging.getLogger("gloss")

STAGE = TRAIN_STAGE
WEIGHTING_DIR = "weighting"  # RUN/train/weighting/: lcl+ce's weighting network (--lcl-weighting separate)


@dataclass
class GCNConfig:
    """TextGCN / BertGCN hyperparameters (Yao et al. 2019; Lin et al. 2021)."""

    epochs: int = options.GCN_EPOCHS
    lr: float = options.GCN_LR
    hidden: int = options.GCN_HIDDEN
    dropout: float = options.GCN_DROPOUT
    early_stopping: int = options.GCN_EARLY_STOPPING
    window: int = options.GCN_WINDOW
    pair_count: str = options.DEFAULT_PAIR_COUNT
    m: float = options.BERTGCN_M
    bertgcn_lr: float = options.BERTGCN_LR
    bertgcn_encoder_lr: float = options.BERTGCN_ENCODER_LR
    bertgcn_activation: str = options.BERTGCN_ACTIVATION
    bertgcn_bias: bool = False
    bertgcn_schedule: str = options.BERTGCN_SCHEDULE
    init_from: str | None = None


@dataclass
class TrainConfig:
    method: str = options.DEFAULT_METHOD
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    gcn: GCNConfig = field(default_factory=GCNConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)  # --method tfidf|frozen
    preset: str | None = None  # the --preset whose values were the defaults (options.PRESETS)
    # False: no test embeddings or logits are computed (tuning trials never look at test data); recorded in
    # the stage config only when False, so the hashes of ordinary runs do not change.
    write_test_outputs: bool = True
    # --unlabeled: "test", "val+test" or an absolute file path; recorded in the stage config only when set
    unlabeled: str | None = None

    @property
    def loss(self) -> str:
        return self.objective.loss

    def stage_config(self) -> dict:
        """The sections this method uses (the cache key ignores the others)."""
        full = asdict(self)
        keep = {"finetune": ("method", "encoder", "objective", "loop"),
                "textgcn": ("method", "gcn"),
                "bertgcn": ("method", "encoder", "loop", "gcn"),
                "tfidf": ("method", "linear"),
                "frozen": ("method", "encoder", "linear")}[self.method]
        out = {k: full[k] for k in keep} | {"preset": self.preset}
        if "objective" in out and self.objective.bank_index == options.DEFAULT_BANK_INDEX:  # earlier runs' hashes
            out["objective"] = {k: v for k, v in out["objective"].items() if k not in ("bank_index", "nprobe")}
        if not self.write_test_outputs:
            out["write_test_outputs"] = False
        if self.unlabeled is not None:
            out["unlabeled"] = self.unlabeled
            if self.unlabeled not in options.UNLABELED_SPLITS and Path(self.unlabeled).is_file():
                from pipeline.hashing import sha256_file

                out["unlabeled_sha256"] = sha256_file(self.unlabeled)
        if self.method in ("textgcn", "tfidf", "frozen"):
            out["seed"] = self.loop.seed
        return out


def _check_choice(option: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise GlossError(options.choice_error(option, value, choices))


def check_config(config: TrainConfig) -> None:
    """One-line errors for option values that cannot work (the one place they are validated)."""
    _check_choice("--method", config.method, options.METHODS)
    obj = config.objective
    _check_choice("--loss", obj.loss, options.LOSSES)
    _check_choice("--graph", obj.graph, options.GRAPH_MODES)
    _check_choice("--bank-index", obj.bank_index, options.BANK_INDEXES)
    if obj.bank_index != options.DEFAULT_BANK_INDEX and obj.graph != "bank":
        raise GlossError(f"--bank-index {obj.bank_index}: applies to --graph bank only (got --graph {obj.graph})")
    if obj.nprobe < 1:
        raise GlossError(f"--nprobe {obj.nprobe}: must be at least 1")
    _check_choice("--loss-form", obj.loss_form, options.LOSS_FORMS)
    _check_choice("--variant", obj.variant, options.VARIANTS)
    _check_choice("--class-weights", obj.class_weights, options.CLASS_WEIGHTS)
    _check_choice("--lcl-weighting", obj.lcl_weighting, options.LCL_WEIGHTINGS)
    if config.preset is not None:
        _check_choice("--preset", config.preset, tuple(options.PRESETS))
    if obj.variant == "released" and obj.loss_form != options.DEFAULT_LOSS_FORM:
        raise GlossError(f"--loss-form {obj.loss_form}: applies to --variant gloss only (--variant released "
                         "computes the loss as the released code does)")
    if obj.variant == "released" and obj.graph != "dense" and obj.loss in options.G_LOSSES:
        raise GlossError(f"--variant released: the released code builds dense batch graphs only "
                         f"(got --graph {obj.graph})")
    _check_unlabeled(config)
    _check_choice("--schedule", config.loop.schedule, options.SCHEDULES)
    _check_choice("--bertgcn-activation", config.gcn.bertgcn_activation, options.BERTGCN_ACTIVATIONS)
    _check_choice("--bertgcn-schedule", config.gcn.bertgcn_schedule, options.BERTGCN_SCHEDULES)
    if not 0.0 < obj.gamma < 1.0:
        raise GlossError(f"--gamma {obj.gamma}: the visible share must be between 0 and 1")
    if not 0.0 <= obj.lam <= 1.0:
        raise GlossError(f"--lambda {obj.lam}: must be between 0 and 1")
    if obj.temperature <= 0:
        raise GlossError(f"--temperature {obj.temperature}: must be positive")
    if options.sigma_error(obj.sigma):
        raise GlossError(options.sigma_error(obj.sigma))
    _check_choice("--precision", config.loop.precision, options.PRECISIONS)
    parse_train_layers(config.loop.train_layers)
    if config.loop.epochs < 1 or config.loop.batch_size < 2:
        raise GlossError("--epochs must be at least 1 and --batch-size at least 2")


def _check_unlabeled(config: TrainConfig) -> None:
    value, obj = config.unlabeled, config.objective
    if value is None:
        return
    if config.method != "finetune" or obj.loss not in options.G_LOSSES:
        raise GlossError(f"--unlabeled: needs a G-Loss term in the loss (--loss gloss or gloss+ce; got "
                         f"{'--loss ' + obj.loss if config.method == 'finetune' else '--method ' + config.method})")
    if obj.graph != "bank":
        raise GlossError(f"--unlabeled: applies to --graph bank only (got --graph {obj.graph})")
    if value not in options.UNLABELED_SPLITS and not Path(value).is_file():
        raise GlossError(f"--unlabeled {value}: neither {' nor '.join(options.UNLABELED_SPLITS)} nor a file")


def unlabeled_texts(value: str | None, frames: dict, encoding: str = options.ENCODING) -> list[str]:
    """The texts of ``--unlabeled`` (only the ``text`` column of the prepared splits: labels are never read;
    a file's empty documents are dropped)."""
    if value is None:
        return []
    if value in options.UNLABELED_SPLITS:
        return [text for split in value.split("+") for text in frames[split]["text"].tolist()]
    from pipeline.predict import read_documents

    return [doc for doc in read_documents(value, encoding) if doc.strip()]


def resolve_protocol(config: TrainConfig) -> TrainConfig:
    """``config`` with ``--train-layers auto`` and ``--precision auto`` replaced by what they mean on its
    device (fine-tuning; BertGCN's ``--train-layers`` too; the other methods keep theirs)."""
    if config.method == "bertgcn":
        layers = resolve_train_layers(config.loop.train_layers, resolve_device(config.encoder.device))
        return replace(config, loop=replace(config.loop, train_layers=layers))
    if config.method != "finetune":
        return config
    device = resolve_device(config.encoder.device)
    loop = replace(config.loop, train_layers=resolve_train_layers(config.loop.train_layers, device),
                   precision=resolve_precision(config.loop.precision, device))
    return replace(config, loop=loop)


def run(config: TrainConfig, run_dir: str | Path, force: bool = False, resume: bool = False, echo=print,
        on_epoch_end=None) -> Manifest | None:
    """Train into ``RUN/train``. ``on_epoch_end(epoch, record)`` (fine-tuning only) is the loop's per-epoch
    callback: raising from it stops training (``gloss tune`` prunes trials with it)."""
    check_config(config)
    prepared = load_manifest(run_dir, "prepare")  # a missing stage stops before any model is loaded
    if config.method != "finetune":
        if distributed.launched_by_torchrun():
            raise GlossError(f"--method {config.method}: data-parallel training (torchrun) is for --method finetune")
        from pipeline.baselines.stage import run_baseline

        return run_baseline(resolve_protocol(config), run_dir, force=force, echo=echo)
    resolve_model_path(config.encoder.model)
    embedded = load_manifest(run_dir, "embed") if config.objective.reads_corpus_sigma else None
    requested = config.loop.train_layers
    config = resolve_protocol(config)
    config, ranks = _join_data_parallel(config)
    distributed.require_shared_folder(Path(run_dir), ranks)  # before a model is loaded or anything written
    if not ranks.main:
        echo = _silent
    echo(f"train: --train-layers {config.loop.train_layers}"
         f"{' (auto on ' + resolve_device(config.encoder.device) + ')' if requested == options.TRAIN_LAYERS_AUTO else ''}"
         f": {describe(config.loop.train_layers)}; precision {config.loop.precision}"
         f"{', torch.compile' if config.loop.compile else ''}")
    upstream = {"prepare": prepared}
    sigma = None
    if embedded is not None:
        upstream["embed"] = embedded
        sigma = corpus_sigma(json.loads(embedded.output("sigma.json").read_text()), config.objective.sigma, echo)
    config_dict = config.stage_config()

    def body(ctx: StageContext) -> dict:
        return _finetune(ctx, config, config_dict, prepared, sigma, resume, echo, on_epoch_end, ranks)

    if not ranks.main:
        return _follow(run_dir, config_dict, body, upstream, force)
    return run_stage(run_dir, STAGE, config_dict, body, upstream=upstream, force=force, echo=echo)


def _silent(_line: str) -> None:
    """The echo of data-parallel ranks other than 0 (rank 0 speaks for the run)."""


def _join_data_parallel(config: TrainConfig) -> tuple[TrainConfig, distributed.Ranks]:
    """The process group of a torchrun launch (none otherwise), refusing what cannot train data-parallel;
    on CUDA each rank gets its own GPU (``cuda:LOCAL_RANK``)."""
    device = resolve_device(config.encoder.device)
    ranks = distributed.init_from_environment(device)
    if not ranks.active:
        return config, ranks
    if config.objective.loss not in distributed.GATHERING_LOSSES:
        raise GlossError(f"--loss {config.objective.loss}: data-parallel training needs a loss that sees the global "
                         f"batch ({', '.join(distributed.GATHERING_LOSSES)})")
    if config.loop.batch_size < 2 * ranks.world_size:
        raise GlossError(f"--batch-size {config.loop.batch_size}: with {ranks.world_size} processes the global batch "
                         f"needs at least {2 * ranks.world_size} documents (2 per process)")
    encoder = replace(config.encoder, device=distributed.cuda_device_of(ranks, device))
    return replace(config, encoder=encoder), ranks


def _follow(run_dir, config_dict: dict, body, upstream: dict, force: bool) -> None:
    """A data-parallel rank other than 0: the same training as rank 0 (skipped when rank 0 skips it: the stage
    is up to date), its checkpoints read from the shared scratch folder, nothing written."""
    import tempfile

    if not force and current_stage(run_dir, STAGE, config_dict, upstream=upstream) is not None:
        return None
    with tempfile.TemporaryDirectory(prefix="gloss-rank-") as unused_out:
        body(StageContext(STAGE, Path(run_dir), Path(unused_out), scratch_dir(run_dir, STAGE), config_dict))
    return None


@dataclass(frozen=True)
class CorpusSigma:
    """The corpus sigma G-Loss uses: ``value``, and ``fallback_from`` (the heuristic's own value) when it was
    below ``options.MIN_USEFUL_SIGMA`` and the ``sqrt`` heuristic's value replaced it."""

    value: float
    fallback_from: float | None = None


def corpus_sigma(heuristics: dict, name: str, echo=print) -> CorpusSigma:
    """The value of heuristic ``name`` in ``RUN/embed/sigma.json``, or the ``sqrt`` value below 0.01 (logged)."""
    value = float(heuristics[name])
    if value >= options.MIN_USEFUL_SIGMA:
        return CorpusSigma(value)
    fallback = float(heuristics["sqrt"])
    if name == "sqrt" or fallback < options.MIN_USEFUL_SIGMA:
        logger.warning("sigma %s = %.3g is below %s and so is the sqrt heuristic: used as is", name, value,
                       options.MIN_USEFUL_SIGMA)
        return CorpusSigma(value)
    echo(f"train: sigma {name} = {value:.3g} is below {options.MIN_USEFUL_SIGMA}: using the sqrt heuristic's "
         f"{fallback:.4f} instead")
    return CorpusSigma(fallback, fallback_from=value)


def _class_weights(config: TrainConfig, train_labels: np.ndarray, num_classes: int):
    """The ``[C]`` class-weight tensor of ``--class-weights`` (``None`` for ``none``)."""
    if config.objective.class_weights == "none":
        return None
    from pipeline.training.objectives import balanced_class_weights

    try:
        return balanced_class_weights(train_labels, num_classes)
    except ValueError as exc:
        raise GlossError(f"--class-weights balanced: {exc}") from None


def _finetune(ctx: StageContext, config: TrainConfig, config_dict: dict, prepared: Manifest,
              sigma: CorpusSigma | None, resume: bool, echo, on_epoch_end=None,
              ranks: distributed.Ranks = distributed.Ranks()) -> dict:
    import torch

    # each rank reads, loads and caches on its own: one failing stops all (none left waiting in fit's collectives)
    with distributed.together(ranks):
        splits = SPLITS if config.write_test_outputs else tuple(s for s in SPLITS if s != "test")
        frames, label_names = load_splits(prepared, splits)  # a tuning trial never reads, encodes or caches test
        texts, labels = split_texts(frames), split_labels(frames)
        if len(np.unique(labels["train"])) < 2:
            raise GlossError(f"{prepared.output('train.csv')}: the training split has a single class")
        unlabeled = unlabeled_texts(config.unlabeled, frames)
        if unlabeled:
            texts["unlabeled"] = unlabeled
            echo(f"train: {len(unlabeled)} unlabelled documents ({config.unlabeled}) join the memory bank")
        class_weights = _class_weights(config, labels["train"], len(label_names))
        torch.manual_seed(config.loop.seed)
        model = load_encoder(config.encoder)
        dim = model.get_embedding_dimension()
        weighting = None
        if uses_weighting_network(config.objective):
            echo("train: lcl+ce: loading a second copy of the encoder as the weighting network "
                 "(--lcl-weighting separate)")
            weighting = WeightingNetwork.from_encoder_config(config.encoder, len(label_names))
        try:
            objective = Objective(config.objective, len(label_names), sigma_value=sigma and sigma.value,
                                  seed=config.loop.seed, train_size=len(texts["train"]) + len(unlabeled), dim=dim,
                                  class_weights=class_weights, weighting=weighting)
        except ValueError as exc:
            raise GlossError(str(exc)) from None
        built = build_encoder(model, config.loop.train_layers, config.encoder, texts, config.loop.eval_batch_size, echo)
        if weighting is not None:  # the weighting copy trains what the main encoder trains, on the same cached inputs
            weighting.follow(encoder_for_copy(built.encoder, weighting.encoder))
        head = torch.nn.Linear(dim, len(label_names)).to(model.device) if objective.has_head else None
        objective.to(model.device)
    if not resume and (ctx.scratch_dir / LAST_CHECKPOINT).is_file():
        echo(f"train: an interrupted run left checkpoints in {ctx.scratch_dir}; starting over (--resume continues it)")
    result = fit(model, head, objective, FitData.from_splits(texts, labels, unlabeled), config.loop,
                 Checkpoints(ctx.scratch_dir, run_config=config_dict, resume=resume),
                 val_embeddings_dir=ctx.out_dir / "val_embeddings",
                 callbacks=FitCallbacks(on_epoch_end=on_epoch_end, echo=echo, progress=ranks.main),
                 encoder=built.encoder, ranks=ranks)
    if not ranks.main:
        return {}
    write_history(result.history, ctx.output(HISTORY_FILE, rows=len(result.history)))
    _save_encoder(model_dir(ctx.out_dir), model, head, label_names)
    if objective.weighting is not None:
        _save_encoder(ctx.out_dir / WEIGHTING_DIR, objective.weighting.encoder, objective.weighting.head, label_names)
    _save_embeddings(ctx, built.encoder, head, config.loop.eval_batch_size, echo, splits)
    for stale in ctx.scratch_dir.glob("*.pt"):
        stale.unlink()
    summary = _summary(config, result, head is not None, sigma and sigma.value, model.device)
    summary["sigma_fallback"] = None if sigma is None or sigma.fallback_from is None else {
        "heuristic": config.objective.sigma, "value": sigma.fallback_from, "used": "sqrt"}
    summary["unlabeled_documents"] = len(unlabeled) if unlabeled else None
    summary["class_weights"] = None if class_weights is None else [round(float(w), 6) for w in class_weights]
    summary.update(train_layers=config.loop.train_layers, precision=config.loop.precision,
                   compile=config.loop.compile, trainable_parameters=_trainable(model, head),
                   processes=ranks.world_size,
                   frozen_cache={"kind": built.cache_kind, "hits": built.cache_hits, "seconds": built.cache_seconds})
    write_card(model_dir(ctx.out_dir), card_facts(prepared.config["dataset"], prepared.summary, config_dict, summary))
    return summary


def _trainable(model, head) -> int:
    modules = [model] + ([head] if head is not None else [])
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)


def _save_encoder(folder: Path, encoder, head, label_names: list[str]) -> None:
    """A sentence-transformers folder with ``labels.json`` and, when there is a head, ``head.pt``: the main
    ``RUN/train/model/`` and LCL's ``RUN/train/weighting/`` (reload: :func:`load_weighting`)."""
    encoder.save(str(folder))
    (folder / LABELS_FILE).write_text(json.dumps(label_names) + "\n")
    if head is not None:
        save_head(head, folder)


def load_weighting(train_dir: str | Path, device: str = "cpu") -> WeightingNetwork:
    """The weighting network saved by an ``lcl+ce --lcl-weighting separate`` run in ``RUN/train/``."""
    from sentence_transformers import SentenceTransformer

    from pipeline.artifacts import load_head

    folder = Path(train_dir) / WEIGHTING_DIR
    head = load_head(folder, device=device)
    if head is None:
        raise GlossError(f"{folder}: no weighting network (only lcl+ce --lcl-weighting separate saves one)")
    network = WeightingNetwork(SentenceTransformer(str(folder), device=device), head.out_features)
    network.head.load_state_dict(head.state_dict())
    return network


def _save_embeddings(ctx: StageContext, encoder, head, batch_size: int, echo,
                     splits: tuple[str, ...] = SPLITS) -> None:
    """The best epoch's embeddings of ``splits`` (through the batch encoder: cached frozen parts are not
    recomputed) and, with a head, its logits of val and test."""
    import torch

    for split in splits:
        embeddings = encoder.embed(split, batch_size, progress=f"train: best epoch, {split}", echo=echo)
        np.save(ctx.output(f"embeddings_{split}.npy"), embeddings)
        if head is not None and split != "train":
            with torch.inference_mode():
                logits = head(torch.from_numpy(embeddings).to(next(head.parameters()).device)).float().cpu().numpy()
            np.save(ctx.output(f"logits_{split}.npy"), logits)


def _summary(config: TrainConfig, result, has_head: bool, sigma_value: float | None, device) -> dict:
    best = result.history[result.best_epoch - 1]
    return {
        "method": "finetune",
        "loss": config.objective.loss,
        "has_head": has_head,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "best_val": {k: v for k, v in best.items() if k.startswith("val_")},
        "seconds_per_epoch": round(float(np.mean([r["seconds"] for r in result.history])), 2),
        "docs_per_second": round(float(np.mean([r["docs_per_second"] for r in result.history])), 2),
        "sigma": sigma_value,
        "device": str(device),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }

