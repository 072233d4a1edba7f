"""Tables (Markdown, CSV), ``results.json`` and plots of an aggregated comparison."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from pipeline.atomic import write_text_atomic


def _pm(cell: dict, scale: float = 100.0, digits: int = 2) -> str:
    if cell["mean"] is None:
        return "n/a"
    if cell["n"] > 1:
        return f"{cell['mean'] * scale:.{digits}f} ± {cell['std'] * scale:.{digits}f}"
    return f"{cell['mean'] * scale:.{digits}f}"


def markdown_table(rows: list[dict], published: list[dict], paired: list[dict]) -> str:
    lines = [
        "| dataset | method | n | test accuracy (%) | test macro-F1 (%) | linear probe acc. (%) | macro-silhouette | s / epoch | best epoch | "
        "train time (s) | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row.get('label', row['method'])} | {row['accuracy']['n']} | {_pm(row['accuracy'])} | "
            f"{_pm(row['macro_f1'])} | {_pm(row['probe_accuracy'])} | {_pm(row['macro_silhouette'], 1.0, 3)} | "
            f"{_pm(row['seconds_per_epoch'], 1.0, 1)} | {_pm(row['best_epoch'], 1.0, 1)} | "
            f"{_pm(row['train_seconds'], 1.0, 0)} | {_pm(row['peak_rss_mb'], 1.0, 0)} |"
        )
    if published:
        from pipeline.compare.aggregate import benchmark_name

        datasets = list(dict.fromkeys(benchmark_name(r["dataset"]) for r in rows))  # slices merged
        lines += ["", "Published test accuracies (%), **not measured by gloss** (sources below):", "",
                  "| method (published, full training sets) | " + " | ".join(datasets) + " |",
                  "|---|" + "---|" * len(datasets)]
        for entry in published:
            cells = [f"{entry['accuracy'][d]:.2f}" if d in entry["accuracy"] else "" for d in datasets]
            lines.append(f"| {entry['method']} | " + " | ".join(cells) + " |")
        lines += [""] + [f"- {s}" for s in dict.fromkeys(e["source"] for e in published)]
    if paired:
        lines += ["", "Paired differences (same seeds):", "",
                  "| dataset | comparison | seeds | mean difference (points) | paired t-test p |", "|---|---|---|---|---|"]
        for p in paired:
            pv = "n/a (n < 3)" if p["p_value"] is None else f"{p['p_value']:.3g}"
            ours, theirs = (_named(p[k], p.get(f"{k}_variant")) for k in ("method", "baseline"))
            lines.append(f"| {p['dataset']} | {ours} − {theirs} ({p['metric']}) | {p['n']} | "
                         f"{p['mean_difference'] * 100:+.2f} | {pv} |")
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    from pipeline.compare.aggregate import METRICS as metrics
    writer.writerow(["dataset", "method", "variant", "config_hash", "n"]
                    + [f"{m}_{s}" for m in metrics for s in ("mean", "std")])
    for row in rows:
        writer.writerow([row["dataset"], row["method"], row.get("variant", ""), row.get("config_hash") or "",
                         row["accuracy"]["n"]]
                        + [row[m][s] for m in metrics for s in ("mean", "std")])
    return buffer.getvalue()


def _named(method: str, variant: str | None) -> str:
    return f"{method} ({variant})" if variant else method


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
    ``MIN_ACCURACY_SPAN`` points below the top and rounded down to a multiple of 10, never below 0; ``None`` without
    values. A plot whose axis does not start at 0 marks the break (:func:`mark_axis_break`)."""
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


def plot_all(rows: list[dict], records: list, out_dir: Path) -> list[str]:
    """accuracy.png (error bars), convergence.png (val macro-F1 by epoch), silhouette.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r.get("label", r["method"]) for r in rows))
    width = 0.8 / max(1, len(methods))
    for metric, filename, label, scale in (("accuracy", "accuracy.png", "test accuracy (%)", 100.0),
                                           ("macro_silhouette", "silhouette.png", "test macro-silhouette", 1.0)):
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(datasets) * max(1, len(methods)) ** 0.5), 3.8))
        for i, method in enumerate(methods):
            means, stds = [], []
            for dataset in datasets:
                cell = next((r[metric] for r in rows
                             if r["dataset"] == dataset and r.get("label", r["method"]) == method), None)
                means.append(np.nan if not cell or cell["mean"] is None else cell["mean"] * scale)
                stds.append(0.0 if not cell or cell["std"] is None else cell["std"] * scale)
            ax.bar(np.arange(len(datasets)) + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds,
                   capsize=3, label=method)
        ax.set_xticks(np.arange(len(datasets)), datasets)
        ax.set_ylabel(label)
        if metric == "accuracy":
            limits = accuracy_limits([r[metric] for r in rows], scale)
            if limits is not None:
                ax.set_ylim(*limits)
                if limits[0] > 0:
                    mark_axis_break(ax, limits[0])
        ax.legend(fontsize=8, ncol=min(3, len(methods)))
        ax.set_title(f"{label}: mean ± std over seeds")
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=120)
        plt.close(fig)
        written.append(filename)
    ncols = min(4, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.5 * nrows), squeeze=False)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat[: len(datasets)], datasets, strict=True):
        for row in (r for r in rows if r["dataset"] == dataset):
            runs = set(row.get("runs", []))
            curves = [r.val_macro_f1_by_epoch for r in records if r.dataset == dataset and r.run_dir in runs]
            if not curves:
                continue
            length = max(len(c) for c in curves)
            matrix = np.full((len(curves), length), np.nan)
            for j, curve in enumerate(curves):
                matrix[j, : len(curve)] = [np.nan if v is None else v for v in curve]
            ax.plot(np.arange(1, length + 1), np.nanmean(matrix, axis=0) * 100, marker="o", ms=3,
                    label=row.get("label", row["method"]))
        ax.set_title(dataset)
        ax.set_xlabel("epoch")
        ax.set_ylabel("val macro-F1 (%)")
        if any(len(r.val_macro_f1_by_epoch) > 30 for r in records if r.dataset == dataset):
            ax.set_xscale("log")  # TextGCN runs hundreds of epochs, fine-tuning a handful
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "convergence.png", dpi=120)
    plt.close(fig)
    written.append("convergence.png")
    return written


def write_report(out_dir: Path, rows, records, published, paired) -> dict:
    from pipeline.compare.aggregate import records_to_json

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "table.md", markdown_table(rows, published, paired))
    write_text_atomic(out_dir / "table.csv", csv_table(rows))
    results = {"aggregated": rows, "paired": paired, "runs": records_to_json(records),
               "published": {"note": "published numbers, not measured by gloss", "entries": published}}
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    plots = plot_all(rows, records, out_dir)
    return {"files": ["table.md", "table.csv", "results.json", *plots]}
