"""Epoch batch plans: shuffled, length-bucketed (dynamic padding), or class-balanced.

A plan is a list of index arrays, fully determined by ``(seed, epoch)``, so an interrupted run that
resumes at an epoch boundary sees exactly the batches it would have seen.
"""

from __future__ import annotations

import numpy as np

BUCKET_BATCHES = 50  # batches per length-sorted chunk


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def plan_batches(
    lengths: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    bucket: bool = True,
    balanced: bool = False,
    min_size: int = 2,
) -> list[np.ndarray]:
    """The batches of one epoch, as arrays of row indices.

    Args:
        lengths: [N] token counts (used when ``bucket``).
        labels: [N] class ids (used when ``balanced``).
        bucket: sort rows by length inside chunks of ``BUCKET_BATCHES`` batches so each batch pads little,
            then shuffle the batch order.
        balanced: build batches from same-class pairs so every class present in a batch has at least two
            examples (what graph and contrastive losses need).
        min_size: a batch smaller than this joins another (2: a one-document batch teaches pairwise losses
            nothing; a data-parallel run needs a row per rank, its ``world_size``): the last one of a shuffled
            plan joins the one before; in a balanced plan, any (a last pair, a class with one document) joins
            its neighbour.
    """
    if batch_size < 1:
        raise ValueError(f"Expected 'batch_size' to be positive (got {batch_size})")
    rng = epoch_rng(seed, epoch)
    n = len(labels)
    if balanced:
        batches = _merge_small(_pack(_same_class_groups(labels, rng), batch_size), min_size)
        return [batches[i] for i in rng.permutation(len(batches))]
    order = rng.permutation(n)
    if bucket:
        chunk = batch_size * BUCKET_BATCHES
        order = np.concatenate(
            [block[np.argsort(-lengths[block], kind="stable")] for block in np.array_split(order, max(1, -(-n // chunk)))]
        )
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < min_size:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _merge_small(batches: list[np.ndarray], min_size: int) -> list[np.ndarray]:
    """``batches`` in order, each one smaller than ``min_size`` joined to the batch before it (the first to the
    one after), unless it is the only one."""
    merged: list[np.ndarray] = []
    for batch in batches:
        if merged and (len(batch) < min_size or len(merged[-1]) < min_size):
            merged[-1] = np.concatenate([merged[-1], batch])
        else:
            merged.append(batch)
    return merged


def _same_class_groups(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Rows grouped into same-class pairs (a class with an odd count gives one triple), groups shuffled."""
    groups = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        if len(rows) < 2:
            groups.append(rows)
            continue
        pairs = [rows[i : i + 2] for i in range(0, len(rows) - len(rows) % 2, 2)]
        if len(rows) % 2:
            pairs[-1] = np.append(pairs[-1], rows[-1])
        groups.extend(pairs)
    return [groups[i] for i in rng.permutation(len(groups))]


def _pack(groups: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Fill batches with whole groups, in order, never splitting a group."""
    batches, current, size = [], [], 0
    for group in groups:
        if current and size + len(group) > batch_size:
            batches.append(np.concatenate(current))
            current, size = [], 0
        current.append(group)
        size += len(group)
    if current:
        batches.append(np.concatenate(current))
    return batches
