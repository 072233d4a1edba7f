r"""Data-parallel fine-tuning on :mod:`torch.distributed`: ``torchrun --nproc-per-node N --no-python gloss train``.

Every rank holds the whole dataset and plans the same global batches (the plan is seeded by
``(seed, epoch)``); :func:`shard` gives rank ``r`` the ``r``-th contiguous part of each, so gathering the
shards in rank order (:func:`graphs.distributed.gather_rows`, which G-Loss, SupCon and LCL do) rebuilds the
single-process batch row for row. The trained modules run under
:class:`~torch.nn.parallel.DistributedDataParallel`, which averages gradients; rank 0 alone validates, writes
checkpoints, history, artifacts and manifests, and broadcasts what the others need to agree on (validation
scores, hence early stopping). Backends: gloo on a CPU, NCCL on CUDA (one GPU per rank, ``LOCAL_RANK``).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np

# Losses that gather the global batch (graphs.distributed); the others would see only a rank's shard.
GATHERING_LOSSES = ("ce", "gloss", "gloss+ce", "scl+ce", "lcl+ce")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a data-parallel run; ``Ranks()`` is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting ``WORLD_SIZE`` > 1) started this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current_ranks() -> Ranks:
    """The ranks of an initialised process group of more than one process, else ``Ranks()``."""
    from graphs.distributed import rank_and_world_size

    rank, world_size = rank_and_world_size()
    return Ranks(rank, world_size, int(os.environ.get("LOCAL_RANK", rank)))


def init_from_environment(device: str) -> Ranks:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...): gloo on a
    CPU, NCCL on CUDA with this rank's GPU selected. An already initialised group is used as it is."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return current_ranks()
    if not launched_by_torchrun():
        return Ranks()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    atexit.register(_leave)
    return current_ranks()


def _leave() -> None:
    """Leave the process group this module joined (at exit)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def cuda_device_of(ranks: Ranks, device: str) -> str:
    """``cuda:LOCAL_RANK`` for a CUDA data-parallel run (one GPU per rank), else ``device`` unchanged."""
    return f"cuda:{ranks.local_rank}" if ranks.active and device.startswith("cuda") else device


def shard(rows: np.ndarray, ranks: Ranks) -> np.ndarray:
    """Rank ``r``'s contiguous part of a global batch (sizes differ by at most one row)."""
    if not ranks.active:
        return rows
    return np.array_split(rows, ranks.world_size)[ranks.rank]


def broadcast(value, ranks: Ranks):
    """Rank 0's ``value`` (any picklable object), on every rank."""
    if not ranks.active:
        return value
    import torch.distributed as dist

    box = [value if ranks.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    if ranks.active:
        import torch.distributed as dist

        dist.barrier()


def sum_over_ranks(values: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """Each value summed over the ranks (float64), the same dict on every rank."""
    if not ranks.active or not values:
        return values
    import torch
    import torch.distributed as dist

    names = sorted(values)
    total = torch.tensor([values[n] for n in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":  # NCCL reduces GPU tensors only
        total = total.cuda()
    dist.all_reduce(total)
    return dict(zip(names, total.tolist(), strict=True))
