"""How far gloss's G-Loss is from the released code's arithmetic, before and after ``variant="released"``.

    PYTHONPATH=. python scripts/check_released_gloss.py      # a few seconds on a CPU; prints one JSON object

On one fixed seeded batch (B=32, D=16, C=4, gamma=0.7; float32 embeddings, as a model gives them) and for
sigma in (0.1, 0.5, 1), it prints ``max |F - F_ref|`` over the hidden nodes' propagated scores, where
``F_ref`` is the independent float64 re-derivation in ``tests/released_reference.py`` (plain torch:
visible nodes first, Gaussian kernel with a zero diagonal, ``A = W + W^T``, ``S = D^-1/2 A D^-1/2``,
columns then rows normalised, ``F_u = (I - T_uu)^-1 T_ul Y_l`` by an explicit inverse), for

- ``before``: ``GLoss(loss_form="released")``, the path gloss had for the released code (a row-stochastic
  ``T``, the embeddings' precision, damping 1e-6);
- ``after``: ``GLoss(variant="released")`` (must be <= 1e-10).

It also prints both losses against the re-derived one (class-weighted cross-entropy with ``F_u`` as logits,
the combined code's extra ``/ |u|``) and the cosine between the gradients of the ``before`` and reference
losses with respect to the (float32) embeddings, and the largest gradient difference of ``after``
(in float32, the input dtype).
"""

from __future__ import annotations

import json

import torch

from graphs.losses import GLoss
from tests.released_reference import reference_loss, reference_scores

B, D, C, GAMMA, SEED = 32, 16, 4, 0.7, 0
SIGMAS = (0.1, 0.5, 1.0)
WEIGHTS = [0.8, 1.6, 0.6, 1.2]  # balanced-style class weights, to exercise the weighted cross-entropy


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(B, D, generator=g)  # float32
    labels = torch.randint(0, C, (B,), generator=g)
    visible = torch.randperm(B, generator=g) < GAMMA * B  # the released code's split
    return x, labels, visible


def main() -> None:
    x, labels, visible = _batch()
    rows = []
    for sigma in SIGMAS:
        before = GLoss(sigma=sigma, gamma=GAMMA, loss_form="released", num_classes=C, class_weights=WEIGHTS)
        after = GLoss(variant="released", sigma=sigma, gamma=GAMMA, num_classes=C, class_weights=WEIGHTS,
                      combined=True)
        ref = reference_scores(x, labels, visible, sigma, C)
        xr, xb, xa = (x.clone().requires_grad_() for _ in range(3))
        loss_ref = reference_loss(xr, labels, visible, sigma, C, torch.tensor(WEIGHTS))  # the combined code
        loss_before = before(xb, labels, visible=visible)["g_loss"] / int((~visible).sum())  # same /|u|
        loss_after = after(xa, labels, visible=visible)["g_loss"]
        g_ref, g_before, g_after = (torch.autograd.grad(v, t)[0].double().flatten()
                                    for v, t in ((loss_ref, xr), (loss_before, xb), (loss_after, xa)))
        rows.append({
            "sigma": sigma,
            "max_abs_F_before": float((before.propagated_scores(x, labels, visible).double() - ref).abs().max()),
            "max_abs_F_after": float((after.propagated_scores(x, labels, visible) - ref).abs().max()),
            "loss_ref": loss_ref.item(),
            "loss_before": loss_before.item(),
            "loss_after": loss_after.item(),
            "grad_cosine_before": float(torch.nn.functional.cosine_similarity(g_before, g_ref, dim=0)),
            "max_abs_grad_after": float((g_after - g_ref).abs().max()),
        })
    ok = all(r["max_abs_F_after"] <= 1e-10 for r in rows)
    print(json.dumps({"batch": {"B": B, "D": D, "C": C, "gamma": GAMMA, "seed": SEED, "hidden": int((~visible).sum())},
                      "results": rows, "after_within_1e-10": ok}, indent=2))


if __name__ == "__main__":
    main()
