"""``gloss run``: the whole pipeline in sequence, skipping stages whose config and inputs are unchanged.

prepare -> embed -> train -> evaluate. ``embed`` runs only when training reads it: G-Loss (``gloss``,
``gloss+ce``) with a corpus sigma (``--sigma sqrt|dicm``, from ``RUN/embed/sigma.json``); no other loss,
method or later stage of the sequence reads ``RUN/embed`` (``gloss inspect --source pretrained`` asks for
``gloss embed`` when it is missing).

The default run directory is ``runs/<dataset>-<method>-seed<seed>-<hash>``: the hash is
:func:`pipeline.artifacts.run_config_hash` of the prepare and train configs, so two settings never share a
default directory; an explicit ``--run-dir`` may hold several variants (a changed stage reruns and says
which keys changed).
The corpus kNN graph (``gloss graph``) is not part of the sequence: no later stage reads ``RUN/graph``
(evaluate builds its own graph of the *trained* embeddings, inspect of whichever embeddings it inspects),
so it is a stage to run on its own when its edge list is wanted.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import options
from pipeline.artifacts import default_run_name, run_config_hash
from pipeline.encoder import resolve_model_path
from pipeline.manifest import Manifest
from pipeline.model_card import add_test_results
from pipeline.output_paths import check_output_dir
from pipeline.stages import embed as embed_stage
from pipeline.stages import evaluate as evaluate_stage
from pipeline.stages import prepare as prepare_stage
from pipeline.stages import train as train_stage
from pipeline.training.partial import describe

RUNS_DIR = "runs"


@dataclass
class RunConfig:
    """The configs of every stage ``gloss run`` runs."""

    prepare: prepare_stage.PrepareConfig
    train: train_stage.TrainConfig
    evaluate: evaluate_stage.EvaluateConfig = field(default_factory=evaluate_stage.EvaluateConfig)

    @property
    def method_name(self) -> str:
        """The loss for fine-tuning, else the method's reported name (``gloss+ce``, ``textgcn``, ``tfidf-lr``)."""
        return self.train.loss if self.train.method == "finetune" else options.REPORTED_METHODS[self.train.method]

    def config_hash(self) -> str:
        """:func:`pipeline.artifacts.run_config_hash` of this run's prepare and train configs."""
        return run_config_hash(self.prepare.stage_config(), self.train.stage_config())

    def default_run_dir(self) -> Path:
        """``runs/<dataset>-<method>-seed<seed>-<first 8 hex digits of config_hash>``."""
        name = default_run_name(self.prepare.dataset, self.method_name, self.train.loop.seed, self.config_hash())
        return Path(RUNS_DIR) / name

    @property
    def needs_embed(self) -> bool:
        """Whether training reads ``RUN/embed``: G-Loss with a corpus sigma (``sqrt``/``dicm``)."""
        return self.train.method == "finetune" and self.train.objective.reads_corpus_sigma

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages run, in order."""
        if self.needs_embed:
            return ("prepare", "embed", "train", "evaluate")
        return ("prepare", "train", "evaluate")


def run(config: RunConfig, run_dir: str | Path | None = None, force: bool = False, resume: bool = False,
        echo: Callable[[str], None] = print) -> dict[str, Manifest]:
    """Run every stage of ``config`` into ``run_dir`` (default :meth:`RunConfig.default_run_dir`).

    Returns the manifest of each stage, by stage name.
    """
    train_stage.check_config(config.train)  # every option checked before any stage runs
    if config.train.method != "textgcn":
        resolve_model_path(config.train.encoder.model)
    run_dir = Path(run_dir) if run_dir is not None else config.default_run_dir()
    check_output_dir(run_dir)
    with warnings.catch_warnings(record=True) as caught:  # the first line names the run, before any warning
        echo(f"{first_line(config)}; {' -> '.join(config.stages)} in {run_dir}")
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    manifests = {"prepare": prepare_stage.run(config.prepare, run_dir, force=force, echo=echo)}
    if "embed" in config.stages:
        embed_config = embed_stage.EmbedConfig(config.train.encoder)
        manifests["embed"] = embed_stage.run(embed_config, run_dir, force=force, echo=echo)
    manifests["train"] = train_stage.run(config.train, run_dir, force=force, resume=resume, echo=echo)
    manifests["evaluate"] = evaluate_stage.run(config.evaluate, run_dir, force=force, echo=echo)
    if config.train.method == "finetune":
        echo(f"run: model card with the test results in {add_test_results(run_dir)}")
    return manifests


def encoder_name(model: str) -> str:
    """How the first line names an encoder: ``all-MiniLM-L6-v2``, or a model folder's name."""
    return Path(model.rstrip("/")).name or model


def first_line(config: RunConfig) -> str:
    """What the run is: dataset, encoder, loss and what ``--train-layers`` / ``--precision`` resolve to here
    (``run: R8 | all-MiniLM-L6-v2 | loss gloss+ce | --train-layers auto -> 0 (adapter: ...) | precision fp32``)."""
    limit = "" if config.prepare.limit is None else f" (train<={config.prepare.limit})"
    parts = [f"run: {config.prepare.dataset}{limit}"]
    if config.train.method == "textgcn":
        return " | ".join(parts + ["TextGCN (--method textgcn, no encoder)"])
    parts.append(encoder_name(config.train.encoder.model))
    if config.train.method == "bertgcn":
        return " | ".join(parts + ["BertGCN (--method bertgcn)"])
    resolved = train_stage.resolve_protocol(config.train).loop
    requested = config.train.loop.train_layers
    layers = f"{requested} -> {resolved.train_layers}" if requested != resolved.train_layers else requested
    return " | ".join(parts + [f"loss {config.train.loss}",
                               f"--train-layers {layers} ({describe(resolved.train_layers)})",
                               f"precision {resolved.precision}"])
