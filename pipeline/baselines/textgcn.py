r"""Training loop of the TextGCN baseline (`Yao et al., AAAI 2019 <https://arxiv.org/abs/1809.05679>`_).

:func:`train_textgcn` cleans the train, validation and test texts, builds the transductive document-word
graph over all of them (:mod:`graphs.text`), trains :class:`graphs.models.TextGCN` full-batch with Adam on
the training documents' cross-entropy and evaluates every epoch on the validation documents. Training stops
early, as in the paper, when the validation loss exceeds the mean of the previous ``early_stopping`` epochs'
validation losses. The reported test predictions are those of the epoch with the lowest validation loss
(``select="val_loss"``); the test scores at the stopping epoch (what the released TextGCN code prints) are
kept too. It returns everything in memory and writes nothing.

The steps of a run: :func:`_check_inputs`, :func:`_encode_splits` (class ids and node ids), the graph,
:func:`_build_model`, then :func:`_fit`: per epoch :func:`_run_epoch` (one optimiser step and one
evaluation pass), :meth:`_Selection.update` (the reported epoch) and :func:`should_stop` (the stopping
rule); finally :func:`_result`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import Tensor

from graphs.models import TextGCN, TextGCNPyG
from graphs.text import TextGraph, build_text_graph, clean_corpus, cleaning_defaults
from graphs.text.graph import PairCount
from pipeline import options
from pipeline.artifacts import SPLITS
from pipeline.evaluation.metrics import accuracy_and_macro_f1
from pipeline.resources import peak_rss_mb

__all__ = [
    "TextGCNConfig",
    "TextGCNResult",
    "build_textgcn_graph",
    "stratified_val_split",
    "train_textgcn",
    "should_stop",
    "macro_f1",
]

SELECTS = options.TEXTGCN_SELECTS
MODEL_BACKENDS = options.TEXTGCN_MODELS


def stratified_val_split(
    labels: Sequence[str],
    val_size: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Seeded stratified train / validation split of indices.

    :func:`sklearn.model_selection.train_test_split` with ``stratify=labels``; classes with a single
    example (R52 has one) cannot be stratified and always stay in train.

    Args:
        labels (Sequence[str]): Training labels ``[N]``.
        val_size (float, optional): Validation fraction. (default: :obj:`0.1`)
        seed (int, optional): ``random_state`` of the split. (default: :obj:`0`)

    Returns:
        (np.ndarray, np.ndarray): Sorted train indices and sorted validation indices.
    """
    if not 0.0 < val_size < 1.0:
        raise ValueError(f"Expected 'val_size' to lie in (0, 1) (got {val_size})")
    y = np.asarray(labels, dtype=object)
    values, counts = np.unique(y, return_counts=True)
    single = np.isin(y, values[counts < 2])
    idx = np.flatnonzero(~single)
    n_val = int(round(val_size * len(y)))
    tr, va = train_test_split(idx, test_size=n_val, stratify=y[idx], random_state=seed)
    tr = np.concatenate([tr, np.flatnonzero(single)])
    return np.sort(tr), np.sort(va)


@dataclass
class TextGCNConfig:
    r"""Hyperparameters of :func:`train_textgcn` (the paper's values by default).

    Args:
        epochs (int, optional): Maximum epochs. (default: :obj:`200`)
        lr (float, optional): Adam learning rate. (default: :obj:`0.02`)
        hidden (int, optional): Hidden size. (default: :obj:`200`)
        dropout (float, optional): Hidden-layer dropout. (default: :obj:`0.5`)
        weight_decay (float, optional): L2 penalty on the first layer's weights, added to the loss as in
            the released code (:math:`\lambda \cdot \tfrac{1}{2}\lVert W_1 \rVert^2`). (default: :obj:`0`)
        early_stopping (int, optional): Window of the stopping rule (:func:`should_stop`); :obj:`None` or
            :obj:`0` trains all epochs. (default: :obj:`10`)
        select (str, optional): Epoch whose test predictions are reported: lowest ``"val_loss"`` or highest
            ``"val_acc"`` (ties: earliest). (default: :obj:`"val_loss"`)
        window_size (int, optional): PMI window. (default: :obj:`20`)
        pair_count (str, optional): PMI pair count, ``"windows"`` or ``"positions"``.
            (default: :obj:`"windows"`)
        min_count (int, optional): Overrides the dataset's minimum word count. (default: :obj:`None`)
        remove_stopwords (bool, optional): Overrides the dataset's stop-word removal. (default: :obj:`None`)
        backend (str, optional): ``"sparse"`` (:class:`~graphs.models.TextGCN`) or ``"pyg"``
            (:class:`~graphs.models.TextGCNPyG`). (default: :obj:`"sparse"`)
    """

    epochs: int = options.GCN_EPOCHS
    lr: float = options.GCN_LR
    hidden: int = options.GCN_HIDDEN
    dropout: float = options.GCN_DROPOUT
    weight_decay: float = 0.0
    early_stopping: int | None = options.GCN_EARLY_STOPPING
    select: Literal["val_loss", "val_acc"] = options.TEXTGCN_SELECT
    window_size: int = options.GCN_WINDOW
    pair_count: PairCount = options.DEFAULT_PAIR_COUNT
    min_count: int | None = None
    remove_stopwords: bool | None = None
    backend: Literal["sparse", "pyg"] = options.TEXTGCN_MODEL

    def check(self) -> None:
        r"""``ValueError`` for a value :func:`train_textgcn` cannot use."""
        if self.epochs < 1:
            raise ValueError(f"Expected 'epochs' to be at least 1 (got {self.epochs})")
        if self.select not in SELECTS:
            raise ValueError(f"Expected 'select' to be 'val_loss' or 'val_acc' (got {self.select!r})")
        if self.backend not in MODEL_BACKENDS:
            raise ValueError(f"Expected 'backend' to be 'sparse' or 'pyg' (got {self.backend!r})")


@dataclass
class TextGCNResult:
    r"""Outcome of one TextGCN run (see :func:`train_textgcn`).

    ``history`` holds one dict per epoch: ``epoch`` (1-based), ``train_loss``, ``train_acc``, ``val_loss``,
    ``val_acc``, ``val_macro_f1`` and ``seconds`` (wall time of the epoch). Validation scores of epoch
    ``e`` are those of the weights after ``e`` optimiser steps; the train loss is that of the ``e``-th step.
    """

    classes: list[str]
    history: list[dict[str, float]]
    best_epoch: int
    stopped_epoch: int
    test_pred: list[str]
    test_proba: np.ndarray  # [N_test, C]
    test_accuracy: float
    test_macro_f1: float
    last_test_accuracy: float
    last_test_macro_f1: float
    seconds_per_epoch: float
    train_seconds: float
    graph_build_seconds: float
    clean_seconds: float
    peak_memory_mb: float
    num_nodes: int
    num_words: int
    num_edges: int
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        r"""JSON-friendly scalars (everything except the history, predictions and probabilities)."""
        out = asdict(self)
        for key in ("history", "test_pred", "test_proba"):
            out.pop(key)
        return out


def build_textgcn_graph(
    texts: Sequence[str],
    dataset_name: str,
    min_count: int | None = None,
    remove_stopwords: bool | None = None,
    window_size: int = options.GCN_WINDOW,
    pair_count: PairCount = options.DEFAULT_PAIR_COUNT,
) -> tuple[TextGraph, float, float]:
    r"""Cleans ``texts`` with the dataset's TextGCN defaults (overridable) and builds the graph.

    Returns:
        (TextGraph, float, float): The graph, the cleaning seconds and the graph build seconds.
    """
    opts = cleaning_defaults(dataset_name)
    if min_count is not None:
        opts["min_count"] = min_count
    if remove_stopwords is not None:
        opts["remove_stopwords"] = remove_stopwords
    t0 = time.perf_counter()
    docs = clean_corpus(texts, **opts)
    t1 = time.perf_counter()
    graph = build_text_graph(docs, window_size=window_size, pair_count=pair_count)
    graph.normalized_adjacency()
    return graph, t1 - t0, time.perf_counter() - t1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    r"""Macro-averaged F1 over the training label set ``range(num_classes)`` (integer ids); a class absent
    from both ``y_true`` and ``y_pred`` counts as 0.

    Same value as :func:`sklearn.metrics.f1_score` with ``labels=range(num_classes), average="macro",
    zero_division=0``, without its input validation (cheap enough to call every epoch).
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    tp = np.bincount(t[t == p], minlength=num_classes).astype(float)
    denom = np.bincount(t, minlength=num_classes) + np.bincount(p, minlength=num_classes)  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros(num_classes), where=denom > 0)
    return float(f1.mean())


def should_stop(val_losses: Sequence[float], early_stopping: int | None) -> bool:
    r"""TextGCN's stopping rule after epoch :math:`e` = ``len(val_losses)``: stop when :math:`e > w + 1` and
    the last validation loss exceeds the mean of the :math:`w` before it (:math:`w` = ``early_stopping``;
    :obj:`None` or :obj:`0` never stops)."""
    if not early_stopping or len(val_losses) <= early_stopping + 1:
        return False
    return bool(val_losses[-1] > np.mean(val_losses[-(early_stopping + 1) : -1]))


# --- the steps of train_textgcn ------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_inputs(texts: dict[str, Sequence[str]], labels: dict[str, Sequence[str]]) -> None:
    for name in SPLITS:
        if len(texts[name]) != len(labels[name]):
            raise ValueError(
                f"Expected '{name}_texts' and '{name}_labels' to match in length "
                f"(got {len(texts[name])} and {len(labels[name])})"
            )
        if len(texts[name]) == 0:
            raise ValueError(f"Expected '{name}_texts' to be non-empty (got 0 documents)")


def _encode(labels: Sequence[str], index: dict[str, int], name: str) -> Tensor:
    unknown = sorted({str(y) for y in labels} - set(index))
    if unknown:
        raise ValueError(f"Expected '{name}' to use only training labels (got unseen {unknown[:5]})")
    return torch.tensor([index[str(y)] for y in labels], dtype=torch.long)


@dataclass
class _Splits:
    """Class ids and graph node ids of each split; documents are nodes train, then val, then test."""

    classes: list[str]
    y: dict[str, Tensor]  # split -> [N_split] class ids
    nodes: dict[str, Tensor]  # split -> [N_split] node ids

    @property
    def num_docs(self) -> int:
        return sum(len(n) for n in self.nodes.values())


def _encode_splits(labels: dict[str, Sequence[str]]) -> _Splits:
    classes = sorted({str(y) for y in labels["train"]})
    index = {c: i for i, c in enumerate(classes)}
    y = {name: _encode(labels[name], index, f"{name}_labels") for name in SPLITS}
    nodes, start = {}, 0
    for name in SPLITS:
        nodes[name] = torch.arange(start, start + len(y[name]))
        start += len(y[name])
    return _Splits(classes, y, nodes)


class _Passes:
    r"""The training and evaluation forward passes of one model, chosen once before the loop.

    For :class:`~graphs.models.TextGCN` the evaluation pass's first-layer product :math:`\hat{A} W_1` (the
    costly one, computed with the updated weights) also serves the next training step.
    """

    def __init__(self, model: torch.nn.Module, adj: Tensor, first_weight: Tensor) -> None:
        self.model, self.adj, self.first_weight = model, adj, first_weight
        self.shared = isinstance(model, TextGCN)
        self.h1: Tensor | None = None  # [N, h] shared by an evaluation pass and the next training step

    def start(self) -> None:
        if self.shared:
            self.h1 = self.model.first_layer(self.adj)

    def train_logits(self) -> Tensor:
        return self.model(self.adj, self.h1) if self.shared else self.model(self.adj)  # [N, C]

    def eval_logits(self) -> Tensor:
        if self.shared:
            self.h1 = self.model.first_layer(self.adj)  # with the updated weights; its graph serves the next step
            with torch.no_grad():
                return self.model(self.adj, self.h1.detach())
        with torch.no_grad():
            return self.model(self.adj)


def _build_model(graph: TextGraph, num_classes: int, config: TextGCNConfig) -> _Passes:
    if config.backend == "sparse":
        model = TextGCN(graph.num_nodes, num_classes, config.hidden, config.dropout)
        return _Passes(model, graph.to_torch_sparse(normalized=True), model.weight1)
    model = TextGCNPyG(graph.num_nodes, num_classes, config.hidden, config.dropout)
    return _Passes(model, graph.to_torch_sparse(normalized=False), model.conv1.lin.weight)


def _run_epoch(
    epoch: int, passes: _Passes, optimizer: torch.optim.Optimizer, splits: _Splits, config: TextGCNConfig
) -> tuple[dict[str, float], np.ndarray]:
    """One optimiser step on the training documents, then an evaluation pass: the history record and the
    test probabilities ``[N_test, C]``."""
    t0 = time.perf_counter()
    y_train, y_val, train_nodes = splits.y["train"], splits.y["val"], splits.nodes["train"]
    passes.model.train()
    logits = passes.train_logits()  # [N, C]
    loss = F.cross_entropy(logits[train_nodes], y_train)
    if config.weight_decay > 0:
        loss = loss + config.weight_decay * 0.5 * passes.first_weight.pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    train_acc = float((logits[train_nodes].argmax(-1) == y_train).float().mean())

    passes.model.eval()
    out = passes.eval_logits()  # [N, C]
    with torch.no_grad():
        val_loss = float(F.cross_entropy(out[splits.nodes["val"]], y_val))
        val_pred = out[splits.nodes["val"]].argmax(-1).numpy()
        test_proba = torch.softmax(out[splits.nodes["test"]], dim=-1).numpy()
    record = {
        "epoch": epoch,
        "train_loss": float(loss.detach()),
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": float(np.mean(y_val.numpy() == val_pred)),
        "val_macro_f1": macro_f1(y_val.numpy(), val_pred, len(splits.classes)),
        "seconds": time.perf_counter() - t0,
    }
    return record, test_proba


@dataclass
class _Selection:
    """The reported epoch: lowest validation loss or highest validation accuracy (ties: earliest)."""

    select: str
    key: float | None = None
    epoch: int = 0
    proba: np.ndarray | None = None

    def update(self, record: dict[str, float], test_proba: np.ndarray) -> None:
        key = record["val_loss"] if self.select == "val_loss" else -record["val_acc"]
        if self.key is None or key < self.key:
            self.key, self.epoch, self.proba = key, int(record["epoch"]), test_proba


def _log_epoch(tag: str, record: dict[str, float]) -> None:
    print(
        f"[textgcn {tag}] epoch {record['epoch']:3d} train_loss={record['train_loss']:.4f} "
        f"val_loss={record['val_loss']:.4f} val_acc={record['val_acc']:.4f} {record['seconds']:.2f}s",
        flush=True,
    )


@dataclass
class _Fit:
    history: list[dict[str, float]]
    best: _Selection
    last_proba: np.ndarray  # [N_test, C] at the last epoch run
    seconds: float


def _fit(passes: _Passes, splits: _Splits, config: TextGCNConfig, log_every: int, tag: str) -> _Fit:
    """The epochs, until ``config.epochs`` or the stopping rule (:func:`should_stop`)."""
    optimizer = torch.optim.Adam(passes.model.parameters(), lr=config.lr)
    history: list[dict[str, float]] = []
    best = _Selection(config.select)
    last_proba = None
    started = time.perf_counter()
    passes.start()
    for epoch in range(1, config.epochs + 1):
        record, last_proba = _run_epoch(epoch, passes, optimizer, splits, config)
        history.append(record)
        best.update(record, last_proba)
        if log_every and epoch % log_every == 0:
            _log_epoch(tag, record)
        if should_stop([r["val_loss"] for r in history], config.early_stopping):
            break
    assert best.proba is not None and last_proba is not None
    return _Fit(history, best, last_proba, time.perf_counter() - started)


def _result(
    splits: _Splits, fit: _Fit, graph: TextGraph, clean_s: float, build_s: float, config: dict[str, Any]
) -> TextGCNResult:
    y_true = splits.y["test"].numpy()
    best_pred = fit.best.proba.argmax(-1)
    best_scores = accuracy_and_macro_f1(y_true, best_pred, num_classes=len(splits.classes))
    last_scores = accuracy_and_macro_f1(y_true, fit.last_proba.argmax(-1), num_classes=len(splits.classes))
    return TextGCNResult(
        classes=splits.classes,
        history=fit.history,
        best_epoch=fit.best.epoch,
        stopped_epoch=len(fit.history),
        test_pred=[splits.classes[i] for i in best_pred],
        test_proba=fit.best.proba,
        test_accuracy=best_scores["accuracy"],
        test_macro_f1=best_scores["macro_f1"],
        last_test_accuracy=last_scores["accuracy"],
        last_test_macro_f1=last_scores["macro_f1"],
        seconds_per_epoch=float(np.mean([r["seconds"] for r in fit.history])),
        train_seconds=fit.seconds,
        graph_build_seconds=build_s,
        clean_seconds=clean_s,
        peak_memory_mb=peak_rss_mb(),
        num_nodes=graph.num_nodes,
        num_words=graph.num_words,
        num_edges=graph.num_edges,
        config=config,
    )


def train_textgcn(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    val_texts: Sequence[str],
    val_labels: Sequence[str],
    test_texts: Sequence[str],
    test_labels: Sequence[str],
    dataset_name: str,
    seed: int,
    config: TextGCNConfig | None = None,
    *,
    graph: TextGraph | None = None,
    log_every: int = 0,
) -> TextGCNResult:
    r"""Trains and evaluates TextGCN on one split.

    The graph holds the documents in the order train, validation, test (documents first, then words). Labels
    are strings, mapped to class ids by the sorted set of training labels.

    Args:
        train_texts, train_labels: Training documents and labels.
        val_texts, val_labels: Validation documents and labels (e.g. :func:`stratified_val_split`).
        test_texts, test_labels: Test documents and labels.
        dataset_name (str): Chooses the cleaning defaults (:func:`graphs.text.cleaning_defaults`).
        seed (int): Seeds :mod:`random`, :mod:`numpy` and :mod:`torch` (model init and dropout).
        config (TextGCNConfig, optional): The hyperparameters. (default: :obj:`TextGCNConfig()`)
        graph (TextGraph, optional): A prebuilt graph of the same documents in the same order (reused across
            seeds; cleaning options are then ignored). (default: :obj:`None`)
        log_every (int, optional): Print a progress line every this many epochs (0: silent).
            (default: :obj:`0`)

    Returns:
        TextGCNResult: History, best epoch, test predictions / probabilities / scores, timings and memory.

    Example:
        >>> result = train_textgcn(tr_x, tr_y, va_x, va_y, te_x, te_y, "R8", seed=0,
        ...                        config=TextGCNConfig(epochs=30, hidden=16))  # doctest: +SKIP
    """
    config = TextGCNConfig() if config is None else config
    config.check()
    texts = dict(zip(SPLITS, (train_texts, val_texts, test_texts), strict=True))
    labels = dict(zip(SPLITS, (train_labels, val_labels, test_labels), strict=True))
    _check_inputs(texts, labels)
    splits = _encode_splits(labels)

    clean_s = build_s = 0.0
    if graph is None:
        graph, clean_s, build_s = build_textgcn_graph(
            [*train_texts, *val_texts, *test_texts], dataset_name, config.min_count, config.remove_stopwords,
            config.window_size, config.pair_count,
        )
    elif graph.num_docs != splits.num_docs:
        raise ValueError(f"Expected 'graph' to have {splits.num_docs} documents (got {graph.num_docs})")

    _seed_everything(seed)
    passes = _build_model(graph, len(splits.classes), config)
    fit = _fit(passes, splits, config, log_every, tag=f"{dataset_name} seed={seed}")
    return _result(splits, fit, graph, clean_s, build_s, {"dataset": dataset_name, "seed": seed, **asdict(config)})
