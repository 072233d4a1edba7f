"""Collect finished runs and aggregate them per setting (mean, standard deviation, n), plus paired
differences between two methods over the seeds they share (paired t-test when n >= 3).

A row pools only replicates: runs of one dataset and method whose prepare and train configs are identical
but for the training seed (:func:`pipeline.artifacts.run_config_hash`; the split seed, limit and validation
share are part of the data and count). Runs of one method that differ in any other setting are separate
rows, labelled by the settings that differ (``gloss+ce (objective.lam=0.5)``). The paired test pairs two
such rows of the same data, seed by seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import HISTORY_FILE, read_history, run_identity
from pipeline.errors import GlossError
from pipeline.hashing import sha256_json
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
    settings: dict[str, Any] = field(default_factory=dict)  # artifacts.run_identity: data.* and train.*
    config_hash: str | None = None  # artifacts.run_config_hash: equal for replicates

    @property
    def data_hash(self) -> str:
        """The hash of the ``data.*`` settings: runs on the same prepared data share it."""
        return sha256_json({k: v for k, v in self.settings.items() if k.startswith("data.")})


def method_name(run_dir: Path, train_summary: dict) -> str:
    marker = run_dir / NAME_FILE
    if marker.is_file():
        return marker.read_text().strip()
    if train_summary.get("method", "finetune") != "finetune":  # a baseline: textgcn, tfidf-lr, ...
        return train_summary["method"]
    return str(train_summary.get("loss"))


def dataset_label(prepare_config: dict) -> str:
    """The dataset name, marked when a ``--limit`` / ``--limit-test`` slice was used (so slices never pass for
    full data, nor a sliced test set for the whole one)."""
    limits = [f"{split}<={prepare_config[key]}" for split, key in (("train", "limit"), ("test", "limit_test"))
              if prepare_config.get(key)]
    return prepare_config["dataset"] + (f" ({', '.join(limits)})" if limits else "")


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
    settings = run_identity(prepared.config, trained.config)
    return RunRecord(
        run_dir=str(run_dir), dataset=dataset_label(prepared.config), method=method_name(run_dir, trained.summary),
        seed=int(seed), accuracy=summary["headline"]["accuracy"], macro_f1=summary["headline"]["macro_f1"],
        macro_silhouette=summary.get("macro_silhouette"), seconds_per_epoch=trained.summary.get("seconds_per_epoch"),
        best_epoch=trained.summary.get("best_epoch"), train_seconds=trained.data.get("wall_seconds"),
        peak_rss_mb=trained.data.get("peak_rss_mb"),
        val_macro_f1_by_epoch=[h.get("val_macro_f1") for h in history],
        probe_accuracy=(summary.get("linear_probe") or {}).get("accuracy"),
        settings=settings, config_hash=sha256_json(settings),
    )


def mean_std(values: list[float | None]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and n of the non-missing values."""
    present = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return {"mean": float(np.mean(present)), "std": std, "n": len(present)}


def _groups(records: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    """Replicates together: by (dataset, method, config hash), in first-seen order."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.dataset, record.method, record.config_hash), []).append(record)
    return groups


def _short(key: str) -> str:
    return key.removeprefix("train.")


PROTOCOL_KEY = "train.loop.train_layers"  # --train-layers: shown as "[layers=N]" beside the method, not a variant


def protocol_label(settings: dict[str, Any]) -> str:
    """``" [layers=2]"`` for a run that trained part of the encoder (``--train-layers N``), ``""`` for full
    fine-tuning (and for runs that predate the option)."""
    layers = settings.get(PROTOCOL_KEY)
    return "" if layers in (None, "all") else f" [layers={layers}]"


def variant_labels(groups: dict[tuple, list[RunRecord]]) -> dict[tuple, str]:
    """Per group, the settings that tell it from the other groups of its dataset and method (``""`` when
    it is the only one): ``objective.lam=0.5, loop.epochs=3``."""
    labels = {}
    for key, members in groups.items():
        siblings = [groups[k][0].settings for k in groups if k[:2] == key[:2]]
        keys = sorted({k for s in siblings for k in s
                       if k != PROTOCOL_KEY and any(s.get(k) != t.get(k) for t in siblings)})
        labels[key] = ", ".join(f"{_short(k)}={members[0].settings.get(k)}" for k in keys)
    return labels


def aggregate(records: list[RunRecord]) -> list[dict]:
    """One row per setting (dataset, method, config hash) in first-seen order, each metric as mean/std/n.

    ``label`` is the method, its protocol (``[layers=N]``, :func:`protocol_label`) and the settings that differ
    from its other rows in parentheses: ``gloss+ce [layers=2] (objective.lam=0.5)``.
    """
    groups = _groups(records)
    variants = variant_labels(groups)
    rows = []
    for key, members in groups.items():
        dataset, method, config_hash = key
        named = method + protocol_label(members[0].settings)
        label = f"{named} ({variants[key]})" if variants[key] else named
        row = {"dataset": dataset, "method": method, "label": label, "variant": variants[key],
               "config_hash": config_hash, "seeds": sorted(r.seed for r in members),
               "runs": [r.run_dir for r in members]}
        for metric in METRICS:
            row[metric] = mean_std([getattr(r, metric) for r in members])
        rows.append(row)
    return rows


def _paired(ours: list[RunRecord], theirs: list[RunRecord], metric: str) -> dict | None:
    """``ours - theirs`` on each shared seed, the mean and the paired t-test (n >= 3)."""
    from scipy.stats import ttest_rel

    mine = {r.seed: getattr(r, metric) for r in ours}
    other = {r.seed: getattr(r, metric) for r in theirs}
    seeds = sorted(set(mine) & set(other))
    if not seeds:
        return None
    diffs = [mine[s] - other[s] for s in seeds]
    p_value = None
    if len(seeds) >= 3:
        if np.allclose(diffs, diffs[0]):
            p_value = 0.0 if diffs[0] != 0 else 1.0
        else:
            p_value = float(ttest_rel([mine[s] for s in seeds], [other[s] for s in seeds]).pvalue)
    return {"seeds": seeds, "differences": diffs, "mean_difference": float(np.mean(diffs)), "n": len(seeds),
            "p_value": p_value}


def paired_difference(records: list[RunRecord], method: str, baseline: str, metric: str = "accuracy") -> list[dict]:
    """Per dataset and pair of settings (one of ``method``, one of ``baseline``, on the same data):
    ``method - baseline`` on each shared seed, their mean, and a paired t-test p-value."""
    groups = _groups(records)
    variants = variant_labels(groups)
    out = []
    for ours_key, ours in groups.items():
        if ours_key[1] != method:
            continue
        for theirs_key, theirs in groups.items():
            if theirs_key[:2] != (ours_key[0], baseline) or theirs[0].data_hash != ours[0].data_hash:
                continue
            result = _paired(ours, theirs, metric)
            if result is not None:
                out.append({"dataset": ours_key[0], "method": method, "baseline": baseline, "metric": metric,
                            "method_variant": _with_protocol(variants[ours_key], ours[0].settings),
                            "baseline_variant": _with_protocol(variants[theirs_key], theirs[0].settings),
                            **result})
    return out


def _with_protocol(variant: str, settings: dict[str, Any]) -> str:
    protocol = protocol_label(settings).strip(" []")
    return ", ".join(part for part in (protocol, variant) if part)


def records_to_json(records: list[RunRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def require_runs(run_dirs: list[Path]) -> list[RunRecord]:
    records = []
    for run_dir in run_dirs:
        if not (run_dir / "evaluate" / "manifest.json").is_file():
            raise GlossError(f"{run_dir}: not a finished run (no evaluate/manifest.json)")
        records.append(read_run(run_dir))
    return records
