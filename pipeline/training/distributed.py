r"""Data-parallel fine-tuning on :mod:`torch.distributed`: ``torchrun --nproc-per-node N --no-python gloss train``.

Every rank holds the whole dataset and plans the same global batches (the plan is seeded by
``(seed, epoch)``); :func:`shard` gives rank ``r`` the ``r``-th contiguous part of each, so gathering the
shards in rank order (:func:`graphs.distributed.gather_rows`, which G-Loss, SupCon and LCL do) rebuilds the
single-process batch row for row. The trained modules run under
:class:`~torch.nn.parallel.DistributedDataParallel`, which averages gradients; rank 0 alone validates, writes
checkpoints, history, artifacts and manifests, and broadcasts what the others need to agree on (validation
scores, hence early stopping). Backends: gloo on a CPU, NCCL on CUDA (one GPU per rank, ``LOCAL_RANK``).

A rank that fails between two collectives would leave the others waiting in the next one (gloo then crashes,
NCCL hangs until its watchdog fires), so rank-local work agrees on failure before any rank raises:
:func:`together` wraps work every rank does on its own (a shard's checks, reading a checkpoint) and
:func:`from_main` work rank 0 does alone (validation, writing checkpoints); when any rank fails, every rank
stops with the same one-line error (the failed rank raises its own exception).

Multi-node runs need one filesystem that every rank sees at the same path (the run directory): rank 0 writes
the checkpoints (``best.pt``, ``last.pt``) and every rank reads them (to resume, and to end on the best epoch's
weights). :func:`require_shared_folder` checks this once before training starts: rank 0 writes a token file
and a rank that cannot read it refuses the run in one line.
"""

from __future__ import annotations

import atexit
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipeline.errors import GlossError

T = TypeVar("T")
SHARED_TOKEN = "shared-filesystem-token"  # the file require_shared_folder writes (and removes) in the folder

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


def _on_backend_device(tensor):
    """``tensor`` where the process group's backend reduces it (NCCL: the GPU)."""
    import torch.distributed as dist

    return tensor.cuda() if dist.get_backend() == "nccl" else tensor


def _one_line(error: BaseException) -> str:
    """The message the other ranks raise for ``error``: a ``GlossError``'s own line, else its type and text."""
    if isinstance(error, GlossError):
        return error.message
    return " ".join(f"{type(error).__name__}: {error}".split())


def raise_together(error: BaseException | None, ranks: Ranks) -> None:
    """Agree on failure: a collective every rank calls with the exception its own work raised, or ``None``.

    When any rank failed, every rank raises: a failed rank its own ``error``, the others a ``GlossError`` with
    the message of the lowest failed rank (naming the rank unless it was a ``GlossError``, whose line says what
    to do). Costs one small all-reduce when no rank failed."""
    if not ranks.active:
        if error is not None:
            raise error
        return
    import torch
    import torch.distributed as dist

    failed = _on_backend_device(torch.tensor([0 if error is None else 1], dtype=torch.int32))
    dist.all_reduce(failed)
    if int(failed.item()) == 0:
        return
    messages: list = [None] * ranks.world_size
    dist.all_gather_object(messages, None if error is None else (isinstance(error, GlossError), _one_line(error)))
    if error is not None:
        raise error
    rank, (user_error, message) = next((r, m) for r, m in enumerate(messages) if m is not None)
    raise GlossError(message if user_error else f"rank {rank} of {ranks.world_size} stopped: {message}")


@contextmanager
def together(ranks: Ranks) -> Iterator[None]:
    """``with together(ranks): ...`` runs rank-local work (no collectives inside), then
    :func:`raise_together`: when the block raised on any rank, it raises on every rank."""
    error = None
    try:
        yield
    except Exception as exc:  # every kind: a rank must not leave the others waiting in a collective
        error = exc
    raise_together(error, ranks)


def from_main(work: Callable[[], T], ranks: Ranks) -> T:
    """``work()`` run by rank 0 alone (validation, writing files), its result (picklable) on every rank; the
    others wait for it, so it is also a barrier. When it raises, every rank raises (as :func:`raise_together`)."""
    if not ranks.active:
        return work()
    import torch.distributed as dist

    result, error = None, None
    if ranks.main:
        try:
            result = work()
        except Exception as exc:
            error = exc
    box = [(result, None if error is None else (isinstance(error, GlossError), _one_line(error)))]
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    result, failure = box[0]
    if failure is not None:
        user_error, message = failure
        raise GlossError(message if user_error else f"rank 0 of {ranks.world_size} stopped: {message}")
    return result


def require_shared_folder(folder: Path, ranks: Ranks) -> None:
    """Refuse (on every rank, in one line) a data-parallel run whose ranks do not see one ``folder``: rank 0
    writes a random token into it and every rank must read it back; the token is removed after. A multi-node
    run needs its run directory on a filesystem every node mounts at the same path (rank 0 writes the
    checkpoints, every rank reads them). A ``folder`` that rank 0 does not have is not checked (nothing is
    created): what needs it says so."""
    if not ranks.active:
        return
    token_file = Path(folder) / SHARED_TOKEN

    def write_token() -> str | None:
        if not token_file.parent.is_dir():
            return None
        token = secrets.token_hex(16)
        token_file.write_text(token)
        return token

    token = from_main(write_token, ranks)
    if token is None:
        return
    try:
        with together(ranks):
            seen = token_file.read_text() if token_file.is_file() else None
            if seen != token:
                raise GlossError(
                    f"rank {ranks.rank} cannot see {token_file}, which rank 0 wrote: data-parallel training needs "
                    "the run directory on one filesystem that every process sees at the same path (a shared "
                    "filesystem on every node)")
    finally:  # every rank has looked (together is a collective)
        if ranks.main:
            token_file.unlink(missing_ok=True)


def sum_over_ranks(values: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """Each value summed over the ranks (float64), the same dict on every rank."""
    if not ranks.active or not values:
        return values
    import torch
    import torch.distributed as dist

    names = sorted(values)
    total = _on_backend_device(torch.tensor([values[n] for n in names], dtype=torch.float64))
    dist.all_reduce(total)
    return dict(zip(names, total.tolist(), strict=True))
