"""Predict with the kNN graph of the embeddings instead of (or beside) the linear head, with k and the mixing
weight chosen on the validation split only.

Predictors (every score row is a class distribution ``[C]``; the label is its argmax):

==============================  ===========================================================================
``knn`` (inductive)             the ``clipped-cosine`` weighted vote of the k nearest training documents
``lpa`` (transductive)          clamped label propagation (Zhu and Ghahramani, 2002) over the kNN graph of
                                train + val + test: training labels clamped, val and test hidden
``lpa`` (inductive)             label spreading (Zhou et al., 2003; ``alpha_s = 0.9``, labels not clamped) over
                                the kNN graph of the training documents, then a new document's scores are the
                                weighted mean of its k nearest training documents' spread scores
``mix`` (either setting)        ``alpha * p_lpa + (1 - alpha) * p_head``, BertGCN's interpolation of its graph's
                                and its encoder's predictions; ``p_head`` is the softmax of the head's logits
==============================  ===========================================================================

Selection: ``k`` in :data:`K_CHOICES` (capped at what the graph holds) and ``alpha`` in :data:`ALPHA_CHOICES`
maximise the validation macro-F1; ties go to the smaller ``k``, then the smaller ``alpha``. Test embeddings
take part in the transductive graph (unlabelled, as TextGCN's test nodes do), but test labels are never an
input here: the functions of this module are not given them.

A document that no training document reaches (zero weights, or a graph component without a training node) is
given the most frequent training class; its ``lpa`` scores stay zero, so in ``mix`` the head decides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pipeline.evaluation.metrics import accuracy_and_macro_f1

K_CHOICES = (5, 10, 20, 50)
ALPHA_CHOICES = tuple(round(0.1 * i, 1) for i in range(11))
SPREAD_ALPHA = 0.9  # alpha_s of label spreading (Zhou et al.; scikit-learn's LabelSpreading default is 0.2)
PREDICTORS = ("head", "knn", "lpa", "mix")
SETTINGS = ("transductive", "inductive")
GRAPH_PREDICTORS = ("knn", "lpa-transductive", "lpa-inductive", "mix-transductive", "mix-inductive")


def predictor_key(predictor: str, setting: str) -> str:
    """The key of a predictor in a setting (``lpa``, ``inductive`` -> ``lpa-inductive``); ``head`` and ``knn``
    have one setting each and keep their name."""
    return predictor if predictor in ("head", "knn") else f"{predictor}-{setting}"


def setting_of(key: str) -> str:
    """``"transductive"`` or ``"inductive"`` of a predictor key (the head and the kNN vote are inductive)."""
    return "transductive" if key.endswith("-transductive") else "inductive"


def labels_of(scores: Tensor | np.ndarray, fallback: int) -> np.ndarray:
    """Argmax label ids of score rows ``[N, C]``; an all-zero row (nothing reached it) gets ``fallback``."""
    scores = torch.as_tensor(scores)
    reached = scores.sum(-1) > 0  # [N]
    return torch.where(reached, scores.argmax(-1), torch.full_like(reached, fallback, dtype=torch.long)).numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of head logits (log-probabilities give the probabilities back). Shapes: [N, C]."""
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=-1).numpy()


def _as_tensor(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def neighbours(queries: Tensor, database: Tensor, k: int, *, exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest database rows of every query (cosine, exact: :func:`graphs.knn.knn_search`) and their
    ``clipped-cosine`` edge weights. The database must be L2-normalised already (it is searched by inner
    product, so a large one is not copied per call). Shapes: queries [Q, D], database [N, D] -> [Q, k] each."""
    from graphs.edge_weights import knn_edge_weight
    from graphs.knn import knn_search

    queries = torch.nn.functional.normalize(queries, dim=-1)
    scores, ids = knn_search(queries, database, k, metric="ip", exclude_self=exclude_self)  # [Q, k] each
    return knn_edge_weight(scores, "cosine"), ids


@dataclass
class TrainingGraph:
    """The training documents as the inductive predictors use them: embeddings, labels, and the spread scores
    of label spreading over their kNN graph (computed once per ``k``, or given when they were saved).

    Args:
        x: training embeddings. Shapes: [N_train, D].
        y: training label ids. Shapes: [N_train].
        num_classes: C.
        spread: precomputed spread scores by ``k`` (``{k: [N_train, C]}``), e.g. read back from ``gloss evaluate``.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    spread: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y, dtype=np.int64)
        self._x = torch.nn.functional.normalize(_as_tensor(self.x), dim=-1)  # [N_train, D], unit rows
        self._own: tuple[Tensor, Tensor] | None = None  # the training graph's neighbour lists, at the largest k
        self.majority = int(np.bincount(self.y, minlength=self.num_classes).argmax())

    @property
    def size(self) -> int:
        return len(self.y)

    def query(self, x: np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        """Weights and ids of the ``k`` nearest training documents of new documents. Shapes: [Q, D] -> [Q, k]."""
        return neighbours(_as_tensor(x), self._x, min(k, self.size))

    def knn_scores(self, weights: Tensor, ids: Tensor, k: int) -> np.ndarray:
        """The kNN vote of the first ``k`` of each query's neighbours. Shapes: [Q, >=k] -> [Q, C]."""
        from graphs.propagation import neighbour_vote

        one_hot = torch.nn.functional.one_hot(torch.from_numpy(self.y), self.num_classes).double()  # [N_train, C]
        return neighbour_vote(one_hot, ids[:, :k], weights[:, :k]).numpy()

    def lpa_scores(self, weights: Tensor, ids: Tensor, k: int) -> np.ndarray:
        """Inductive label propagation: the weighted mean of the first ``k`` neighbours' spread scores.
        Shapes: [Q, >=k] -> [Q, C]."""
        from graphs.propagation import neighbour_vote

        return neighbour_vote(torch.from_numpy(self.spread_scores(k)), ids[:, :k], weights[:, :k]).numpy()

    def spread_scores(self, k: int) -> np.ndarray:
        """Label spreading (``alpha_s`` :data:`SPREAD_ALPHA`) over the ``k``-NN graph of the training documents.
        Shapes: -> [N_train, C] float64."""
        if k not in self.spread:
            from graphs.knn import knn_edge_index
            from graphs.propagation import graph_label_spreading

            k_graph = min(k, self.size - 1)
            if self._own is None or self._own[1].size(1) < k_graph:
                self._own = neighbours(self._x, self._x, k_graph, exclude_self=True)
            weights, ids = self._own[0][:, :k_graph], self._own[1][:, :k_graph]  # [N_train, k]
            self.spread[k] = graph_label_spreading(
                knn_edge_index(ids), weights.reshape(-1), torch.from_numpy(self.y),
                torch.ones(self.size, dtype=torch.bool), alpha=SPREAD_ALPHA, num_classes=self.num_classes,
            ).numpy()
        return self.spread[k]


def transductive_scores(graph: TrainingGraph, others: np.ndarray, ks: list[int]) -> dict[int, np.ndarray]:
    """Clamped propagation over the kNN graph of the training documents and ``others`` (val and test, or new
    documents), training labels clamped, ``others`` hidden; one search at the largest ``k``, sliced for the
    others. Shapes: others [M, D] -> {k: [M, C]}."""
    from graphs.propagation import knn_label_propagation

    x = torch.cat([graph._x, torch.nn.functional.normalize(_as_tensor(others), dim=-1)])  # [N, D], unit rows
    n = x.size(0)
    labels = torch.zeros(n, dtype=torch.long)  # [N]; rows of `others` are hidden, never read
    labels[:graph.size] = torch.from_numpy(graph.y)
    visible = torch.arange(n) < graph.size  # [N]
    ks = sorted({min(k, n - 1) for k in ks})
    weights, ids = neighbours(x, x, ks[-1], exclude_self=True)  # [N, k_max] each
    found = {}
    for k in ks:
        result = knn_label_propagation(x, labels, visible, neighbors=(weights[:, :k], ids[:, :k]),
                                       num_classes=graph.num_classes)
        found[k] = result["scores"][graph.size:].numpy()  # [M, C]
    return found


@dataclass
class Choice:
    """The predictor setting chosen on validation and its predictions.

    ``scores`` are the test rows' class distributions ``[N_test, C]``; ``val_accuracy``/``val_macro_f1`` the
    scores it was chosen by; ``k_given`` whether ``k`` was fixed by the user rather than chosen.
    """

    key: str
    k: int | None
    alpha: float | None
    k_given: bool
    val_accuracy: float
    val_macro_f1: float
    test_predictions: np.ndarray
    test_scores: np.ndarray

    def summary(self) -> dict[str, Any]:
        name, _, setting = self.key.partition("-")
        return {"predictor": name, "setting": setting or setting_of(self.key), "k": self.k, "k_given": self.k_given,
                "alpha": self.alpha, "val_accuracy": self.val_accuracy, "val_macro_f1": self.val_macro_f1}


def _best(candidates: list[tuple[int | None, float | None, np.ndarray, np.ndarray]], val_y: np.ndarray,
          fallback: int, num_classes: int) -> tuple[int | None, float | None, dict[str, float], np.ndarray]:
    """The candidate ``(k, alpha, val_scores, test_scores)`` with the highest val macro-F1, ties to the first
    (candidates come in increasing ``k``, then ``alpha``). Returns ``(k, alpha, val metrics, test_scores)``."""
    best = None
    for k, alpha, val_scores, test_scores in candidates:
        metrics = accuracy_and_macro_f1(val_y, labels_of(val_scores, fallback), num_classes=num_classes)
        if best is None or metrics["macro_f1"] > best[2]["macro_f1"]:
            best = (k, alpha, metrics, test_scores)
    return best


def choose_predictors(
    graph: TrainingGraph,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    *,
    head_val: np.ndarray | None = None,
    head_test: np.ndarray | None = None,
    k: int | None = None,
) -> dict[str, Choice]:
    """Every graph predictor (:data:`GRAPH_PREDICTORS`; ``mix`` only with the head's probabilities), with ``k``
    (and ``alpha``) chosen by validation macro-F1, and its test predictions. Test labels are not an input.

    Args:
        graph: the training documents.
        val_x, val_y: validation embeddings and labels. Shapes: [N_val, D], [N_val].
        test_x: test embeddings. Shapes: [N_test, D].
        head_val, head_test: the head's class probabilities. Shapes: [N_val, C], [N_test, C].
        k: a fixed ``k`` (recorded as given) instead of choosing one of :data:`K_CHOICES`.
    """
    ks = [k] if k is not None else list(K_CHOICES)
    inductive_ks = sorted({min(c, max(1, graph.size - 1)) for c in ks})
    both = np.concatenate([val_x, test_x])
    weights, ids = graph.query(both, max(inductive_ks))  # [N_val + N_test, k_max] each
    n_val = len(val_y)
    split = lambda s: (s[:n_val], s[n_val:])  # noqa: E731
    per_k: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {"knn": [], "lpa-inductive": [],
                                                                  "lpa-transductive": []}
    for c in inductive_ks:
        per_k["knn"].append((c, *split(graph.knn_scores(weights, ids, c))))
        per_k["lpa-inductive"].append((c, *split(graph.lpa_scores(weights, ids, c))))
    for c, scores in transductive_scores(graph, both, ks).items():
        per_k["lpa-transductive"].append((c, *split(scores)))

    found: dict[str, Choice] = {}
    for key, rows in per_k.items():
        found[key] = _choice(key, [(c, None, v, t) for c, v, t in rows], val_y, graph.majority, k is not None)
        if head_val is not None and head_test is not None and key != "knn":
            mixes = [(c, a, a * v + (1 - a) * head_val, a * t + (1 - a) * head_test)
                     for c, v, t in rows for a in ALPHA_CHOICES]
            mix_key = key.replace("lpa", "mix")
            found[mix_key] = _choice(mix_key, mixes, val_y, graph.majority, k is not None)
    return {key: found[key] for key in GRAPH_PREDICTORS if key in found}


def _choice(key: str, candidates: list, val_y: np.ndarray, fallback: int, k_given: bool) -> Choice:
    num_classes = candidates[0][2].shape[1]
    k, alpha, metrics, test_scores = _best(candidates, val_y, fallback, num_classes)
    return Choice(key, k, alpha, k_given, metrics["accuracy"], metrics["macro_f1"],
                  labels_of(test_scores, fallback), test_scores)
