"""A memory bank of detached embeddings and labels of a whole training set, searched with FAISS/torch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from graphs.knn import BACKENDS, knn_search

__all__ = ["MemoryBank"]


class MemoryBank(nn.Module):
    r"""Detached embeddings and labels of every row of a training set, the labelled seeds of the
    ``graph="bank"`` mode of :class:`~graphs.losses.GLoss` (in the spirit of the memory bank of Wu et al.,
    "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018).

    Refresh it with :meth:`fill` (e.g. once per epoch, from a full encoding pass), keep it current with
    :meth:`update` after each batch, and query it with :meth:`search`, which never returns the rows in
    ``exclude`` (a batch's own rows, whose stale copies would leak their labels). Rows that were never
    filled are never returned. With ``metric="cosine"`` the rows are stored L2-normalised, so a search
    is a plain inner product over the stored tensor (no copy of the bank).

    .. math::
        \mathcal{N}_k(\mathbf{q}) = \operatorname{top-}k_{\, r \notin \mathrm{exclude}}
        \cos(\mathbf{q}, \mathbf{m}_r)

    Args:
        size (int): Number of rows (the size of the training set).
        dim (int): Embedding dimension.
        metric (str, optional): ``"cosine"`` or ``"l2"``. (default: ``"cosine"``)
        backend (str, optional): Search backend of :func:`~graphs.knn.knn_search`. (default: ``"auto"``)
        dtype (torch.dtype, optional): Storage type. (default: :obj:`torch.float32`)

    Shapes:
        - **storage:** embeddings :math:`(S, D)`, labels :math:`(S)` (``-1`` = never filled)
        - **search:** queries :math:`(Q, D)`, exclude :math:`(Q)` or :math:`(Q, m)`
          :math:`\to` scores :math:`(Q, k)`, indices :math:`(Q, k)`
    """

    embeddings: Tensor
    labels: Tensor

    def __init__(self, size: int, dim: int, metric: str = "cosine", backend: str = "auto",
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"Expected 'size' and 'dim' to be positive (got {size} and {dim})")
        if metric not in ("cosine", "l2"):
            raise ValueError(f"Expected 'metric' to be one of ('cosine', 'l2') (got '{metric}')")
        if backend not in BACKENDS:
            raise ValueError(f"Expected 'backend' to be one of {BACKENDS} (got '{backend}')")
        self.size, self.dim, self.metric, self.backend = size, dim, metric, backend
        self.register_buffer("embeddings", torch.zeros(size, dim, dtype=dtype), persistent=False)
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long), persistent=False)

    def __len__(self) -> int:
        return self.size

    @property
    def num_filled(self) -> int:
        return int((self.labels >= 0).sum())

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
        if labels is not None and n > 0 and int(labels.min()) < 0:
            raise ValueError(f"Expected 'labels' to be non-negative (got {int(labels.min())})")

    @torch.no_grad()
    def fill(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> MemoryBank:
        r"""Writes (detached) embeddings and labels, of rows :obj:`indices` or of rows ``0 .. N-1``.

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
        return self

    @torch.no_grad()
    def update(self, indices: Tensor, embeddings: Tensor, labels: Tensor | None = None) -> None:
        r"""Overwrites rows :obj:`indices` with new (detached) embeddings, e.g. after each batch.

        Shapes:
            - **input:** indices :math:`(B)`, embeddings :math:`(B, D)`, labels :math:`(B)`
        """
        self._check_rows(embeddings, labels, indices)
        indices = indices.to(self.labels.device)
        if labels is None and bool((self.labels[indices] < 0).any()):
            raise ValueError("Expected 'labels' when updating rows that were never filled")
        self.embeddings[indices] = self._prepare(embeddings)
        if labels is not None:
            self.labels[indices] = labels.to(self.labels.device, torch.long)

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
        filled = self.labels >= 0  # [S]
        num_filled = int(filled.sum())
        if num_filled == 0:
            raise ValueError("Expected the memory bank to be filled before searching it (call 'fill')")
        queries = self._prepare(queries)
        metric = "ip" if self.metric == "cosine" else "l2"
        if exclude is not None:
            exclude = exclude.to(self.labels.device, torch.long)
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

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, metric='{self.metric}', filled={self.num_filled}"
