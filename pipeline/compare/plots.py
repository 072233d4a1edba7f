"""Plots of an aggregated comparison (rows of :func:`pipeline.compare.aggregate.aggregate`):

* ``accuracy.png``: test accuracy per dataset and row, mean with a ± std error bar over the replicates;
* ``silhouette.png``: the test macro-silhouette alike;
* ``predictors.png``: per dataset, each row's test accuracy from its head, a linear probe on its embeddings
  and label propagation over their kNN graph, mean ± std;
* ``convergence.png``: val macro-F1 by epoch, the mean over each row's runs.

matplotlib runs on the non-interactive Agg backend (no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PREDICTORS = (("head_accuracy", "head"), ("probe_accuracy", "linear probe"),
              ("propagation_accuracy", "label propagation"))


def row_name(row: dict) -> str:
    """A row's name in plots: its label and tier (``gloss+ce [layers=1] · B``)."""
    label = row.get("label", row["method"])
    return f"{label} · {row['tier']}" if row.get("tier") else label


def value_limits(cells: list[dict], scale: float, floor: float | None = 0.0, margin: float = 2.0):
    """y-axis limits that show every bar's whole error bar (mean ± std), with ``margin`` around them and
    never below ``floor``; ``None`` when no cell has a value."""
    present = [c for c in cells if c and c["mean"] is not None]
    if not present:
        return None
    low = min((c["mean"] - (c["std"] or 0.0)) * scale for c in present) - margin
    high = max((c["mean"] + (c["std"] or 0.0)) * scale for c in present) + margin
    return (low if floor is None else max(floor, low)), high


MIN_ACCURACY_SPAN = 20.0  # points of accuracy an accuracy plot shows at least, so seed noise looks small


def accuracy_limits(cells: list[dict], scale: float = 100.0) -> tuple[float, float] | None:
    """y-axis limits of an accuracy plot: every whole error bar, the lower limit at least
    ``MIN_ACCURACY_SPAN`` points below the top and rounded down to a multiple of 10, never below 0; ``None``
    without values. A plot whose axis does not start at 0 marks the break (:func:`mark_axis_break`)."""
    limits = value_limits(cells, scale, margin=1.0)
    if limits is None:
        return None
    low, high = limits
    high = min(high, 100.0) if scale == 100.0 else high
    low = 10.0 * math.floor(min(low, high - MIN_ACCURACY_SPAN) / 10.0)
    return max(0.0, low), high


def mark_axis_break(ax, low: float) -> None:
    """A broken-axis mark (two short slanted strokes) at the bottom of the y axis, and the axis label says
    where it starts: bars that do not start at 0 are not read as proportions."""
    kwargs = {"transform": ax.transAxes, "color": "k", "clip_on": False, "lw": 1}
    for offset in (0.0, 0.025):
        ax.plot((-0.015, 0.015), (0.01 + offset, 0.035 + offset), **kwargs)
    ax.set_ylabel(f"{ax.get_ylabel()}, axis from {low:g}")


def _mean_std(cell: dict | None, scale: float) -> tuple[float, float]:
    if not cell or cell["mean"] is None:
        return np.nan, 0.0
    return cell["mean"] * scale, (cell["std"] or 0.0) * scale


def _grouped_bars(ax, groups: list[str], series: list[tuple[str, list[dict | None]]], scale: float) -> None:
    """One bar per (group, series), error bars ± std; ``series``: (legend name, one cell per group)."""
    width = 0.8 / max(1, len(series))
    for i, (name, cells) in enumerate(series):
        means, stds = zip(*(_mean_std(c, scale) for c in cells), strict=True) if cells else ((), ())
        ax.bar(np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               label=name)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)


def plot_metric_bars(rows: list[dict], metric: str, label: str, scale: float, path: Path) -> None:
    """Bars of ``metric`` per dataset (groups) and row (series), mean ± std."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    names = list(dict.fromkeys(row_name(r) for r in rows))
    series = [(name, [next((r[metric] for r in rows if r["dataset"] == d and row_name(r) == name), None)
                      for d in datasets]) for name in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(datasets) * max(1, len(names)) ** 0.5), 3.8))
    _grouped_bars(ax, datasets, series, scale)
    ax.set_ylabel(label)
    if scale == 100.0:
        limits = accuracy_limits([r[metric] for r in rows], scale)
        if limits is not None:
            ax.set_ylim(*limits)
            if limits[0] > 0:
                mark_axis_break(ax, limits[0])
    ax.legend(fontsize=8, ncol=min(3, len(names)))
    ax.set_title(f"{label}: mean ± std over replicates")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _panels(count: int, width: float = 4.2, height: float = 3.5):
    ncols = min(4, count)
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat[:count]


def plot_predictors(rows: list[dict], path: Path) -> None:
    """Per dataset, each row's test accuracy from the head, the linear probe and label propagation."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = _panels(len(datasets), width=max(4.2, 1.1 * max(len([r for r in rows if r["dataset"] == d])
                                                                   for d in datasets)))
    for ax, dataset in zip(axes, datasets, strict=True):
        members = [r for r in rows if r["dataset"] == dataset]
        series = [(name, [r[metric] for r in members]) for metric, name in PREDICTORS]
        _grouped_bars(ax, [row_name(r) for r in members], series, 100.0)
        ax.tick_params(axis="x", labelrotation=30)
        limits = value_limits([r[m] for r in members for m, _ in PREDICTORS], 100.0, margin=3.0)
        if limits is not None:
            ax.set_ylim(*limits)
        ax.set_title(dataset)
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_convergence(rows: list[dict], records: list, path: Path) -> None:
    """Val macro-F1 by epoch per dataset: the mean over each row's runs (epochs a run did not reach are
    left out of the mean)."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = _panels(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        for row in (r for r in rows if r["dataset"] == dataset):
            runs = set(row.get("runs", []))
            curves = [r.val_macro_f1_by_epoch for r in records if r.dataset == dataset and r.run_dir in runs]
            curves = [c for c in curves if c]
            if not curves:
                continue
            length = max(len(c) for c in curves)
            matrix = np.full((len(curves), length), np.nan)  # [runs, epochs]
            for j, curve in enumerate(curves):
                matrix[j, : len(curve)] = [np.nan if v is None else v for v in curve]
            ax.plot(np.arange(1, length + 1), np.nanmean(matrix, axis=0) * 100, marker="o", ms=3,
                    label=row_name(row))
        ax.set_title(dataset)
        ax.set_xlabel("epoch")
        ax.set_ylabel("val macro-F1 (%)")
        if any(len(r.val_macro_f1_by_epoch) > 30 for r in records if r.dataset == dataset):
            ax.set_xscale("log")  # TextGCN runs hundreds of epochs, fine-tuning a handful
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_all(rows: list[dict], records: list, out_dir: Path) -> list[str]:
    """Every plot of the module docstring into ``out_dir``; returns the file names written."""
    plot_metric_bars(rows, "accuracy", "test accuracy (%)", 100.0, out_dir / "accuracy.png")
    plot_metric_bars(rows, "macro_silhouette", "test macro-silhouette", 1.0, out_dir / "silhouette.png")
    plot_predictors(rows, out_dir / "predictors.png")
    plot_convergence(rows, records, out_dir / "convergence.png")
    return ["accuracy.png", "silhouette.png", "predictors.png", "convergence.png"]
