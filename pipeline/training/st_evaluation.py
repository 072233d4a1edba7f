"""Evaluators of single-text classification for ``SentenceTransformerTrainer``: how well the embeddings separate
the classes, measured by a kNN graph (:class:`LabelPropagationEvaluator`) or a linear probe
(:class:`LinearProbeEvaluator`). sentence-transformers ships evaluators for pairs, triplets and retrieval but
none for labelled single texts.

Each evaluator embeds its labelled reference texts (``train_*``) and the texts it scores (``eval_*``) with the
model being trained, predicts the scored texts' labels from the references, and returns accuracy and macro-F1
(keys prefixed with ``name``). ``primary_metric`` is ``"<name>_macro_f1"`` (or ``accuracy``), so
``metric_for_best_model`` can pick checkpoints by it (the trainer adds ``eval_``).

Example::

    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from pipeline.training.st_evaluation import LabelPropagationEvaluator

    evaluator = LabelPropagationEvaluator(train_texts, train_labels, val_texts, val_labels, name="val", k=10)
    args = SentenceTransformerTrainingArguments(output_dir="out", eval_strategy="steps", eval_steps=100,
                                                metric_for_best_model="val_macro_f1", ...)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss,
                                         evaluator=evaluator)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from pipeline.evaluation.metrics import accuracy_and_macro_f1

__all__ = ["LabelPropagationEvaluator", "LinearProbeEvaluator"]

logger = logging.getLogger(__name__)
MODES = ("knn", "lpa", "transductive")
PRIMARY_METRICS = ("macro_f1", "accuracy")


class _ClassificationEvaluator(BaseEvaluator):
    """Embeds reference and scored texts, asks :meth:`predict` for the scored texts' labels, and reports
    accuracy and macro-F1."""

    def __init__(self, train_texts: Sequence[str], train_labels: Sequence[int], eval_texts: Sequence[str],
                 eval_labels: Sequence[int], *, name: str = "", batch_size: int = 32,
                 primary_metric: str = "macro_f1"):
        super().__init__()
        if len(train_texts) != len(train_labels) or len(eval_texts) != len(eval_labels):
            raise ValueError(f"Expected one label per text (got {len(train_texts)} train texts and "
                             f"{len(train_labels)} labels, {len(eval_texts)} eval texts and {len(eval_labels)} labels)")
        if primary_metric not in PRIMARY_METRICS:
            raise ValueError(f"Expected 'primary_metric' to be one of {PRIMARY_METRICS} (got '{primary_metric}')")
        self.train_texts, self.eval_texts = list(train_texts), list(eval_texts)
        self.train_labels = np.asarray(train_labels, dtype=np.int64)
        self.eval_labels = np.asarray(eval_labels, dtype=np.int64)
        self.num_classes = int(max(self.train_labels.max(), self.eval_labels.max())) + 1
        self.name, self.batch_size = name, batch_size
        # Named from the start, so metric_for_best_model can name it before the first evaluation.
        self.primary_metric = f"{name}_{primary_metric}" if name else primary_metric

    def predict(self, train_x: np.ndarray, eval_x: np.ndarray) -> np.ndarray:
        """Label ids of the scored texts. Shapes: [N_train, D], [N_eval, D] -> [N_eval]."""
        raise NotImplementedError

    def __call__(self, model, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        encode = lambda texts: model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,  # noqa: E731
                                            show_progress_bar=False)
        predictions = self.predict(encode(self.train_texts), encode(self.eval_texts))
        scores = accuracy_and_macro_f1(self.eval_labels, predictions, num_classes=self.num_classes)
        scores = {key: scores[key] for key in ("accuracy", "macro_f1")}
        metrics = self.prefix_name_to_metrics(scores, self.name)
        logger.info("%s (epoch %s, steps %s): %s", type(self).__name__, epoch, steps, metrics)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics


class LabelPropagationEvaluator(_ClassificationEvaluator):
    r"""Accuracy and macro-F1 of labels predicted through the cosine kNN graph of the embeddings, as
    ``gloss evaluate``'s graph predictors do (:mod:`pipeline.evaluation.graph_predictors`).

    Args:
        train_texts, train_labels: labelled reference documents (integer class ids).
        eval_texts, eval_labels: the documents scored.
        mode (str, optional): ``"knn"`` (``clipped-cosine`` weighted vote of the k nearest references),
            ``"lpa"`` (label spreading over the references' kNN graph, then each scored text's neighbours'
            spread scores) or ``"transductive"`` (clamped propagation over the kNN graph of references and
            scored texts together). (default: ``"knn"``)
        k (int, optional): Neighbours per node. (default: :obj:`10`)
        name (str, optional): Prefix of the metric keys. (default: ``""``)
        batch_size (int, optional): Encoding batch size. (default: :obj:`32`)
        primary_metric (str, optional): ``"macro_f1"`` or ``"accuracy"``. (default: ``"macro_f1"``)
    """

    def __init__(self, train_texts, train_labels, eval_texts, eval_labels, *, mode: str = "knn", k: int = 10,
                 name: str = "", batch_size: int = 32, primary_metric: str = "macro_f1"):
        super().__init__(train_texts, train_labels, eval_texts, eval_labels, name=name, batch_size=batch_size,
                         primary_metric=primary_metric)
        if mode not in MODES:
            raise ValueError(f"Expected 'mode' to be one of {MODES} (got '{mode}')")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"Expected 'k' to be a positive integer (got {k!r})")
        self.mode, self.k = mode, k

    def predict(self, train_x: np.ndarray, eval_x: np.ndarray) -> np.ndarray:
        from pipeline.evaluation.graph_predictors import TrainingGraph, labels_of, transductive_scores

        graph = TrainingGraph(train_x, self.train_labels, self.num_classes)
        if self.mode == "transductive":
            scores = next(iter(transductive_scores(graph, eval_x, [self.k]).values()))  # [N_eval, C]
        else:
            weights, ids = graph.query(eval_x, self.k)
            k = ids.size(1)
            scores = graph.knn_scores(weights, ids, k) if self.mode == "knn" else graph.lpa_scores(weights, ids, k)
        return labels_of(scores, graph.majority)

    def get_config_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "k": self.k}


class LinearProbeEvaluator(_ClassificationEvaluator):
    r"""Accuracy and macro-F1 of a linear probe (scikit-learn's ``StandardScaler + LogisticRegression``, the
    probe of ``gloss evaluate``) fitted on the reference embeddings and applied to the scored ones.

    Args:
        train_texts, train_labels, eval_texts, eval_labels, name, batch_size, primary_metric: As in
            :class:`LabelPropagationEvaluator`.
        max_iter (int, optional): L-BFGS iterations. (default: :obj:`1000`)
        seed (int, optional): The estimator's ``random_state``. (default: :obj:`0`)
    """

    def __init__(self, train_texts, train_labels, eval_texts, eval_labels, *, max_iter: int = 1000, seed: int = 0,
                 name: str = "", batch_size: int = 32, primary_metric: str = "macro_f1"):
        super().__init__(train_texts, train_labels, eval_texts, eval_labels, name=name, batch_size=batch_size,
                         primary_metric=primary_metric)
        self.max_iter, self.seed = max_iter, seed

    def predict(self, train_x: np.ndarray, eval_x: np.ndarray) -> np.ndarray:
        from pipeline.evaluation.probe import linear_probe

        return linear_probe(train_x, self.train_labels, eval_x, self.eval_labels, num_classes=self.num_classes,
                            max_iter=self.max_iter, seed=self.seed)["predictions"]

    def get_config_dict(self) -> dict[str, Any]:
        return {"max_iter": self.max_iter}
