"""G-Loss on CUDA equals G-Loss on the CPU (dense, knn and bank graphs; loss and gradients), also under bf16
autocast (the graph is built outside autocast). Marked ``gpu``: run by ``scripts/gpu_suite.sh``."""

import pytest
import torch

from graphs.losses import GLoss
from graphs.memory_bank import MemoryBank

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

LABELS = torch.arange(24) % 4
VISIBLE = torch.arange(24) % 3 != 0


def _inputs(dtype):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g, dtype=dtype)
    return centres[LABELS] + 1.5 * torch.randn(24, 16, generator=g, dtype=dtype)


def _loss_and_grad(graph, x, device, autocast=False):
    bank = None
    if graph == "bank":
        rows = _inputs(x.dtype).flip(0) + 0.1
        bank = MemoryBank(48, 16, dtype=x.dtype).fill(torch.cat([rows, rows * 0.9]), torch.cat([LABELS, LABELS]))
    loss = GLoss(graph=graph, sigma=1.0, k=5, memory_bank=bank, bank_update=False, num_classes=4).to(device)
    x = x.to(device).requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        # Under autocast the matmul returns bf16, as an encoder's output does; otherwise it is the identity.
        embeddings = x @ torch.eye(16, dtype=x.dtype, device=device)  # [24, 16]
        out = loss(embeddings, LABELS.to(device), indices=torch.arange(24, device=device),
                   visible=VISIBLE.to(device))
    out["g_loss"].backward()
    return out["g_loss"].detach().cpu(), x.grad.cpu()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("graph", ["dense", "knn", "bank"])
def test_g_loss_on_cuda_matches_cpu(graph, dtype):
    x = _inputs(dtype)
    loss_cpu, grad_cpu = _loss_and_grad(graph, x, "cpu")
    loss_gpu, grad_gpu = _loss_and_grad(graph, x, "cuda")
    tol = 2e-4 if dtype == torch.float32 else 1e-6  # knn/bank: iterative propagation stopping at tol 1e-6
    assert torch.isfinite(loss_gpu) and loss_gpu > 0
    torch.testing.assert_close(loss_gpu, loss_cpu, atol=tol, rtol=tol)
    torch.testing.assert_close(grad_gpu, grad_cpu, atol=tol, rtol=tol)


@pytest.mark.parametrize("graph", ["dense", "knn", "bank"])
def test_g_loss_under_bf16_autocast_is_built_in_float32(graph):
    x = _inputs(torch.float32).bfloat16().float()  # what the bf16 matmul returns, exactly
    loss_fp32, grad_fp32 = _loss_and_grad(graph, x, "cuda")
    loss_bf16, grad_bf16 = _loss_and_grad(graph, x, "cuda", autocast=True)
    assert torch.isfinite(loss_bf16) and loss_bf16.dtype == torch.float32
    torch.testing.assert_close(loss_bf16, loss_fp32, atol=1e-4, rtol=1e-4)  # the graph itself is fp32
    torch.testing.assert_close(grad_bf16, grad_fp32, atol=1e-3, rtol=2e-2)  # bf16 backward of the matmul
