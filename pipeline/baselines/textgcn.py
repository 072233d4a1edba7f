r"""Training loop of the TextGCN baseline (`Yao et al., AAAI 2019 <https://arxiv.org/abs/1809.05679>`_).

:func:`train_textgcn` cleans the train, validation and test texts, builds the transductive document-word
graph over all of them (:mod:`graphs.text`), trains :class:`graphs.models.TextGCN` full-batch with Adam on
the training documents' cross-entropy and evaluates every epoch on the validation documents. Training stops
early, as in the paper, when the validation loss exceeds the mean of the previous ``early_stopping`` epochs'
validation losses. The reported test predictions are those of the epoch with the lowest validation loss
(``select="val_loss"``); the test scores at the stopping epoch (what the released TextGCN code prints) are
kept too. It returns everything in memory and writes nothing.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from graphs.models import TextGCN, TextGCNPyG
from graphs.text import TextGraph, build_text_graph, clean_corpus, cleaning_defaults

__all__ = [
    "TextGCNResult",
    "build_textgcn_graph",
    "stratified_val_split",
    "train_textgcn",
    "peak_rss_mb",
    "macro_f1",
]


def peak_rss_mb() -> float:
    r"""Peak resident memory of this process so far, in MiB (``ru_maxrss``; never decreases)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


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
    window_size: int = 20,
    pair_count: Literal["windows", "positions"] = "windows",
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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    r"""Macro-averaged F1 over the classes present in ``y_true`` or ``y_pred`` (integer ids).

    Same value as :func:`sklearn.metrics.f1_score` with ``average="macro", zero_division=0``, without its
    input validation (cheap enough to call every epoch).
    """
    labels, inverse = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = inverse[: len(y_true)], inverse[len(y_true) :]
    k = len(labels)
    tp = np.bincount(t[t == p], minlength=k).astype(float)
    denom = np.bincount(t, minlength=k) + np.bincount(p, minlength=k)  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1.mean())


def _encode(labels: Sequence[str], index: dict[str, int], name: str) -> torch.Tensor:
    unknown = sorted({str(y) for y in labels} - set(index))
    if unknown:
        raise ValueError(f"Expected '{name}' to use only training labels (got unseen {unknown[:5]})")
    return torch.tensor([index[str(y)] for y in labels], dtype=torch.long)


def train_textgcn(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    val_texts: Sequence[str],
    val_labels: Sequence[str],
    test_texts: Sequence[str],
    test_labels: Sequence[str],
    dataset_name: str,
    seed: int,
    epochs: int = 200,
    lr: float = 0.02,
    hidden: int = 200,
    dropout: float = 0.5,
    weight_decay: float = 0.0,
    early_stopping: int | None = 10,
    select: Literal["val_loss", "val_acc"] = "val_loss",
    window_size: int = 20,
    pair_count: Literal["windows", "positions"] = "windows",
    min_count: int | None = None,
    remove_stopwords: bool | None = None,
    backend: Literal["sparse", "pyg"] = "sparse",
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
        epochs (int, optional): Maximum epochs. (default: :obj:`200`)
        lr (float, optional): Adam learning rate. (default: :obj:`0.02`)
        hidden (int, optional): Hidden size. (default: :obj:`200`)
        dropout (float, optional): Hidden-layer dropout. (default: :obj:`0.5`)
        weight_decay (float, optional): L2 penalty on the first layer's weights, added to the loss as in
            the released code (:math:`\lambda \cdot \tfrac{1}{2}\lVert W_1 \rVert^2`). (default: :obj:`0`)
        early_stopping (int, optional): Window of the stopping rule; :obj:`None` or :obj:`0` trains all
            epochs. (default: :obj:`10`)
        select (str, optional): Epoch whose test predictions are reported: lowest ``"val_loss"`` or highest
            ``"val_acc"`` (ties: earliest). (default: :obj:`"val_loss"`)
        window_size (int, optional): PMI window. (default: :obj:`20`)
        pair_count (str, optional): PMI pair count, ``"windows"`` or ``"positions"``.
            (default: :obj:`"windows"`)
        min_count (int, optional): Overrides the dataset's minimum word count. (default: :obj:`None`)
        remove_stopwords (bool, optional): Overrides the dataset's stop-word removal. (default: :obj:`None`)
        backend (str, optional): ``"sparse"`` (:class:`~graphs.models.TextGCN`) or ``"pyg"``
            (:class:`~graphs.models.TextGCNPyG`). (default: :obj:`"sparse"`)
        graph (TextGraph, optional): A prebuilt graph of the same documents in the same order (reused across
            seeds; cleaning options are then ignored). (default: :obj:`None`)
        log_every (int, optional): Print a progress line every this many epochs (0: silent).
            (default: :obj:`0`)

    Returns:
        TextGCNResult: History, best epoch, test predictions / probabilities / scores, timings and memory.
    """
    if epochs < 1:
        raise ValueError(f"Expected 'epochs' to be at least 1 (got {epochs})")
    if select not in ("val_loss", "val_acc"):
        raise ValueError(f"Expected 'select' to be 'val_loss' or 'val_acc' (got {select!r})")
    if backend not in ("sparse", "pyg"):
        raise ValueError(f"Expected 'backend' to be 'sparse' or 'pyg' (got {backend!r})")
    for name, texts, labels in (
        ("train", train_texts, train_labels),
        ("val", val_texts, val_labels),
        ("test", test_texts, test_labels),
    ):
        if len(texts) != len(labels):
            raise ValueError(
                f"Expected '{name}_texts' and '{name}_labels' to match in length "
                f"(got {len(texts)} and {len(labels)})"
            )
        if len(texts) == 0:
            raise ValueError(f"Expected '{name}_texts' to be non-empty (got 0 documents)")

    classes = sorted({str(y) for y in train_labels})
    index = {c: i for i, c in enumerate(classes)}
    y_train = _encode(train_labels, index, "train_labels")
    y_val = _encode(val_labels, index, "val_labels")
    y_test = _encode(test_labels, index, "test_labels")
    n_tr, n_va, n_te = len(train_texts), len(val_texts), len(test_texts)
    tr_nodes = torch.arange(n_tr)
    va_nodes = torch.arange(n_tr, n_tr + n_va)
    te_nodes = torch.arange(n_tr + n_va, n_tr + n_va + n_te)

    clean_s = build_s = 0.0
    if graph is None:
        texts = [*train_texts, *val_texts, *test_texts]
        graph, clean_s, build_s = build_textgcn_graph(
            texts, dataset_name, min_count, remove_stopwords, window_size, pair_count
        )
    elif graph.num_docs != n_tr + n_va + n_te:
        raise ValueError(f"Expected 'graph' to have {n_tr + n_va + n_te} documents (got {graph.num_docs})")

    _seed_everything(seed)
    if backend == "sparse":
        adj = graph.to_torch_sparse(normalized=True)
        model: torch.nn.Module = TextGCN(graph.num_nodes, len(classes), hidden, dropout)
        first_weight = model.weight1
    else:
        adj = graph.to_torch_sparse(normalized=False)
        model = TextGCNPyG(graph.num_nodes, len(classes), hidden, dropout)
        first_weight = model.conv1.lin.weight
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    history: list[dict[str, float]] = []
    best_key, best_epoch = None, 0
    best_proba = last_proba = None
    train_t0 = time.perf_counter()
    h1 = model.first_layer(adj) if backend == "sparse" else None  # [N, h] shared by eval and next step
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        logits = model(adj, h1) if backend == "sparse" else model(adj)  # [N, C]
        loss = F.cross_entropy(logits[tr_nodes], y_train)
        if weight_decay > 0:
            loss = loss + weight_decay * 0.5 * first_weight.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        train_acc = float((logits[tr_nodes].argmax(-1) == y_train).float().mean())

        model.eval()
        if backend == "sparse":
            h1 = model.first_layer(adj)  # with the updated weights; its graph serves the next step
            with torch.no_grad():
                out = model(adj, h1.detach())
        else:
            with torch.no_grad():
                out = model(adj)
        with torch.no_grad():
            val_loss = float(F.cross_entropy(out[va_nodes], y_val))
            val_pred = out[va_nodes].argmax(-1).numpy()
            test_proba = torch.softmax(out[te_nodes], dim=-1).numpy()
        row = {
            "epoch": epoch,
            "train_loss": float(loss.detach()),
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": float(np.mean(y_val.numpy() == val_pred)),
            "val_macro_f1": macro_f1(y_val.numpy(), val_pred),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        key = val_loss if select == "val_loss" else -row["val_acc"]
        if best_key is None or key < best_key:
            best_key, best_epoch, best_proba = key, epoch, test_proba
        last_proba = test_proba
        if log_every and epoch % log_every == 0:
            print(
                f"[textgcn {dataset_name} seed={seed}] epoch {epoch:3d} train_loss={row['train_loss']:.4f} "
                f"val_loss={val_loss:.4f} val_acc={row['val_acc']:.4f} {row['seconds']:.2f}s",
                flush=True,
            )
        losses = [r["val_loss"] for r in history]
        if (
            early_stopping
            and epoch > early_stopping + 1
            and losses[-1] > np.mean(losses[-(early_stopping + 1) : -1])
        ):
            break
    train_s = time.perf_counter() - train_t0
    assert best_proba is not None and last_proba is not None

    y_true = y_test.numpy()
    best_pred = best_proba.argmax(-1)
    last_pred = last_proba.argmax(-1)
    return TextGCNResult(
        classes=classes,
        history=history,
        best_epoch=best_epoch,
        stopped_epoch=len(history),
        test_pred=[classes[i] for i in best_pred],
        test_proba=best_proba,
        test_accuracy=float(accuracy_score(y_true, best_pred)),
        test_macro_f1=float(f1_score(y_true, best_pred, average="macro", zero_division=0)),
        last_test_accuracy=float(accuracy_score(y_true, last_pred)),
        last_test_macro_f1=float(f1_score(y_true, last_pred, average="macro", zero_division=0)),
        seconds_per_epoch=float(np.mean([r["seconds"] for r in history])),
        train_seconds=train_s,
        graph_build_seconds=build_s,
        clean_seconds=clean_s,
        peak_memory_mb=peak_rss_mb(),
        num_nodes=graph.num_nodes,
        num_words=graph.num_words,
        num_edges=graph.num_edges,
        config={
            "dataset": dataset_name,
            "seed": seed,
            "epochs": epochs,
            "lr": lr,
            "hidden": hidden,
            "dropout": dropout,
            "weight_decay": weight_decay,
            "early_stopping": early_stopping,
            "select": select,
            "window_size": window_size,
            "pair_count": pair_count,
            "min_count": min_count,
            "remove_stopwords": remove_stopwords,
            "backend": backend,
        },
    )
