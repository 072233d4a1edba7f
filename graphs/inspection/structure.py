"""Structure of a kNN graph: edge homophily, degrees and hubs, weakly connected components and their label
purity, leave-one-out kNN-vote accuracy, and a snowball sample for drawing. Only measures; the graph itself
comes from :mod:`graphs.knn`.

Convention: edges are PyG ``source_to_target``, as :func:`graphs.knn.knn_edge_index` builds them:
``edges[0]`` is the neighbour (source), ``edges[1]`` the node whose neighbour list it is (target). Degrees are
named after the kNN relation ("node lists neighbour"): a node's *out-degree* is the number of neighbours it
lists (``k``, counted on ``edges[1]``), its *in-degree* is how often it is listed as someone's neighbour, its
k-occurrence (counted on ``edges[0]``), the usual hubness measure. Everything here is numpy/scipy on CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "edge_homophily",
    "node_degrees",
    "degree_stats",
    "component_ids",
    "component_purity",
    "knn_vote",
    "snowball_sample",
]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _as_numpy(a: Any) -> np.ndarray:
    """A numpy view of a numpy array, list or torch tensor (moved to CPU)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _num_classes(labels: np.ndarray, num_classes: int | None) -> int:
    seen = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        return seen
    if seen > num_classes:
        raise ValueError(f"Expected labels below num_classes={num_classes} (got {seen - 1})")
    return num_classes


def edge_homophily(edges: Any, labels: Any, num_classes: int | None = None) -> dict[str, Any]:
    r"""Share of edges joining two nodes of the same label, overall and per class of the node whose neighbour
    list the edge belongs to (the target).

    Besides the plain edge homophily :math:`h = |\{(u, v): y_u = y_v\}| / |E|` it reports the share a
    random graph would reach, :math:`\sum_c (n_c / N)^2`, and the class-insensitive homophily of Lim et
    al. (2021), :math:`\frac{1}{C - 1} \sum_c \max(0, h_c - n_c / N)`, which a majority class cannot inflate.

    Args:
        edges: ``[2, E]`` edges, row 0 = source (the neighbour), row 1 = target (the node).
        labels: class id of every node ``[N]``.
        num_classes: :math:`C` (default: largest label + 1).

    Returns:
        ``edge_homophily`` (``None`` without edges), ``edges``, ``per_class`` (``h_c``: share of the neighbours
        of class-``c`` nodes that are of class ``c``; ``None`` for a class without edges),
        ``edges_per_class``, ``class_share`` (``n_c / N``), ``random_baseline``, ``class_insensitive``.

    Shapes:
        - **input:** edges :math:`(2, E)`, labels :math:`(N)`
    """
    src, dst = _as_numpy(edges).astype(np.int64, copy=False)  # [E], [E]
    y = _as_numpy(labels).astype(np.int64, copy=False)  # [N]
    c = _num_classes(y, num_classes)
    same = y[src] == y[dst]  # [E]
    per_class_edges = np.bincount(y[dst], minlength=c)  # [C]
    per_class_same = np.bincount(y[dst], weights=same, minlength=c)  # [C]
    per_class = [float(s / n) if n else None for s, n in zip(per_class_same, per_class_edges, strict=True)]
    share = np.bincount(y, minlength=c) / max(len(y), 1)  # [C]
    gains = [max(0.0, h - s) for h, s in zip(per_class, share, strict=True) if h is not None]
    return {
        "edge_homophily": float(same.mean()) if len(same) else None,
        "edges": int(len(same)),
        "per_class": per_class,
        "edges_per_class": per_class_edges.tolist(),
        "class_share": share.tolist(),
        "random_baseline": float((share**2).sum()),
        "class_insensitive": float(sum(gains) / (c - 1)) if c > 1 else None,
    }


def node_degrees(edges: Any, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-degree (neighbours listed, on ``edges[1]``) and in-degree (times listed as a neighbour, the
    k-occurrence, on ``edges[0]``) of every node, for ``source_to_target`` edges.

    Shapes:
        - **input:** edges :math:`(2, E)`
        - **output:** out-degree :math:`(N)`, in-degree :math:`(N)`, int64
    """
    src, dst = _as_numpy(edges).astype(np.int64, copy=False)
    return np.bincount(dst, minlength=num_nodes), np.bincount(src, minlength=num_nodes)


def _describe(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"min": None, "mean": None, "max": None, "std": None, "quantiles": {}}
    qs = np.quantile(values, QUANTILES)
    return {
        "min": float(values.min()),
        "mean": float(values.mean()),
        "max": float(values.max()),
        "std": float(values.std()),
        "quantiles": {f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
    }


def degree_stats(out_degree: Any, in_degree: Any, hub_factor: float = 2.0, top: int = 10) -> dict[str, Any]:
    r"""Summaries of the degree distributions, and the hubs of the in-degree (k-occurrence).

    In a kNN graph every node has out-degree :math:`k`, while the in-degree varies: a *hub* is a node
    listed as a neighbour more than ``hub_factor`` times the mean degree (:math:`2k` by default), an
    *orphan* (anti-hub) is nobody's neighbour. The skewness of the in-degree is the usual measure of
    hubness (Radovanović et al., JMLR 2010); high-dimensional embeddings tend to have a long right tail.

    Args:
        out_degree: ``[N]`` out-degrees.
        in_degree: ``[N]`` in-degrees.
        hub_factor: hub threshold as a multiple of the mean degree.
        top: how many of the largest hubs to list.

    Returns:
        ``out`` and ``in`` (``min``, ``mean``, ``max``, ``std``, ``quantiles``), ``in_skewness``,
        ``hub_threshold``, ``hubs``, ``hub_share``, ``orphans``, ``top_hubs`` (``[node, in-degree]`` pairs).

    Shapes:
        - **input:** out_degree :math:`(N)`, in_degree :math:`(N)`
    """
    out_deg = _as_numpy(out_degree).astype(np.int64, copy=False)  # [N]
    in_deg = _as_numpy(in_degree).astype(np.int64, copy=False)  # [N]
    n = len(in_deg)
    mean = float(in_deg.mean()) if n else 0.0
    std = float(in_deg.std()) if n else 0.0
    skew = float(((in_deg - mean) ** 3).mean() / std**3) if std > 0 else 0.0
    threshold = hub_factor * mean
    hubs = in_deg > threshold  # [N]
    order = np.argsort(-in_deg, kind="stable")[:top]
    return {
        "out": _describe(out_deg),
        "in": _describe(in_deg),
        "in_skewness": skew,
        "hub_threshold": threshold,
        "hubs": int(hubs.sum()),
        "hub_share": float(hubs.mean()) if n else 0.0,
        "hub_edge_share": float(in_deg[hubs].sum() / max(in_deg.sum(), 1)),
        "orphans": int((in_deg == 0).sum()),
        "top_hubs": [[int(i), int(in_deg[i])] for i in order],
    }


def _adjacency(edges: Any, num_nodes: int, symmetric: bool) -> sp.csr_matrix:
    src, dst = _as_numpy(edges).astype(np.int64, copy=False)
    a = sp.csr_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(num_nodes, num_nodes))  # [N, N]
    return (a + a.T).tocsr() if symmetric else a


def component_ids(edges: Any, num_nodes: int) -> tuple[int, np.ndarray]:
    """Weakly connected components of a directed graph (= the components of its symmetrised graph).

    Shapes:
        - **input:** edges :math:`(2, E)`
        - **output:** the number of components, and the component id of every node :math:`(N)`
    """
    from scipy.sparse.csgraph import connected_components

    count, ids = connected_components(_adjacency(edges, num_nodes, False), directed=True, connection="weak")
    return int(count), ids.astype(np.int64)


def component_purity(component: Any, labels: Any, top: int = 10) -> dict[str, Any]:
    r"""Label purity of graph components: each component's share of its majority label.

    Args:
        component: component id of every node ``[N]`` (from :func:`component_ids`).
        labels: class id of every node ``[N]``.
        top: how many of the largest components to describe.

    Returns:
        ``components``, ``largest`` (nodes), ``singletons``, ``purity_weighted`` (size-weighted mean purity
        = share of nodes carrying their component's majority label), ``purity_mean`` (unweighted mean over
        components), ``pure_components`` (purity 1) and ``top`` (``size``, ``purity``, ``majority`` label
        of the largest components).

    Shapes:
        - **input:** component :math:`(N)`, labels :math:`(N)`
    """
    comp = _as_numpy(component).astype(np.int64, copy=False)  # [N]
    y = _as_numpy(labels).astype(np.int64, copy=False)  # [N]
    if comp.size == 0:
        return {
            "components": 0,
            "largest": 0,
            "singletons": 0,
            "purity_weighted": None,
            "purity_mean": None,
            "pure_components": 0,
            "top": [],
        }
    counts = sp.csr_matrix(
        (np.ones(len(y)), (comp, y)), shape=(int(comp.max()) + 1, int(y.max()) + 1)
    )  # [K, C]
    sizes = np.asarray(counts.sum(axis=1)).ravel()  # [K]
    majority_count = counts.max(axis=1).toarray().ravel()  # [K]
    majority = np.asarray(counts.argmax(axis=1)).ravel()  # [K]
    present = sizes > 0
    sizes, majority_count, majority = sizes[present], majority_count[present], majority[present]
    purity = majority_count / sizes  # [K]
    order = np.argsort(-sizes, kind="stable")[:top]
    return {
        "components": int(len(sizes)),
        "largest": int(sizes.max()),
        "singletons": int((sizes == 1).sum()),
        "purity_weighted": float(majority_count.sum() / sizes.sum()),
        "purity_mean": float(purity.mean()),
        "pure_components": int((purity == 1).sum()),
        "top": [
            {"size": int(sizes[i]), "purity": float(purity[i]), "majority": int(majority[i])} for i in order
        ],
    }


def knn_vote(neighbors: Any, labels: Any, num_classes: int | None = None) -> dict[str, Any]:
    r"""Leave-one-out kNN-vote classification: every node gets the majority label of its :math:`k`
    neighbours (itself excluded, as the lists of :func:`graphs.knn.knn_search` with ``exclude_self``).
    A tie goes to the tied class whose first member comes earliest in the neighbour list (the nearest).

    Args:
        neighbors: ``[N, k]`` neighbour ids, nearest first, never the node itself.
        labels: class id of every node ``[N]``.
        num_classes: :math:`C` (default: largest label + 1).

    Returns:
        ``accuracy``, ``macro_recall`` (mean over classes present of the per-class accuracy),
        ``per_class`` (accuracy of each class's nodes; ``None`` for an absent class), ``predictions``
        (int64 ``[N]``, not JSON; pop it before saving).

    Shapes:
        - **input:** neighbors :math:`(N, k)`, labels :math:`(N)`
    """
    nbr = _as_numpy(neighbors).astype(np.int64, copy=False)  # [N, k]
    y = _as_numpy(labels).astype(np.int64, copy=False)  # [N]
    n, k = nbr.shape
    if n != len(y):
        raise ValueError(f"Expected one neighbour list per label (got {n} lists and {len(y)} labels)")
    if n and (nbr.min() < 0 or nbr.max() >= n):
        raise ValueError("Expected every neighbour id to lie in [0, N)")
    c = _num_classes(y, num_classes)
    nl = y[nbr]  # [N, k] neighbour labels
    rows = np.arange(n)
    counts = np.zeros((n, c), dtype=np.int64)  # [N, C]
    np.add.at(counts, (np.repeat(rows, k), nl.reshape(-1)), 1)
    first = np.full((n, c), k, dtype=np.int64)  # [N, C] rank of the nearest neighbour of each class
    for r in range(k - 1, -1, -1):
        first[rows, nl[:, r]] = r
    predictions = (counts * (k + 1) + (k - first)).argmax(axis=1)  # [N]
    right = predictions == y  # [N]
    per_class_n = np.bincount(y, minlength=c)
    per_class_right = np.bincount(y, weights=right, minlength=c)
    per_class = [float(r / m) if m else None for r, m in zip(per_class_right, per_class_n, strict=True)]
    present = [v for v in per_class if v is not None]
    return {
        "accuracy": float(right.mean()) if n else None,
        "macro_recall": float(np.mean(present)) if present else None,
        "per_class": per_class,
        "predictions": predictions,
    }


def snowball_sample(
    edges: Any, num_nodes: int, size: int = 200, num_seeds: int = 10, seed: int = 0
) -> np.ndarray:
    """A connected-looking sample for drawing: breadth-first search over the symmetrised graph from
    ``num_seeds`` random nodes (neighbours visited in random order) until ``size`` nodes are reached; a
    fresh random seed is taken whenever the search runs dry. A uniform sample of a large kNN graph would
    hold almost no edges; this keeps local neighbourhoods whole.

    Shapes:
        - **input:** edges :math:`(2, E)`
        - **output:** :math:`(\\min(size, N))` sorted node ids
    """
    from collections import deque

    rng = np.random.default_rng(seed)
    size = min(size, num_nodes)
    adj = _adjacency(edges, num_nodes, True)  # [N, N]
    order = iter(rng.permutation(num_nodes))  # seeds, in random order
    taken = np.zeros(num_nodes, dtype=bool)
    chosen: list[int] = []
    queue: deque[int] = deque()

    def take(node: int) -> None:
        taken[node] = True
        chosen.append(node)
        queue.append(node)

    def take_seed() -> None:
        for node in order:
            if not taken[node]:
                take(int(node))
                return

    for _ in range(min(num_seeds, size)):
        take_seed()
    while len(chosen) < size:
        if not queue:
            take_seed()
            continue
        node = queue.popleft()
        for nb in rng.permutation(adj.indices[adj.indptr[node] : adj.indptr[node + 1]]):
            if len(chosen) >= size:
                break
            if not taken[nb]:
                take(int(nb))
    return np.sort(np.asarray(chosen, dtype=np.int64))
