r"""Exact k-nearest-neighbour search and kNN graphs (FAISS or blocked torch matmul): the one corpus kNN
search of gloss (``gloss graph``, ``gloss evaluate``'s label propagation, ``gloss inspect``, G-Loss kNN batch
graphs and the memory bank).

Edge direction: every kNN graph here is in PyG's ``flow="source_to_target"`` convention. The edge
:math:`j \to i` exists for each of the :math:`k` nearest neighbours :math:`j` of node :math:`i`:
``edge_index[0]`` holds the neighbour (the source, which sends the message) and ``edge_index[1]`` the query
node (the target, which receives it). :func:`knn_edge_index` is the one place that turns ``[N, k]``
neighbour lists into such edges.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from typing import Any

import torch
from torch import Tensor

try:  # FAISS is a hard dependency of gloss, but keep the torch backend usable without it.
    import faiss
except ImportError:  # pragma: no cover - exercised only without faiss installed
    faiss = None

__all__ = ["knn_search", "knn_graph", "knn_edge_index", "resolve_backend", "faiss_gpu_available", "backend_info"]

logger = logging.getLogger(__name__)

METRICS = ("cosine", "ip", "l2")
BACKENDS = ("auto", "faiss", "torch")

# ``backend="auto"`` on CPU uses torch while ``Q * N`` stays below this and FAISS above it. Measured with
# faiss-cpu 1.15 / torch 2.13 on a 2-core AVX2 machine: torch's MKL matmul + topk is 2-4x faster than
# FAISS for Q <= 1024 against N = 100k, FAISS (no [Q, N] score matrix) is ~25% faster for Q = 4096.
AUTO_TORCH_MAX_PAIRS = 2**28
# Upper bound on the number of scores a torch block holds at once (4M floats = 16 MB in float32).
TORCH_BLOCK_ELEMENTS = 2**22

_gpu_resources: Any = None


def faiss_gpu_available() -> bool:
    """Whether the installed FAISS has GPU support and sees at least one GPU."""
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return False
    try:
        return faiss.get_num_gpus() > 0
    except Exception:  # pragma: no cover - defensive: broken CUDA runtime
        return False


def _check_inputs(queries: Tensor, database: Tensor, k: int, metric: str, backend: str) -> None:
    for name, t in (("queries", queries), ("database", database)):
        if t.dim() != 2:
            raise ValueError(f"Expected '{name}' to be two-dimensional (got {t.dim()} dimensions)")
    if queries.size(1) != database.size(1):
        raise ValueError(
            f"Expected 'queries' and 'database' to have the same feature dimension "
            f"(got {queries.size(1)} and {database.size(1)})"
        )
    if metric not in METRICS:
        raise ValueError(f"Expected 'metric' to be one of {METRICS} (got '{metric}')")
    if backend not in BACKENDS:
        raise ValueError(f"Expected 'backend' to be one of {BACKENDS} (got '{backend}')")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"Expected 'k' to be a positive integer (got {k!r})")


def _normalize_exclude(exclude: Tensor | None, exclude_self: bool, queries: Tensor,
                       database: Tensor) -> Tensor | None:
    """Returns the database rows to drop per query as ``[Q, m]`` long tensor, or ``None``."""
    num_queries = queries.size(0)
    if exclude_self:
        if exclude is not None:
            raise ValueError("Expected at most one of 'exclude_self' and 'exclude' to be set")
        if num_queries != database.size(0):
            raise ValueError(
                f"Expected 'queries' and 'database' to have the same number of rows when "
                f"'exclude_self=True' (got {num_queries} and {database.size(0)})"
            )
        return torch.arange(num_queries, device=queries.device).view(-1, 1)
    if exclude is None:
        return None
    if exclude.dim() == 1:
        exclude = exclude.view(-1, 1)
    if exclude.dim() != 2 or exclude.size(0) != num_queries:
        raise ValueError(
            f"Expected 'exclude' to have shape [Q] or [Q, m] with Q={num_queries} "
            f"(got {list(exclude.shape)})"
        )
    return exclude.to(device=queries.device, dtype=torch.long)


def backend_info() -> dict[str, Any]:
    """What the search can use here, for reports and checks: FAISS's version and module file (``None``
    when it cannot be imported) and whether it has GPU support with a visible GPU."""
    return {"faiss": getattr(faiss, "__version__", "unknown") if faiss is not None else None,
            "faiss_file": getattr(faiss, "__file__", None) if faiss is not None else None,
            "faiss_gpu": faiss_gpu_available()}


def _choose(backend: str, on_cuda: bool, pairs: int) -> str:
    """``"torch"``, ``"faiss"`` (CPU) or ``"faiss-gpu"`` for a search of ``pairs`` query-database pairs.

    CUDA tensors stay on their GPU: FAISS GPU when it is importable, torch top-k otherwise. An explicit
    ``backend="faiss"`` on CUDA tensors without FAISS GPU support raises instead of copying to the CPU.
    """
    if backend == "torch":
        return "torch"
    if on_cuda:
        if faiss_gpu_available():
            return "faiss-gpu"
        if backend == "faiss":
            raise RuntimeError(
                "'knn_search(backend=\"faiss\")' got CUDA tensors but FAISS has no GPU support here "
                f"(faiss: {'not installed' if faiss is None else 'CPU only'}); use backend='auto' or 'torch' "
                "for torch top-k on the GPU, or move the tensors to the CPU for faiss-cpu"
            )
        return "torch"
    if faiss is None:
        if backend == "faiss":
            raise ImportError(
                "'knn_search(backend=\"faiss\")' requires 'faiss'. Install it via 'pip install faiss-cpu'"
            )
        return "torch"
    if backend == "faiss":
        return "faiss"
    return "torch" if pairs <= AUTO_TORCH_MAX_PAIRS else "faiss"


def _pick_backend(backend: str, queries: Tensor, database: Tensor) -> str:
    on_cuda = queries.is_cuda or database.is_cuda
    chosen = _choose(backend, on_cuda, queries.size(0) * database.size(0))
    logger.debug("knn_search: backend=%s -> %s (%s)", backend, chosen, "cuda" if on_cuda else "cpu")
    return chosen


def resolve_backend(backend: str, x: Tensor) -> str:
    """The backend :func:`knn_search` runs for a graph over ``x`` (``"auto"`` resolved): on CUDA, FAISS GPU
    when importable (``"faiss-gpu"``), else torch top-k on the same GPU, never a copy to the CPU; on CPU,
    torch below a size threshold and FAISS above it (torch without FAISS).

    Shapes:
        - **input:** x :math:`(N, D)`
    """
    return _pick_backend(backend, x, x)


def _prepare(queries: Tensor, database: Tensor, metric: str) -> tuple[Tensor, Tensor]:
    if metric == "cosine":
        queries = torch.nn.functional.normalize(queries, dim=-1)
        database = torch.nn.functional.normalize(database, dim=-1)
    return queries, database


def _torch_search(queries: Tensor, database: Tensor, k: int, metric: str, exclude: Tensor | None,
                  block_size: int | None) -> tuple[Tensor, Tensor]:
    """Blocked exact search: at most ``TORCH_BLOCK_ELEMENTS`` scores exist at a time, and a running
    top-k is merged over database blocks, so memory is ``O(Q k)`` plus a constant."""
    num_queries, num_db = queries.size(0), database.size(0)
    largest = metric != "l2"
    fill = float("-inf") if largest else float("inf")
    block_q = block_size or min(num_queries, 1024)
    block_n = max(k, TORCH_BLOCK_ELEMENTS // block_q)
    db_sq = database.pow(2).sum(-1) if metric == "l2" else None  # [N]
    out_scores, out_index = [], []
    for q0 in range(0, num_queries, block_q):
        q = queries[q0:q0 + block_q]  # [b, D]
        q_sq = q.pow(2).sum(-1, keepdim=True) if db_sq is not None else None  # [b, 1]
        drop = None if exclude is None else exclude[q0:q0 + block_q]  # [b, m]
        best_val = best_idx = None
        for n0 in range(0, num_db, block_n):
            scores = q @ database[n0:n0 + block_n].t()  # [b, n]
            if db_sq is not None:
                scores = (q_sq - 2 * scores + db_sq[n0:n0 + block_n]).clamp_min_(0)  # [b, n]
            if drop is not None:
                local = drop - n0  # [b, m]
                r, c = ((local >= 0) & (local < scores.size(1))).nonzero(as_tuple=True)
                scores[r, local[r, c]] = fill
            val, idx = scores.topk(min(k, scores.size(1)), dim=1, largest=largest)  # [b, k]
            idx = idx + n0
            if best_val is not None:
                val, pos = torch.cat([best_val, val], 1).topk(k, dim=1, largest=largest)  # [b, k]
                idx = torch.cat([best_idx, idx], 1).gather(1, pos)  # [b, k]
            best_val, best_idx = val, idx
        out_scores.append(best_val)
        out_index.append(best_idx)
    return torch.cat(out_scores, dim=0), torch.cat(out_index, dim=0)


# FAISS's BLAS path scores [4096 queries x 1024 database rows] blocks by default; 4096 x 4096 blocks (64 MB of
# float32 scores) spend less time per row on the top-k heaps: 12% less wall time for 40k x 40k on 2 cores
# (results/bench_knn_blocks4096.jsonl gives the end-to-end numbers).
_FAISS_DATABASE_BLOCK = 4096


@contextlib.contextmanager
def _blas_blocks(database_rows: int):
    """Temporarily sets FAISS's database block size of brute-force search (a process-wide setting)."""
    previous = faiss.cvar.distance_compute_blas_database_bs
    faiss.cvar.distance_compute_blas_database_bs = database_rows
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_database_bs = previous


def _faiss_search(queries: Tensor, database: Tensor, k: int, metric: str, gpu: bool) -> tuple[Tensor, Tensor]:
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if gpu:  # pragma: no cover - needs faiss-gpu and a GPU
        # Lets faiss.knn_gpu take torch CUDA tensors directly, without copies.
        importlib.import_module("faiss.contrib.torch_utils")

        global _gpu_resources
        if _gpu_resources is None:
            _gpu_resources = faiss.StandardGpuResources()
        q = queries.float().contiguous()
        db = database.float().contiguous()
        dist, idx = faiss.knn_gpu(_gpu_resources, q, db, k, metric=faiss_metric, device=q.device.index or 0)
        return dist.to(queries.dtype), idx.long()
    if queries.is_cuda or database.is_cuda:  # _choose never gets here: no silent copy to the CPU
        raise RuntimeError("FAISS CPU search got CUDA tensors")
    # Exact brute force on CPU: the same kernels as IndexFlatIP / IndexFlatL2, without copying the
    # database into an index (the arrays below are views of the tensors when they are float32).
    q = queries.detach().cpu().float().contiguous().numpy()
    db = database.detach().cpu().float().contiguous().numpy()
    with _blas_blocks(database_rows=_FAISS_DATABASE_BLOCK):
        dist, idx = faiss.knn(q, db, k, metric=faiss_metric)
    return (torch.from_numpy(dist).to(device=queries.device, dtype=queries.dtype),
            torch.from_numpy(idx).to(device=queries.device, dtype=torch.long))


def _drop_excluded(scores: Tensor, index: Tensor, exclude: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Removes excluded ids from an over-fetched ``[Q, k + m]`` result, keeping the order of the rest."""
    hit = (index.unsqueeze(-1) == exclude.unsqueeze(1)).any(-1) | (index < 0)  # [Q, k + m]
    order = torch.sort(hit.to(torch.uint8), dim=1, stable=True).indices[:, :k]  # [Q, k]
    return scores.gather(1, order), index.gather(1, order)


@torch.no_grad()
def knn_search(
    queries: Tensor,
    database: Tensor,
    k: int,
    metric: str = "cosine",
    backend: str = "auto",
    exclude_self: bool = False,
    exclude: Tensor | None = None,
    block_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact k-nearest-neighbour search of every query row in a database, without gradients.

    Args:
        queries (Tensor): Query vectors.
        database (Tensor): Database vectors.
        k (int): Number of neighbours per query.
        metric (str, optional): ``"cosine"`` (similarity of L2-normalised copies, largest first),
            ``"ip"`` (raw inner product, largest first) or ``"l2"`` (squared Euclidean distance,
            smallest first). (default: ``"cosine"``)
        backend (str, optional): ``"faiss"`` (``faiss.knn`` on CPU, the brute-force kernels of
            ``IndexFlatIP`` / ``IndexFlatL2``; ``faiss.knn_gpu`` on torch CUDA tensors without copies
            when FAISS has GPU support), ``"torch"`` (blocked matmul + :meth:`~torch.Tensor.topk`, any
            device, at most ``2**22`` scores in memory at once) or ``"auto"`` (on CUDA: FAISS GPU when
            importable, else torch on the same GPU; on CPU: torch for small ``Q * N``, FAISS otherwise).
            CUDA tensors are never copied to the CPU: ``"faiss"`` on CUDA tensors without FAISS GPU
            support raises :class:`RuntimeError`. (default: ``"auto"``)
        exclude_self (bool, optional): For ``queries`` equal to ``database``, drop each query's own row.
            (default: :obj:`False`)
        exclude (Tensor, optional): Database row(s) each query must not return, shape ``[Q]`` or
            ``[Q, m]`` (entries outside ``[0, N)`` are ignored). (default: :obj:`None`)
        block_size (int, optional): Query rows per block of the torch backend. (default: up to 1024)

    Returns:
        (Tensor, Tensor): Scores (similarities, or squared distances for ``"l2"``) and long indices
        of the neighbours, both sorted best first.

    Shapes:
        - **input:** queries :math:`(Q, D)`, database :math:`(N, D)`
        - **output:** scores :math:`(Q, k)`, indices :math:`(Q, k)`
    """
    _check_inputs(queries, database, k, metric, backend)
    drop = _normalize_exclude(exclude, exclude_self, queries, database)
    available = database.size(0) - (drop.size(1) if drop is not None else 0)
    if k > available:
        raise ValueError(f"Expected 'k' to be at most {available} (got {k})")
    if queries.size(0) == 0:
        return queries.new_empty(0, k), torch.empty(0, k, dtype=torch.long, device=queries.device)

    queries, database = _prepare(queries.detach(), database.detach(), metric)
    chosen = _pick_backend(backend, queries, database)
    if chosen == "torch":
        return _torch_search(queries, database, k, metric, drop, block_size)

    fetch = k if drop is None else min(k + drop.size(1), database.size(0))
    scores, index = _faiss_search(queries, database, fetch, metric, gpu=chosen == "faiss-gpu")
    if drop is not None:
        scores, index = _drop_excluded(scores, index, drop, k)
    return scores, index


def knn_edge_index(neighbors: Tensor) -> Tensor:
    r"""The ``edge_index`` of ``[N, k]`` neighbour lists in PyG's ``source_to_target`` convention: the
    edge :math:`j \to i` for every neighbour :math:`j` listed by node :math:`i` (negative ids, FAISS's
    "none", are dropped).

    Shapes:
        - **input:** neighbors :math:`(N, k)`
        - **output:** edge_index :math:`(2, E)` long, ``E <= N k``, row 0 = source (neighbour), row 1 =
          target (the node whose list it is), sorted by target and, per target, nearest first
    """
    if neighbors.dim() != 2:
        raise ValueError(f"Expected 'neighbors' to be two-dimensional (got {neighbors.dim()} dimensions)")
    source = neighbors.reshape(-1).long()  # [N k]
    target = torch.arange(neighbors.size(0), device=neighbors.device).repeat_interleave(neighbors.size(1))
    keep = source >= 0  # [N k]
    return torch.stack([source[keep], target[keep]], dim=0)  # [2, E]


@torch.no_grad()
def knn_graph(x: Tensor, k: int, metric: str = "cosine", backend: str = "auto", loop: bool = False) -> Tensor:
    r"""Directed kNN graph of the rows of :obj:`x` in PyG convention: the edge :math:`j \to i` exists
    for each of the :obj:`k` nearest neighbours :math:`j` of node :math:`i`, so that message passing with
    ``flow="source_to_target"`` aggregates into every node from its :obj:`k` neighbours.

    Args:
        x (Tensor): Node features.
        k (int): Number of neighbours per node.
        metric (str, optional): ``"cosine"``, ``"ip"`` or ``"l2"``, see :func:`knn_search`.
            (default: ``"cosine"``)
        backend (str, optional): ``"auto"``, ``"faiss"`` or ``"torch"``. (default: ``"auto"``)
        loop (bool, optional): If :obj:`True`, a node may be its own neighbour (usually its first);
            otherwise its own row is excluded. (default: :obj:`False`)

    Shapes:
        - **input:** x :math:`(N, D)`
        - **output:** edge_index :math:`(2, N \cdot k)`, row 0 = source (neighbour), row 1 = target,
          sorted by target
    """
    if x.dim() != 2:
        raise ValueError(f"Expected 'x' to be two-dimensional (got {x.dim()} dimensions)")
    _, nbr = knn_search(x, x, k, metric=metric, backend=backend, exclude_self=not loop)  # [N, k]
    return knn_edge_index(nbr)  # [2, N * k]
