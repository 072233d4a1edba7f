"""Collect finished runs and aggregate them per setting (mean, standard deviation, n), plus paired
differences between two methods over the replicates they share (paired t-test when n >= 3, Holm-corrected
over datasets).

A row pools only replicates: runs of one dataset, method and tier whose prepare and train configs are
identical but for the training seed, the split seed (``gloss run --split-seed``: which documents are held
out for validation) and a per-seed ``--init-from`` (BertGCN started from each seed's own CE run: such runs
pool when the runs they start from are replicates of one setting). The limit and validation share are part
of the data and count. Runs of one method that differ in any other setting are separate rows, labelled by
the settings that differ (``gloss+ce (objective.lam=0.5)``). The paired test pairs two such rows of the same
data, replicate by replicate: runs on the same (split seed, training seed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import HISTORY_FILE, SHORT_HASH, read_history, run_identity
from pipeline.errors import GlossError
from pipeline.hashing import sha256_json
from pipeline.manifest import load_manifest

NAME_FILE = "compare-name.txt"  # the sweep's method name, written into the run directory
TIER_FILE = "compare-tier.txt"  # the sweep's tier (B, adapter, gpu-full), written into the run directory
SPLIT_SEED_KEY = "data.seed"  # `gloss run --split-seed`: a replicate key, like the training seed
INIT_FROM_KEY = "train.gcn.init_from"  # BertGCN's --init-from: counts by the setting of the run it names
CONVERGED_SHARE = 0.99  # "converged": val macro-F1 first reaches this share of the run's best
# Per metric, mean / std / n in every row: the headline (the head, else the linear probe), each predictor's
# accuracy and macro-F1, the epochs and seconds until val macro-F1 first reached 99% of the run's best, cost.
METRICS = ("accuracy", "macro_f1", "head_accuracy", "head_macro_f1", "probe_accuracy", "probe_macro_f1",
           "propagation_accuracy", "propagation_macro_f1", "knn_accuracy", "knn_macro_f1", "mix_accuracy",
           "mix_macro_f1", "epochs_to_99", "seconds_to_99", "macro_silhouette",
           "seconds_per_epoch", "best_epoch", "train_seconds", "peak_rss_mb")


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
    settings: dict[str, Any] = field(default_factory=dict)  # replicate_settings: data.* and train.*
    config_hash: str | None = None  # the hash of ``settings``: equal for replicates
    split_seed: int = 0  # the prepare stage's seed (the validation split)
    tier: str | None = None  # the sweep's tier (TIER_FILE); never pooled across
    probe_macro_f1: float | None = None
    head_accuracy: float | None = None  # the model's own head (None for head-less runs)
    head_macro_f1: float | None = None
    propagation_accuracy: float | None = None  # label propagation over the train + test kNN graph (k on val)
    propagation_macro_f1: float | None = None
    knn_accuracy: float | None = None  # the k nearest training documents' vote (k on val)
    knn_macro_f1: float | None = None
    mix_accuracy: float | None = None  # head and propagation scores mixed, inductive (k and alpha on val)
    mix_macro_f1: float | None = None
    epochs_to_99: int | None = None  # first epoch whose val macro-F1 reached CONVERGED_SHARE of the best
    seconds_to_99: float | None = None  # wall seconds of the epochs up to and including it

    @property
    def data_hash(self) -> str:
        """The hash of the ``data.*`` settings but the split seed: runs on the same data protocol share it."""
        return sha256_json({k: v for k, v in self.settings.items() if k.startswith("data.")})

    @property
    def replicate(self) -> tuple[int, int]:
        """(split seed, training seed): what the paired test pairs runs on."""
        return self.split_seed, self.seed


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


def tier_name(run_dir: Path) -> str | None:
    marker = run_dir / TIER_FILE
    if not marker.is_file():
        return None
    return marker.read_text().strip() or None


def replicate_settings(prepared, trained, seen: frozenset = frozenset()) -> dict[str, Any]:
    """:func:`pipeline.artifacts.run_identity` without the replicate keys: the split seed goes, and an
    ``--init-from`` run counts by its own replicate setting (``replicate of 1a2b3c4d``), so BertGCN runs
    started from each seed's own CE run pool when those CE runs are replicates. An ``--init-from`` run that
    is gone counts by its name."""
    settings = {k: v for k, v in run_identity(prepared.config, trained.config).items() if k != SPLIT_SEED_KEY}
    init = (trained.config.get("gcn") or {}).get("init_from")
    if init and INIT_FROM_KEY in settings and init not in seen:
        try:
            upstream = replicate_settings(load_manifest(init, "prepare"), load_manifest(init, "train"), seen | {init})
        except GlossError:
            return settings
        settings[INIT_FROM_KEY] = f"replicate of {sha256_json(upstream)[:SHORT_HASH]}"
    return settings


def epochs_to_share(history: list[dict], share: float = CONVERGED_SHARE) -> tuple[int | None, float | None]:
    """(epoch, seconds): the first epoch whose ``val_macro_f1`` reached ``share`` of the run's best, and the
    wall seconds of the epochs up to it (``None`` when an epoch has no ``seconds``); (None, None) without
    val macro-F1."""
    scores = [h.get("val_macro_f1") for h in history]
    scores = [v if isinstance(v, int | float) and math.isfinite(v) else None for v in scores]
    present = [v for v in scores if v is not None]
    if not present:
        return None, None
    target = share * max(present)
    reached = next(i for i, v in enumerate(scores) if v is not None and v >= target)
    seconds = [h.get("seconds") for h in history[: reached + 1]]
    epoch = int(history[reached].get("epoch", reached + 1))  # the record's own number (1-based)
    return epoch, (float(sum(seconds)) if all(isinstance(t, int | float) for t in seconds) else None)


def predictor_label(evaluate_summary: dict) -> str:
    """The suffix that makes the headline predictor part of a row's identity: ``""`` for the head (or the probe
    standing in for it), `` [lpa]`` / `` [lpa, transductive]`` for a graph predictor of ``gloss evaluate
    --predictor``, so head and graph numbers never pool in one row."""
    predictor = evaluate_summary.get("predictor") or "head"
    if predictor == "head":
        return ""
    transductive = evaluate_summary.get("setting") == "transductive"
    return f" [{predictor}{', transductive' if transductive else ''}]"


def read_run(run_dir: str | Path) -> RunRecord:
    """One finished run (prepare, train and evaluate manifests present)."""
    run_dir = Path(run_dir)
    prepared, trained, evaluated = (load_manifest(run_dir, s) for s in ("prepare", "train", "evaluate"))
    summary = evaluated.summary
    history = read_history(trained.output(HISTORY_FILE))
    seed = trained.config.get("seed", trained.config.get("loop", {}).get("seed", 0))
    settings = replicate_settings(prepared, trained)
    head, probe = (summary.get(k) or {} for k in ("head", "linear_probe"))
    predictors = summary.get("predictors") or {}
    # the graph predictors with k (and alpha) chosen on validation; runs evaluated before they existed keep
    # the fixed-k propagation block
    propagation = predictors.get("lpa-transductive") or summary.get("label_propagation") or {}
    knn, mix = (predictors.get(k) or {} for k in ("knn", "mix-inductive"))
    epochs_to_99, seconds_to_99 = epochs_to_share(history)
    return RunRecord(
        run_dir=str(run_dir), dataset=dataset_label(prepared.config),
        method=method_name(run_dir, trained.summary) + predictor_label(summary),
        seed=int(seed), accuracy=summary["headline"]["accuracy"], macro_f1=summary["headline"]["macro_f1"],
        macro_silhouette=summary.get("macro_silhouette"), seconds_per_epoch=trained.summary.get("seconds_per_epoch"),
        best_epoch=trained.summary.get("best_epoch"), train_seconds=trained.data.get("wall_seconds"),
        peak_rss_mb=trained.data.get("peak_rss_mb"),
        val_macro_f1_by_epoch=[h.get("val_macro_f1") for h in history],
        probe_accuracy=probe.get("accuracy"), probe_macro_f1=probe.get("macro_f1"),
        head_accuracy=head.get("accuracy"), head_macro_f1=head.get("macro_f1"),
        propagation_accuracy=propagation.get("accuracy"), propagation_macro_f1=propagation.get("macro_f1"),
        knn_accuracy=knn.get("accuracy"), knn_macro_f1=knn.get("macro_f1"),
        mix_accuracy=mix.get("accuracy"), mix_macro_f1=mix.get("macro_f1"),
        epochs_to_99=epochs_to_99, seconds_to_99=seconds_to_99,
        settings=settings, config_hash=sha256_json(settings), split_seed=int(prepared.config.get("seed", 0)),
        tier=tier_name(run_dir),
    )


def mean_std(values: list[float | None]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and n of the non-missing values."""
    present = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return {"mean": float(np.mean(present)), "std": std, "n": len(present)}


def _groups(records: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    """Replicates together: by (dataset, method, tier, config hash), in first-seen order."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.dataset, record.method, record.tier, record.config_hash), []).append(record)
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
        siblings = [groups[k][0].settings for k in groups if k[:3] == key[:3]]
        keys = sorted({k for s in siblings for k in s
                       if k != PROTOCOL_KEY and any(s.get(k) != t.get(k) for t in siblings)})
        labels[key] = ", ".join(f"{_short(k)}={members[0].settings.get(k)}" for k in keys)
    return labels


def aggregate(records: list[RunRecord]) -> list[dict]:
    """One row per setting (dataset, method, tier, config hash) in first-seen order, each metric as
    mean/std/n over its replicates.

    ``label`` is the method, its protocol (``[layers=N]``, :func:`protocol_label`) and the settings that differ
    from its other rows in parentheses: ``gloss+ce [layers=2] (objective.lam=0.5)``. ``split_seeds`` and
    ``seeds`` list the split and training seeds the row pools, ``replicates`` the (split, training) pairs.
    """
    groups = _groups(records)
    variants = variant_labels(groups)
    rows = []
    for key, members in groups.items():
        dataset, method, tier, config_hash = key
        named = method + protocol_label(members[0].settings)
        label = f"{named} ({variants[key]})" if variants[key] else named
        row = {"dataset": dataset, "method": method, "tier": tier, "label": label, "variant": variants[key],
               "config_hash": config_hash, "split_seeds": sorted({r.split_seed for r in members}),
               "seeds": sorted(r.seed for r in members), "replicates": sorted(list(r.replicate) for r in members),
               "runs": [r.run_dir for r in members]}
        for metric in METRICS:
            row[metric] = mean_std([getattr(r, metric) for r in members])
        rows.append(row)
    return rows


MIN_PAIRS = 3  # a paired t-test on fewer replicates has one degree of freedom or none: too weak to report


def paired_t_test(ours: dict[tuple, float], theirs: dict[tuple, float]) -> dict:
    """``ours - theirs`` on the replicates (dict keys) both have: ``replicates``, ``differences``, ``n``,
    ``mean_difference`` (``None`` without a shared replicate) and the paired t-test's ``t`` and ``p``. With
    fewer than :data:`MIN_PAIRS` pairs, or differences that do not vary (the test is undefined there), ``t`` and
    ``p`` are ``None`` and ``no_test`` says which; otherwise ``no_test`` is ``None``."""
    from scipy.stats import ttest_rel

    shared = sorted(set(ours) & set(theirs))
    differences = [ours[r] - theirs[r] for r in shared]
    result = {"replicates": [list(r) for r in shared], "differences": differences, "n": len(shared),
              "mean_difference": float(np.mean(differences)) if shared else None, "t": None, "p": None,
              "no_test": None}
    if len(shared) < MIN_PAIRS:
        result["no_test"] = f"n < {MIN_PAIRS}"
    elif np.allclose(differences, differences[0], rtol=0.0, atol=1e-12):
        result["no_test"] = "differences do not vary"
    else:
        test = ttest_rel([ours[r] for r in shared], [theirs[r] for r in shared])
        result["t"], result["p"] = float(test.statistic), float(test.pvalue)
    return result


def _paired(ours: list[RunRecord], theirs: list[RunRecord], metric: str) -> dict | None:
    """:func:`paired_t_test` of ``metric`` over the replicates (split seed, training seed) where both have it,
    ``None`` where they share none; the p-value is ``p_value``."""
    mine = {r.replicate: getattr(r, metric) for r in ours if getattr(r, metric) is not None}
    other = {r.replicate: getattr(r, metric) for r in theirs if getattr(r, metric) is not None}
    result = paired_t_test(mine, other)
    if not result["n"]:
        return None
    return {"replicates": result["replicates"], "differences": result["differences"],
            "mean_difference": result["mean_difference"], "n": result["n"], "p_value": result["p"],
            "no_test": result["no_test"]}


def paired_difference(records: list[RunRecord], method: str, baseline: str, metric: str = "accuracy",
                      same_tier: bool = False) -> list[dict]:
    """Per dataset and pair of settings (one of ``method``, one of ``baseline``, on the same data protocol;
    with ``same_tier``, of the same tier only): ``method - baseline`` on each shared replicate (split seed,
    training seed), their mean, and a paired t-test p-value; ``p_holm`` is Holm-corrected over the datasets of
    each pair of settings (:func:`holm`)."""
    groups = _groups(records)
    variants = variant_labels(groups)
    out = []
    for ours_key, ours in groups.items():
        if ours_key[1] != method:
            continue
        for theirs_key, theirs in groups.items():
            if theirs_key[:2] != (ours_key[0], baseline) or theirs[0].data_hash != ours[0].data_hash:
                continue
            if same_tier and theirs_key[2] != ours_key[2]:
                continue
            result = _paired(ours, theirs, metric)
            if result is not None:
                out.append({"dataset": ours_key[0], "method": method, "baseline": baseline, "metric": metric,
                            "method_tier": ours_key[2], "baseline_tier": theirs_key[2],
                            "method_variant": _with_protocol(variants[ours_key], ours[0].settings),
                            "baseline_variant": _with_protocol(variants[theirs_key], theirs[0].settings),
                            **result})
    for key in dict.fromkeys(_family(p) for p in out):
        members = [p for p in out if _family(p) == key]
        for p, corrected in zip(members, holm([p["p_value"] for p in members]), strict=True):
            p["p_holm"] = corrected
    return out


def _family(pair: dict) -> tuple:
    """The pairs one Holm correction covers: one comparison of settings, over datasets."""
    return pair["metric"], pair["method_tier"], pair["baseline_tier"], pair["method_variant"], pair["baseline_variant"]


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down correction of a family of p-values (``None``: no test, left out of the family).

    The i-th smallest of m p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``.
    """
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    corrected: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        corrected[i] = running
    return corrected


PAIRED_METRICS = ("accuracy", "macro_f1", "epochs_to_99", "seconds_to_99")


def reference_differences(records: list[RunRecord], reference: str,
                          metrics: tuple[str, ...] = PAIRED_METRICS) -> list[dict]:
    """``reference - other`` for every other method, per dataset and metric (:func:`paired_difference`), each
    reference row against the other method's rows of its own tier (an adapter-tier reference against the
    adapter tier, tier B against tier B); a method never seen is a one-line error."""
    methods = list(dict.fromkeys(r.method for r in records))
    if reference not in methods:
        raise GlossError(f"--reference {reference}: no finished run of that method (methods: {', '.join(methods)})")
    return [p for other in methods if other != reference for metric in metrics
            for p in paired_difference(records, reference, other, metric, same_tier=True)]


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
