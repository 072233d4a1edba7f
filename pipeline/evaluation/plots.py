"""Plots of ``gloss evaluate``: the row-normalised confusion matrix and a t-SNE map of test embeddings.

matplotlib runs on the non-interactive Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrix(counts: np.ndarray, label_names: list[str], path: str | Path, title: str = "") -> Path:
    """Save the confusion matrix normalised by row (each gold class sums to 1), counts annotated when small.

    Args:
        counts: rows are gold labels, columns predictions. Shapes: [C, C].
        label_names: C class names in id order.
        path: where to write the PNG.
        title: the figure title.
    """
    counts = np.asarray(counts, dtype=np.float64)  # [C, C]
    totals = counts.sum(axis=1, keepdims=True)  # [C, 1]
    normalised = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    c = len(label_names)
    size = min(4.0 + 0.35 * c, 24.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the gold class")
    ticks = np.arange(c)
    fontsize = 9 if c <= 20 else 6
    ax.set_xticks(ticks, labels=label_names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels=label_names, fontsize=fontsize)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if normalised[i, j] >= 0.005:
                    colour = "white" if normalised[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(title or "confusion matrix (rows normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def tsne_coordinates(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of ``x`` with cosine distances; perplexity min(30, (N - 1) / 3), at least 1.

    Shapes: x [N, D] (N >= 2) -> [N, 2].
    """
    from sklearn.manifold import TSNE

    n = len(x)
    perplexity = float(max(1.0, min(30.0, (n - 1) / 3.0)))
    init = "pca" if x.shape[1] >= 2 and n > 2 else "random"
    tsne = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init=init, random_state=seed)
    return tsne.fit_transform(np.asarray(x, dtype=np.float32))


def plot_tsne(
    embeddings: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
    path: str | Path,
    *,
    max_points: int = 2000,
    seed: int = 0,
    title: str = "",
) -> int:
    """Save a t-SNE scatter of (a seeded sample of at most ``max_points``) embeddings coloured by label.

    Args:
        embeddings: Shapes: [N, D].
        labels: label ids. Shapes: [N].
        label_names: class names in id order.
        path: where to write the PNG.
        max_points: the most points drawn (a seeded uniform sample above it).
        seed: seed of the sample and of t-SNE.
        title: the figure title.

    Returns:
        The number of points drawn.
    """
    embeddings = np.asarray(embeddings)
    labels = np.asarray(labels)
    if len(labels) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(labels), size=max_points, replace=False))
        embeddings, labels = embeddings[rows], labels[rows]
    n = len(labels)
    coords = tsne_coordinates(embeddings, seed) if n >= 2 else np.zeros((n, 2))  # [n, 2]
    c = len(label_names)
    colours = plt.get_cmap("tab10" if c <= 10 else "tab20")
    markers = "os^Dv<>Pp*"
    fig, ax = plt.subplots(figsize=(9 if c <= 20 else 11, 7))
    for class_id in np.unique(labels):
        mask = labels == class_id
        ax.scatter(
            coords[mask, 0],
            coords[mask, 1],
            s=8 if n > 500 else 18,
            alpha=0.75,
            color=colours(class_id % colours.N),
            marker=markers[(class_id // colours.N) % len(markers)],
            label=f"{label_names[class_id]} ({int(mask.sum())})",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {n} test embeddings")
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8 if c <= 20 else 6,
        ncol=1 if c <= 26 else 2,
        markerscale=1.5,
        frameon=False,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return n
