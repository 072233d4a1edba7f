"""A memory bank of detached embeddings and labels of a whole training set, searched exactly (FAISS/torch) or
with a FAISS inverted-file index kept current row by row."""

from __future__ import annotations

import logging
import math
import time

import torch
from torch import Tensor, nn

from graphs.knn import BACKENDS, faiss, knn_search

__all__ = ["MemoryBank", "default_nlist", "UNLABELLED", "NEVER_FILLED"]

logger = logging.getLogger(__name__)

INDEXES = ("flat", "ivf")
NEVER_FILLED = -1  # the label of a row that holds no embedding yet: never searched
UNLABELLED = -2  # the label of a filled row without a label: searched, never a seed
NPROBE = 8  # inverted lists visited per query by index="ivf"
# IVF k-means (FAISS's 10 iterations): default_nlist keeps at least IVF_MIN_POINTS_PER_LIST training rows per
# list, and FAISS subsamples (seeded) to IVF_TRAIN_POINTS_PER_LIST rows per list.
IVF_MIN_POINTS_PER_LIST = 39
IVF_TRAIN_POINTS_PER_LIST = 64
IVF_SEED = 1234


def default_nlist(num_rows: int) -> int:
    """Inverted lists of an IVF index over ``num_rows`` rows: ``4 sqrt(N)``, at most ``N / 39`` (so k-means has
    39 training rows per list), at least 1."""
    return max(1, min(int(4 * math.sqrt(num_rows)), num_rows // IVF_MIN_POINTS_PER_LIST))


class MemoryBank(nn.Module):
    r"""Detached embeddings and labels of every row of a training set, the labelled seeds of the
    ``graph="bank"`` mode of :class:`~graphs.losses.GLoss` (in the spirit of the memory bank of Wu et al.,
    "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018).

    Rows may also hold *unlabelled* documents (label :data:`UNLABELLED`, e.g. the test split, as TextGCN's
    graph holds its test nodes): they are filled and searched like the others, so propagation passes
    through them, but :attr:`labelled` is ``False`` for them and G-Loss never makes them seeds or scores them.

    Refresh it with :meth:`fill` (e.g. once per epoch, from a full encoding pass), keep it current with
    :meth:`update` after each batch, and query it with :meth:`search`, which never returns the rows in
    ``exclude`` (a batch's own rows, whose stale copies would leak their labels). Rows that were never
    filled are never returned. With ``metric="cosine"`` the rows are stored L2-normalised, so a search
    is a plain inner product over the stored tensor (no copy of the bank).

    ``index="ivf"`` searches an approximate FAISS ``IndexIVFFlat`` instead (inner product for cosine,
    squared L2 for l2), keyed by bank row id (``add_with_ids``, a hash-table direct map so ``remove_ids``
    costs the batch, not the bank). It holds a second copy of the filled rows; it is trained (k-means on
    at most ``64 * nlist`` rows) and filled at the first search after :meth:`fill`, or by
    :meth:`build_index`, and :meth:`update` moves each updated row (``remove_ids``, then ``add_with_ids``;
    or ``add_core`` under the nearest lists the preceding search computed, when the rows are its queries).
    A search over-fetches ``k + m`` ids and drops the excluded ones; a query whose probed lists hold
    fewer than :obj:`k` usable rows is answered by exact search. Scores stay exact (cosine similarity
    or squared distance of the stored rows); only which rows are found is approximate. HNSW is not
    offered: FAISS's HNSW indexes cannot remove rows, so they cannot follow :meth:`update`. On CUDA
    storage the index is not used: the search stays exact on the GPU (FAISS GPU brute force when
    importable, else torch top-k), where 1M rows take milliseconds.

    .. math::
        \mathcal{N}_k(\mathbf{q}) = \operatorname{top-}k_{\, r \notin \mathrm{exclude}}
        \cos(\mathbf{q}, \mathbf{m}_r)

    Args:
        size (int): Number of rows (the size of the training set).
        dim (int): Embedding dimension.
        metric (str, optional): ``"cosine"`` or ``"l2"``. (default: ``"cosine"``)
        backend (str, optional): Search backend of :func:`~graphs.knn.knn_search`. (default: ``"auto"``)
        dtype (torch.dtype, optional): Storage type. (default: :obj:`torch.float32`)
        index (str, optional): ``"flat"`` (exact search) or ``"ivf"`` (FAISS ``IndexIVFFlat`` on CPU
            storage). (default: ``"flat"``)
        nlist (int, optional): Inverted lists of ``"ivf"``; :obj:`None` for :func:`default_nlist` of the
            filled rows (always at most the number of filled rows). (default: :obj:`None`)
        nprobe (int, optional): Lists visited per query by ``"ivf"``. (default: ``8``)

    Shapes:
        - **storage:** embeddings :math:`(S, D)`, labels :math:`(S)` (``-1`` = never filled, ``-2`` = unlabelled)
        - **search:** queries :math:`(Q, D)`, exclude :math:`(Q)` or :math:`(Q, m)`
          :math:`\to` scores :math:`(Q, k)`, indices :math:`(Q, k)`
    """

    embeddings: Tensor
    labels: Tensor

    def __init__(self, size: int, dim: int, metric: str = "cosine", backend: str = "auto",
                 dtype: torch.dtype = torch.float32, *, index: str = "flat", nlist: int | None = None,
                 nprobe: int = NPROBE):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"Expected 'size' and 'dim' to be positive (got {size} and {dim})")
        if metric not in ("cosine", "l2"):
            raise ValueError(f"Expected 'metric' to be one of ('cosine', 'l2') (got '{metric}')")
        if backend not in BACKENDS:
            raise ValueError(f"Expected 'backend' to be one of {BACKENDS} (got '{backend}')")
        if index not in INDEXES:
            raise ValueError(f"Expected 'index' to be one of {INDEXES} (got '{index}')")
        for name, value in (("nlist", nlist), ("nprobe", nprobe)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Expected '{name}' to be a positive integer (got {value!r})")
        self.size, self.dim, self.metric, self.backend = size, dim, metric, backend
        self.index, self.nlist, self.nprobe = index, nlist, nprobe
        self._ivf = self._quantizer = None  # the FAISS index of index="ivf", (re)built lazily after fill()
        self._last_lists = None  # (queries [Q, D], nearest list [Q]) of the last ivf search, for update()
        self.last_build_s: float | None = None  # seconds the last IVF training + filling took
        self.register_buffer("embeddings", torch.zeros(size, dim, dtype=dtype), persistent=False)
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long), persistent=False)

    def __len__(self) -> int:
        return self.size

    @property
    def filled(self) -> Tensor:
        """Boolean mask of the rows that hold an embedding (labelled or not). Shapes: [S]."""
        return self.labels != NEVER_FILLED

    @property
    def labelled(self) -> Tensor:
        """Boolean mask of the rows with a label (the seeds). Shapes: [S]."""
        return self.labels >= 0

    @property
    def num_filled(self) -> int:
        return int(self.filled.sum())

    def _prepare(self, embeddings: Tensor) -> Tensor:
        embeddings = embeddings.detach().to(device=self.embeddings.device, dtype=self.embeddings.dtype)
        if self.metric == "cosine":
            embeddings = nn.functional.normalize(embeddings, dim=-1)
        return embeddings

    def _check_rows(self, embeddings: Tensor, labels: Tensor | None, indices: Tensor | None) -> None:
        if embeddings.dim() != 2:
            raise ValueError(
                f"Expected 'embeddings' to be two-dimensional (got {embeddings.dim()} dimensions)"
            )
        if embeddings.size(1) != self.dim:
            raise ValueError(f"Expected 'embeddings' to have {self.dim} columns (got {embeddings.size(1)})")
        n = embeddings.size(0)
        for name, t in (("labels", labels), ("indices", indices)):
            if t is not None and (t.dim() != 1 or t.size(0) != n):
                raise ValueError(f"Expected '{name}' to have shape [{n}] (got {list(t.shape)})")
        if indices is not None and n > 0 and (int(indices.min()) < 0 or int(indices.max()) >= self.size):
            raise ValueError(f"Expected 'indices' to lie in [0, {self.size}) (got {int(indices.min())}.."
                             f"{int(indices.max())})")
        if labels is not None and n > 0 and bool(((labels < 0) & (labels != UNLABELLED)).any()):
            raise ValueError(f"Expected 'labels' to be non-negative, or {UNLABELLED} for unlabelled rows "
                             f"(got {int(labels.min())})")

    @torch.no_grad()
    def fill(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> MemoryBank:
        r"""Writes (detached) embeddings and labels, of rows :obj:`indices` or of rows ``0 .. N-1``; a label
        :data:`UNLABELLED` marks an unlabelled row.

        Shapes:
            - **input:** embeddings :math:`(N, D)`, labels :math:`(N)`, indices :math:`(N)`
        """
        self._check_rows(embeddings, labels, indices)
        if indices is None:
            if embeddings.size(0) > self.size:
                raise ValueError(f"Expected at most {self.size} rows (got {embeddings.size(0)})")
            indices = torch.arange(embeddings.size(0))
        indices = indices.to(self.labels.device)
        self.embeddings[indices] = self._prepare(embeddings)
        self.labels[indices] = labels.to(self.labels.device, torch.long)
        self._ivf = None  # retrained on the new rows at the next search
        return self

    @torch.no_grad()
    def update(self, indices: Tensor, embeddings: Tensor, labels: Tensor | None = None) -> None:
        r"""Overwrites rows :obj:`indices` with new (detached) embeddings, e.g. after each batch.

        Shapes:
            - **input:** indices :math:`(B)`, embeddings :math:`(B, D)`, labels :math:`(B)`
        """
        self._check_rows(embeddings, labels, indices)
        indices = indices.to(self.labels.device)
        if labels is None and bool((self.labels[indices] == NEVER_FILLED).any()):
            raise ValueError("Expected 'labels' when updating rows that were never filled")
        self.embeddings[indices] = self._prepare(embeddings)
        if labels is not None:
            self.labels[indices] = labels.to(self.labels.device, torch.long)
        if self._ivf is not None:
            self._move_rows(indices)

    @torch.no_grad()
    def search(self, queries: Tensor, k: int, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""The :obj:`k` nearest filled rows of every query (cosine similarities or squared distances,
        and bank row ids), never returning the row(s) of :obj:`exclude` given for that query.

        Shapes:
            - **input:** queries :math:`(Q, D)`, exclude :math:`(Q)` or :math:`(Q, m)`
            - **output:** scores :math:`(Q, k)`, indices :math:`(Q, k)`
        """
        if queries.dim() != 2:
            raise ValueError(f"Expected 'queries' to be two-dimensional (got {queries.dim()} dimensions)")
        filled = self.filled  # [S]
        num_filled = int(filled.sum())
        if num_filled == 0:
            raise ValueError("Expected the memory bank to be filled before searching it (call 'fill')")
        queries = self._prepare(queries)
        if exclude is not None:
            exclude = exclude.to(self.labels.device, torch.long)
        if self.index == "ivf" and not self.embeddings.is_cuda:
            return self._ivf_search(queries, k, exclude, num_filled)
        return self._exact_search(queries, k, exclude, filled, num_filled)

    def _exact_search(self, queries: Tensor, k: int, exclude: Tensor | None, filled: Tensor,
                      num_filled: int) -> tuple[Tensor, Tensor]:
        """Exact search of the filled rows (the ``"flat"`` index): queries :math:`(Q, D)` -> :math:`(Q, k)`."""
        metric = "ip" if self.metric == "cosine" else "l2"
        if num_filled == self.size:
            return knn_search(queries, self.embeddings, k, metric=metric, backend=self.backend,
                              exclude=exclude)
        # Partially filled bank: search the filled rows and map ids back.
        rows = filled.nonzero().view(-1)  # [F]
        compact = torch.full((self.size,), -1, dtype=torch.long, device=rows.device)  # [S]
        compact[rows] = torch.arange(rows.numel(), device=rows.device)
        if exclude is not None:
            exclude = torch.where(exclude >= 0, compact[exclude.clamp_min(0)], exclude)
        scores, index = knn_search(queries, self.embeddings[rows], k, metric=metric, backend=self.backend,
                                   exclude=exclude)
        return scores, rows[index]

    # --- index="ivf" ----------------------------------------------------------------------------------------
    def _ivf_rows(self, ids: Tensor) -> tuple:
        """Rows ``ids`` of the storage as FAISS input: float32 ``[n, D]`` and int64 ``[n]`` numpy arrays."""
        rows = self.embeddings if ids.numel() == self.size else self.embeddings[ids]  # no copy of a full bank
        rows = rows.float().contiguous().numpy()
        return rows, ids.contiguous().numpy().astype("int64")

    @torch.no_grad()
    def build_index(self) -> MemoryBank:
        """Trains the ``"ivf"`` index on the filled rows (k-means on at most ``64 * nlist`` of them) and adds
        them all, keyed by row id. :meth:`search` calls it after each :meth:`fill`; call it to time it."""
        if self.index != "ivf" or self.embeddings.is_cuda:
            raise ValueError("Expected index='ivf' and CPU storage to build an IVF index")
        if faiss is None:
            raise ImportError("MemoryBank(index='ivf') requires 'faiss'. Install it via 'pip install faiss-cpu'")
        start = time.perf_counter()
        ids = self.filled.nonzero().view(-1)  # [F]
        if ids.numel() == 0:
            raise ValueError("Expected the memory bank to be filled before indexing it (call 'fill')")
        nlist = min(self.nlist or default_nlist(ids.numel()), ids.numel())
        inner = self.metric == "cosine"
        quantizer = faiss.IndexFlatIP(self.dim) if inner else faiss.IndexFlatL2(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist,
                                 faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2)
        ivf.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST
        ivf.cp.seed = IVF_SEED
        ivf.verbose = False
        rows, row_ids = self._ivf_rows(ids)
        ivf.train(rows)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.add_with_ids(rows, row_ids)
        self._ivf, self._quantizer = ivf, quantizer  # the quantizer must outlive the index
        self._last_lists = None
        self.last_build_s = time.perf_counter() - start
        logger.debug("MemoryBank: IVF index of %d rows, nlist=%d, built in %.2f s", ids.numel(), nlist,
                     self.last_build_s)
        return self

    def _move_rows(self, indices: Tensor) -> None:
        """Re-files rows ``indices`` of the IVF index under their stored embeddings (remove + add by id)."""
        if self.embeddings.is_cuda:  # pragma: no cover - the index is CPU only; rebuilt once back on CPU
            self._ivf = None
            return
        ids = torch.unique(indices)  # [n], sorted
        rows, row_ids = self._ivf_rows(ids)
        self._ivf.remove_ids(faiss.IDSelectorArray(row_ids.size, faiss.swig_ptr(row_ids)))
        lists = self._searched_lists(indices, ids)
        if lists is None:
            self._ivf.add_with_ids(rows, row_ids)
        else:  # the rows are the last search's queries: skip a second coarse assignment
            self._ivf.add_core(row_ids.size, faiss.swig_ptr(rows), faiss.swig_ptr(row_ids), faiss.swig_ptr(lists))

    def _searched_lists(self, indices: Tensor, ids: Tensor):
        """The nearest lists of rows ``ids`` (sorted ``indices``) when the last search's queries are exactly the
        rows just written at ``indices`` (G-Loss searches a batch, then updates its rows): int64 ``[n]``."""
        if self._last_lists is None or ids.numel() != indices.numel():  # duplicate ids: which write won?
            return None
        queries, nearest = self._last_lists
        if queries.shape != (indices.numel(), self.dim) or not torch.equal(queries, self.embeddings[indices].float()):
            return None
        return nearest[torch.argsort(indices).numpy()]  # [n], in the order of ids

    def _ivf_search(self, queries: Tensor, k: int, exclude: Tensor | None,
                    num_filled: int) -> tuple[Tensor, Tensor]:
        """Approximate search: over-fetch ``k + m`` ids, drop excluded and missing ones, and answer the
        queries left with fewer than ``k`` exactly. queries :math:`(Q, D)` -> :math:`(Q, k)`."""
        if self._ivf is None:
            self.build_index()
        drop = None if exclude is None else exclude.view(queries.size(0), -1)  # [Q, m]
        fetch = min(k + (0 if drop is None else drop.size(1)), num_filled)
        if k > fetch:
            raise ValueError(f"Expected 'k' to be at most {fetch} (got {k})")
        nprobe = min(self.nprobe, self._ivf.nlist)
        self._ivf.nprobe = nprobe
        q = queries.float().contiguous()
        near_dist, near_lists = self._quantizer.search(q.numpy(), nprobe)  # [Q, nprobe] nearest lists
        self._last_lists = (q, near_lists[:, 0].copy())
        dist, idx = self._ivf.search_preassigned(q.numpy(), fetch, near_lists, near_dist)
        scores = torch.from_numpy(dist).to(queries.dtype)  # [Q, fetch]
        index = torch.from_numpy(idx).long()  # [Q, fetch], -1 where the probed lists ran out
        bad = index < 0  # [Q, fetch]
        if drop is not None:
            bad |= (index.unsqueeze(-1) == drop.unsqueeze(1)).any(-1)
        short = (~bad).sum(1) < k  # [Q]
        order = torch.sort(bad.to(torch.uint8), dim=1, stable=True).indices[:, :k]  # [Q, k], best usable first
        scores, index = scores.gather(1, order), index.gather(1, order)  # [Q, k]
        if bool(short.any()):
            filled = self.filled
            rows = short.nonzero().view(-1)
            sub = None if drop is None else drop[rows]
            scores[rows], index[rows] = self._exact_search(queries[rows], k, sub, filled, num_filled)
        return scores, index

    def extra_repr(self) -> str:
        text = f"size={self.size}, dim={self.dim}, metric='{self.metric}', filled={self.num_filled}"
        unlabelled = int((self.labels == UNLABELLED).sum())
        if unlabelled:
            text += f", unlabelled={unlabelled}"
        if self.index != "flat":
            text += f", index='{self.index}', nlist={self.nlist}, nprobe={self.nprobe}"
        return text
