"""The batch graphs G-Loss trains on: random batches, the visible/hidden split, the paper's dense
Gaussian graph and the harmonic propagation it scores."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from graphs.edge_weights import dense_gaussian_kernel, dense_transition
from graphs.losses.g_loss import GLoss
from graphs.propagation import harmonic_label_propagation
from graphs.sigma import sigma_sqrt_median

__all__ = ["gloss_batch_graphs"]


@torch.no_grad()
def gloss_batch_graphs(
    x: Tensor,
    labels: Tensor,
    num_batches: int = 5,
    batch_size: int = 32,
    gamma: float = 0.6,
    seed: int = 0,
    num_classes: int | None = None,
    damping: float = 1e-6,
) -> dict[str, Any]:
    r"""Propagation accuracy on the hidden nodes of random G-Loss batches, as the loss sees them.

    Each batch is :obj:`batch_size` rows drawn without replacement (seeded); :meth:`GLoss.split` hides a
    share :math:`1 - \gamma` of every class; on the L2-normalised rows the dense Gaussian kernel
    :math:`W_{ij} = \exp(-\lVert x_i - x_j\rVert^2 / 2\sigma^2)` (zero diagonal, :math:`\sigma` = the
    ``sqrt`` heuristic of the batch, as ``GLoss(sigma="sqrt")``) gives the transition matrix
    :math:`\mathbf{T} = \mathrm{row}(\mathbf{D}^{-1/2}\mathbf{W}\mathbf{D}^{-1/2})` and the hidden rows
    are solved in closed form by :func:`~graphs.propagation.harmonic_label_propagation`.

    Args:
        x: Embeddings of the pool to draw from (the training split).
        labels: Class ids of the pool.
        num_batches: Number of batches.
        batch_size: Rows per batch (capped at the pool size).
        gamma: Share of visible nodes per class (G-Loss's :obj:`gamma`).
        seed: Seed of the batches and of the split.
        num_classes: :math:`C` (default: largest label + 1).
        damping: :math:`\epsilon` of the solve (as G-Loss).

    Returns:
        ``batches`` (per batch: ``size``, ``classes``, ``hidden``, ``sigma``, ``accuracy`` on all hidden
        nodes, ``accuracy_scorable`` on hidden nodes whose class has a visible seed, ``same_label_mass``:
        mean share of a node's transition probability on nodes of its own label), their means, and
        ``example`` (the first batch sorted by label: ``weight`` :math:`(B, B)` dense kernel, ``labels``,
        ``visible``; tensors, not JSON).

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`
    """
    if x.dim() != 2 or labels.shape != (x.size(0),):
        raise ValueError(f"Expected x [N, D] and labels [N] (got {list(x.shape)} and {list(labels.shape)})")
    size = min(batch_size, x.size(0))
    if size < 2:
        raise ValueError(f"Expected a batch of at least 2 rows (got {size})")
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    z = torch.nn.functional.normalize(x.double(), dim=-1)  # [N, D]
    labels = labels.to(z.device)
    splitter = GLoss(gamma=gamma, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    records, example = [], None
    for _ in range(num_batches):
        rows = torch.randperm(x.size(0), generator=generator)[:size].to(z.device)  # [B]
        xb, yb = z[rows], labels[rows]  # [B, D], [B]
        visible = splitter.split(yb)  # [B]
        hidden = ~visible
        sigma = sigma_sqrt_median(xb, sample=None)
        T = dense_transition(xb, sigma)  # [B, B]
        same = yb.unsqueeze(0) == yb.unsqueeze(1)  # [B, B]
        record: dict[str, Any] = {
            "size": size,
            "classes": int(yb.unique().numel()),
            "hidden": int(hidden.sum()),
            "sigma": float(sigma),
            "same_label_mass": float((T * same).sum(-1).mean()),
            "accuracy": None,
            "accuracy_scorable": None,
        }
        if bool(hidden.any()) and bool(visible.any()):
            scores = harmonic_label_propagation(T, yb, visible, c, eps=damping)  # [U, C]
            right = scores.argmax(-1) == yb[hidden]  # [U]
            scorable = torch.isin(yb[hidden], yb[visible])  # [U]
            record["accuracy"] = float(right.double().mean())
            if bool(scorable.any()):
                record["accuracy_scorable"] = float(right[scorable].double().mean())
        records.append(record)
        if example is None:
            order = torch.argsort(yb, stable=True)  # [B]
            W = dense_gaussian_kernel(xb[order], sigma)  # [B, B]
            example = {
                "weight": W.cpu(),
                "labels": yb[order].cpu(),
                "visible": visible[order].cpu(),
                "sigma": float(sigma),
            }

    def mean(key: str) -> float | None:
        values = [r[key] for r in records if r[key] is not None]
        return float(sum(values) / len(values)) if values else None

    return {
        "num_batches": num_batches,
        "batch_size": size,
        "gamma": gamma,
        "graph": "dense Gaussian, sigma = sqrt heuristic per batch, harmonic propagation",
        "accuracy": mean("accuracy"),
        "accuracy_scorable": mean("accuracy_scorable"),
        "same_label_mass": mean("same_label_mass"),
        "sigma": mean("sigma"),
        "batches": records,
        "example": example,
    }
