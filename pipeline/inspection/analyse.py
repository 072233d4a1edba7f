"""The numbers of ``gloss inspect``: one call builds the corpus kNN graph of an :class:`Embeddings` and
measures it (JSON-able report), keeping the arrays the plots and exports need."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipeline.errors import GlossError
from pipeline.inspection.inputs import Embeddings


@dataclass
class InspectOptions:
    """Knobs of an inspection (see ``gloss inspect --help``)."""

    k: int = 10
    metric: str = "cosine"
    backend: str = "auto"
    batches: int = 5
    batch_size: int = 32
    gamma: float = 0.6
    seed: int = 0
    holdout: float = 0.2
    distance_sample: int = 2000
    silhouette_sample: int = 2000
    layout_nodes: int = 200


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
        """``[2, N k]``: row 0 the node, row 1 its neighbour."""
        from graphs.inspection import neighbor_edges

        return neighbor_edges(self.neighbors)


def _check_k(k: int, n: int) -> None:
    if n < 3:
        raise GlossError(f"inspect: {n} embeddings; need at least 3")
    if k > n - 1:
        raise GlossError(f"--k {k}: at most {n - 1} neighbours for {n} embeddings")


def _visible(data: Embeddings, holdout: float, seed: int) -> tuple[np.ndarray, str]:
    """Train visible when the data has train + val; otherwise a seeded ``holdout`` share hidden."""
    from graphs.inspection import holdout_mask

    if "train" in data.split_names and len(data.rows("train")) and len(data.rows("val")):
        return data.split == data.split_names.index("train"), "train labels visible"
    return holdout_mask(
        len(data.labels), holdout, seed
    ), f"seeded {holdout:.0%} of the nodes hidden (seed {seed})"


def _search(x, options: InspectOptions):
    import torch

    from graphs.inspection import edge_weights, knn_neighbors, resolve_backend

    started = time.perf_counter()
    scores, nbr = knn_neighbors(x, options.k, options.metric, options.backend)  # [N, k], [N, k]
    if x.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    weight = edge_weights(scores, options.metric)  # [N, k]
    info = {"backend": resolve_backend(options.backend, x), "seconds": round(seconds, 3)}
    return scores, nbr, weight, info


def _propagate(data: Embeddings, nbr, weight, visible: np.ndarray, device) -> dict[str, Any]:
    import torch

    from graphs.inspection import graph_label_propagation

    n, k = nbr.shape
    edges = torch.stack([torch.arange(n, device=device).repeat_interleave(k), nbr.reshape(-1)])  # [2, N k]
    labels = torch.from_numpy(data.labels).to(device)
    mask = torch.from_numpy(visible).to(device)
    result = graph_label_propagation(edges, weight.reshape(-1), labels, mask, data.num_classes)
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


def _silhouette(x: np.ndarray, labels: np.ndarray, options: InspectOptions) -> dict[str, Any] | None:
    from pipeline.evaluation.metrics import silhouette

    return silhouette(x, labels, max_samples=options.silhouette_sample, seed=options.seed)


def inspect_embeddings(data: Embeddings, options: InspectOptions, device: str = "cpu") -> tuple[dict, Graph]:
    """Build the exact kNN graph of ``data`` and measure it.

    Returns:
        the report (JSON-able: ``nodes``, ``search``, ``homophily``, ``degree``, ``components``,
        ``knn_vote``, ``label_propagation``, ``distances``, ``sigma``, ``batches``, ``silhouette``,
        ``seconds``) and the :class:`Graph` arrays.
    """
    import torch

    from graphs.inspection import (
        component_ids,
        component_purity,
        degree_stats,
        distance_distribution,
        edge_homophily,
        gloss_batch_graphs,
        knn_vote,
        neighbor_edges,
        node_degrees,
        sigma_values,
    )

    n = len(data.labels)
    _check_k(options.k, n)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    x = torch.from_numpy(data.x).to(device)  # [N, D]
    scores, nbr, weight, search = _search(x, options)
    lap("knn")
    nbr_np = nbr.cpu().numpy()  # [N, k]
    c = data.num_classes
    edges = neighbor_edges(nbr_np)  # [2, N k]
    homophily = edge_homophily(edges, data.labels, c)
    out_deg, in_deg = node_degrees(edges, n)
    degree = degree_stats(out_deg, in_deg)
    _, comp = component_ids(edges, n)
    components = component_purity(comp, data.labels)
    vote = knn_vote(nbr_np, data.labels, c)
    right = vote.pop("predictions") == data.labels
    vote["per_split"] = {s: float(right[data.rows(s)].mean()) for s in data.split_names if len(data.rows(s))}
    lap("structure")

    visible, policy = _visible(data, options.holdout, options.seed)
    propagation = {"policy": policy, **_propagate(data, nbr, weight, visible, x.device)}
    lap("label_propagation")

    pool = np.flatnonzero(visible)  # the training pool: batches and sigma come from it
    z = torch.nn.functional.normalize(x.double(), dim=-1)  # [N, D]
    distances = distance_distribution(z, options.distance_sample, options.seed)
    pool_labels = torch.from_numpy(data.labels[pool]).to(x.device)
    sigma = sigma_values(z[torch.from_numpy(pool).to(x.device)], pool_labels, seed=options.seed)
    lap("distances")
    batches = gloss_batch_graphs(
        x[torch.from_numpy(pool).to(x.device)],
        pool_labels,
        options.batches,
        options.batch_size,
        options.gamma,
        options.seed,
        c,
    )
    example = batches.pop("example")
    lap("batches")
    silhouette = _silhouette(data.x, data.labels, options)
    lap("silhouette")

    report = {
        "source": data.source,
        "nodes": n,
        "dim": int(data.x.shape[1]),
        "classes": c,
        "label_names": data.label_names,
        "splits": {s: int(len(data.rows(s))) for s in data.split_names},
        "k": options.k,
        "metric": options.metric,
        "device": str(x.device),
        "search": search,
        "homophily": homophily,
        "degree": degree,
        "components": components,
        "knn_vote": vote,
        "label_propagation": propagation,
        "distances": {"on": "L2-normalised embeddings", **distances},
        "sigma": {"on": "L2-normalised training-pool embeddings", **sigma},
        "batches": batches,
        "silhouette": silhouette,
        "seconds": timings,
    }
    graph = Graph(
        nbr_np,
        scores.cpu().numpy(),
        weight.cpu().numpy(),
        out_deg,
        in_deg,
        comp,
        extras={"batch_example": example},
    )
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

    from graphs.inspection import (
        component_ids,
        component_purity,
        degree_stats,
        edge_homophily,
        knn_vote,
        neighbor_edges,
        node_degrees,
    )

    n = len(labels)
    _check_k(min(options.k, max(n - 1, 1)), n)
    k = min(options.k, n - 1)  # a small validation split may hold fewer than k + 1 documents
    options = replace(options, k=k)
    data = Embeddings(x, labels, np.zeros(n, dtype=np.int8), ("all",), [], "epoch")
    if num_classes is not None:
        data.label_names = [str(i) for i in range(num_classes)]
    t = torch.from_numpy(x).to(device)  # [N, D]
    _, nbr, weight, _ = _search(t, options)
    nbr_np = nbr.cpu().numpy()
    edges = neighbor_edges(nbr_np)
    vote = knn_vote(nbr_np, labels, data.num_classes)
    visible, _ = _visible(data, options.holdout, options.seed)
    propagation = _propagate(data, nbr, weight, visible, t.device)
    _, comp = component_ids(edges, n)
    purity = component_purity(comp, labels)
    degree = degree_stats(*node_degrees(edges, n))
    silhouette = _silhouette(x, labels, options)
    return {
        "nodes": n,
        "k": k,
        "edge_homophily": edge_homophily(edges, labels, data.num_classes)["edge_homophily"],
        "knn_vote_accuracy": vote["accuracy"],
        "lp_accuracy": propagation["accuracy"],
        "silhouette": None if silhouette is None else silhouette["silhouette"],
        "macro_silhouette": None if silhouette is None else silhouette["macro_silhouette"],
        "components": purity["components"],
        "component_purity": purity["purity_weighted"],
        "hubs": degree["hubs"],
        "max_in_degree": degree["in"]["max"],
    }
