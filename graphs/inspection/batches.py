"""How well the batch graphs G-Loss trains on propagate labels: random batches, G-Loss's visible/hidden
split, the paper's dense Gaussian graph (:func:`graphs.edge_weights.dense_transition`, :math:`\\sigma` =
the ``"batch-sqrt"`` heuristic recomputed per batch) and the harmonic propagation it scores
(:func:`graphs.propagation.harmonic_label_propagation`). Only measures; every piece comes from
:mod:`graphs`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from graphs.edge_weights import dense_gaussian_kernel, dense_transition
from graphs.losses.g_loss import GLoss
from graphs.propagation import harmonic_label_propagation
from graphs.sigma import resolve_sigma

__all__ = ["gloss_batch_graphs", "BATCH_SIGMA"]

BATCH_SIGMA = "batch-sqrt"  # the sigma of every batch graph: the sqrt heuristic recomputed per batch


def _check_pool(x: Tensor, labels: Tensor, batch_size: int) -> int:
    if x.dim() != 2 or labels.shape != (x.size(0),):
        raise ValueError(f"Expected x [N, D] and labels [N] (got {list(x.shape)} and {list(labels.shape)})")
    size = min(batch_size, x.size(0))
    if size < 2:
        raise ValueError(f"Expected a batch of at least 2 rows (got {size})")
    return size


def _score_batch(xb: Tensor, yb: Tensor, visible: Tensor, num_classes: int, damping: float) -> dict[str, Any]:
    """The record of one batch: its ``batch-sqrt`` sigma, same-label transition mass and hidden accuracy."""
    hidden = ~visible
    sigma = resolve_sigma(BATCH_SIGMA, xb, sample=None)
    T = dense_transition(xb, sigma)  # [B, B]
    same = yb.unsqueeze(0) == yb.unsqueeze(1)  # [B, B]
    record: dict[str, Any] = {
        "size": int(yb.numel()),
        "classes": int(yb.unique().numel()),
        "hidden": int(hidden.sum()),
        "sigma": float(sigma),
        "same_label_mass": float((T * same).sum(-1).mean()),
        "accuracy": None,
        "accuracy_scorable": None,
    }
    if bool(hidden.any()) and bool(visible.any()):
        scores = harmonic_label_propagation(T, yb, visible, num_classes, eps=damping)  # [U, C]
        right = scores.argmax(-1) == yb[hidden]  # [U]
        scorable = torch.isin(yb[hidden], yb[visible])  # [U]
        record["accuracy"] = float(right.double().mean())
        if bool(scorable.any()):
            record["accuracy_scorable"] = float(right[scorable].double().mean())
    return record


def _example(xb: Tensor, yb: Tensor, visible: Tensor, sigma: float) -> dict[str, Any]:
    """A batch sorted by label with its dense Gaussian kernel, for drawing (tensors on CPU)."""
    order = torch.argsort(yb, stable=True)  # [B]
    return {
        "weight": dense_gaussian_kernel(xb[order], sigma).cpu(),  # [B, B]
        "labels": yb[order].cpu(),
        "visible": visible[order].cpu(),
        "sigma": float(sigma),
        "sigma_heuristic": BATCH_SIGMA,
    }


def _mean(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r[key] is not None]
    return float(sum(values) / len(values)) if values else None


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
    ``"batch-sqrt"`` heuristic, recomputed on every batch as G-Loss does with a heuristic sigma) gives the
    transition matrix :math:`\mathbf{T} = \mathrm{row}(\mathbf{D}^{-1/2}\mathbf{W}\mathbf{D}^{-1/2})` and
    the hidden rows are solved in closed form by :func:`~graphs.propagation.harmonic_label_propagation`.

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
        ``batches`` (per batch: ``size``, ``classes``, ``hidden``, ``sigma`` (its ``batch-sqrt`` value),
        ``accuracy`` on all hidden nodes, ``accuracy_scorable`` on hidden nodes whose class has a visible
        seed, ``same_label_mass``: mean share of a node's transition probability on nodes of its own label),
        their means, ``sigma_heuristic`` (``"batch-sqrt"``), and ``example`` (the first batch sorted by
        label: ``weight`` :math:`(B, B)` dense kernel, ``labels``, ``visible``; tensors, not JSON).

    Shapes:
        - **input:** x :math:`(N, D)`, labels :math:`(N)`
    """
    size = _check_pool(x, labels, batch_size)
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
        records.append(_score_batch(xb, yb, visible, c, damping))
        if example is None:
            example = _example(xb, yb, visible, records[-1]["sigma"])
    return {
        "num_batches": num_batches,
        "batch_size": size,
        "gamma": gamma,
        "graph": f"dense Gaussian, sigma = {BATCH_SIGMA} (recomputed per batch), harmonic propagation",
        "sigma_heuristic": BATCH_SIGMA,
        "accuracy": _mean(records, "accuracy"),
        "accuracy_scorable": _mean(records, "accuracy_scorable"),
        "same_label_mass": _mean(records, "same_label_mass"),
        "sigma": _mean(records, "sigma"),
        "batches": records,
        "example": example,
    }
