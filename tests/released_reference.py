"""An independent float64 re-derivation of the released G-Loss arithmetic (saditya13/G-Loss-LoG,
``Combined with CE/losses.py``, ``Standalone/losses_unsupervised.py``), written from its description with plain
torch and no gloss function. ``tests/graphs/losses/test_g_loss_released.py`` holds ``GLoss(variant="released")``
to it; ``scripts/check_released_gloss.py`` measures both G-Loss paths against it.

Visible nodes first, the Gaussian kernel with a zero diagonal, ``A = W + W^T``, ``S = D^-1/2 A D^-1/2``, the
columns of ``S`` normalised and then the rows, ``F_u = (I - T_uu)^-1 T_ul Y_l`` by an explicit inverse, and a
class-weighted cross-entropy with ``F_u`` as logits over all classes, divided once more by ``|u|`` in the
combined code.
"""

import torch


def reference_scores(x, labels, visible, sigma, num_classes):
    """F_u of the released code, hidden rows in index order."""
    x = x.double()
    order = torch.cat([visible.nonzero().view(-1), (~visible).nonzero().view(-1)])  # visible first
    x, labels = x[order], labels[order]
    n_l = int(visible.sum())
    x = x / x.norm(dim=1, keepdim=True)
    diff = x.unsqueeze(1) - x.unsqueeze(0)  # [N, N, D]
    w = torch.exp(-(diff**2).sum(-1) / (2 * sigma**2))
    w = w - torch.diag(torch.diag(w))
    a = w + w.t()
    d_inv_sqrt = torch.diag(a.sum(1) ** -0.5)
    s = d_inv_sqrt @ a @ d_inv_sqrt
    tran = s / s.sum(0, keepdim=True)
    t = tran / tran.sum(1, keepdim=True)
    y_l = torch.zeros(n_l, num_classes, dtype=torch.float64)
    for i in range(n_l):
        y_l[i, labels[i]] = 1.0
    eye = torch.eye(len(x) - n_l, dtype=torch.float64)
    return torch.linalg.inv(eye - t[n_l:, n_l:]) @ t[n_l:, :n_l] @ y_l  # [U, C]


def reference_loss(x, labels, visible, sigma, num_classes, class_weights=None, combined=True):
    scores = reference_scores(x, labels, visible, sigma, num_classes)
    target = labels[~visible]
    weights = torch.ones(num_classes, dtype=torch.float64) if class_weights is None else class_weights.double()
    total, norm = 0.0, 0.0
    for i in range(len(target)):
        log_partition = torch.log(torch.exp(scores[i]).sum())
        total = total + weights[target[i]] * (log_partition - scores[i, target[i]])
        norm = norm + weights[target[i]]
    loss = total / norm
    return loss / len(target) if combined else loss
