"""Pairwise distances of embeddings on a seeded sample (the kernel widths themselves come from
:func:`graphs.sigma.resolve_sigma`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["distance_distribution"]

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

