"""Seeded, stratified sampling: the validation split and ``--limit`` subsets.

Both work per class so that small classes behave predictably: a class with a single training document
cannot be split and stays whole in train (logged), which is what R52 needs (its smallest class has one
training document).
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger("gloss")


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (keep, holdout), holding out ``fraction`` of every class.

    Each class with ``n >= 2`` rows gives ``round(n * fraction)`` rows, at least 1 and at most ``n - 1``;
    a class with one row stays in ``keep``.

    Shapes:
        labels: [N] -> keep [N - H], holdout [H] (sorted row indices)
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"Expected 'fraction' in (0, 1) (got {fraction})")
    rng = np.random.default_rng(seed)
    holdout = []
    too_small = []
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        if len(rows) < 2:
            too_small.append(label)
            continue
        count = int(min(max(round(len(rows) * fraction), 1), len(rows) - 1))
        holdout.append(rng.choice(rows, size=count, replace=False))
    if too_small:
        logger.warning(
            "%d class(es) with a single training document cannot be stratified and stay in train: %s",
            len(too_small), ", ".join(map(str, too_small)),
        )
    held = np.sort(np.concatenate(holdout)) if holdout else np.array([], dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), held)
    return keep, held


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """At most ``size`` row indices, class proportions kept, every class keeping at least one row.

    Shapes:
        labels: [N] -> [min(N, size)] (sorted row indices)
    """
    if size <= 0:
        raise ValueError(f"Expected 'size' to be positive (got {size})")
    n = len(labels)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels.tolist()))
    rows_by_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = {c: max(1, int(np.floor(len(rows_by_class[c]) * size / n))) for c in classes}
    # Hand out what flooring left over to the classes with the largest remainders, then trim.
    leftover = size - sum(quota.values())
    if leftover > 0:
        remainders = sorted(classes, key=lambda c: -(len(rows_by_class[c]) * size / n - quota[c]))
        for c in remainders[:leftover]:
            quota[c] = min(quota[c] + 1, len(rows_by_class[c]))
    chosen = np.concatenate([rows_by_class[c][: quota[c]] for c in classes])
    if len(chosen) > size:
        chosen = rng.choice(chosen, size=size, replace=False)
    return np.sort(chosen)
