"""Heuristics for the width :math:`\\sigma` of the Gaussian kernel of G-Loss, behind one entry point,
:func:`resolve_sigma`.

Two heuristics, ``"sqrt"`` (:func:`sigma_sqrt_median`) and ``"dicm"`` (:func:`sigma_dicm`). Computed once on a
corpus (e.g. the pre-trained train embeddings) they go by these names; recomputed on every batch of G-Loss
they are ``"batch-sqrt"`` and ``"batch-dicm"`` (:data:`BATCH_SIGMA_HEURISTICS`). The formula is the same:
:func:`resolve_sigma` applies it to the rows it is given.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sigma_sqrt_median", "sigma_dicm", "resolve_sigma", "SIGMA_HEURISTICS", "BATCH_SIGMA_HEURISTICS"]

SIGMA_HEURISTICS = ("sqrt", "dicm")
BATCH_SIGMA_HEURISTICS = tuple(f"batch-{name}" for name in SIGMA_HEURISTICS)  # ("batch-sqrt", "batch-dicm")
DEFAULT_SAMPLE = 5000
MIN_SIGMA = 1e-6


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
               block_size: int = 1024) -> float:
    r"""The heuristic of the released G-Loss code: a third of the smallest distance between two
    differently labelled points,

    .. math::
        \sigma = \frac{1}{3} \min_{y_i \ne y_j} \lVert \mathbf{x}_i - \mathbf{x}_j \rVert

    computed on at most :obj:`sample` rows drawn with a seeded generator, and at least ``1e-6``.

    Args:
        x (Tensor): Embeddings.
        labels (Tensor): Integer class of every row.
        sample (int, optional): Largest number of rows used; :obj:`None` uses all.
            (default: :obj:`5000`)
        seed (int, optional): Seed of the subsample. (default: :obj:`0`)
        block_size (int, optional): Rows per block of the distance computation. (default: :obj:`1024`)

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`
        - **output:** a Python float
    """
    _check_x(x)
    if labels.dim() != 1 or labels.size(0) != x.size(0):
        raise ValueError(
            f"Expected 'labels' to be one-dimensional with {x.size(0)} entries "
            f"(got shape {list(labels.shape)})"
        )
    x, labels = _subsample(x.detach().float(), labels.to(x.device), sample, seed)
    if labels.unique().numel() < 2:
        raise ValueError("Expected 'labels' to contain at least two classes for the 'dicm' heuristic")
    best = torch.tensor(float("inf"), device=x.device)
    for start in range(0, x.size(0), block_size):
        dist = torch.cdist(x[start:start + block_size], x)  # [b, N]
        same = labels[start:start + block_size].unsqueeze(1) == labels.unsqueeze(0)  # [b, N]
        best = torch.minimum(best, dist.masked_fill(same, float("inf")).min())
    return max(float(best) / 3, MIN_SIGMA)


def resolve_sigma(spec: float | str, x: Tensor | None = None, labels: Tensor | None = None,
                  sample: int | None = DEFAULT_SAMPLE, seed: int = 0) -> float:
    r"""Turns a :math:`\sigma` specification into a number: a positive float is returned as is,
    ``"sqrt"`` / ``"batch-sqrt"`` call :func:`sigma_sqrt_median` and ``"dicm"`` / ``"batch-dicm"`` call
    :func:`sigma_dicm` on :obj:`x` (the corpus, or the batch, that the name refers to).

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`
        - **output:** a Python float
    """
    if isinstance(spec, str):
        if spec not in SIGMA_HEURISTICS + BATCH_SIGMA_HEURISTICS:
            raise ValueError(
                f"Expected 'sigma' to be a positive float or one of {SIGMA_HEURISTICS} "
                f"(per batch: {BATCH_SIGMA_HEURISTICS}) (got '{spec}')"
            )
        if x is None:
            raise ValueError(f"Expected 'x' to be given for sigma='{spec}'")
        if spec.removeprefix("batch-") == "sqrt":
            return sigma_sqrt_median(x, sample=sample, seed=seed)
        if labels is None:
            raise ValueError(f"Expected 'labels' to be given for sigma='{spec}'")
        return sigma_dicm(x, labels, sample=sample, seed=seed)
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise ValueError(
            f"Expected 'sigma' to be a positive float or one of {SIGMA_HEURISTICS} (got {spec!r})"
        )
    if not spec > 0 or spec == float("inf"):
        raise ValueError(f"Expected 'sigma' to be positive and finite (got {spec})")
    return float(spec)
