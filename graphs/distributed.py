r"""The global batch of a data-parallel run: every rank's rows, gathered in rank order.

Batch losses that compare rows with each other (G-Loss, SupCon, LCL) must see the whole global batch, not a
rank's shard of it. :func:`gather_rows` concatenates the shards of all ranks (shards may differ in size), with
gradients for the tensors that need them: the gather back-propagates by summing every rank's gradient of its
gathered copy (an ``all_reduce``) into the owner's rows. Every rank computes the same
loss of the global batch, so each rank's rows receive ``world_size`` times the gradient of one loss, and
:class:`~torch.nn.parallel.DistributedDataParallel`'s averaging of parameter gradients divides it back:
the parameters get exactly the gradient of the single-process loss on the concatenated batch.

Outside an initialised process group (or with one process) every function returns its input.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_rows", "is_distributed", "rank_and_world_size"]


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _shard_sizes(rows: int, device: torch.device) -> list[int]:
    """The row count of every rank's shard, in rank order."""
    size = torch.tensor([rows], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _padded(tensor: Tensor, rows: int) -> Tensor:
    """``tensor`` with zero rows appended up to ``rows`` (all_gather needs equal shapes)."""
    if tensor.size(0) == rows:
        return tensor
    padding = tensor.new_zeros((rows - tensor.size(0), *tensor.shape[1:]))
    return torch.cat([tensor, padding])


class _AllGather(torch.autograd.Function):
    """All ranks' equally shaped shards stacked ``[W, *]``; backward sums the gradients of every rank's copy
    (``all_reduce``) and returns this rank's slice."""

    @staticmethod
    def forward(ctx, shard: Tensor) -> Tensor:
        shards = [torch.empty_like(shard) for _ in range(dist.get_world_size())]
        dist.all_gather(shards, shard.contiguous())
        return torch.stack(shards)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def _gather_one(tensor: Tensor, sizes: list[int], with_grad: bool) -> Tensor:
    padded = _padded(tensor, max(sizes))
    if with_grad:
        shards = _AllGather.apply(padded)
    else:
        shards = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(shards, padded.detach().contiguous())
    return torch.cat([shard[:size] for shard, size in zip(shards, sizes, strict=True)])


def gather_rows(*tensors: Tensor | None, with_grad: tuple[bool, ...] | None = None) -> tuple[Tensor | None, ...]:
    r"""Every rank's rows of each tensor, concatenated in rank order (``None`` stays ``None``).

    ``with_grad[i]`` says whether tensor ``i`` is gathered differentiably (default: those that require grad);
    labels, row ids and masks are gathered without. All tensors of one call must have the same number of rows
    on a rank (one shard); different ranks may hold different numbers of rows (padded for the collective).
    Every rank must call this with the same tensors in the same order.

    Shapes:
        - **input:** tensors :math:`(B_r, *)` on rank :math:`r`
        - **output:** tensors :math:`(\sum_r B_r, *)`, the same on every rank
    """
    if not is_distributed():
        return tensors
    present = [t for t in tensors if t is not None]
    if not present:
        return tensors
    rows = present[0].size(0)
    if any(t.size(0) != rows for t in present):
        raise ValueError(f"Expected tensors with the same number of rows (got {[t.size(0) for t in present]})")
    flags = with_grad or tuple(t is not None and t.requires_grad for t in tensors)
    if len(flags) != len(tensors):
        raise ValueError(f"Expected {len(tensors)} 'with_grad' flags (got {len(flags)})")
    sizes = _shard_sizes(rows, present[0].device)
    return tuple(None if t is None else _gather_one(t, sizes, flag) for t, flag in zip(tensors, flags, strict=True))
