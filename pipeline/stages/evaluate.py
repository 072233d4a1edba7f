"""``gloss evaluate``: test metrics of a trained model, from the paths in the prepare and train manifests.

Reads ``RUN/prepare`` (splits, label names) and whatever ``RUN/train`` wrote of ``logits_{val,test}.npy``
(the model's own head; log-probabilities for TextGCN/BertGCN), ``embeddings_{train,val,test}.npy`` (document
embeddings of the best checkpoint) and ``history.jsonl``. Writes ``RUN/evaluate/``:

* ``metrics.json``: head metrics (accuracy, macro-/weighted-F1, per-class report, confusion matrix), the
  cosine macro-silhouette of the test embeddings, linear probes (train -> test embeddings; `--probe`), transductive
  label propagation over the kNN graph of train + test embeddings (``label_propagation``, k = ``--knn-k`` or 10),
  the graph predictors (``predictors``: ``head``, ``knn``, ``lpa-transductive``, ``lpa-inductive``,
  ``mix-transductive``, ``mix-inductive``, each with its test accuracy and macro-F1, the ``k``/``alpha`` chosen on
  validation and its setting; :mod:`pipeline.evaluation.graph_predictors`), the ``headline`` (``--predictor``; the
  head by default, else the linear probe when there is no head) with its ``predictor``, ``setting``, ``k`` and
  ``alpha``, and the training cost copied from the train manifest. Plain JSON: NaN is null.
* ``predictions_test.npz``: the test label ids of every predictor (one int64 array per ``predictors`` key).
* ``spread_scores.npz``: the training documents' label-spreading scores (``k<K>``: [N_train, C]) for the ``k`` the
  inductive ``lpa``/``mix`` chose, which ``gloss predict`` reuses.
* ``test_results.json``: the headline test scores (source, accuracy, macro-F1, macro-silhouette), which
  ``gloss run`` adds to the model card (:mod:`pipeline.model_card`).
* ``confusion_matrix.png`` (row-normalised, of the headline's predictions) and ``tsne.png`` (test embeddings).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import options
from pipeline.artifacts import (
    HISTORY_FILE,
    history_summary,
    load_matrix,
    load_splits,
    read_history,
    split_labels,
)
from pipeline.errors import GlossError
from pipeline.manifest import Manifest, StageContext, load_manifest, run_stage
from pipeline.model_card import TEST_RESULTS_FILE

STAGE = "evaluate"
TRAIN_SUMMARY_KEYS = ("best_epoch", "seconds_per_epoch", "peak_rss_mb", "has_head")


@dataclass
class EvaluateConfig:
    """Options of ``gloss evaluate``.

    Args:
        knn_k: neighbours per node of every kNN graph; ``None`` chooses it on validation for the graph
            predictors (and uses 10 for ``label_propagation``).
        predictor: the headline predictor, one of ``options.PREDICTORS``.
        transductive: the headline ``lpa``/``mix`` propagates over train + val + test (else inductive).
        tsne_max: the most test embeddings drawn in ``tsne.png`` (seeded sample); 0 skips the plot.
        seed: seed of the t-SNE, of its sample and of the silhouette sample.
        silhouette_max: the most test embeddings scored by the silhouette (seeded sample above it).
        probe_max_iter: L-BFGS iterations of the linear probe.
        probe: ``sklearn`` (logistic regression), ``reference`` (the released G-Loss code's probe: needs
            ``embeddings_val.npy``) or ``both``.
    """

    knn_k: int | None = None
    predictor: str = options.DEFAULT_PREDICTOR
    transductive: bool = False
    tsne_max: int = options.TSNE_MAX
    seed: int = options.SEED
    silhouette_max: int = 10000
    probe_max_iter: int = 1000
    probe: str = options.DEFAULT_PROBE


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars/arrays made plain and non-finite floats replaced by ``None``."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _head_metrics(train: Manifest, frames: dict, label_names: list[str]) -> dict[str, Any] | None:
    from pipeline.evaluation.metrics import accuracy_and_macro_f1, check_label_ids, classification_metrics

    outputs = train.data.get("outputs", {})
    if "logits_test.npy" not in outputs:
        return None
    c = len(label_names)
    test_y = frames["test"]["label_id"].to_numpy()
    logits = load_matrix(train.output("logits_test.npy"), len(test_y), "test", columns=c, allow_inf=True)  # [N_test, C]
    predictions = logits.argmax(axis=1)  # [N_test]
    head = classification_metrics(test_y, predictions, label_names, source=str(train.output("logits_test.npy")))
    head["predictions"] = predictions
    if "logits_val.npy" in outputs:
        val_y = frames["val"]["label_id"].to_numpy()
        val_logits = load_matrix(train.output("logits_val.npy"), len(val_y), "val", columns=c, allow_inf=True)
        val_predictions = val_logits.argmax(axis=1)
        check_label_ids(val_predictions, c, str(train.output("logits_val.npy")))
        head["val"] = accuracy_and_macro_f1(val_y, val_predictions, num_classes=c)
    return head


def _load_embeddings(train: Manifest, frames: dict) -> dict[str, np.ndarray]:
    """Train, val and test embeddings that the train stage wrote, checked before anything is computed.

    Shapes: -> {"train": [N_train, D], "val": [N_val, D], "test": [N_test, D]} (any may be absent).
    """
    outputs = train.data.get("outputs", {})
    found = {}
    for split in ("test", "train", "val"):
        name = f"embeddings_{split}.npy"
        if name in outputs:
            found[split] = load_matrix(train.output(name), len(frames[split]), split)
    for split in ("train", "val"):
        if split in found and "test" in found and found[split].shape[1] != found["test"].shape[1]:
            raise GlossError(
                f"{train.output(f'embeddings_{split}.npy')}: {found[split].shape[1]} dimensions, but "
                f"embeddings_test.npy has {found['test'].shape[1]}"
            )
    return found


def _probes(embeddings: dict, frames: dict, label_names: list[str], config: EvaluateConfig,
            train: Manifest) -> dict[str, Any]:
    """The linear probes ``config.probe`` asks for: ``linear_probe`` (scikit-learn) and ``reference_probe``
    (the released code's; it needs the val embeddings)."""
    from pipeline.evaluation.metrics import classification_metrics
    from pipeline.evaluation.probe import linear_probe, reference_probe

    train_x, test_x = embeddings["train"], embeddings["test"]  # [N_train, D], [N_test, D]
    train_y, test_y = frames["train"]["label_id"].to_numpy(), frames["test"]["label_id"].to_numpy()
    found: dict[str, Any] = {"linear_probe": None, "reference_probe": None}
    if config.probe in ("sklearn", "both"):
        probe = linear_probe(train_x, train_y, test_x, test_y, num_classes=len(label_names),
                             max_iter=config.probe_max_iter, seed=config.seed)
        found["linear_probe"] = {
            **classification_metrics(test_y, probe.pop("predictions"), label_names, source="linear probe"),
            **{k: v for k, v in probe.items() if k not in ("accuracy", "macro_f1")},
        }
    if config.probe in ("reference", "both"):
        if "val" not in embeddings:
            raise GlossError(f"--probe {config.probe}: the reference probe needs embeddings_val.npy, which "
                             f"{train.path} does not list (it stops early on val macro-F1)")
        probe = reference_probe(train_x, train_y, embeddings["val"], frames["val"]["label_id"].to_numpy(), test_x,
                                num_classes=len(label_names), seed=config.seed)
        found["reference_probe"] = {
            **classification_metrics(test_y, probe.pop("predictions"), label_names, source="reference probe"),
            **probe,
        }
    return found


def _embedding_metrics(
    train: Manifest, frames: dict, label_names: list[str], config: EvaluateConfig, ctx: StageContext
) -> dict[str, Any]:
    """Silhouette and t-SNE of the test embeddings; linear probe and label propagation from train + test."""
    from pipeline.evaluation.metrics import accuracy_and_macro_f1, silhouette

    found: dict[str, Any] = {"silhouette": None, "tsne_points": None, "linear_probe": None, "reference_probe": None,
                             "label_propagation": None, "embeddings": {}}
    embeddings = _load_embeddings(train, frames)
    found["embeddings"] = embeddings
    if "test" not in embeddings:
        return found
    test_x = embeddings["test"]  # [N_test, D]
    test_y = frames["test"]["label_id"].to_numpy()
    found["silhouette"] = silhouette(test_x, test_y, max_samples=config.silhouette_max, seed=config.seed)
    if config.tsne_max > 0:
        from pipeline.evaluation.plots import plot_tsne

        found["tsne_points"] = plot_tsne(
            test_x, test_y, label_names, ctx.output("tsne.png"), max_points=config.tsne_max, seed=config.seed,
            title=f"t-SNE of test embeddings ({_method_name(train)})",
        )
    if "train" not in embeddings:
        return found
    from pipeline.evaluation.propagation import transductive_propagation

    train_x = embeddings["train"]  # [N_train, D]
    train_y = frames["train"]["label_id"].to_numpy()
    found.update(_probes(embeddings, frames, label_names, config, train))
    propagation = transductive_propagation(train_x, train_y, test_x, len(label_names), k=config.knn_k or options.K)
    found["label_propagation"] = {
        **accuracy_and_macro_f1(test_y, propagation.pop("predictions"), num_classes=len(label_names)),
        **propagation,
    }
    return found


def _head_probabilities(train: Manifest, frames: dict, num_classes: int) -> dict[str, np.ndarray] | None:
    """Softmax of the head's val and test logits (``None`` without both). Shapes: {split: [N_split, C]}."""
    from pipeline.evaluation.graph_predictors import softmax

    outputs = train.data.get("outputs", {})
    if not {"logits_val.npy", "logits_test.npy"} <= set(outputs):
        return None
    return {split: softmax(load_matrix(train.output(f"logits_{split}.npy"), len(frames[split]), split,
                                       columns=num_classes, allow_inf=True)) for split in ("val", "test")}


def _graph_predictors(train: Manifest, frames: dict, label_names: list[str], embeddings: dict,
                      config: EvaluateConfig, ctx: StageContext) -> dict[str, Any]:
    """Every graph predictor with ``k``/``alpha`` chosen on validation (test labels are read only to score the
    chosen predictions): ``{key: Choice}``; the spread scores the inductive ones used go to ``spread_scores.npz``."""
    from pipeline.evaluation.graph_predictors import TrainingGraph, choose_predictors

    if not {"train", "val", "test"} <= set(embeddings) or len(frames["val"]) == 0:
        return {}
    labels = split_labels(frames)
    graph = TrainingGraph(embeddings["train"], labels["train"], len(label_names))
    head = _head_probabilities(train, frames, len(label_names))
    chosen = choose_predictors(graph, embeddings["val"], labels["val"], embeddings["test"],
                               head_val=None if head is None else head["val"],
                               head_test=None if head is None else head["test"], k=config.knn_k)
    spread_ks = sorted({c.k for key, c in chosen.items() if key.endswith("-inductive")})
    np.savez(ctx.output("spread_scores.npz"), **{f"k{k}": graph.spread_scores(k) for k in spread_ks})
    return chosen


def _predictor_table(head: dict | None, chosen: dict, test_y: np.ndarray) -> dict[str, dict[str, Any]]:
    """``metrics.json``'s ``predictors``: per predictor key, its test accuracy and macro-F1, setting, k, alpha."""
    from pipeline.evaluation.metrics import accuracy_and_macro_f1

    table: dict[str, dict[str, Any]] = {}
    if head is not None:
        val = head.get("val") or {}
        table["head"] = {"predictor": "head", "setting": "inductive", "k": None, "k_given": False, "alpha": None,
                         "val_accuracy": val.get("accuracy"), "val_macro_f1": val.get("macro_f1"),
                         "accuracy": head["accuracy"], "macro_f1": head["macro_f1"],
                         "absent_classes": head.get("absent_classes")}
    for key, choice in chosen.items():
        table[key] = {**choice.summary(),
                      **accuracy_and_macro_f1(test_y, choice.test_predictions, num_classes=choice.test_scores.shape[1])}
    if "knn" in chosen and "lpa-inductive" in chosen:  # does inductive lpa differ from the plain vote here?
        same = chosen["knn"].test_predictions == chosen["lpa-inductive"].test_predictions
        table["lpa-inductive"]["test_agreement_with_knn"] = float(same.mean()) if same.size else None
    return table


def _check_predictor(config: EvaluateConfig, train: Manifest) -> None:
    """One-line errors, before any work, for a headline predictor the train outputs cannot give."""
    outputs = set(train.data.get("outputs", {}))
    if config.predictor == "mix" and not {"logits_val.npy", "logits_test.npy"} <= outputs:
        raise GlossError(f"--predictor mix: {train.path} has no head logits (logits_val.npy, logits_test.npy) "
                         f"to mix with the graph; loss '{train.config.get('loss')}' trains no head")
    needed = {f"embeddings_{split}.npy" for split in ("train", "val", "test")}
    if config.predictor in ("knn", "lpa", "mix") and not needed <= outputs:
        raise GlossError(f"--predictor {config.predictor}: {train.path} lacks "
                         f"{', '.join(sorted(needed - outputs))}, which the graph predictors need")
    if config.transductive and config.predictor not in ("lpa", "mix"):
        raise GlossError(f"--transductive applies to --predictor lpa or mix (got --predictor {config.predictor})")


def _method_name(train: Manifest) -> str:
    method, loss = train.config.get("method"), train.config.get("loss")
    return f"{method}/{loss}" if loss else str(method)


def evaluate(prepare: Manifest, train: Manifest, config: EvaluateConfig, ctx: StageContext) -> dict[str, Any]:
    """Compute every metric the train outputs allow, write the plots, return the metrics dict."""
    from pipeline.evaluation.plots import plot_confusion_matrix

    frames, label_names = load_splits(prepare)
    outputs = train.data.get("outputs", {})
    if "logits_test.npy" not in outputs and not {"embeddings_train.npy", "embeddings_test.npy"} <= set(outputs):
        raise GlossError(
            f"{train.path}: the train stage wrote neither logits_test.npy nor embeddings_train.npy + "
            "embeddings_test.npy: nothing to evaluate"
        )
    head = _head_metrics(train, frames, label_names)
    embedding = _embedding_metrics(train, frames, label_names, config, ctx)
    chosen = _graph_predictors(train, frames, label_names, embedding.pop("embeddings"), config, ctx)
    test_y = split_labels(frames)["test"]
    predictors = _predictor_table(head, chosen, test_y)
    predictions = {key: c.test_predictions for key, c in chosen.items()}
    if head is not None:
        predictions = {"head": head["predictions"], **predictions}
    np.savez(ctx.output("predictions_test.npz"), **{k: v.astype(np.int64) for k, v in predictions.items()})
    if config.predictor == "head":
        headline_source = "head" if head is not None else (
            "linear_probe" if embedding["linear_probe"] is not None else "reference_probe")
        best = head if head is not None else embedding[headline_source]
        matrix = best["confusion_matrix"]
    else:
        from pipeline.evaluation.graph_predictors import predictor_key
        from pipeline.evaluation.metrics import classification_metrics

        headline_source = predictor_key(config.predictor, "transductive" if config.transductive else "inductive")
        best = predictors[headline_source]
        matrix = classification_metrics(test_y, predictions[headline_source], label_names,
                                        source=headline_source)["confusion_matrix"]
    if head is not None:
        head.pop("predictions")
    headline = {"accuracy": best["accuracy"], "macro_f1": best["macro_f1"],
                "absent_classes": best["absent_classes"], "source": headline_source}
    plot_confusion_matrix(
        matrix, label_names, ctx.output("confusion_matrix.png"),
        title=f"{_method_name(train)}: test confusion ({headline_source.replace('_', ' ')}, rows normalised)",
    )
    history = None
    if HISTORY_FILE in outputs:
        history = history_summary(read_history(train.output(HISTORY_FILE)))
    return {
        "method": train.summary.get("method", train.config.get("method")),
        "loss": train.summary.get("loss", train.config.get("loss")),
        "labels": label_names,
        "test_documents": len(frames["test"]),
        "headline": headline,
        "predictor": config.predictor,
        "setting": predictors.get(headline_source, {}).get("setting"),
        "k": predictors.get(headline_source, {}).get("k"),
        "alpha": predictors.get(headline_source, {}).get("alpha"),
        "predictors": predictors,
        "head": head,
        "linear_probe": embedding["linear_probe"],
        "reference_probe": embedding["reference_probe"],
        "label_propagation": embedding["label_propagation"],
        "silhouette": embedding["silhouette"],
        "tsne_points": embedding["tsne_points"],
        "confusion_matrix_source": headline_source,
        "train": {key: train.summary.get(key) for key in TRAIN_SUMMARY_KEYS},
        "history": history,
    }


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The manifest summary: the numbers the console line and later comparisons need."""

    def pair(block: dict | None) -> dict | None:
        return None if block is None else {"accuracy": block["accuracy"], "macro_f1": block["macro_f1"]}

    silhouette = metrics["silhouette"]
    return {
        "method": metrics["method"],
        "loss": metrics["loss"],
        "headline": metrics["headline"],
        "head": pair(metrics["head"]),
        "linear_probe": pair(metrics["linear_probe"]),
        "reference_probe": pair(metrics["reference_probe"]),
        "label_propagation": pair(metrics["label_propagation"]),
        "predictor": metrics["predictor"],
        "setting": metrics["setting"],
        "k": metrics["k"],
        "alpha": metrics["alpha"],
        "predictors": {key: pair(block) for key, block in metrics["predictors"].items()},
        "macro_silhouette": None if silhouette is None else silhouette["macro_silhouette"],
        **metrics["train"],
    }


def run(config: EvaluateConfig, run_dir: str | Path, force: bool = False, echo=print) -> Manifest:
    """Evaluate the model of ``run_dir/train`` on the splits of ``run_dir/prepare`` into ``run_dir/evaluate``."""
    if config.knn_k is not None and config.knn_k < 1:
        raise GlossError(f"--knn-k must be at least 1 (got {config.knn_k})")
    if config.predictor not in options.PREDICTORS:
        raise GlossError(options.choice_error("--predictor", config.predictor, options.PREDICTORS))
    if config.tsne_max < 0:
        raise GlossError(f"--tsne-max must be 0 (no plot) or more (got {config.tsne_max})")
    if config.probe not in options.PROBES:
        raise GlossError(options.choice_error("--probe", config.probe, options.PROBES))
    prepare = load_manifest(run_dir, "prepare")
    train = load_manifest(run_dir, "train")
    _check_predictor(config, train)

    def body(ctx: StageContext) -> dict[str, Any]:
        metrics = json_ready(evaluate(prepare, train, config, ctx))
        ctx.output("metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
        test_results = {"dataset": prepare.config["dataset"], "split": "test", "documents": metrics["test_documents"],
                        **metrics["headline"], "macro_silhouette": _summary(metrics)["macro_silhouette"]}
        ctx.output(TEST_RESULTS_FILE).write_text(json.dumps(test_results, indent=2) + "\n")  # the model card's
        return _summary(metrics)

    return run_stage(
        run_dir, STAGE, asdict(config), body, upstream={"prepare": prepare, "train": train}, force=force, echo=echo
    )


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A short console report of an evaluate manifest summary."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    def pair(block: dict | None) -> str:
        return "n/a" if block is None else f"acc {fmt(block['accuracy'])}, macro-F1 {fmt(block['macro_f1'])}"

    headline = summary["headline"]
    name = f"{summary['method']}/{summary['loss']}" if summary.get("loss") else str(summary["method"])
    return [
        f"evaluate: {name}: test accuracy {fmt(headline['accuracy'])}, macro-F1 {fmt(headline['macro_f1'])} "
        f"(from the {headline['source'].replace('_', ' ')})",
        f"  head: {pair(summary['head'])} | linear probe: {pair(summary['linear_probe'])}"
        + (f" | reference probe: {pair(summary['reference_probe'])}" if summary.get("reference_probe") else ""),
        f"  label propagation: {pair(summary['label_propagation'])} | "
        f"macro-silhouette: {fmt(summary['macro_silhouette'])}",
        *(["  graph predictors (k, alpha chosen on val): " + " | ".join(
            f"{key}: {pair(block)}" for key, block in summary["predictors"].items() if key != "head")]
          if len(summary.get("predictors") or {}) > 1 else []),
    ] + ([warning] if (warning := undertrained_head_line(summary)) else [])


UNDERTRAINED_POINTS = 5.0  # the head's test accuracy this far below a probe's or propagation's: say so
RIVALS = {"linear_probe": "linear probe", "reference_probe": "reference probe", "label_propagation": "label propagation"}


def undertrained_head_line(summary: dict[str, Any]) -> str | None:
    """One line when the head's test accuracy is more than ``UNDERTRAINED_POINTS`` below the best of the
    linear probes and label propagation on the same embeddings: the head, not the embeddings, is behind."""
    head = summary.get("head")
    if head is None or head.get("accuracy") is None:
        return None
    rivals = {name: summary[key]["accuracy"] for key, name in RIVALS.items()
              if summary.get(key) and summary[key].get("accuracy") is not None}
    if not rivals:
        return None
    best = max(rivals, key=rivals.get)
    gap = 100 * (rivals[best] - head["accuracy"])
    if gap <= UNDERTRAINED_POINTS:
        return None
    return (f"evaluate: the head looks under-trained: its test accuracy is {gap:.1f} points below the {best}'s "
            f"({head['accuracy']:.4f} vs {rivals[best]:.4f}); read the {best}'s number for what the embeddings "
            f"hold, or train longer (--epochs, --head-lr)")
