"""Collect finished runs and aggregate them per dataset and method (mean, standard deviation, n), plus
paired differences between two methods over the seeds they share (paired t-test when n >= 3)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import HISTORY_FILE, read_history
from pipeline.errors import GlossError
from pipeline.manifest import load_manifest

NAME_FILE = "compare-name.txt"
METRICS = ("accuracy", "macro_f1", "probe_accuracy", "macro_silhouette", "seconds_per_epoch", "best_epoch", "train_seconds",
           "peak_rss_mb")


@dataclass
class RunRecord:
    run_dir: str
    dataset: str
    method: str
    seed: int
    accuracy: float
    macro_f1: float
    macro_silhouette: float | None
    seconds_per_epoch: float | None
    best_epoch: int | None
    train_seconds: float | None
    peak_rss_mb: float | None
    val_macro_f1_by_epoch: list[float | None]
    probe_accuracy: float | None = None  # a linear probe on the run's train embeddings (fine-tuned runs)


def method_name(run_dir: Path, train_summary: dict) -> str:
    marker = run_dir / NAME_FILE
    if marker.is_file():
        return marker.read_text().strip()
    if train_summary.get("method") in ("textgcn", "bertgcn"):
        return train_summary["method"]
    return str(train_summary.get("loss"))


def dataset_label(prepare_config: dict) -> str:
    """The dataset name, marked when a ``--limit`` slice was used (so slices never pass for full data)."""
    limit = prepare_config.get("limit")
    return prepare_config["dataset"] + (f" (train<={limit})" if limit else "")


def benchmark_name(label: str) -> str:
    """The benchmark behind a :func:`dataset_label` (``R8 (train<=1000)`` -> ``R8``)."""
    return label.split(" ")[0]


def read_run(run_dir: str | Path) -> RunRecord:
    """One finished run (prepare, train and evaluate manifests present)."""
    run_dir = Path(run_dir)
    prepared, trained, evaluated = (load_manifest(run_dir, s) for s in ("prepare", "train", "evaluate"))
    summary = evaluated.summary
    history = read_history(trained.output(HISTORY_FILE))
    seed = trained.config.get("seed", trained.config.get("loop", {}).get("seed", 0))
    return RunRecord(
        run_dir=str(run_dir), dataset=dataset_label(prepared.config), method=method_name(run_dir, trained.summary),
        seed=int(seed), accuracy=summary["headline"]["accuracy"], macro_f1=summary["headline"]["macro_f1"],
        macro_silhouette=summary.get("macro_silhouette"), seconds_per_epoch=trained.summary.get("seconds_per_epoch"),
        best_epoch=trained.summary.get("best_epoch"), train_seconds=trained.data.get("wall_seconds"),
        peak_rss_mb=trained.data.get("peak_rss_mb"),
        val_macro_f1_by_epoch=[h.get("val_macro_f1") for h in history],
        probe_accuracy=(summary.get("linear_probe") or {}).get("accuracy"),
    )


def mean_std(values: list[float | None]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and n of the non-missing values."""
    present = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return {"mean": float(np.mean(present)), "std": std, "n": len(present)}


def aggregate(records: list[RunRecord]) -> list[dict]:
    """One row per (dataset, method) in first-seen order, each metric as mean/std/n."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.dataset, record.method), []).append(record)
    rows = []
    for (dataset, method), members in groups.items():
        row = {"dataset": dataset, "method": method, "seeds": sorted(r.seed for r in members)}
        for metric in METRICS:
            row[metric] = mean_std([getattr(r, metric) for r in members])
        rows.append(row)
    return rows


def paired_difference(records: list[RunRecord], method: str, baseline: str, metric: str = "accuracy") -> list[dict]:
    """Per dataset: ``method - baseline`` on each shared seed, their mean, and a paired t-test p-value."""
    from scipy.stats import ttest_rel

    out = []
    for dataset in dict.fromkeys(r.dataset for r in records):
        ours = {r.seed: getattr(r, metric) for r in records if r.dataset == dataset and r.method == method}
        theirs = {r.seed: getattr(r, metric) for r in records if r.dataset == dataset and r.method == baseline}
        seeds = sorted(set(ours) & set(theirs))
        if not seeds:
            continue
        diffs = [ours[s] - theirs[s] for s in seeds]
        p_value = None
        if len(seeds) >= 3:
            if np.allclose(diffs, diffs[0]):
                p_value = 0.0 if diffs[0] != 0 else 1.0
            else:
                p_value = float(ttest_rel([ours[s] for s in seeds], [theirs[s] for s in seeds]).pvalue)
        out.append({"dataset": dataset, "method": method, "baseline": baseline, "metric": metric, "seeds": seeds,
                    "differences": diffs, "mean_difference": float(np.mean(diffs)), "n": len(seeds),
                    "p_value": p_value})
    return out


def records_to_json(records: list[RunRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def require_runs(run_dirs: list[Path]) -> list[RunRecord]:
    records = []
    for run_dir in run_dirs:
        if not (run_dir / "evaluate" / "manifest.json").is_file():
            raise GlossError(f"{run_dir}: not a finished run (no evaluate/manifest.json)")
        records.append(read_run(run_dir))
    return records
