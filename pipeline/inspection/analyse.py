"""The numbers of ``gloss inspect``: one call builds the corpus kNN graph of an :class:`Embeddings` and
measures it (JSON-able report), keeping the arrays the plots and exports need.

Everything that builds comes from :mod:`graphs`: the search (:func:`graphs.knn.knn_search`), the edges
(:func:`graphs.knn.knn_edge_index`, PyG ``source_to_target``: row 0 = neighbour, row 1 = node), the edge weights
(:func:`graphs.edge_weights.knn_edge_weight`: ``clipped-cosine`` or ``median-gaussian``), label propagation
(:func:`graphs.propagation.knn_label_propagation`, the recipe of ``gloss evaluate``) and the kernel widths
(:func:`graphs.sigma.resolve_sigma`); :mod:`graphs.inspection` measures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipeline import options as defaults
from pipeline.errors import GlossError
from pipeline.inspection.inputs import Embeddings


@dataclass
class InspectOptions:
    """Knobs of an inspection (see ``gloss inspect --help``)."""

    k: int = defaults.K
    metric: str = defaults.DEFAULT_METRIC
    backend: str = defaults.DEFAULT_BACKEND
    batches: int = defaults.INSPECT_BATCHES
    batch_size: int = defaults.BATCH_SIZE
    gamma: float = defaults.GAMMA
    seed: int = defaults.SEED
    holdout: float = defaults.HOLDOUT
    distance_sample: int = defaults.DISTANCE_SAMPLE
    silhouette_sample: int = defaults.SILHOUETTE_SAMPLE
    layout_nodes: int = defaults.LAYOUT_NODES


@dataclass
class Graph:
    """Arrays of an inspected graph (numpy, CPU).

    Shapes: neighbors, scores, weight [N, k]; out_degree, in_degree, component [N].
    """

    neighbors: np.ndarray
    scores: np.ndarray
    weight: np.ndarray
    out_degree: np.ndarray
    in_degree: np.ndarray
    component: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def edges(self) -> np.ndarray:
        """``[2, N k]`` in PyG ``source_to_target``: row 0 the neighbour, row 1 the node that lists it, in
        the order of ``weight.reshape(-1)``."""
        import torch

        from graphs.knn import knn_edge_index

        return knn_edge_index(torch.from_numpy(self.neighbors)).numpy()


class _Clock:
    """Seconds per named step."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now


def _check_k(k: int, n: int) -> None:
    if n < 3:
        raise GlossError(f"inspect: {n} embeddings; need at least 3")
    if k > n - 1:
        raise GlossError(f"--k {k}: at most {n - 1} neighbours for {n} embeddings")


def _visible(data: Embeddings, holdout: float, seed: int) -> tuple[np.ndarray, str]:
    """Train visible when the data has train + val; otherwise a seeded ``holdout`` share hidden."""
    from graphs.propagation import holdout_mask

    if "train" in data.split_names and len(data.rows("train")) and len(data.rows("val")):
        return data.split == data.split_names.index("train"), "train labels visible"
    return holdout_mask(
        len(data.labels), holdout, seed
    ), f"seeded {holdout:.0%} of the nodes hidden (seed {seed})"


def _search(x, options: InspectOptions):
    """The exact kNN search of the corpus (itself excluded), its edge weights and how it ran."""
    import torch

    from graphs.edge_weights import knn_edge_weight
    from graphs.knn import knn_search, resolve_backend

    started = time.perf_counter()
    scores, nbr = knn_search(x, x, options.k, metric=options.metric, backend=options.backend,
                             exclude_self=True)  # [N, k], [N, k]
    if x.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    weight = knn_edge_weight(scores, options.metric)  # [N, k]
    info = {"backend": resolve_backend(options.backend, x), "seconds": round(seconds, 3)}
    return scores, nbr, weight, info


def _propagate(data: Embeddings, x, scores, nbr, visible: np.ndarray, options: InspectOptions) -> dict[str, Any]:
    """Label propagation over the searched graph (not searched again), scored on the hidden nodes."""
    import torch

    from graphs.propagation import knn_label_propagation

    labels = torch.from_numpy(data.labels).to(x.device)
    mask = torch.from_numpy(visible).to(x.device)
    result = knn_label_propagation(x, labels, mask, options.k, metric=options.metric, neighbors=(scores, nbr),
                                   num_classes=data.num_classes)
    predictions = result.pop("predictions").cpu().numpy()
    right = predictions == data.labels
    hidden = ~visible
    result["accuracy"] = float(right[hidden].mean()) if hidden.any() else None
    result["hidden"] = int(hidden.sum())
    result["visible"] = int(visible.sum())
    result["per_split"] = {
        s: float(right[rows].mean())
        for s in data.split_names
        if len(rows := data.rows(s)) and not visible[rows].any()
    }
    return result


def _structure(nbr: np.ndarray, data: Embeddings) -> tuple[dict[str, Any], tuple[np.ndarray, ...]]:
    """Homophily, degrees, components and the kNN vote of the graph; and its per-node degree/component arrays."""
    import torch

    from graphs.inspection import (
        component_ids,
        component_purity,
        degree_stats,
        edge_homophily,
        knn_vote,
        node_degrees,
    )
    from graphs.knn import knn_edge_index

    n, c = len(data.labels), data.num_classes
    edges = knn_edge_index(torch.from_numpy(nbr)).numpy()  # [2, N k], source_to_target
    out_deg, in_deg = node_degrees(edges, n)
    _, comp = component_ids(edges, n)
    vote = knn_vote(nbr, data.labels, c)
    right = vote.pop("predictions") == data.labels
    vote["per_split"] = {s: float(right[data.rows(s)].mean()) for s in data.split_names if len(data.rows(s))}
    measures = {
        "homophily": edge_homophily(edges, data.labels, c),
        "degree": degree_stats(out_deg, in_deg),
        "components": component_purity(comp, data.labels),
        "knn_vote": vote,
    }
    return measures, (out_deg, in_deg, comp)


def corpus_sigma(z, labels, seed: int) -> dict[str, Any]:
    """The corpus kernel widths ``sqrt`` and ``dicm`` of (L2-normalised) rows; ``dicm`` is ``None`` with one
    class; ``degenerate`` names those below ``graphs.sigma.MIN_USEFUL_SIGMA`` (see
    :func:`graphs.inspection.sigma_report`)."""
    from graphs.inspection import sigma_report

    return sigma_report(z, labels, seed=seed)


def _pool_measures(x, data: Embeddings, visible: np.ndarray, options: InspectOptions, clock: _Clock):
    """Distances over all nodes; the corpus sigma and the G-Loss batch graphs of the training pool."""
    import torch

    from graphs.inspection import distance_distribution, gloss_batch_graphs

    pool = torch.from_numpy(np.flatnonzero(visible)).to(x.device)  # the training pool: batches and sigma
    pool_labels = torch.from_numpy(data.labels).to(x.device)[pool]
    z = torch.nn.functional.normalize(x.double(), dim=-1)  # [N, D]
    distances = distance_distribution(z, options.distance_sample, options.seed)
    sigma = corpus_sigma(z[pool], pool_labels, options.seed)
    clock.lap("distances")
    batches = gloss_batch_graphs(x[pool], pool_labels, options.batches, options.batch_size, options.gamma,
                                 options.seed, data.num_classes)
    clock.lap("batches")
    return distances, sigma, batches


def _silhouette(x: np.ndarray, labels: np.ndarray, options: InspectOptions) -> dict[str, Any] | None:
    from pipeline.evaluation.metrics import silhouette

    return silhouette(x, labels, max_samples=options.silhouette_sample, seed=options.seed)


def _header(data: Embeddings, options: InspectOptions, device) -> dict[str, Any]:
    return {
        "source": data.source,
        "nodes": len(data.labels),
        "dim": int(data.x.shape[1]),
        "classes": data.num_classes,
        "label_names": data.label_names,
        "splits": {s: int(len(data.rows(s))) for s in data.split_names},
        "k": options.k,
        "metric": options.metric,
        "device": str(device),
    }


def inspect_embeddings(data: Embeddings, options: InspectOptions, device: str = "cpu") -> tuple[dict, Graph]:
    """Build the exact kNN graph of ``data`` and measure it.

    Returns:
        the report (JSON-able: ``nodes``, ``search``, ``homophily``, ``degree``, ``components``,
        ``knn_vote``, ``label_propagation``, ``distances``, ``sigma`` (the corpus ``sqrt`` / ``dicm``),
        ``batches`` (G-Loss batch graphs, sigma ``batch-sqrt``), ``silhouette``, ``seconds``) and the
        :class:`Graph` arrays.
    """
    import torch

    _check_k(options.k, len(data.labels))
    clock = _Clock()
    x = torch.from_numpy(data.x).to(device)  # [N, D]
    scores, nbr, weight, search = _search(x, options)
    clock.lap("knn")
    nbr_np = nbr.cpu().numpy()  # [N, k]
    measures, (out_deg, in_deg, comp) = _structure(nbr_np, data)
    clock.lap("structure")
    visible, policy = _visible(data, options.holdout, options.seed)
    propagation = {"policy": policy, **_propagate(data, x, scores, nbr, visible, options)}
    clock.lap("label_propagation")
    distances, sigma, batches = _pool_measures(x, data, visible, options, clock)
    example = batches.pop("example")
    silhouette = _silhouette(data.x, data.labels, options)
    clock.lap("silhouette")
    report = {
        **_header(data, options, x.device),
        "search": search,
        **measures,
        "label_propagation": propagation,
        "distances": {"on": "L2-normalised embeddings", **distances},
        "sigma": {"on": "L2-normalised training-pool embeddings", **sigma},
        "batches": batches,
        "silhouette": silhouette,
        "seconds": clock.timings,
    }
    graph = Graph(nbr_np, scores.cpu().numpy(), weight.cpu().numpy(), out_deg, in_deg, comp,
                  extras={"batch_example": example})
    return report, graph


def epoch_metrics(
    x: np.ndarray,
    labels: np.ndarray,
    options: InspectOptions,
    device: str = "cpu",
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The figures followed across epochs for one set of (validation) embeddings: edge homophily,
    leave-one-out kNN-vote accuracy, label-propagation accuracy (seeded ``holdout`` hidden), silhouette,
    components and hubs.

    Shapes:
        - **input:** x [N, D], labels [N]
    """
    import torch

    n = len(labels)
    _check_k(min(options.k, max(n - 1, 1)), n)
    k = min(options.k, n - 1)  # a small validation split may hold fewer than k + 1 documents
    options = replace(options, k=k)
    data = Embeddings(x, labels, np.zeros(n, dtype=np.int8), ("all",), [], "epoch")
    if num_classes is not None:
        data.label_names = [str(i) for i in range(num_classes)]
    t = torch.from_numpy(x).to(device)  # [N, D]
    scores, nbr, _, _ = _search(t, options)
    measures, _ = _structure(nbr.cpu().numpy(), data)
    visible, _ = _visible(data, options.holdout, options.seed)
    propagation = _propagate(data, t, scores, nbr, visible, options)
    silhouette = _silhouette(x, labels, options)
    return {
        "nodes": n,
        "k": k,
        "edge_homophily": measures["homophily"]["edge_homophily"],
        "knn_vote_accuracy": measures["knn_vote"]["accuracy"],
        "lp_accuracy": propagation["accuracy"],
        "silhouette": None if silhouette is None else silhouette["silhouette"],
        "macro_silhouette": None if silhouette is None else silhouette["macro_silhouette"],
        "components": measures["components"]["components"],
        "component_purity": measures["components"]["purity_weighted"],
        "hubs": measures["degree"]["hubs"],
        "max_in_degree": measures["degree"]["in"]["max"],
    }
