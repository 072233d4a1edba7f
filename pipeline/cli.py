"""The ``gloss`` command line: thin click commands that resolve options into configs and call stages.

Heavy libraries (torch, transformers, pandas) are imported inside the commands, so ``gloss --help``
stays fast.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from pipeline import __version__
from pipeline.config_file import config_option
from pipeline.errors import GlossError
from pipeline.stages import STAGE_ORDER


class StageOrderGroup(click.Group):
    """Lists commands in pipeline order instead of alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        order = {name: i for i, name in enumerate(STAGE_ORDER)}
        return sorted(self.commands, key=lambda name: (order.get(name, len(order)), name))


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


@main.command(short_help="Read a dataset, validate it, carve the seeded validation split.")
@config_option
@click.option("--dataset", required=True, help="Dataset name: mr, R8, R52, ohsumed, 20ng, or your own.")
@click.option("--data-root", default=None, help="Folder holding the datasets (default: $GLOSS_DATA, else ./data).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Share of each training class held out for validation.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the validation split and --limit.")
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Keep a stratified sample of at most N training documents (val/test proportionally).")
@run_dir_option
@force_option
def prepare(dataset, data_root, val_fraction, seed, limit, run_dir, force):
    """Read DATA_ROOT/DATASET/{train,test}.csv (or a CSV/JSONL with a split column, or the TextGCN layout),
    validate it, carve a seeded stratified validation split and save the splits and label names."""
    from pipeline.stages import prepare as stage

    config = stage.PrepareConfig(
        dataset=dataset,
        data_root=os.path.abspath(data_root or default_data_root()),
        val_fraction=val_fraction,
        seed=seed,
        limit=limit,
    )
    manifest = stage.run(config, run_dir or os.path.join("runs", dataset), force=force, echo=click.echo)
    rows = manifest.summary["rows"]
    click.echo(
        f"prepare: {dataset}: {manifest.summary['num_classes']} classes, "
        f"train {rows['train']} / val {rows['val']} / test {rows['test']} rows"
    )


def _not_built(name: str, help_text: str, issue: int):
    @main.command(name=name, short_help=f"{help_text} (not built yet)", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args):
        raise GlossError(f"`gloss {name}` is not built yet (issue #{issue})")

    command.__doc__ = f"{help_text} Not built yet: see issue #{issue}."
    return command


@main.command(short_help="Test metrics, confusion matrix, silhouette, t-SNE, probe, propagation.")
@config_option
@run_dir_option(required=True)
@click.option("--knn-k", type=click.IntRange(min=1), default=10, show_default=True,
              help="Neighbours per node of the train+test kNN graph for transductive label propagation.")
@click.option("--tsne-max", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Most test embeddings drawn in tsne.png (a seeded sample; 0 skips the plot).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the t-SNE and of the samples.")
@force_option
def evaluate(run_dir, knn_k, tsne_max, seed, force):
    """Evaluate RUN/train on the test split of RUN/prepare: head accuracy, macro-/weighted-F1, per-class report
    and confusion matrix; cosine macro-silhouette and t-SNE of the test embeddings; a linear probe and
    transductive label propagation on the embeddings. Writes RUN/evaluate/metrics.json and plots."""
    from pipeline.stages import evaluate as stage

    config = stage.EvaluateConfig(knn_k=knn_k, tsne_max=tsne_max, seed=seed)
    manifest = stage.run(config, run_dir, force=force, echo=click.echo)
    for line in stage.summary_lines(manifest.summary):
        click.echo(line)


_not_built("embed", "Embed train/val/test with the pre-trained encoder; sigma heuristics.", 4)
_not_built("graph", "Build the corpus kNN graph of the embeddings (FAISS).", 4)
_not_built("train", "Fine-tune with G-Loss or a comparison loss, or train TextGCN/BertGCN.", 4)
_not_built("compare", "Sweep methods x datasets x seeds into tables and plots.", 6)
_not_built("inspect", "Inspect kNN graphs: homophily, degrees, components, propagation accuracy.", 7)
_not_built("run", "prepare -> embed -> graph -> train -> evaluate in sequence.", 4)


if __name__ == "__main__":  # pragma: no cover
    main()
