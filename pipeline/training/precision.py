"""Mixed precision of the fine-tuning loop (``--precision fp32|bf16|fp16|auto``).

``auto`` is bf16 autocast on a CUDA device that supports it, fp16 autocast with a ``GradScaler`` on one that
does not, and fp32 on a CPU. G-Loss computes in float32 whatever the autocast (it leaves autocast itself);
cross-entropy autocasts to float32 on its own.
"""

from __future__ import annotations

from contextlib import nullcontext

from pipeline import options
from pipeline.errors import GlossError

__all__ = ["autocast", "grad_scaler", "resolve_precision"]


def resolve_precision(precision: str, device) -> str:
    """``auto`` -> ``bf16``/``fp16`` on CUDA (bf16 where supported), ``fp32`` on a CPU; others as given.
    ``fp16`` on a CPU is refused (no GradScaler there; use bf16 or fp32)."""
    import torch

    if precision not in options.PRECISIONS:
        raise GlossError(options.choice_error("--precision", precision, options.PRECISIONS))
    cuda = str(device).startswith("cuda")
    if precision == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and not cuda:
        raise GlossError("--precision fp16: needs a CUDA device (on a CPU use bf16 or fp32)")
    return precision


def autocast(device, precision: str):
    """The autocast context of a resolved precision on ``device`` (a no-op for fp32)."""
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda" if str(device).startswith("cuda") else "cpu", dtype=dtype)


def grad_scaler(device, precision: str):
    """A ``torch.amp.GradScaler`` for fp16 on CUDA (small gradients would underflow), else ``None``."""
    import torch

    if precision == "fp16" and str(device).startswith("cuda"):
        return torch.amp.GradScaler("cuda")
    return None
