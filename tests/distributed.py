"""Runs a function in N local processes of one gloo process group (CPU), for the tests of data-parallel code.

``run_ranks(fn, 2, tmp_path, *args)`` spawns 2 processes; each initialises ``torch.distributed`` (gloo,
``127.0.0.1``, a free port, one torch thread), calls ``fn(rank, world_size, *args)`` and saves what it returns
with ``torch.save``; the parent returns the results in rank order. ``fn`` must be a module-level function.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, folder: str, fn, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    # a rank left waiting in a collective fails after 5 minutes instead of hanging the suite
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(minutes=5))
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_ranks(fn, world_size: int, folder: Path, *args) -> list:
    """``fn(rank, world_size, *args)`` on ``world_size`` gloo ranks; their return values, in rank order."""
    folder.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(world_size, free_port(), str(folder), fn, args), nprocs=world_size, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
