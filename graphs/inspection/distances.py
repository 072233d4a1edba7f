"""Pairwise distances of embeddings on a seeded sample, and the corpus kernel widths with a flag for a
degenerate one (the widths themselves come from :mod:`graphs.sigma`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from graphs.sigma import MIN_USEFUL_SIGMA, resolve_sigma, sigma_dicm

__all__ = ["distance_distribution", "sigma_report"]

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


@torch.no_grad()
def distance_distribution(x: Tensor, sample: int = 2000, seed: int = 0, bins: int = 60) -> dict[str, Any]:
    r"""Euclidean distances between all pairs of a seeded sample of at most :obj:`sample` rows.

    Args:
        x: Embeddings (pass L2-normalised rows to see the distances G-Loss works with).
        sample: Largest number of rows (:math:`s (s - 1) / 2` pairs).
        seed: Seed of the sample.
        bins: Bins of the histogram.

    Returns:
        ``sample``, ``pairs``, ``mean``, ``std``, ``quantiles`` (``p00`` .. ``p100``) and ``histogram``
        (``counts`` ``[bins]``, ``edges`` ``[bins + 1]``).

    Shapes:
        - **input:** x :math:`(N, D)`, :math:`N \ge 2`
    """
    if x.dim() != 2 or x.size(0) < 2:
        raise ValueError(f"Expected 'x' to have shape [N, D] with N >= 2 (got {list(x.shape)})")
    rows = x
    if x.size(0) > sample:
        perm = torch.randperm(x.size(0), generator=torch.Generator().manual_seed(seed))[:sample]
        rows = x[perm.to(x.device)]
    dist = torch.pdist(rows.double()).cpu().numpy()  # [s (s - 1) / 2]
    counts, edges = np.histogram(dist, bins=bins)
    qs = np.quantile(dist, QUANTILES)
    return {
        "sample": int(rows.size(0)),
        "pairs": int(dist.size),
        "mean": float(dist.mean()),
        "std": float(dist.std()),
        "quantiles": {f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }



@torch.no_grad()
def sigma_report(x: Tensor, labels: Tensor, seed: int = 0) -> dict[str, Any]:
    r"""The corpus kernel widths ``sqrt`` and ``dicm`` of :obj:`x` and whether either is degenerate.

    A width below :data:`graphs.sigma.MIN_USEFUL_SIGMA` makes the Gaussian kernel of unit-norm rows an
    effectively 1-NN graph (the released code replaces such a value); ``dicm`` skips differently labelled
    pairs at distance exactly 0 (duplicate texts) and the report counts them.

    Args:
        x: Embeddings (pass L2-normalised rows, as G-Loss sees them).
        labels: Class of every row.
        seed: Seed of the heuristics' subsample.

    Returns:
        ``sqrt``, ``dicm`` (``None`` with a single class), ``dicm_zero_distance_pairs``, ``min_useful``
        (the threshold) and ``degenerate`` (the names of the widths below it, e.g. ``["dicm"]``).

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`
    """
    sqrt = resolve_sigma("sqrt", x, seed=seed)
    dicm = sigma_dicm(x, labels, seed=seed, return_stats=True) if labels.unique().numel() > 1 else None
    values = {"sqrt": sqrt, "dicm": None if dicm is None else dicm.sigma}
    return {
        **values,
        "dicm_zero_distance_pairs": None if dicm is None else dicm.zero_distance_pairs,
        "min_useful": MIN_USEFUL_SIGMA,
        "degenerate": [name for name, v in values.items() if v is not None and v < MIN_USEFUL_SIGMA],
    }
