r"""Sparse-dense products for GCNs on a fixed, symmetric propagation matrix."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = ["symmetric_spmm", "set_spmm_backend", "get_spmm_backend"]

SpmmBackend = Literal["auto", "torch", "scipy"]
_BACKEND: list[SpmmBackend] = ["auto"]


def set_spmm_backend(backend: SpmmBackend) -> None:
    r"""Chooses the kernel of :func:`symmetric_spmm` on CPU.

    ``"torch"``: :func:`torch.sparse.mm` (MKL, multi-threaded). ``"scipy"``: scipy's single-threaded CSR
    kernel on zero-copy views of the tensor's buffers; it uses about a third less CPU time per product
    than the MKL kernel on one thread. ``"auto"`` (the default) takes scipy for CPU CSR tensors when torch
    runs on a single thread (``torch.get_num_threads() == 1``) and torch otherwise. CUDA tensors always use
    torch.
    """
    if backend not in ("auto", "torch", "scipy"):
        raise ValueError(f"Expected 'backend' to be 'auto', 'torch' or 'scipy' (got {backend!r})")
    _BACKEND[0] = backend


def get_spmm_backend() -> SpmmBackend:
    r"""The current :func:`symmetric_spmm` backend (see :func:`set_spmm_backend`)."""
    return _BACKEND[0]


def _use_scipy(adj: Tensor, x: Tensor) -> bool:
    if adj.device.type != "cpu" or adj.layout != torch.sparse_csr or adj.dtype != x.dtype:
        return False
    if adj.dtype not in (torch.float32, torch.float64):
        return False
    backend = _BACKEND[0]
    return backend == "scipy" or (backend == "auto" and torch.get_num_threads() == 1)


def _mm(adj: Tensor, x: Tensor) -> Tensor:
    if _use_scipy(adj, x):
        mat = sp.csr_matrix(
            (adj.values().numpy(), adj.col_indices().numpy(), adj.crow_indices().numpy()),
            shape=tuple(adj.shape),
        )
        return torch.from_numpy(np.asarray(mat @ x.detach().contiguous().numpy()))
    return torch.sparse.mm(adj, x)


class _SymmetricSpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(adj)
        return _mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor | None]:  # type: ignore[override]
        (adj,) = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return None, None
        return None, _mm(adj, grad.contiguous())  # adj^T = adj


def symmetric_spmm(adj: Tensor, x: Tensor) -> Tensor:
    r"""Computes :math:`\hat{A} X` for a *symmetric* sparse :math:`\hat{A}` that needs no gradient.

    The backward pass reuses :math:`\hat{A}` as its own transpose (:math:`\nabla_X = \hat{A}^\top G =
    \hat{A} G`), which avoids transposing a CSR tensor on every step. The caller guarantees symmetry
    (true for :math:`D^{-1/2}(A + I)D^{-1/2}` of an undirected graph). The CPU kernel is chosen by
    :func:`set_spmm_backend`.

    Args:
        adj (torch.Tensor): Symmetric sparse matrix (CSR or COO) :math:`(N, N)`.
        x (torch.Tensor): Dense matrix :math:`(N, F)`.

    Shapes:
        - **input:** adj :math:`(N, N)`, x :math:`(N, F)`
        - **output:** :math:`(N, F)`
    """
    if adj.dim() != 2 or adj.size(0) != adj.size(1):
        raise ValueError(f"Expected 'adj' to be a square matrix (got shape {tuple(adj.shape)})")
    if x.dim() != 2 or x.size(0) != adj.size(1):
        raise ValueError(f"Expected 'x' to have shape ({adj.size(1)}, F) (got {tuple(x.shape)})")
    if adj.requires_grad:
        raise ValueError("Expected 'adj' to need no gradient (got requires_grad=True)")
    return _SymmetricSpMM.apply(adj, x)
