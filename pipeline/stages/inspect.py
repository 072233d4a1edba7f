"""``gloss inspect``: the exact kNN graph of a run's embeddings (or of any ``.npy``), measured, drawn and
exported.

Inputs: ``RUN/embed/embeddings_{train,val,test}.npy`` (``--source pretrained``), ``RUN/train/...``
(``trained``, the best epoch) and, with ``--epochs all``, every ``RUN/train/val_embeddings/epoch-K.npy``
(epoch 0 = the pre-trained val embeddings); labels from ``RUN/prepare``. Or ``--embeddings FILE.npy
--labels FILE`` with ``--out DIR``.

Outputs (``RUN/inspect/`` for the pre-trained embeddings, ``RUN/inspect-trained/`` for the trained ones, so
one never replaces the other; or ``--out``; written atomically with a manifest): ``inspect.json`` (every figure),
``summary.txt``, ``degree_histogram.png``, ``homophily_per_class.png``, ``distance_histogram.png``,
``batch_adjacency.png``, ``subgraph_layout.png``, ``evolution.png`` (``--epochs``), and the edges as
``edges.csv`` / ``edges.npz`` / ``graph.graphml`` (``--export``), in PyG ``source_to_target`` direction like
``gloss graph``'s ``graph.npz`` (source = neighbour, target = the node that lists it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline import options as defaults
from pipeline.errors import GlossError
from pipeline.inspection.analyse import InspectOptions
from pipeline.manifest import Manifest, StageContext, run_stage
from pipeline.options import BACKENDS, EXPORT_FORMATS, INSPECT_SOURCES, METRICS, choice_error

STAGE = "inspect"
STAGE_DIRS = {"pretrained": STAGE, "trained": f"{STAGE}-trained"}  # --source -> the folder under RUN/
PLOTS = (
    "degree_histogram.png",
    "homophily_per_class.png",
    "distance_histogram.png",
    "batch_adjacency.png",
    "subgraph_layout.png",
)
EXPORT_FILES = {"csv": "edges.csv", "npz": "edges.npz", "graphml": "graph.graphml"}


@dataclass
class InspectConfig:
    """What to inspect and how.

    Args:
        source: ``pretrained`` or ``trained`` embeddings of the run (ignored with ``--embeddings``).
        epochs: ``all`` to follow the validation graph across the epochs of ``RUN/train``; ``None`` not to.
        options: the measurement knobs.
        export: edge-list formats among ``csv``, ``npz``, ``graphml``.
        plots: draw the PNGs.
    """

    source: str = defaults.DEFAULT_INSPECT_SOURCE
    epochs: str | None = None
    options: InspectOptions = field(default_factory=InspectOptions)
    export: tuple[str, ...] = tuple(defaults.DEFAULT_EXPORT.split(","))
    plots: bool = True


def _device(device: str) -> str:
    from pipeline.encoder import resolve_device

    return resolve_device(device)


def _check(config: InspectConfig) -> None:
    if config.source not in INSPECT_SOURCES:
        raise GlossError(choice_error("--source", config.source, INSPECT_SOURCES))
    if config.epochs not in (None, "all"):
        raise GlossError(f"--epochs {config.epochs}: expected 'all'")
    bad = [f for f in config.export if f not in EXPORT_FORMATS]
    if bad:
        raise GlossError(f"--export {bad[0]}: expected a comma list of {', '.join(EXPORT_FORMATS)}, or none")
    o = config.options
    if o.metric not in METRICS:
        raise GlossError(choice_error("--metric", o.metric, METRICS))
    if o.backend not in BACKENDS:
        raise GlossError(choice_error("--backend", o.backend, BACKENDS))
    if o.backend == "faiss":
        from graphs import knn

        if knn.faiss is None:
            raise GlossError("--backend faiss: faiss is not installed (pip install faiss-cpu)")


def _epochs(epochs_loader, opts: InspectOptions, device: str) -> list[dict]:
    """The figures of every epoch's validation embeddings."""
    from pipeline.artifacts import load_matrix
    from pipeline.inspection.analyse import epoch_metrics

    files, val_labels, names = epochs_loader()
    num_classes = max(len(names), int(val_labels.max()) + 1)
    return [
        {
            "epoch": epoch,
            **epoch_metrics(load_matrix(path, len(val_labels), split="val", dtype=np.float32), val_labels, opts,
                            device, num_classes),
        }
        for epoch, path in files
    ]


def _export(ctx: StageContext, formats: tuple[str, ...], graph, data) -> None:
    """The edge lists (``source_to_target``) in the chosen formats."""
    from pipeline.inspection.export import write_edges_csv, write_edges_npz, write_graphml

    edges = graph.edges  # [2, N k]: row 0 neighbour, row 1 node
    weight = graph.weight.reshape(-1)  # [N k], in the order of the edges
    nodes = (data.labels, data.split, data.split_names, data.label_names)
    if "csv" in formats:
        write_edges_csv(ctx.output(EXPORT_FILES["csv"], rows=int(edges.shape[1])), edges, weight, data.labels)
    if "npz" in formats:
        write_edges_npz(ctx.output(EXPORT_FILES["npz"]), edges, weight, *nodes)
    if "graphml" in formats:
        write_graphml(ctx.output(EXPORT_FILES["graphml"]), edges, weight, *nodes, graph.component, graph.in_degree)


def _body(config: InspectConfig, load, device: str, epochs_loader=None):
    """The stage body: ``load()`` gives the :class:`Embeddings`; ``epochs_loader()`` the epoch files."""

    def body(ctx: StageContext) -> dict:
        from pipeline.inspection.analyse import inspect_embeddings
        from pipeline.inspection.summary import summary_lines

        data = load()
        opts = config.options
        report, graph = inspect_embeddings(data, opts, device)
        if epochs_loader is not None:
            report["epochs"] = _epochs(epochs_loader, opts, device)
        if config.plots:
            _plot(ctx, report, graph, data, graph.edges, opts)
        _export(ctx, config.export, graph, data)
        report["config"] = asdict(config)
        ctx.output("inspect.json").write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
        lines = summary_lines(report)
        ctx.output("summary.txt").write_text("\n".join(lines) + "\n")
        return {
            "lines": lines,
            "nodes": report["nodes"],
            "edge_homophily": report["homophily"]["edge_homophily"],
            "knn_vote_accuracy": report["knn_vote"]["accuracy"],
            "lp_accuracy": report["label_propagation"]["accuracy"],
            "batch_accuracy": report["batches"]["accuracy"],
            "backend": report["search"]["backend"],
            "device": report["device"],
        }

    return body


def _plot(ctx: StageContext, report: dict, graph, data, edges: np.ndarray, opts: InspectOptions) -> None:
    """The PNGs of an inspection."""
    from graphs.inspection import snowball_sample
    from pipeline.inspection import plots

    names = data.label_names
    h = report["homophily"]
    plots.plot_degree_histogram(
        graph.in_degree, opts.k, report["degree"]["hub_threshold"], ctx.output("degree_histogram.png")
    )
    plots.plot_homophily_per_class(
        h["per_class"], h["class_share"], names, h["edge_homophily"], ctx.output("homophily_per_class.png")
    )
    plots.plot_distance_histogram(
        report["distances"]["histogram"],
        report["sigma"],
        report["distances"]["quantiles"]["p50"],
        ctx.output("distance_histogram.png"),
    )
    example = graph.extras["batch_example"]
    plots.plot_batch_adjacency(
        example["weight"].numpy(),
        example["labels"].numpy(),
        example["visible"].numpy(),
        names,
        example["sigma"],
        example["sigma_heuristic"],
        ctx.output("batch_adjacency.png"),
    )
    sample = snowball_sample(edges, len(data.labels), opts.layout_nodes, seed=opts.seed)
    plots.plot_subgraph(sample, edges, data.labels, names, ctx.output("subgraph_layout.png"), seed=opts.seed)
    if report.get("epochs"):
        plots.plot_evolution(report["epochs"], ctx.output("evolution.png"))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def run(
    config: InspectConfig, run_dir: str | Path, device: str = "auto", force: bool = False, echo=print
) -> Manifest:
    """Inspect a run's embeddings into ``RUN/inspect/`` (``--source pretrained``) or ``RUN/inspect-trained/``."""
    from pipeline.inspection.inputs import SOURCES, epoch_embeddings, run_embeddings
    from pipeline.manifest import load_manifest

    _check(config)
    device = _device(device)
    upstream = {"prepare": load_manifest(run_dir, "prepare")}
    stage = SOURCES[config.source]
    upstream[stage] = load_manifest(run_dir, stage)
    epochs_loader = None
    if config.epochs == "all":
        files, val_labels, names, manifests = epoch_embeddings(run_dir)
        upstream.update(manifests)

        def epochs_loader():
            return files, val_labels, names

    def load():
        return run_embeddings(run_dir, config.source)[0]

    return run_stage(
        run_dir,
        STAGE_DIRS[config.source],
        {"mode": "run", **asdict(config)},
        _body(config, load, device, epochs_loader),
        upstream=upstream,
        force=force,
        echo=echo,
    )


def run_files(
    config: InspectConfig,
    embeddings: str | Path,
    labels: str | Path,
    out: str | Path,
    device: str = "auto",
    force: bool = False,
    echo=print,
) -> Manifest:
    """Inspect an arbitrary ``.npy`` with a labels file into ``out`` (atomically, with a manifest)."""
    from pipeline.inspection.inputs import file_embeddings

    _check(config)
    if config.epochs is not None:
        raise GlossError("--epochs needs --run-dir (the epochs of RUN/train)")
    for option, path in (("--embeddings", embeddings), ("--labels", labels)):
        if not Path(path).is_file():
            raise GlossError(f"{option} {path}: file not found")
    device = _device(device)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise GlossError(f"--out {out}: exists and is not a directory")
    file_config = {"mode": "files", **asdict(config)}
    file_config.pop("source")

    def load():
        return file_embeddings(embeddings, labels)

    # run_stage drops its scratch space (PARENT/.scratch/NAME), unused here, once empty.
    return run_stage(out.parent, out.name, file_config, _body(config, load, device),
                     input_files={"embeddings": Path(embeddings), "labels": Path(labels)}, force=force, echo=echo)
