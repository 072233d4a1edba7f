"""The ``gloss`` command line: thin click commands that resolve options into configs and call stages.

Heavy libraries (torch, transformers, pandas) are imported inside the commands, so ``gloss --help``
stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from pipeline import __version__, options
from pipeline.config_file import config_option, preset_option
from pipeline.errors import GlossError
from pipeline.stages import STAGE_ORDER

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
INTERRUPTED_HINT = ("run the same command again to continue: finished stages are skipped; training continues "
                    "from its last checkpoint (RUN/.scratch/train) only with `--resume` added, and starts over "
                    "without it")


class StageOrderGroup(click.Group):
    """Lists commands in pipeline order, and turns usage errors into one-line errors with exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise GlossError(f"{exc.format_message()} (see `{_command_path(exc.ctx)} --help`)") from None
        except KeyboardInterrupt:
            click.echo(f"\ngloss: interrupted; {INTERRUPTED_HINT}", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        _refuse_torchrun_except_train(name)
        return name, command, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        order = {name: i for i, name in enumerate(STAGE_ORDER)}
        return sorted(self.commands, key=lambda name: (order.get(name, len(order)), name))


def _command_path(ctx: click.Context | None) -> str:
    """``gloss cache clear`` for the context of `gloss cache clear` (whatever the program was called)."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["gloss", *reversed(names)])


def _refuse_torchrun_except_train(command: str | None) -> None:
    """Only `gloss train` runs data-parallel: N processes of another stage would write the same files."""
    from pipeline.training.distributed import launched_by_torchrun

    if launched_by_torchrun() and command not in (None, "train"):
        raise GlossError(f"gloss {command} under torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']}): only `gloss train` "
                         "runs data-parallel; run the other stages in one process")


def default_data_root() -> str:
    """``$GLOSS_DATA`` if set, else ``./data``."""
    return os.environ.get("GLOSS_DATA") or "data"


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="gloss: %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("gloss").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


@click.group(cls=StageOrderGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="gloss")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """gloss: fine-tune sentence-transformer encoders with G-Loss and compare them with TextGCN and BertGCN.

    Stages run in order; each writes RUN/<stage>/ with a manifest.json and is skipped when its config and
    inputs are unchanged (--force reruns it).
    """
    _setup_logging(verbose)


def run_dir_option(func=None, *, required: bool = False):
    """``--run-dir``; use as ``@run_dir_option`` or, for stages without a dataset, ``@run_dir_option(required=True)``."""

    def decorate(f):
        if required:  # no default=None: with an explicit default click does not enforce required
            return click.option("--run-dir", type=click.Path(file_okay=False), required=True,
                                help="Run directory holding the earlier stages.")(f)
        return click.option(
            "--run-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Run directory (default: runs/<dataset>).",
        )(f)

    return decorate(func) if func is not None else decorate


def force_option(func):
    return click.option("--force", is_flag=True, help="Rerun even when config and inputs are unchanged.")(func)


def encoding_option(func):
    return click.option("--encoding", default=options.ENCODING, show_default=True,
                        help="Encoding of the input files: auto (UTF-8, else detected by charset-normalizer, "
                             "logged) or a codec name such as cp1252.")(func)


def input_options(func):
    """``--limit-test``, ``--encoding``, ``--drop-unseen-labels`` and ``--keep-nan-labels`` of `gloss prepare`
    and `gloss run`."""
    func = click.option("--keep-nan-labels", is_flag=True,
                        help="Keep a label spelled nan, NaN, None or null as a class (refused by default, like "
                             "an empty label).")(func)
    func = click.option("--drop-unseen-labels", is_flag=True,
                        help="Drop val/test rows whose label is not in train (counted in the manifest) "
                             "instead of stopping.")(func)
    func = encoding_option(func)
    return click.option("--limit-test", type=click.IntRange(min=1), default=None,
                        help="Also slice the test set: a stratified sample of at most N test documents "
                             "(default: the whole test set).")(func)


@main.command(short_help="Read a dataset, validate it, carve the seeded validation split.")
@config_option
@click.option("--dataset", required=True, help="Dataset name: mr, R8, R52, ohsumed, 20ng, or your own.")
@click.option("--data-root", default=None, help="Folder holding the datasets (default: $GLOSS_DATA, else ./data).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=options.VAL_FRACTION, show_default=True, help="Share of each training class held out for validation.")
@click.option("--seed", type=int, default=options.SEED, show_default=True, help="Seed of the validation split and --limit.")
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Keep a stratified sample of at most N training documents (val in proportion; test whole "
                   "unless --limit-test).")
@input_options
@run_dir_option
@force_option
def prepare(dataset, data_root, val_fraction, seed, limit, limit_test, encoding, drop_unseen_labels, keep_nan_labels,
            run_dir, force):
    """Read DATA_ROOT/DATASET/{train,test}.csv (or a CSV/JSONL with a split column, or the TextGCN layout),
    validate it, carve a seeded stratified validation split and save the splits and label names."""
    from pipeline.stages import prepare as stage

    config = stage.PrepareConfig(
        dataset=dataset,
        data_root=os.path.abspath(data_root or default_data_root()),
        val_fraction=val_fraction,
        seed=seed,
        limit=limit,
        limit_test=limit_test,
        encoding=encoding,
        drop_unseen_labels=drop_unseen_labels,
        keep_nan_labels=keep_nan_labels,
    )
    manifest = stage.run(config, run_dir or os.path.join("runs", dataset), force=force, echo=click.echo)
    rows = manifest.summary["rows"]
    click.echo(
        f"prepare: {dataset}: {manifest.summary['num_classes']} classes, "
        f"train {rows['train']} / val {rows['val']} / test {rows['test']} rows"
    )


def encoder_options(func):
    """--model, --pooling, --max-length, --device."""
    decorators = [
        click.option("--model", default=options.DEFAULT_MODEL, show_default=True,
                     help="Encoder: the packaged all-MiniLM-L6-v2, a local model folder, or a hub name (online)."),
        click.option("--pooling", type=click.Choice(options.POOLINGS), default=options.DEFAULT_POOLING,
                     show_default=True),
        click.option("--max-length", type=click.IntRange(min=8), default=options.MAX_LENGTH, show_default=True,
                     help="Tokens kept per document."),
        click.option("--device", default=options.DEVICE, show_default=True,
                     help="auto (CUDA when available), cpu, cuda."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _encoder_config(model, pooling, max_length, device):
    from pipeline.encoder import EncoderConfig

    return EncoderConfig(model=model, pooling=pooling, max_length=max_length, device=device)


@main.command(short_help="Embed train/val/test with the pre-trained encoder; sigma heuristics.")
@config_option
@encoder_options
@click.option("--batch-size", type=click.IntRange(min=1), default=options.EVAL_BATCH_SIZE, show_default=True)
@click.option("--test/--no-test", default=True, show_default=True,
              help="--no-test: embed train and val only, never reading the test texts (all `gloss tune` needs "
                   "for a corpus sigma).")
@run_dir_option(required=True)
@force_option
def embed(model, pooling, max_length, device, batch_size, test, run_dir, force):
    """Embed the prepared splits with the pre-trained encoder (.npy) and compute the sigma heuristics."""
    from pipeline.stages import embed as stage

    config = stage.EmbedConfig(_encoder_config(model, pooling, max_length, device), batch_size, test)
    manifest = stage.run(config, run_dir, force=force, echo=click.echo)
    sigma = manifest.summary["sigma"]
    click.echo(f"embed: {manifest.summary['shapes']}; sigma sqrt={sigma['sqrt']:.4f} dicm={sigma['dicm']:.4f}")


@main.command(short_help="Build the corpus kNN graph of the embeddings (FAISS).")
@config_option
@click.option("--k", type=click.IntRange(min=1), default=options.K, show_default=True, help="Neighbours per document.")
@click.option("--metric", type=click.Choice(options.METRICS), default=options.DEFAULT_METRIC, show_default=True)
@click.option("--backend", type=click.Choice(options.BACKENDS), default=options.DEFAULT_BACKEND, show_default=True)
@run_dir_option(required=True)
@force_option
def graph(k, metric, backend, run_dir, force):
    """Build the exact kNN graph over train+val+test pre-trained embeddings and save it (edge list + weights)."""
    from pipeline.stages import graph as stage

    manifest = stage.run(stage.GraphConfig(k, metric, backend), run_dir, force=force, echo=click.echo)
    s = manifest.summary
    click.echo(f"graph: {s['nodes']} nodes, {s['edges']} edges, edge homophily {s['edge_homophily']:.3f}")


def _gcn_options() -> list:
    """The TextGCN / BertGCN options of `gloss train` (``--method textgcn|bertgcn``)."""
    o = options
    return [
        click.option("--gcn-epochs", type=click.IntRange(min=1), default=o.GCN_EPOCHS, show_default=True,
                     help="TextGCN: most epochs."),
        click.option("--gcn-lr", type=float, default=o.GCN_LR, show_default=True, help="TextGCN learning rate."),
        click.option("--gcn-hidden", type=click.IntRange(min=1), default=o.GCN_HIDDEN, show_default=True,
                     help="TextGCN/BertGCN hidden size."),
        click.option("--gcn-dropout", type=click.FloatRange(0, 1, max_open=True), default=o.GCN_DROPOUT,
                     show_default=True),
        click.option("--gcn-early-stopping", type=click.IntRange(min=1), default=o.GCN_EARLY_STOPPING,
                     show_default=True, help="TextGCN: stop when val loss exceeds the mean of this many previous epochs."),
        click.option("--pmi-count", type=click.Choice(o.PAIR_COUNTS), default=o.DEFAULT_PAIR_COUNT, show_default=True,
                     help="PMI co-occurrence: windows (paper) or position pairs (released code)."),
        click.option("--bertgcn-m", type=click.FloatRange(0, 1), default=o.BERTGCN_M, show_default=True,
                     help="BertGCN: weight of the GCN prediction."),
        click.option("--bertgcn-lr", type=float, default=o.BERTGCN_LR, show_default=True,
                     help="BertGCN: GCN learning rate."),
        click.option("--bertgcn-encoder-lr", type=float, default=o.BERTGCN_ENCODER_LR, show_default=True,
                     help="BertGCN: encoder learning rate in joint training."),
        click.option("--bertgcn-activation", type=click.Choice(o.BERTGCN_ACTIVATIONS), default=o.BERTGCN_ACTIVATION,
                     show_default=True, help="BertGCN: activation between the GCN layers (the original: elu)."),
        click.option("--bertgcn-bias/--no-bertgcn-bias", default=False, show_default=True,
                     help="BertGCN: biases in the GCN layers (the original has them)."),
        click.option("--bertgcn-schedule", type=click.Choice(o.BERTGCN_SCHEDULES), default=o.BERTGCN_SCHEDULE,
                     show_default=True, help="BertGCN joint training: constant, or multistep (the original: "
                                             "x0.1 after epoch 30)."),
        click.option("--init-from", type=click.Path(file_okay=False), default=None,
                     help="BertGCN: start from this CE fine-tuned run (else fine-tune with CE first)."),
        click.option("--c-grid", default=o.LR_C_GRID, show_default=True,
                     help="tfidf/frozen: values of logistic regression's C tried; the best val macro-F1 is "
                          "kept (ties: the smaller C)."),
    ]


def _g_loss_options() -> list:
    """G-Loss's options of `gloss train`: its batch graph, kernel width, visible share and variants."""
    o = options
    sigma_help = ("G-Loss kernel width: a number; sqrt (paper) or dicm (reference code), computed once by "
                  "`gloss embed` on the pre-trained train embeddings; batch-sqrt or batch-dicm, recomputed "
                  "on every batch.")
    return [
        click.option("--gamma", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=o.GAMMA,
                     show_default=True, help="G-Loss: share of batch nodes whose labels stay visible."),
        click.option("--sigma", default=o.DEFAULT_SIGMA, show_default=True, help=sigma_help),
        click.option("--graph", "graph_mode", type=click.Choice(o.GRAPH_MODES), default=o.DEFAULT_GRAPH_MODE,
                     show_default=True,
                     help="G-Loss batch graph: dense (paper), knn (in batch), bank (batch + memory bank)."),
        click.option("--k", type=click.IntRange(min=1), default=o.K, show_default=True, help="G-Loss kNN neighbours."),
        click.option("--unlabeled", default=None,
                     help="--graph bank: unlabelled documents join the memory bank (refreshed every epoch) and "
                          "pass propagation on; never seeds, never scored, their labels never read. test, "
                          "val+test (the prepared splits' texts) or a FILE as `gloss predict --input` reads."),
        click.option("--bank-index", type=click.Choice(o.BANK_INDEXES), default=o.DEFAULT_BANK_INDEX,
                     show_default=True, help="--graph bank: exact search (flat) or a FAISS IVF index (ivf, CPU)."),
        click.option("--nprobe", type=int, default=o.NPROBE, show_default=True,
                     help="--bank-index ivf: inverted lists visited per query (more: better recall, slower)."),
        click.option("--loss-form", type=click.Choice(o.LOSS_FORMS), default=o.DEFAULT_LOSS_FORM, show_default=True,
                     help="G-Loss (--variant gloss): NLL of propagated probabilities (paper) or the released "
                          "code's form."),
        click.option("--variant", type=click.Choice(o.VARIANTS), default=o.DEFAULT_VARIANT, show_default=True,
                     help="G-Loss: gloss's implementation, or the released code's computation (dense graph)."),
    ]


def train_options(func):
    """Every option of `gloss train` (shared with `gloss run`)."""
    o = options
    decorators = [
        click.option("--method", type=click.Choice(o.METHODS), default=o.DEFAULT_METHOD, show_default=True,
                     help=o.METHOD_HELP),
        click.option("--loss", type=click.Choice(o.LOSSES), default=o.DEFAULT_LOSS, show_default=True,
                     help="Objective of --method finetune."),
        click.option("--lambda", "lam", type=click.FloatRange(0, 1), default=None,
                     show_default=o.loss_default_text("lam"),
                     help="Weight of the graph/contrastive part: lambda * L + (1 - lambda) * CE (default per "
                          "--loss)."),
        *_g_loss_options(),
        click.option("--class-weights", type=click.Choice(o.CLASS_WEIGHTS), default=o.DEFAULT_CLASS_WEIGHTS,
                     show_default=True,
                     help="Class weights of CE, G-Loss and SupCon: balanced = n / (C * n_c) on the training split."),
        click.option("--temperature", type=float, default=None, show_default=o.loss_default_text("temperature"),
                     help="SupCon / LCL temperature (default per --loss)."),
        click.option("--lcl-weighting", type=click.Choice(o.LCL_WEIGHTINGS), default=o.DEFAULT_LCL_WEIGHTING,
                     show_default=True,
                     help="lcl+ce: the weighting network whose softmax weighs the negatives: separate (the "
                          "paper: a second copy of the encoder with its own head, trained jointly; twice the "
                          "encoder cost) or head (the main head's logits; a cheaper variant of gloss's)."),
        click.option("--margin", type=float, default=o.MARGIN, show_default=True, help="Triplet margin."),
        click.option("--epochs", type=click.IntRange(min=1), default=o.EPOCHS, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=2), default=o.BATCH_SIZE, show_default=True),
        click.option("--lr", type=float, default=o.LR, show_default=True, help="Encoder learning rate."),
        click.option("--head-lr", type=float, default=o.HEAD_LR, show_default=True, help="Linear head learning rate."),
        click.option("--optimizer", type=click.Choice(o.OPTIMIZERS), default=o.DEFAULT_OPTIMIZER, show_default=True),
        click.option("--weight-decay", type=float, default=o.WEIGHT_DECAY, show_default=True),
        click.option("--schedule", type=click.Choice(o.SCHEDULES), default=o.DEFAULT_SCHEDULE, show_default=True,
                     help="Learning-rate schedule (linear/cosine after warm-up; multistep: x0.1 after each "
                          "--milestones epoch, no warm-up)."),
        click.option("--milestones", default=o.MILESTONES, show_default=True,
                     help="multistep: comma list of epochs after which the learning rates drop x0.1."),
        click.option("--warmup-ratio", type=click.FloatRange(0, 1), default=o.WARMUP_RATIO, show_default=True),
        click.option("--grad-clip", type=float, default=o.GRAD_CLIP, show_default=True,
                     help="Max gradient norm (0: off)."),
        click.option("--patience", type=click.IntRange(min=1), default=o.PATIENCE, show_default=True,
                     help="Early stopping: epochs without improvement of the validation score."),
        click.option("--seed", type=int, default=o.SEED, show_default=True),
        click.option("--bucket/--no-bucket", default=True, show_default=True,
                     help="Length-bucketed batches (dynamic padding)."),
        click.option("--balanced", is_flag=True, help="Class-balanced batches (>= 2 examples per class present)."),
        click.option("--second-forward/--no-second-forward", default=False, show_default=True,
                     help="A second encoder forward of each batch (fresh dropout) for the G-Loss/SupCon term, "
                          "as the released code; CE keeps the first."),
        click.option("--train-layers", default=o.TRAIN_LAYERS, show_default=True,
                     help="all (full fine-tuning); N (train the top N transformer layers on cached frozen lower "
                          "layers); 0 (a residual Dense adapter on frozen pooled embeddings); auto: all on CUDA, "
                          f"{o.TRAIN_LAYERS_CPU} on a CPU."),
        click.option("--precision", type=click.Choice(o.PRECISIONS), default=o.DEFAULT_PRECISION, show_default=True,
                     help="Training autocast: auto = bf16 on CUDA where supported (else fp16 + GradScaler), "
                          "fp32 on a CPU."),
        click.option("--compile/--no-compile", "compile_model", default=False, show_default=True,
                     help="torch.compile the trained part's forward."),
        *_gcn_options(),
    ]
    func = encoder_options(func)
    for decorator in reversed(decorators):
        func = decorator(func)
    return preset_option(func)


def _parse_sigma(value: str) -> float | str:
    """A number, or the name of a sigma heuristic; a one-line error for anything else, before the heavy
    imports of the stages."""
    try:
        sigma: float | str = float(value)
    except ValueError:
        sigma = value
    if options.sigma_error(sigma):
        raise GlossError(options.sigma_error(sigma))
    return sigma


def _parse_train_layers(value: str) -> str:
    from pipeline.training.partial import parse_train_layers

    return parse_train_layers(value)


def _train_config(opts: dict):
    sigma = _parse_sigma(opts["sigma"])  # before the stages' heavy imports
    from pipeline.baselines.linear import LinearConfig, parse_c_grid
    from pipeline.stages.train import GCNConfig, TrainConfig
    from pipeline.training.loop import LoopConfig, parse_milestones
    from pipeline.training.objectives import ObjectiveConfig

    objective = ObjectiveConfig(
        loss=opts["loss"], lam=opts["lam"], gamma=opts["gamma"], sigma=sigma,
        graph=opts["graph_mode"], k=opts["k"], bank_index=opts["bank_index"], nprobe=opts["nprobe"],
        loss_form=opts["loss_form"], variant=opts["variant"],
        class_weights=opts["class_weights"], temperature=opts["temperature"], margin=opts["margin"],
        lcl_weighting=opts["lcl_weighting"],
    )
    try:
        milestones = parse_milestones(opts["milestones"])
        linear = LinearConfig(c_grid=parse_c_grid(opts["c_grid"]))
    except ValueError as exc:
        raise GlossError(str(exc)) from None
    loop = LoopConfig(
        epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"], head_lr=opts["head_lr"],
        optimizer=opts["optimizer"], weight_decay=opts["weight_decay"], schedule=opts["schedule"],
        warmup_ratio=opts["warmup_ratio"], milestones=milestones, grad_clip=opts["grad_clip"],
        patience=opts["patience"], seed=opts["seed"], bucket=opts["bucket"], balanced=opts["balanced"],
        second_forward=opts["second_forward"], train_layers=_parse_train_layers(opts["train_layers"]),
        precision=opts["precision"], compile=opts["compile_model"],
    )
    encoder = _encoder_config(opts["model"], opts["pooling"], opts["max_length"], opts["device"])
    gcn = GCNConfig(
        epochs=opts["gcn_epochs"], lr=opts["gcn_lr"], hidden=opts["gcn_hidden"], dropout=opts["gcn_dropout"],
        early_stopping=opts["gcn_early_stopping"], pair_count=opts["pmi_count"], m=opts["bertgcn_m"],
        bertgcn_lr=opts["bertgcn_lr"], bertgcn_encoder_lr=opts["bertgcn_encoder_lr"],
        bertgcn_activation=opts["bertgcn_activation"], bertgcn_bias=opts["bertgcn_bias"],
        bertgcn_schedule=opts["bertgcn_schedule"],
        init_from=os.path.abspath(opts["init_from"]) if opts["init_from"] else None,
    )
    unlabeled = opts.get("unlabeled")
    if unlabeled is not None and unlabeled not in options.UNLABELED_SPLITS:
        unlabeled = os.path.abspath(unlabeled)
    config = TrainConfig(method=opts["method"], encoder=encoder, objective=objective, loop=loop, gcn=gcn, linear=linear,
                         preset=opts.get("preset"), unlabeled=unlabeled)
    return _lr_where_it_trains(config)


def _lr_where_it_trains(config):
    """``config``, checked that a given ``--lr`` trains something: at ``--train-layers 0`` (``auto`` on a CPU
    included) no pre-trained weight trains and the adapter and head learn at ``--head-lr``, so ``--lr`` from the
    command line or a ``--config`` file is a one-line error, and a preset's lr is reported and not applied."""
    from dataclasses import replace

    from pipeline.config_file import option_source

    source = option_source(click.get_current_context(), "lr")
    if config.method != "finetune" or source is None:
        return config
    from pipeline.encoder import resolve_device
    from pipeline.training.partial import resolve_train_layers

    requested = config.loop.train_layers
    if resolve_train_layers(requested, resolve_device(config.encoder.device)) != "0":
        return config
    layers = "--train-layers 0" + (f" ({requested} on this machine)" if requested != "0" else "")
    if source == "--preset":
        click.echo(f"train: --preset {config.preset}: its lr {config.loop.lr:g} is not applied: {layers} trains "
                   f"only the adapter and head, at --head-lr {config.loop.head_lr:g}")
        return replace(config, loop=replace(config.loop, lr=options.LR))
    where = "on the command line" if source == "command line" else "in the --config file"
    raise GlossError(f"--lr {config.loop.lr:g} (given {where}): {layers} trains no pre-trained weight; the "
                     "adapter and head learn at --head-lr, so set that instead")


def _echo_train(manifest) -> None:
    s = manifest.summary
    best = ", ".join(f"{k}={v:.4f}" for k, v in s.get("best_val", {}).items() if isinstance(v, float))
    click.echo(f"train: best epoch {s['best_epoch']} of {s['epochs_run']}: {best}; {s['seconds_per_epoch']:.0f}s/epoch")


@main.command(short_help="Fine-tune with G-Loss or a comparison loss, or train TextGCN/BertGCN.")
@config_option
@train_options
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@run_dir_option(required=True)
@force_option
def train(resume, run_dir, force, **opts):
    """Fine-tune the encoder (linear head on the pooled embedding unless the loss is standalone), with early
    stopping on val macro-F1 (with head) or val macro-silhouette (standalone); the best epoch is kept.
    Under `torchrun --nproc-per-node N --no-python gloss train ...`: data-parallel over N processes (see
    the documentation, Distributed training)."""
    config = _train_config(opts)  # first: it checks --sigma before the stages' heavy imports
    from pipeline.stages import train as stage

    manifest = stage.run(config, run_dir, force=force, resume=resume, echo=click.echo)
    if manifest is not None:  # None: a data-parallel rank other than 0, which writes and says nothing
        _echo_train(manifest)


def tune_options(func):
    """The study options of `gloss tune` (besides every train option)."""
    o = options
    decorators = [
        click.option("--lr-grid", default=None, show_default=o.TUNE_LR_GRID,
                     help="Phase 1: one trial per learning rate of this comma list, the same for every loss, the "
                          "loss's own parameters at the command line's values."),
        click.option("--head-lr-grid", default=None, show_default=o.TUNE_HEAD_LR_GRID,
                     help="Phase 1 at --train-layers 0 (where the adapter and head learn at --head-lr): the "
                          "--head-lr values instead."),
        click.option("--trials", type=int, default=o.TUNE_TRIALS, show_default=True,
                     help="Phase 2: trials of the loss's own parameters (--space) at the best grid value "
                          "(complete, pruned or failed; a resumed study counts the earlier ones; 0: the grid "
                          "only). Give every loss the same N."),
        click.option("--timeout", type=float, default=None,
                     help="Seconds after which no new trial starts (rerun the command to continue)."),
        click.option("--space", type=click.Path(dir_okay=False), default=None,
                     help="TOML of search spaces, one [loss] table (default: the shipped "
                          "pipeline/tuning/spaces.toml; see the documentation, Tuning)."),
        click.option("--tune-epochs", type=click.IntRange(min=1), default=None,
                     help="Epoch budget E of each trial (default: --epochs); under --schedule constant a trial "
                          "is the first E epochs of a final run."),
        click.option("--tune-seed", type=int, default=o.TUNE_SEED, show_default=True,
                     help="Seed of phase 2's scrambled Sobol sequence."),
        click.option("--pruner-startup", type=click.IntRange(min=0), default=o.TUNE_PRUNER_STARTUP,
                     show_default=True, help="Median pruner: complete trials before it prunes."),
        click.option("--pruner-warmup", type=click.IntRange(min=0), default=o.TUNE_PRUNER_WARMUP,
                     show_default=True,
                     help="Median pruner: epochs of a trial before it may be pruned (never at its last epoch)."),
        click.option("--heartbeat", type=click.IntRange(min=1), default=o.TUNE_HEARTBEAT, show_default=True,
                     help="Seconds between a trial's heartbeats; one silent for twice this (a killed tune) "
                          "is retried on resuming."),
        click.option("--plots/--no-plots", default=True, show_default=True,
                     help="Optimisation history, parameter importances, sigma vs score (PNG)."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@main.command(short_help="Tune a loss's hyperparameters with Optuna (G-Loss-O); best.json for compare.")
@config_option
@train_options
@tune_options
@run_dir_option(required=True)
def tune(run_dir, lr_grid, head_lr_grid, trials, timeout, space, tune_epochs, tune_seed, pruner_startup,
         pruner_warmup, heartbeat, plots, **opts):
    """Run (or continue) an Optuna study of --loss on RUN (prepared; embedded for a corpus sigma heuristic),
    the same protocol for every loss: one trial per --lr-grid value, then --trials N trials of the loss's own
    parameters (a scrambled Sobol sequence) at the best of them. Needs --schedule constant or multistep (a
    trial is then the first --tune-epochs epochs of a final run); median pruning on the validation score before
    a trial's last epoch; each trial a run directory of its own under RUN/tune/trials/; the test split is never
    read. Writes RUN/tune/{study.db, best.json, trials.csv, plots}; `gloss compare` trains best.json's values
    over seeds (a `tuned` method entry)."""
    from pipeline.stages import tune as stage

    config = stage.TuneConfig(train=_train_config(opts), trials=trials, lr_grid=lr_grid, head_lr_grid=head_lr_grid,
                              epochs=tune_epochs, timeout=timeout, space=space, seed=tune_seed,
                              pruner_startup=pruner_startup,
                              pruner_warmup=pruner_warmup, heartbeat=heartbeat, plots=plots)
    summary = stage.run(config, run_dir, echo=click.echo)
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
    best = summary["best"]
    click.echo(f"tune: {summary['study']}: {summary['done']} of {summary['budget']} trials done ({counts})")
    if best is not None:
        values = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        click.echo(f"tune: best {best['monitor']} {best['value']:.4f} (trial {best['trial']}): {values}; "
                   f"wrote {Path(run_dir) / 'tune'}/{{{', '.join(summary['files'])}}}")


@main.command(short_help="Sweep methods x datasets x seeds into tables and plots.")
@click.option("--spec", type=click.Path(dir_okay=False), default=None,
              help="Sweep spec (TOML/YAML: datasets x methods x seeds x options); missing runs are run.")
@click.option("--runs", "run_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Finished run directories to compare (repeatable), instead of or beside --spec.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=options.COMPARE_OUT, show_default=True,
              help="Output folder: table.md, table.csv, results.json, plots; runs/ and logs/ of the sweep.")
@click.option("--data-root", default=None, help="Folder holding the datasets (default: $GLOSS_DATA, else ./data).")
@click.option("--pair", default=options.DEFAULT_PAIR, show_default=True,
              help="Paired comparison METHOD:BASELINE over shared replicates (split seed, training seed).")
@click.option("--reference", default=None,
              help="Compare this method with every other one (paired, Holm-corrected over datasets); "
                   "replaces --pair.")
@click.option("--background", is_flag=True, help="Run the sweep detached; progress goes to OUT/sweep.log.")
def compare(spec, run_dirs, out_dir, data_root, pair, reference, background):
    """Run what a sweep is missing (finished runs are skipped; a killed sweep continues), then write per
    dataset, method and tier, pooling runs that differ only in training seed, split seed and a per-seed
    --init-from: test accuracy and macro-F1 of the head, the linear probe and label propagation (mean, std,
    n), epochs and seconds until val macro-F1 first reached 99% of the run's best, seconds per epoch, best
    epoch, training time, peak memory; published numbers beside them (marked); plots; and paired
    differences (METHOD - BASELINE, or --reference against every other method) with paired t-tests."""
    from pipeline.compare.stage import run_compare, start_in_background

    if not spec and not run_dirs:
        raise GlossError("give --spec FILE or at least one --runs RUN_DIR")
    if background:
        pid, log = start_in_background([a for a in sys.argv[1:] if a != "--background"], out_dir)
        click.echo(f"compare: running in the background (pid {pid}); progress in {log}")
        return
    result = run_compare(spec, list(run_dirs), out_dir, data_root or os.environ.get("GLOSS_DATA"), pair, click.echo,
                         reference=reference)
    click.echo(f"compare: wrote {', '.join(result['files'])} to {out_dir}")


@main.command(short_help="Labels and class probabilities for new documents.")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="A fine-tuned run directory.")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Text file (one document per line), CSV with a 'text' column, or JSONL with a 'text' field.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write the predictions here: CSV for a .csv name (row, label, skipped, p_<class>), else JSON "
                   "lines (default: JSON lines on standard output).")
@click.option("--device", default=options.DEVICE, show_default=True)
@click.option("--predictor", type=click.Choice(options.PREDICTORS), default=None,
              help="head, knn (vote of the k nearest training documents), lpa (label propagation) or mix "
                   "(alpha * lpa + (1 - alpha) * head), with the k and alpha `gloss evaluate` chose on validation "
                   "[default: the predictor `gloss evaluate --predictor` chose, else head].")
@click.option("--transductive", is_flag=True,
              help="lpa/mix: propagate over the training documents and all given documents together (default: "
                   "each document on its own).")
@encoding_option
def predict(run_dir, input_path, output, device, predictor, transductive, encoding):
    """Predict labels for new documents with a run's fine-tuned encoder and its head or graph (the inductive
    use)."""
    from pipeline.output_paths import check_output_file
    from pipeline.predict import JSONL_SUFFIXES, format_rows, output_format
    from pipeline.predict import predict as run_predict

    if output:
        check_output_file(output)
        if output_format(output) == "jsonl" and os.path.splitext(output)[1].lower() not in JSONL_SUFFIXES:
            click.echo(f"warning: --output {output}: writing JSON lines (name it .csv for CSV, .jsonl to silence "
                       "this)", err=True)
    result = run_predict(run_dir, input_path, device=device, encoding=encoding, predictor=predictor,
                         transductive=transductive)
    lines = format_rows(result["rows"], result["labels"], output)
    if output:
        from pipeline.atomic import write_text_atomic

        write_text_atomic(output, lines)
    else:
        click.echo(lines, nl=False)
    click.echo(
        f"predict ({result['predictor']}): {result['documents']} documents, {result['empty']} empty (no prediction), "
        f"{result['truncated']} truncated to {result['max_length']} tokens", err=True,
    )


@main.command(short_help="prepare -> embed -> train -> evaluate in sequence.")
@config_option
@click.option("--dataset", default=options.DEFAULT_DATASET, show_default=True, help="Dataset name (see `gloss prepare`).")
@click.option("--data-root", default=None, help="Folder holding the datasets (default: $GLOSS_DATA, else ./data).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=options.VAL_FRACTION, show_default=True)
@click.option("--split-seed", type=int, default=options.SEED, show_default=True, help="Seed of the validation split.")
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Stratified slice of at most N training documents (the test set stays whole unless --limit-test).")
@input_options
@train_options
@click.option("--probe", type=click.Choice(options.PROBES), default=options.DEFAULT_PROBE, show_default=True,
              help="Evaluate's linear probe: scikit-learn's, the released code's, or both.")
@click.option("--resume", is_flag=True, help="Continue an interrupted training stage from its last checkpoint.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/<dataset>-<method>-seed<seed>-<config hash>).")
@force_option
def run(dataset, data_root, val_fraction, split_seed, limit, limit_test, encoding, drop_unseen_labels, keep_nan_labels,
        probe, resume, run_dir, force, **opts):
    """Run the whole pipeline, skipping stages whose config and inputs are unchanged. With no options: R8,
    G-Loss + CE, the packaged all-MiniLM-L6-v2 encoder. The corpus kNN graph is not built (no later stage
    reads it); `gloss graph` builds it on its own."""
    train_config = _train_config(opts)  # first: it checks --sigma before the stages' heavy imports
    from pipeline.stages import run as stage
    from pipeline.stages.evaluate import EvaluateConfig, summary_lines
    from pipeline.stages.prepare import PrepareConfig

    prepare_config = PrepareConfig(dataset, os.path.abspath(data_root or default_data_root()), val_fraction,
                                   split_seed, limit, limit_test, encoding, drop_unseen_labels, keep_nan_labels)
    config = stage.RunConfig(prepare=prepare_config, train=train_config, evaluate=EvaluateConfig(probe=probe))
    manifests = stage.run(config, run_dir, force=force, resume=resume, echo=click.echo)
    _echo_train(manifests["train"])
    for line in summary_lines(manifests["evaluate"].summary):
        click.echo(line)


@main.command(short_help="Test metrics, confusion matrix, silhouette, t-SNE, probe, propagation.")
@config_option
@run_dir_option(required=True)
@click.option("--predictor", type=click.Choice(options.PREDICTORS), default=options.DEFAULT_PREDICTOR,
              show_default=True,
              help="The headline predictor (all are computed and reported): the head; knn = weighted vote of the k "
                   "nearest training documents; lpa = label propagation over the kNN graph; mix = alpha * lpa + "
                   "(1 - alpha) * head. k and alpha are chosen by validation macro-F1.")
@click.option("--transductive", is_flag=True,
              help="Headline lpa/mix over the graph of train + val + test (default: inductive, training graph only).")
@click.option("--knn-k", type=click.IntRange(min=1), default=None,
              help="Fix k of every kNN graph instead of choosing it on validation among 5, 10, 20, 50 "
                   "(label_propagation uses 10 unless given).")
@click.option("--tsne-max", type=click.IntRange(min=0), default=options.TSNE_MAX, show_default=True,
              help="Most test embeddings drawn in tsne.png (a seeded sample; 0 skips the plot).")
@click.option("--seed", type=int, default=options.SEED, show_default=True, help="Seed of the t-SNE and of the samples.")
@click.option("--probe", type=click.Choice(options.PROBES), default=options.DEFAULT_PROBE, show_default=True,
              help="Linear probe: scikit-learn's logistic regression, the released code's (full-batch Adam on "
                   "un-normalised embeddings, early stopping on val macro-F1), or both.")
@force_option
def evaluate(run_dir, predictor, transductive, knn_k, tsne_max, seed, probe, force):
    """Evaluate RUN/train on the test split of RUN/prepare: head accuracy, macro-/weighted-F1, per-class report
    and confusion matrix; cosine macro-silhouette and t-SNE of the test embeddings; a linear probe and
    transductive label propagation on the embeddings. Writes RUN/evaluate/metrics.json and plots."""
    from pipeline.stages import evaluate as stage

    config = stage.EvaluateConfig(knn_k=knn_k, predictor=predictor, transductive=transductive, tsne_max=tsne_max,
                                  seed=seed, probe=probe)
    manifest = stage.run(config, run_dir, force=force, echo=click.echo)
    for line in stage.summary_lines(manifest.summary):
        click.echo(line)


@main.command(short_help="Inspect kNN graphs: homophily, degrees, components, propagation accuracy.")
@config_option
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run whose embeddings to inspect (writes RUN/inspect/, or RUN/inspect-trained/ with "
                   "--source trained).")
@click.option("--source", type=click.Choice(options.INSPECT_SOURCES), default=options.DEFAULT_INSPECT_SOURCE,
              show_default=True, help="RUN/embed embeddings or RUN/train's (best epoch).")
@click.option("--epochs", type=click.Choice(["all"]), default=None,
              help="Also follow the val graph across RUN/train/val_embeddings/epoch-K.npy (0 = pre-trained).")
@click.option("--embeddings", type=click.Path(dir_okay=False), default=None,
              help="Instead of a run: an [N, D] .npy of embeddings (needs --labels and --out).")
@click.option("--labels", type=click.Path(dir_okay=False), default=None,
              help="Labels of --embeddings: integer .npy, CSV/TSV (label column) or text (one per line).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder of the --embeddings mode.")
@click.option("--k", type=click.IntRange(min=1), default=options.K, show_default=True, help="Neighbours per node.")
@click.option("--metric", type=click.Choice(options.METRICS), default=options.DEFAULT_METRIC, show_default=True)
@click.option("--backend", type=click.Choice(options.BACKENDS), default=options.DEFAULT_BACKEND, show_default=True,
              help="kNN search: auto = FAISS on CPU (torch top-k for small graphs), FAISS GPU or torch "
                   "on CUDA.")
@click.option("--device", default=options.DEVICE, show_default=True, help="auto (CUDA when available), cpu, cuda.")
@click.option("--batches", type=click.IntRange(min=1), default=options.INSPECT_BATCHES, show_default=True,
              help="G-Loss batch graphs sampled from train.")
@click.option("--batch-size", type=click.IntRange(min=2), default=options.BATCH_SIZE, show_default=True)
@click.option("--gamma", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=options.GAMMA,
              show_default=True, help="G-Loss share of visible nodes in the batch graphs.")
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=options.HOLDOUT,
              show_default=True,
              help="Share of nodes hidden for label propagation when there is no train/val split.")
@click.option("--layout-nodes", type=click.IntRange(min=2), default=options.LAYOUT_NODES, show_default=True,
              help="Nodes of the sampled subgraph drawn in subgraph_layout.png.")
@click.option("--seed", type=int, default=options.SEED, show_default=True, help="Seed of every sample.")
@click.option("--export", default=options.DEFAULT_EXPORT, show_default=True,
              help="Edge-list formats: a comma list of csv, npz, graphml, or none.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Draw the PNG figures.")
@force_option
def inspect(run_dir, source, epochs, embeddings, labels, out, k, metric, backend, device, batches, batch_size,
            gamma, holdout, layout_nodes, seed, export, plots, force):
    """Build the exact kNN graph of a run's embeddings (or of --embeddings) and report edge homophily
    (overall, per class), in/out degrees and hubs, weakly connected components and their label purity,
    leave-one-out kNN-vote accuracy, label-propagation accuracy, pairwise distances with the sigma heuristics
    and the accuracy of G-Loss batch graphs: inspect.json, summary.txt, plots and edge lists."""
    from pipeline.inspection.analyse import InspectOptions
    from pipeline.inspection.export import parse_formats
    from pipeline.stages import inspect as stage

    try:
        formats = parse_formats(export)
    except ValueError as exc:
        raise GlossError(f"--export {export}: {exc}") from None
    options = InspectOptions(k=k, metric=metric, backend=backend, batches=batches, batch_size=batch_size,
                             gamma=gamma, seed=seed, holdout=holdout, layout_nodes=layout_nodes)
    config = stage.InspectConfig(source=source, epochs=epochs, options=options, export=formats, plots=plots)
    if (run_dir is None) == (embeddings is None):
        raise GlossError("give either --run-dir RUN or --embeddings FILE.npy (with --labels and --out)")
    if embeddings is not None:
        if labels is None or out is None:
            raise GlossError("--embeddings needs --labels FILE and --out DIR")
        manifest = stage.run_files(config, embeddings, labels, out, device=device, force=force,
                                   echo=click.echo)
    else:
        if labels is not None or out is not None:
            raise GlossError("--labels and --out go with --embeddings; with --run-dir the labels come from "
                             "RUN/prepare and the outputs go to RUN/inspect (RUN/inspect-trained)")
        manifest = stage.run(config, run_dir, device=device, force=force, echo=click.echo)
    for line in manifest.summary.get("lines", []):
        click.echo(line)


@main.group(short_help="List or clear the shared cache of embeddings ($GLOSS_CACHE).")
def cache() -> None:
    """The content-addressed cache every run shares: $GLOSS_CACHE, default ~/.cache/gloss (pre-trained
    embeddings by encoder files, pooling, max length and texts; encoder folder hashes)."""


@cache.command("list")
@click.option("--kind", type=click.Choice(options.CACHE_KINDS), default=None, help="Only entries of this kind.")
def cache_list(kind):
    """One line per entry: kind, key, size, created, what it holds."""
    from pipeline import cache as store

    found = store.entries(kind)
    for entry in found:
        parts = entry.get("parts", {})
        what = ", ".join(f"{k}={v}" for k, v in parts.items() if k in ("documents", "pooling", "max_length",
                                                                       "precision", "folder"))
        click.echo(f"{entry['kind']}  {Path(entry['path']).name[:12]}  {entry.get('bytes', 0) / 1e6:.1f} MB  "
                   f"{entry.get('created', '?')}  {what}")
    total = sum(int(e.get("bytes", 0)) for e in found)
    click.echo(f"cache: {len(found)} entries, {total / 1e6:.1f} MB in {store.cache_root()}")


@cache.command("clear")
@click.option("--kind", type=click.Choice(options.CACHE_KINDS), default=None, help="Only entries of this kind.")
def cache_clear(kind):
    """Remove the entries (every kind unless --kind); runs recreate what they need."""
    from pipeline import cache as store

    count, size = store.clear(kind)
    click.echo(f"cache: removed {count} entries, {size / 1e6:.1f} MB from {store.cache_root()}")


if __name__ == "__main__":  # pragma: no cover
    main()
