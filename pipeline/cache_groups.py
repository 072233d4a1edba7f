"""Which splits share one entry of the shared cache, so that a dataset's expensive encodes happen once.

The validation split is carved from the training file with a seed (``gloss prepare --seed``,
``gloss run --split-seed``), so ``train`` and ``val`` hold different documents for every split seed while
their union is the same: the training file's documents. Cached encodes of ``train`` and ``val``
(:mod:`pipeline.encoder` pooled embeddings, :mod:`pipeline.training.partial` frozen-layer states) are
therefore stored as one entry of that union, its distinct texts in sorted order, and each split reads its
rows from it: every split seed of a dataset finds the entry the first one wrote. (A ``--limit`` slice is
drawn with the same seed, so sliced runs of different split seeds hold different documents and share
nothing.) Any other split (``test``) keeps an entry of its own texts in their order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import cache

__all__ = ["SHARED_SPLITS", "CacheGroup", "cache_groups", "earlier_entries"]

SHARED_SPLITS = ("train", "val")  # carved from one file: their union is the same for every split seed


@dataclass(frozen=True)
class CacheGroup:
    """The texts of one cache entry and where each split's documents sit among them.

    Args:
        texts (list[str]): the entry's texts, in the entry's order.
        rows (dict): split name -> the row of each of its documents in ``texts``.

    Shapes:
        texts: P strings; rows[split]: [N_split] int64 (values in [0, P))
    """

    texts: list[str]
    rows: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        """``train+val`` or ``test``: the splits it holds, for messages."""
        return "+".join(self.rows)


def cache_groups(texts: dict[str, list[str]]) -> list[CacheGroup]:
    """One group of the splits in :data:`SHARED_SPLITS` (their distinct texts, sorted) and one group per
    other split (its texts as they are), in the order of ``texts``.

    Shapes:
        texts: split name -> N_split strings -> groups whose ``rows`` cover every split once
    """
    shared = [split for split in texts if split in SHARED_SPLITS]
    groups = []
    for split in texts:
        if split in SHARED_SPLITS and split != shared[0]:
            continue
        if split not in SHARED_SPLITS:
            groups.append(CacheGroup(list(texts[split]), {split: np.arange(len(texts[split]), dtype=np.int64)}))
            continue
        union = sorted({text for name in shared for text in texts[name]})
        position = {text: row for row, text in enumerate(union)}
        rows = {name: np.fromiter((position[t] for t in texts[name]), dtype=np.int64, count=len(texts[name]))
                for name in shared}
        groups.append(CacheGroup(union, rows))
    return groups


def earlier_entries(kind: str, group: CacheGroup, texts: dict[str, list[str]],
                    parts_of: Callable[[list[str]], dict]) -> dict[str, Path] | None:
    """The entries of kind ``kind`` that versions before the shared entries wrote for each split of a shared
    ``group`` (split -> folder), used while the group's own entry is missing and every split has one; ``None``
    otherwise. ``parts_of(texts)`` gives the key parts of an entry of ``texts``."""
    if len(group.rows) < 2 or cache.lookup(kind, parts_of(group.texts)) is not None:
        return None
    found = {split: cache.lookup(kind, parts_of(texts[split])) for split in group.rows}
    return found if all(found.values()) else None
