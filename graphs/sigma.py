"""Heuristics for the width :math:`\\sigma` of the Gaussian kernel of G-Loss, behind one entry point,
:func:`resolve_sigma`.

Two heuristics, ``"sqrt"`` (:func:`sigma_sqrt_median`) and ``"dicm"`` (:func:`sigma_dicm`). Computed once on a
corpus (e.g. the pre-trained train embeddings) they go by these names; recomputed on every batch of G-Loss
they are ``"batch-sqrt"`` and ``"batch-dicm"`` (:data:`BATCH_SIGMA_HEURISTICS`). The formula is the same:
:func:`resolve_sigma` applies it to the rows it is given.

A value below :data:`MIN_USEFUL_SIGMA` (``0.01``, the threshold of the released code) makes the kernel an
effectively 1-nearest-neighbour graph on unit-norm embeddings. :func:`sigma_with_fallback` resolves a
specification like :func:`resolve_sigma` and replaces such a heuristic value by a fallback (the ``"sqrt"``
heuristic by default), with a logged warning and a note for the caller's report.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "sigma_sqrt_median",
    "sigma_dicm",
    "resolve_sigma",
    "sigma_with_fallback",
    "DicmResult",
    "SIGMA_HEURISTICS",
    "BATCH_SIGMA_HEURISTICS",
    "MIN_USEFUL_SIGMA",
]

logger = logging.getLogger(__name__)

SIGMA_HEURISTICS = ("sqrt", "dicm")
BATCH_SIGMA_HEURISTICS = tuple(f"batch-{name}" for name in SIGMA_HEURISTICS)  # ("batch-sqrt", "batch-dicm")
DEFAULT_SAMPLE = 5000
MIN_SIGMA = 1e-6
# Below this width the Gaussian kernel of unit-norm embeddings is an effectively 1-NN graph; the released code
# (``main.py``: ``if args.sigma < 0.01``) replaces such a computed sigma by a fallback value.
MIN_USEFUL_SIGMA = 0.01


class DicmResult(NamedTuple):
    """The ``dicm`` width and the number of differently labelled pairs at distance exactly 0 it skipped."""

    sigma: float
    zero_distance_pairs: int


def _check_x(x: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"Expected 'x' to be two-dimensional (got {x.dim()} dimensions)")
    if x.size(0) < 2:
        raise ValueError(f"Expected 'x' to have at least two rows (got {x.size(0)})")


def _subsample(x: Tensor, labels: Tensor | None, sample: int | None,
               seed: int) -> tuple[Tensor, Tensor | None]:
    """At most :obj:`sample` rows drawn uniformly without replacement by a seeded generator."""
    if sample is None or x.size(0) <= sample:
        return x, labels
    if sample < 2:
        raise ValueError(f"Expected 'sample' to be at least 2 (got {sample})")
    perm = torch.randperm(x.size(0), generator=torch.Generator().manual_seed(seed))[:sample]
    perm = perm.to(x.device)
    return x[perm], None if labels is None else labels[perm]


@torch.no_grad()
def sigma_sqrt_median(x: Tensor, sample: int | None = DEFAULT_SAMPLE, seed: int = 0) -> float:
    r"""The G-Loss-SQRT heuristic of Sharma et al. (LoG 2025):

    .. math::
        \sigma = \sqrt{\operatorname{median}_{i < j} \lVert \mathbf{x}_i - \mathbf{x}_j \rVert / 3}

    computed on at most :obj:`sample` rows drawn with a seeded generator, and at least ``1e-6``.

    Args:
        x (Tensor): Embeddings.
        sample (int, optional): Largest number of rows used; :obj:`None` uses all.
            (default: :obj:`5000`)
        seed (int, optional): Seed of the subsample. (default: :obj:`0`)

    Shapes:
        - **input:** x :math:`(N, D)`
        - **output:** a Python float
    """
    _check_x(x)
    x, _ = _subsample(x.detach().float(), None, sample, seed)
    median = torch.pdist(x).median()  # lower median of the N (N - 1) / 2 distances
    return max(float(median / 3) ** 0.5, MIN_SIGMA)


@torch.no_grad()
def sigma_dicm(x: Tensor, labels: Tensor, sample: int | None = DEFAULT_SAMPLE, seed: int = 0,
               block_size: int = 1024, return_stats: bool = False) -> float | DicmResult:
    r"""The heuristic of the released G-Loss code: a third of the smallest non-zero distance between two
    differently labelled points,

    .. math::
        \sigma = \frac{1}{3} \min_{y_i \ne y_j,\ \mathbf{x}_i \ne \mathbf{x}_j}
        \lVert \mathbf{x}_i - \mathbf{x}_j \rVert

    computed on at most :obj:`sample` rows drawn with a seeded generator, and at least ``1e-6``.

    Distances are exact float64 differences (not the ``|a|^2 + |b|^2 - 2ab`` matmul form, which gives
    about ``2^-11`` instead of 0 for duplicate float32 rows): duplicate texts with different labels are at
    distance exactly 0, and those pairs are skipped (as the released code intends) and counted. When every
    differently labelled pair is at distance 0, the released code's fallback is used: a third of the median
    distance over all pairs.

    Args:
        x (Tensor): Embeddings.
        labels (Tensor): Integer class of every row.
        sample (int, optional): Largest number of rows used; :obj:`None` uses all.
            (default: :obj:`5000`)
        seed (int, optional): Seed of the subsample. (default: :obj:`0`)
        block_size (int, optional): Rows per block of the distance computation. (default: :obj:`1024`)
        return_stats (bool, optional): Return a :class:`DicmResult` ``(sigma, zero_distance_pairs)``
            instead of the float. (default: :obj:`False`)

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`
        - **output:** a Python float (or :class:`DicmResult`)
    """
    _check_x(x)
    if labels.dim() != 1 or labels.size(0) != x.size(0):
        raise ValueError(
            f"Expected 'labels' to be one-dimensional with {x.size(0)} entries "
            f"(got shape {list(labels.shape)})"
        )
    x, labels = _subsample(x.detach().double(), labels.to(x.device), sample, seed)
    if labels.unique().numel() < 2:
        raise ValueError("Expected 'labels' to contain at least two classes for the 'dicm' heuristic")
    best, zero_pairs = float("inf"), 0
    for start in range(0, x.size(0), block_size):
        dist = torch.cdist(x[start:start + block_size], x, compute_mode="donot_use_mm_for_euclid_dist")  # [b, N]
        cross = labels[start:start + block_size].unsqueeze(1) != labels.unsqueeze(0)  # [b, N]
        zero_pairs += int((cross & (dist == 0)).sum())
        candidates = dist[cross & (dist > 0)]
        if candidates.numel() > 0:
            best = min(best, float(candidates.min()))
    if best == float("inf"):  # every differently labelled pair coincides: the released code's median fallback
        logger.warning("sigma 'dicm': every differently labelled pair is at distance 0; using median / 3")
        best = float(torch.pdist(x).median())
    value = max(best / 3, MIN_SIGMA)
    return DicmResult(value, zero_pairs // 2) if return_stats else value


def resolve_sigma(spec: float | str, x: Tensor | None = None, labels: Tensor | None = None,
                  sample: int | None = DEFAULT_SAMPLE, seed: int = 0) -> float:
    r"""Turns a :math:`\sigma` specification into a number: a positive float is returned as is,
    ``"sqrt"`` / ``"batch-sqrt"`` call :func:`sigma_sqrt_median` and ``"dicm"`` / ``"batch-dicm"`` call
    :func:`sigma_dicm` on :obj:`x` (the corpus, or the batch, that the name refers to).

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`
        - **output:** a Python float
    """
    return _resolve(spec, x, labels, sample, seed).sigma


def _resolve(spec: float | str, x: Tensor | None, labels: Tensor | None, sample: int | None,
             seed: int) -> DicmResult:
    """:func:`resolve_sigma` with the count of skipped zero-distance pairs (0 unless ``dicm``)."""
    if isinstance(spec, str):
        if spec not in SIGMA_HEURISTICS + BATCH_SIGMA_HEURISTICS:
            raise ValueError(
                f"Expected 'sigma' to be a positive float or one of {SIGMA_HEURISTICS} "
                f"(per batch: {BATCH_SIGMA_HEURISTICS}) (got '{spec}')"
            )
        if x is None:
            raise ValueError(f"Expected 'x' to be given for sigma='{spec}'")
        if spec.removeprefix("batch-") == "sqrt":
            return DicmResult(sigma_sqrt_median(x, sample=sample, seed=seed), 0)
        if labels is None:
            raise ValueError(f"Expected 'labels' to be given for sigma='{spec}'")
        return sigma_dicm(x, labels, sample=sample, seed=seed, return_stats=True)
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise ValueError(
            f"Expected 'sigma' to be a positive float or one of {SIGMA_HEURISTICS} (got {spec!r})"
        )
    if not spec > 0 or spec == float("inf"):
        raise ValueError(f"Expected 'sigma' to be positive and finite (got {spec})")
    return DicmResult(float(spec), 0)


def sigma_with_fallback(spec: float | str, x: Tensor | None = None, labels: Tensor | None = None, *,
                        fallback: float | str = "sqrt", minimum: float = MIN_USEFUL_SIGMA,
                        sample: int | None = DEFAULT_SAMPLE, seed: int = 0) -> tuple[float, str | None]:
    r""":func:`resolve_sigma`, with the released code's guard: a *heuristic* value below :obj:`minimum`
    (an effectively 1-NN graph) is replaced by :obj:`fallback`, resolved on the same rows, and a warning is
    logged. A number given by the user is kept as is (it is a choice, not an estimate).

    The released code falls back to a user-given value (``--optuna_sigma``); the default here is the
    ``"sqrt"`` heuristic of the same rows.

    Args:
        spec (float or str): As in :func:`resolve_sigma`.
        x (Tensor, optional): The rows the heuristic is computed on.
        labels (Tensor, optional): Their classes (``dicm``).
        fallback (float or str, optional): Used when the heuristic is below :obj:`minimum`.
            (default: ``"sqrt"``)
        minimum (float, optional): The smallest useful value. (default: :data:`MIN_USEFUL_SIGMA`)
        sample, seed: As in :func:`resolve_sigma`.

    Returns:
        ``(value, note)``: the sigma to use and a one-line note (``None`` when no fallback applied, and when
        a ``dicm`` value skipped no zero-distance pair).

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`
    """
    value, zero_pairs = _resolve(spec, x, labels, sample, seed)
    skipped = f"; skipped {zero_pairs} zero-distance pairs of different labels" if zero_pairs else ""
    if not isinstance(spec, str) or value >= minimum:
        return value, (f"sigma '{spec}' = {value:.6g}{skipped}" if skipped else None)
    used = _resolve(fallback, x, labels, sample, seed).sigma
    note = (f"sigma '{spec}' = {value:.6g} is below {minimum} (an effectively 1-NN graph){skipped}; "
            f"using fallback '{fallback}' = {used:.6g}")
    logger.warning("%s", note)
    return used, note
