"""Tables (Markdown, CSV) and ``results.json`` of an aggregated comparison; the plots are drawn by
:mod:`pipeline.compare.plots`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline.atomic import write_text_atomic


def plus_minus(cell: dict, scale: float = 100.0, digits: int = 2) -> str:
    """A ``{mean, std, n}`` cell as ``"91.23 ± 0.45"`` (the mean alone for n = 1, ``"n/a"`` without one)."""
    if cell["mean"] is None:
        return "n/a"
    if cell["n"] > 1:
        return f"{cell['mean'] * scale:.{digits}f} ± {cell['std'] * scale:.{digits}f}"
    return f"{cell['mean'] * scale:.{digits}f}"


PUBLISHED_NOTE = "published, not measured"
# (column, metric, scale, digits) of the Markdown table after dataset, method, n, tier and split seeds
COLUMNS = (("test accuracy (%)", "accuracy", 100.0, 2), ("test macro-F1 (%)", "macro_f1", 100.0, 2),
           ("linear probe acc. (%)", "probe_accuracy", 100.0, 2), ("probe macro-F1 (%)", "probe_macro_f1", 100.0, 2),
           ("propagation acc. (%)", "propagation_accuracy", 100.0, 2),
           ("propagation macro-F1 (%)", "propagation_macro_f1", 100.0, 2),
           ("kNN acc. (%)", "knn_accuracy", 100.0, 2), ("head+propagation acc. (%)", "mix_accuracy", 100.0, 2),
           ("epochs to 99%", "epochs_to_99", 1.0, 1), ("s to 99%", "seconds_to_99", 1.0, 0),
           ("macro-silhouette", "macro_silhouette", 1.0, 3), ("s / epoch", "seconds_per_epoch", 1.0, 1),
           ("best epoch", "best_epoch", 1.0, 1), ("train time (s)", "train_seconds", 1.0, 0),
           ("peak memory (MB)", "peak_rss_mb", 1.0, 0))
TABLE_NOTES = (
    "Test accuracy and macro-F1: the model's own head (the linear probe for runs without one); every macro-F1 "
    "averages over all training classes. Propagation (over the train + test kNN graph), kNN (the nearest training "
    "documents' vote) and head+propagation (their scores mixed, inductive): k and the mixing weight chosen on "
    "validation, test labels only score. Epochs (s) to 99%: until val macro-F1 first reached 99% of the run's "
    "best. Split seeds: the validation splits a row pools; n counts its runs (split seed x training seed).")


def _seeds(values: list[int]) -> str:
    return ", ".join(str(v) for v in values) if values else "-"


def markdown_table(rows: list[dict], published: list[dict], paired: list[dict]) -> str:
    lines = [
        "| dataset | method | n | tier | split seeds | " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|---|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        cells = [plus_minus(row[metric], scale, digits) for _, metric, scale, digits in COLUMNS]
        lines.append(
            f"| {row['dataset']} | {row.get('label', row['method'])} | {row['accuracy']['n']} | {row.get('tier') or '-'} | "
            f"{_seeds(row.get('split_seeds', []))} | " + " | ".join(cells) + " |"
        )
    lines += ["", TABLE_NOTES]
    if published:
        from pipeline.compare.aggregate import benchmark_name

        datasets = list(dict.fromkeys(benchmark_name(r["dataset"]) for r in rows))  # slices merged
        lines += ["", f"Published test accuracies (%): **{PUBLISHED_NOTE} by gloss** (sources below):", "",
                  "| method (published, full training sets) | " + " | ".join(datasets) + " |",
                  "|---|" + "---|" * len(datasets)]
        for entry in published:
            cells = [f"{entry['accuracy'][d]:.2f}" if d in entry["accuracy"] else "" for d in datasets]
            lines.append(f"| {entry['method']} | " + " | ".join(cells) + " |")
        lines += [""] + [f"- {s}" for s in dict.fromkeys(e["source"] for e in published)]
    if paired:
        lines += ["", "Paired differences (runs on the same split seed and training seed; Holm's correction over "
                      "the datasets of each comparison):", "",
                  "| dataset | comparison | metric | n | mean difference | paired t-test p | p (Holm) |",
                  "|---|---|---|---|---|---|---|"]
        for p in paired:
            ours, theirs = (_named(p[k], p.get(f"{k}_variant"), p.get(f"{k}_tier")) for k in ("method", "baseline"))
            scale, unit = DIFFERENCE_UNITS.get(p["metric"], (1.0, ""))
            tested = _p(p["p_value"], p.get("no_test"))
            lines.append(f"| {p['dataset']} | {ours} − {theirs} | {p['metric']} | {p['n']} | "
                         f"{p['mean_difference'] * scale:+.2f}{unit} | {tested} | {_p(p.get('p_holm'))} |")
    return "\n".join(lines) + "\n"


DIFFERENCE_UNITS = {"accuracy": (100.0, " points"), "macro_f1": (100.0, " points"), "epochs_to_99": (1.0, " epochs"),
                    "seconds_to_99": (1.0, " s")}


def _p(value: float | None, no_test: str | None = None) -> str:
    """A p-value's cell: the value, or ``n/a`` and, given, why there is no test."""
    if value is not None:
        return f"{value:.3g}"
    return f"n/a ({no_test})" if no_test else "n/a"


def csv_table(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    from pipeline.compare.aggregate import METRICS as metrics
    writer.writerow(["dataset", "method", "tier", "variant", "config_hash", "split_seeds", "n"]
                    + [f"{m}_{s}" for m in metrics for s in ("mean", "std")])
    for row in rows:
        writer.writerow([row["dataset"], row["method"], row.get("tier") or "", row.get("variant", ""),
                         row.get("config_hash") or "", " ".join(str(s) for s in row.get("split_seeds", [])),
                         row["accuracy"]["n"]]
                        + [row[m][s] for m in metrics for s in ("mean", "std")])
    return buffer.getvalue()


def _named(method: str, variant: str | None, tier: str | None = None) -> str:
    named = f"{method} ({variant})" if variant else method
    return f"{named} · {tier}" if tier else named


def write_report(out_dir: Path, rows, records, published, paired) -> dict:
    from pipeline.compare.aggregate import records_to_json

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "table.md", markdown_table(rows, published, paired))
    write_text_atomic(out_dir / "table.csv", csv_table(rows))
    results = {"aggregated": rows, "paired": paired, "runs": records_to_json(records),
               "published": {"note": PUBLISHED_NOTE, "entries": published}}
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    from pipeline.compare.plots import plot_all

    plots = plot_all(rows, records, out_dir)
    return {"files": ["table.md", "table.csv", "results.json", *plots]}
