"""Figures of ``gloss inspect`` (matplotlib, non-interactive Agg backend): degree histogram, homophily per
class, distance histogram with the kernel widths, a G-Loss batch adjacency heatmap, a spring layout of a
sampled subgraph, and metrics across epochs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110


def _colours(num_classes: int) -> np.ndarray:
    """One RGBA colour per class. Shapes: [C, 4]."""
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "gist_ncar")
    return np.asarray(
        [cmap(i if num_classes <= 20 else i / max(num_classes - 1, 1)) for i in range(num_classes)]
    )


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


def plot_degree_histogram(in_degree: np.ndarray, k: int, hub_threshold: float, path: str | Path) -> Path:
    """Histogram of the in-degree (k-occurrence; the out-degree is k for every node), log count axis,
    the hub threshold marked.

    Args:
        in_degree: Shapes: [N].
        k: neighbours per node.
        hub_threshold: in-degree above which a node is a hub.
        path: where to write the PNG.
    """
    in_degree = np.asarray(in_degree)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    top = int(in_degree.max()) if in_degree.size else 0
    ax.hist(in_degree, bins=np.arange(top + 2) - 0.5 if top <= 80 else 80, color="#4C72B0")
    ax.axvline(k, color="black", linestyle=":", label=f"k = {k} (out-degree of every node)")
    ax.axvline(hub_threshold, color="#C44E52", linestyle="--", label=f"hub threshold ({hub_threshold:g})")
    ax.set_yscale("log")
    ax.set_xlabel("in-degree (times listed as a neighbour)")
    ax.set_ylabel("nodes")
    ax.set_title("degree distribution of the kNN graph")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_homophily_per_class(
    per_class: Sequence[float | None],
    class_share: Sequence[float],
    names: Sequence[str],
    overall: float | None,
    path: str | Path,
) -> Path:
    """Bar chart of the edge homophily of each class, with each class's share of nodes (what random
    edges would give) as ticks and the overall homophily as a line."""
    c = len(per_class)
    values = np.array([np.nan if v is None else v for v in per_class], dtype=float)
    fig, ax = plt.subplots(figsize=(min(3 + 0.35 * c, 20), 4))
    ax.bar(np.arange(c), np.nan_to_num(values), color=_colours(c))
    ax.scatter(
        np.arange(c),
        class_share,
        marker="_",
        s=200,
        color="black",
        zorder=3,
        label="class share (random edges)",
    )
    if overall is not None:
        ax.axhline(overall, color="#C44E52", linestyle="--", label=f"overall {overall:.3f}")
    ax.set_xticks(
        np.arange(c),
        labels=[str(n) for n in names][:c] + [str(i) for i in range(len(names), c)],
        rotation=90 if c > 8 else 0,
        fontsize=8 if c <= 20 else 6,
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of same-label edges")
    ax.set_title("edge homophily per class")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_distance_histogram(
    histogram: dict[str, list[float]], sigma: dict[str, Any], median: float, path: str | Path
) -> Path:
    """Histogram of sampled pairwise distances with the corpus kernel widths (``sqrt``, ``dicm``) and the
    median as vertical lines."""
    counts, edges = np.asarray(histogram["counts"]), np.asarray(histogram["edges"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.stairs(counts, edges, fill=True, color="#8FA9D1")
    ax.axvline(median, color="black", linestyle=":", label=f"median distance {median:.3f}")
    styles = {"sqrt": ("#C44E52", "--"), "dicm": ("#55A868", "-.")}
    for name, (colour, style) in styles.items():
        value = sigma.get(name)
        if value is not None:
            ax.axvline(value, color=colour, linestyle=style, label=f"sigma {name} = {value:.4f}")
    ax.set_xlabel("Euclidean distance (L2-normalised embeddings)")
    ax.set_ylabel("pairs")
    ax.set_title("pairwise distances (seeded sample) and kernel widths")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_batch_adjacency(
    weight: np.ndarray,
    labels: np.ndarray,
    visible: np.ndarray,
    names: Sequence[str],
    sigma: float,
    sigma_heuristic: str,
    path: str | Path,
) -> Path:
    """Heatmap of a dense G-Loss batch graph, nodes sorted by label, class blocks outlined, hidden nodes
    marked with an x under the matrix.

    Args:
        weight: the Gaussian kernel (zero diagonal). Shapes: [B, B].
        labels: class id of each node, sorted. Shapes: [B].
        visible: G-Loss visible mask in the same order. Shapes: [B].
        sigma, sigma_heuristic: the kernel width and the heuristic that gave it (recomputed per batch).
    """
    weight, labels, visible = np.asarray(weight), np.asarray(labels), np.asarray(visible, dtype=bool)
    b = len(labels)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    image = ax.imshow(weight, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="W_ij")
    bounds = np.flatnonzero(np.diff(labels)) + 0.5
    for edge in bounds:
        ax.axhline(edge, color="white", linewidth=0.8)
        ax.axvline(edge, color="white", linewidth=0.8)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(labels)) + 1])
    ends = np.concatenate([starts[1:], [b]])
    centres = (starts + ends - 1) / 2
    ax.set_xticks(
        centres,
        labels=[str(names[y]) if y < len(names) else str(y) for y in labels[starts]],
        rotation=90,
        fontsize=7,
    )
    ax.set_yticks(
        centres, labels=[str(names[y]) if y < len(names) else str(y) for y in labels[starts]], fontsize=7
    )
    hidden = np.flatnonzero(~visible)
    ax.scatter(hidden, np.full(len(hidden), b - 0.5 + 0.9), marker="x", s=12, color="#C44E52", clip_on=False)
    ax.set_title(f"G-Loss batch graph (dense Gaussian, {sigma_heuristic} sigma {sigma:.4f}); x = hidden")
    return _save(fig, path)


def plot_subgraph(
    nodes: np.ndarray,
    edges: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    seed: int = 0,
) -> Path:
    """Spring layout (networkx) of a sampled subgraph, nodes coloured by label.

    Args:
        nodes: sampled node ids. Shapes: [S].
        edges: the whole graph's edges, neighbour -> node (``source_to_target``; drawn undirected).
            Shapes: [2, E].
        labels: class id of every node of the whole graph. Shapes: [N].
    """
    import networkx as nx

    nodes = np.asarray(nodes)
    inside = np.zeros(len(labels), dtype=bool)
    inside[nodes] = True
    keep = inside[edges[0]] & inside[edges[1]]
    graph = nx.Graph()
    graph.add_nodes_from(nodes.tolist())
    graph.add_edges_from(zip(edges[0][keep].tolist(), edges[1][keep].tolist(), strict=True))
    position = nx.spring_layout(graph, seed=seed)
    c = max(int(labels.max()) + 1, len(names))
    colours = _colours(c)
    fig, ax = plt.subplots(figsize=(7, 7))
    nx.draw_networkx_edges(graph, position, ax=ax, alpha=0.25, width=0.6)
    y = labels[nodes]
    for cls in np.unique(y):
        members = nodes[y == cls].tolist()
        name = str(names[cls]) if cls < len(names) else str(cls)
        nx.draw_networkx_nodes(
            graph, position, nodelist=members, node_color=[colours[cls]], node_size=28, ax=ax, label=name
        )
    same = labels[edges[0][keep]] == labels[edges[1][keep]]
    ax.set_title(
        f"{len(nodes)} sampled nodes, {int(keep.sum())} kNN edges "
        f"({same.mean() if len(same) else 0:.0%} same label)"
    )
    ax.axis("off")
    if len(np.unique(y)) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
    return _save(fig, path)


EVOLUTION_KEYS = (
    ("edge_homophily", "edge homophily"),
    ("knn_vote_accuracy", "LOO kNN-vote accuracy"),
    ("lp_accuracy", "label-propagation accuracy"),
    ("silhouette", "silhouette (cosine)"),
)


def plot_evolution(epochs: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Line plot of the graph figures (``epoch_metrics``) across epochs; epoch 0 = pre-trained."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = [e["epoch"] for e in epochs]
    for key, name in EVOLUTION_KEYS:
        values = [np.nan if e.get(key) is None else e[key] for e in epochs]
        if not all(np.isnan(values)):
            ax.plot(x, values, marker="o", label=name)
    ax.set_xticks(x)
    ax.set_xlabel("epoch (0 = pre-trained)")
    ax.set_ylabel("value")
    ax.set_title("validation kNN graph across fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
