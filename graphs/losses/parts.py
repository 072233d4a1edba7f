"""The one return type of every loss in :mod:`graphs.losses`: a dict of named tensor parts.

Each loss returns its main part under a fixed name (``"g_loss"``, ``"scl"``, ``"triplet"``, ``"cosine"``).
A loss may add **statistics** about the batch (e.g. G-Loss's count of hidden nodes it could not score);
their names start with :data:`STATISTIC_PREFIX` (``"stat_"``), they are detached, and they are never
summed into a total: use :func:`loss_parts` / :func:`statistics` to tell the two apart.

Example::

    >>> out = {"g_loss": torch.tensor(0.7), "stat_unscored": torch.tensor(2)}
    >>> list(loss_parts(out)), list(statistics(out))
    (['g_loss'], ['stat_unscored'])
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["STATISTIC_PREFIX", "is_statistic", "loss_parts", "statistics"]

STATISTIC_PREFIX = "stat_"


def is_statistic(name: str) -> bool:
    """Whether a key of a loss's output is a statistic (reported, never summed into a total)."""
    return name.startswith(STATISTIC_PREFIX)


def loss_parts(out: dict[str, Tensor]) -> dict[str, Tensor]:
    """The parts of a loss's output that are losses (the ones a total may sum), in their order."""
    return {name: value for name, value in out.items() if not is_statistic(name)}


def statistics(out: dict[str, Tensor]) -> dict[str, Tensor]:
    """The statistics of a loss's output (keys starting with ``"stat_"``), in their order."""
    return {name: value for name, value in out.items() if is_statistic(name)}
