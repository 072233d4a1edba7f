"""``gloss run``: the whole pipeline in sequence, skipping stages whose config and inputs are unchanged.

prepare -> embed -> train -> evaluate. ``embed`` is skipped for TextGCN (it reads no encoder embeddings).
The corpus kNN graph (``gloss graph``) is not part of the sequence: no later stage reads ``RUN/graph``
(evaluate builds its own graph of the *trained* embeddings, inspect of whichever embeddings it inspects),
so it is a stage to run on its own when its edge list is wanted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.artifacts import default_run_name
from pipeline.manifest import Manifest
from pipeline.stages import embed as embed_stage
from pipeline.stages import evaluate as evaluate_stage
from pipeline.stages import prepare as prepare_stage
from pipeline.stages import train as train_stage

RUNS_DIR = "runs"


@dataclass
class RunConfig:
    """The configs of every stage ``gloss run`` runs."""

    prepare: prepare_stage.PrepareConfig
    train: train_stage.TrainConfig
    evaluate: evaluate_stage.EvaluateConfig = field(default_factory=evaluate_stage.EvaluateConfig)

    @property
    def method_name(self) -> str:
        """The loss for fine-tuning, else the method (``gloss+ce``, ``textgcn``)."""
        return self.train.loss if self.train.method == "finetune" else self.train.method

    def default_run_dir(self) -> Path:
        """``runs/<dataset>-<method>-seed<seed>``."""
        return Path(RUNS_DIR) / default_run_name(self.prepare.dataset, self.method_name, self.train.loop.seed)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages run, in order."""
        if self.train.method == "textgcn":
            return ("prepare", "train", "evaluate")
        return ("prepare", "embed", "train", "evaluate")


def run(config: RunConfig, run_dir: str | Path | None = None, force: bool = False, resume: bool = False,
        echo: Callable[[str], None] = print) -> dict[str, Manifest]:
    """Run every stage of ``config`` into ``run_dir`` (default :meth:`RunConfig.default_run_dir`).

    Returns the manifest of each stage, by stage name.
    """
    run_dir = Path(run_dir) if run_dir is not None else config.default_run_dir()
    manifests = {"prepare": prepare_stage.run(config.prepare, run_dir, force=force, echo=echo)}
    if "embed" in config.stages:
        embed_config = embed_stage.EmbedConfig(config.train.encoder)
        manifests["embed"] = embed_stage.run(embed_config, run_dir, force=force, echo=echo)
    manifests["train"] = train_stage.run(config.train, run_dir, force=force, resume=resume, echo=echo)
    manifests["evaluate"] = evaluate_stage.run(config.evaluate, run_dir, force=force, echo=echo)
    return manifests
