"""G-Loss: a graph-guided loss computed by label propagation over a similarity graph of embeddings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from graphs.edge_weights import dense_transition, gaussian_edge_weight, log_normalize_edge_weight, symmetrize
from graphs.knn import knn_graph
from graphs.memory_bank import MemoryBank
from graphs.propagation import DifferentiableLabelPropagation, harmonic_label_propagation
from graphs.sigma import BATCH_SIGMA_HEURISTICS, resolve_sigma

__all__ = ["GLoss"]

logger = logging.getLogger(__name__)

GRAPHS = ("dense", "knn", "bank")
LOSS_FORMS = ("nll", "released")

CITATION = """@inproceedings{sharma2025gloss,
    title = {{G-Loss}: Graph-Guided Fine-Tuning of Language Models},
    author = {Sharma, Aditya and Agarwal, Vinti and Kumar, Rajesh},
    booktitle = {Proceedings of the Learning on Graphs Conference (LoG)},
    year = {2025},
    eprint = {2604.25853},
    archivePrefix = {arXiv},
}"""


class GLoss(nn.Module):
    r"""G-Loss from Sharma et al., "G-Loss: Graph-Guided Fine-Tuning of Language Models" (LoG 2025).

    The embeddings of a batch become the nodes of a Gaussian similarity graph; the labels of a share
    :obj:`gamma` of the nodes stay visible, the others are hidden and inferred by label propagation,
    and the loss is the negative log-likelihood of the hidden nodes' true classes (paper, Eq. 1):

    .. math::
        W_{ij} = \exp\left(-\frac{\lVert \mathbf{x}_i - \mathbf{x}_j \rVert^2}{2\sigma^2}\right),\quad
        \mathbf{T} = \mathrm{row}(\mathbf{D}^{-1/2}\mathbf{W}\mathbf{D}^{-1/2}),\quad
        \mathbf{F}_u = (\mathbf{I} - \mathbf{T}_{uu})^{-1}\mathbf{T}_{ul}\mathbf{Y}_l,\quad
        \mathcal{L} = -\frac{1}{|u|}\sum_{i \in u} \log \frac{F_{i y_i}}{\sum_c F_{ic}}

    Three graphs are available:

    - ``"dense"``: the paper. Full kernel on the L2-normalised batch with a zero diagonal and the
      closed-form harmonic solution; :math:`O(B^2 D + U^3)` time and :math:`O(B^2)` memory.
    - ``"knn"``: each node keeps its :obj:`k` nearest batch neighbours (exact, torch top-k, no
      gradient), Gaussian weights are recomputed on those edges with gradients, the graph is symmetrised
      (``max``), normalised like the dense one and propagated iteratively by
      :class:`~graphs.propagation.DifferentiableLabelPropagation`; memory :math:`O(B k)`.
    - ``"bank"``: the kNN graph of the batch plus, for each batch node, its :obj:`k` nearest rows of a
      :class:`~graphs.memory_bank.MemoryBank` holding detached embeddings and labels of the training
      set. Bank rows are always-visible seeds; their side of an edge carries no gradient. The batch's
      own rows (:obj:`indices`) are never their own neighbours, and are refreshed in the bank after
      the loss is computed (``bank_update=True``).

    All weights are normalised in log-space, so any :math:`\sigma` (tested from ``1e-4`` to ``1e4``)
    gives finite values and gradients: tiny :math:`\sigma` tends to a nearest-neighbour graph, huge
    :math:`\sigma` to uniform weights. Degenerate batches (fewer than two classes among the seeds,
    nothing hidden or nothing visible, or no hidden node whose class has a visible seed) return
    ``embeddings.sum() * 0``, a zero attached to the graph; hidden nodes whose class has no visible
    seed are left out of the mean, and counted in the statistic ``"stat_unscored"`` of the output
    (every hidden node of a degenerate batch counts; statistics are never summed into a total, see
    :mod:`graphs.losses.parts`).

    Args:
        graph (str, optional): ``"dense"``, ``"knn"`` or ``"bank"``. (default: ``"dense"``)
        sigma (float or str, optional): Kernel width, or ``"batch-sqrt"`` / ``"batch-dicm"`` to recompute
            it on every batch with :func:`~graphs.sigma.sigma_sqrt_median` /
            :func:`~graphs.sigma.sigma_dicm` (on the L2-normalised nodes). (default: :obj:`1.0`)
        gamma (float, optional): Share of batch nodes whose labels stay visible. The paper uses 0.5 to
            0.7; the default 0.6 is its middle. The split is stratified per class (each class with at
            least two members keeps at least one visible and one hidden node; a singleton class is
            visible) and drawn from a :class:`torch.Generator` seeded with :obj:`seed`.
            (default: :obj:`0.6`)
        k (int, optional): Neighbours per node for ``"knn"`` and ``"bank"`` (``"bank"`` adds :obj:`k` bank
            neighbours to the :obj:`k` batch neighbours). (default: :obj:`10`)
        num_iters (int, optional): Largest number of propagation steps of ``"knn"`` / ``"bank"``.
            (default: :obj:`50`)
        tol (float, optional): Early-stopping tolerance of the propagation. (default: :obj:`1e-6`)
        loss_form (str, optional): ``"nll"`` (paper, Eq. 1) or ``"released"`` (as the released code:
            the propagated scores are the logits of :func:`~torch.nn.functional.cross_entropy`).
            (default: ``"nll"``)
        class_weights (Sequence[float] or Tensor, optional): Weight of each class in the mean over hidden
            nodes. (default: :obj:`None`)
        num_classes (int, optional): Number of classes :math:`C` (matters for ``"released"``).
            (default: largest label seen + 1)
        seed (int, optional): Seed of the visible/hidden split; :meth:`reseed` restarts it.
            (default: :obj:`0`)
        memory_bank (MemoryBank, optional): The bank of ``"bank"`` mode. (default: :obj:`None`)
        bank_update (bool, optional): Write the batch's detached embeddings into the bank after each
            forward in training mode. (default: :obj:`True`)
        normalize_embeddings (bool, optional): L2-normalise the embeddings first, as the paper.
            (default: :obj:`True`)
        damping (float, optional): :math:`\epsilon` of the dense solve
            :math:`(\mathbf{I} - (1-\epsilon)\mathbf{T}_{uu})`, which keeps it non-singular when hidden
            nodes are cut off from the seeds (only happens for tiny :math:`\sigma`). (default: :obj:`1e-6`)
        eps (float, optional): Floor of probabilities and row sums in the ``"nll"`` form.
            (default: :obj:`1e-8`)

    Shapes:
        - **input:** embeddings :math:`(B, D)`, labels :math:`(B)`, indices :math:`(B)` (``"bank"``),
          visible :math:`(B)` (optional fixed split)
        - **output:** ``{"g_loss": scalar, "stat_unscored": long scalar}`` (the statistic is the number
          of hidden nodes left out of the mean, detached)
    """

    def __init__(
        self,
        graph: str = "dense",
        sigma: float | str = 1.0,
        gamma: float = 0.6,
        k: int = 10,
        num_iters: int = 50,
        tol: float | None = 1e-6,
        loss_form: str = "nll",
        class_weights: Sequence[float] | Tensor | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        memory_bank: MemoryBank | None = None,
        bank_update: bool = True,
        normalize_embeddings: bool = True,
        damping: float = 1e-6,
        eps: float = 1e-8,
    ):
        super().__init__()
        if graph not in GRAPHS:
            raise ValueError(f"Expected 'graph' to be one of {GRAPHS} (got '{graph}')")
        if loss_form not in LOSS_FORMS:
            raise ValueError(f"Expected 'loss_form' to be one of {LOSS_FORMS} (got '{loss_form}')")
        if not 0 < gamma < 1:
            raise ValueError(f"Expected 'gamma' to lie in (0, 1) (got {gamma})")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"Expected 'k' to be a positive integer (got {k!r})")
        _check_sigma(sigma)
        if graph == "bank":
            if memory_bank is None:
                raise ValueError("Expected a 'memory_bank' for graph='bank'")
            if (memory_bank.metric == "cosine") != normalize_embeddings:
                raise ValueError(
                    f"Expected a memory bank with metric='{'cosine' if normalize_embeddings else 'l2'}' "
                    f"for normalize_embeddings={normalize_embeddings} (got '{memory_bank.metric}')"
                )
        if not 0 <= damping < 1:
            raise ValueError(f"Expected 'damping' to lie in [0, 1) (got {damping})")
        self.graph = graph
        self.sigma = sigma
        self.gamma = gamma
        self.k = k
        self.loss_form = loss_form
        self.num_classes = num_classes
        self.seed = seed
        self.memory_bank = memory_bank
        self.bank_update = bank_update
        self.normalize_embeddings = normalize_embeddings
        self.damping = damping
        self.eps = eps
        self.propagation = DifferentiableLabelPropagation(num_iters=num_iters, tol=tol)
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float)
        if weights is not None and (weights.dim() != 1 or bool((weights < 0).any())):
            raise ValueError("Expected 'class_weights' to be a one-dimensional non-negative sequence")
        self.register_buffer("class_weights", weights, persistent=False)
        self.generator = torch.Generator().manual_seed(seed)
        self.last_sigma: float | None = None

    # ------------------------------------------------------------------ public API

    def forward(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None,
                visible: Tensor | None = None) -> dict[str, Tensor]:
        return self.compute_loss_from_embeddings(embeddings, labels, indices=indices, visible=visible)

    def compute_loss_from_embeddings(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None,
                                     visible: Tensor | None = None) -> dict[str, Tensor]:
        r"""The loss of a batch of embeddings (model-free core of :meth:`forward`).

        Args:
            embeddings (Tensor): Batch embeddings :math:`(B, D)`.
            labels (Tensor): Long class ids :math:`(B)`.
            indices (Tensor, optional): Dataset row ids of the batch :math:`(B)`; required by ``"bank"``.
            visible (Tensor, optional): A fixed boolean visible mask :math:`(B)` instead of the random
                split.
        """
        self._check_inputs(embeddings, labels, indices, visible)
        # The graph is built in at least float32 and outside autocast: the kernel, log-space normalisation
        # and the solve are not meaningful in half precision (and torch.linalg.solve rejects it).
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self._compute(embeddings, labels, indices, visible)

    def _compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None,
                 visible: Tensor | None) -> dict[str, Tensor]:
        labels = labels.to(embeddings.device)
        x = embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings
        x = nn.functional.normalize(x, dim=-1) if self.normalize_embeddings else x
        if visible is None:
            visible = self.split(labels)
        visible = visible.to(embeddings.device)

        if self.graph == "bank":
            if indices is None:
                raise ValueError("Expected 'indices' (dataset row ids of the batch) for graph='bank'")
            x_all, y_all, visible_all, bank_nbr = self._with_bank(x, labels, visible, indices)
        else:
            x_all, y_all, visible_all, bank_nbr = x, labels, visible, None

        hidden = visible_all.logical_not().nonzero().view(-1)  # [U]
        keep = self._scored_hidden(y_all, visible_all, hidden)  # [U] bool
        if keep is None:
            out = {"g_loss": embeddings.sum() * 0.0}
            unscored = hidden.new_tensor(hidden.numel())
        else:
            num_classes = self._num_classes(y_all)
            sigma = resolve_sigma(self.sigma, x_all.detach(), y_all)
            self.last_sigma = sigma
            if self.graph == "dense":
                scores = self._dense_scores(x_all, y_all, visible_all, hidden, sigma, num_classes)
            else:
                scores = self._sparse_scores(x_all, y_all, visible_all, hidden, sigma, num_classes, bank_nbr)
            out = {"g_loss": self._loss(scores[keep], y_all[hidden][keep])}
            unscored = (~keep).sum()
        out["stat_unscored"] = unscored.detach()

        if self.graph == "bank" and self.bank_update and self.training:
            self.memory_bank.update(indices, x.detach(), labels)
        return out

    def reseed(self, seed: int) -> None:
        """Restart the generator of the visible/hidden split at :obj:`seed` (e.g. once per epoch)."""
        self.generator.manual_seed(seed)

    @torch.no_grad()
    def split(self, labels: Tensor) -> Tensor:
        r"""A random boolean mask of visible nodes, stratified per class, from the loss's generator.

        Shapes:
            - **input:** labels :math:`(B)`
            - **output:** :math:`(B)`
        """
        lab = labels.detach().cpu()
        size = lab.numel()
        if size == 0:
            return torch.zeros(0, dtype=torch.bool, device=labels.device)
        order = torch.randperm(size, generator=self.generator)  # random order ...
        order = order[torch.argsort(lab[order], stable=True)]  # ... grouped by class
        counts = torch.bincount(lab, minlength=int(lab.max()) + 1)  # [C]
        starts = torch.cumsum(counts, 0) - counts  # [C]
        rank = torch.arange(size) - starts[lab[order]]  # rank inside the class, [B]
        num_visible = torch.minimum((self.gamma * counts).round().long().clamp_min(1),
                                    (counts - 1).clamp_min(1))  # [C]
        visible = torch.empty(size, dtype=torch.bool)
        visible[order] = rank < num_visible[lab[order]]
        return visible.to(labels.device)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "sigma": self.sigma,
            "gamma": self.gamma,
            "k": self.k,
            "num_iters": self.propagation.num_iters,
            "tol": self.propagation.tol,
            "loss_form": self.loss_form,
            "class_weights": None if self.class_weights is None else self.class_weights.tolist(),
            "num_classes": self.num_classes,
            "seed": self.seed,
            "memory_bank_size": None if self.memory_bank is None else len(self.memory_bank),
            "bank_update": self.bank_update,
            "normalize_embeddings": self.normalize_embeddings,
            "damping": self.damping,
            "eps": self.eps,
        }

    @property
    def citation(self) -> str:
        return CITATION

    def extra_repr(self) -> str:
        return (f"graph='{self.graph}', sigma={self.sigma!r}, gamma={self.gamma}, k={self.k}, "
                f"loss_form='{self.loss_form}'")

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check_inputs(embeddings: Tensor, labels: Tensor, indices: Tensor | None,
                      visible: Tensor | None) -> None:
        if embeddings.dim() != 2:
            raise ValueError(
                f"Expected 'embeddings' to be two-dimensional (got {embeddings.dim()} dimensions)"
            )
        size = embeddings.size(0)
        if labels.dim() != 1 or labels.size(0) != size:
            raise ValueError(f"Expected 'labels' to have shape [{size}] (got {list(labels.shape)})")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"Expected 'labels' to hold integer class ids (got dtype {labels.dtype})")
        if size > 0 and int(labels.min()) < 0:
            raise ValueError(f"Expected 'labels' to be non-negative (got {int(labels.min())})")
        if indices is not None and (indices.dim() != 1 or indices.size(0) != size):
            raise ValueError(f"Expected 'indices' to have shape [{size}] (got {list(indices.shape)})")
        if visible is not None and (visible.dtype != torch.bool or visible.shape != (size,)):
            raise ValueError(f"Expected 'visible' to be a boolean mask of shape [{size}]")

    def _num_classes(self, labels: Tensor) -> int:
        seen = int(labels.max()) + 1
        if self.num_classes is None:
            return seen
        if seen > self.num_classes:
            raise ValueError(f"Expected labels below num_classes={self.num_classes} (got {seen - 1})")
        return self.num_classes

    @staticmethod
    def _scored_hidden(labels: Tensor, visible: Tensor, hidden: Tensor) -> Tensor | None:
        """Hidden nodes that can be scored (their class has a visible seed), or ``None`` if degenerate."""
        seed_classes = labels[visible].unique()
        if hidden.numel() == 0 or seed_classes.numel() == 0:
            logger.debug("G-Loss: degenerate batch (%d hidden, %d seed classes), returning zero",
                         hidden.numel(), seed_classes.numel())
            return None
        if seed_classes.numel() < 2:
            logger.debug("G-Loss: degenerate batch (seeds of a single class), returning zero")
            return None
        keep = torch.isin(labels[hidden], seed_classes)  # [U]
        if not bool(keep.any()):
            logger.debug("G-Loss: no hidden node has a visible node of its class, returning zero")
            return None
        if not bool(keep.all()):
            logger.debug("G-Loss: dropping %d hidden nodes whose class has no visible node",
                         int((~keep).sum()))
        return keep

    def _with_bank(self, x: Tensor, labels: Tensor, visible: Tensor,
                   indices: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Appends the batch's bank neighbours as always-visible nodes ``B .. B+M-1``."""
        bank = self.memory_bank
        k = min(self.k, bank.num_filled - 1)
        if k < 1:
            raise ValueError("Expected the memory bank to hold at least two filled rows")
        _, nbr = bank.search(x.detach(), k, exclude=indices)  # [B, k]
        rows, inverse = torch.unique(nbr.view(-1), return_inverse=True)  # [M], [B * k]
        rows = rows.to(x.device)
        x_bank = bank.embeddings[rows].to(device=x.device, dtype=x.dtype)  # [M, D], detached
        y_bank = bank.labels[rows].to(x.device)  # [M]
        x_all = torch.cat([x, x_bank], dim=0)  # [B + M, D]
        y_all = torch.cat([labels, y_bank], dim=0)  # [B + M]
        visible_all = torch.cat([visible, visible.new_ones(rows.numel())], dim=0)  # [B + M]
        bank_nbr = (inverse.to(x.device) + x.size(0)).view(-1, k)  # [B, k] node ids of bank neighbours
        return x_all, y_all, visible_all, bank_nbr

    def _dense_scores(self, x: Tensor, labels: Tensor, visible: Tensor, hidden: Tensor, sigma: float,
                      num_classes: int) -> Tensor:
        T_u = dense_transition(x, sigma, rows=hidden)  # [U, B]
        return harmonic_label_propagation(T_u, labels, visible, num_classes, eps=self.damping)  # [U, C]

    def _sparse_scores(self, x: Tensor, labels: Tensor, visible: Tensor, hidden: Tensor, sigma: float,
                       num_classes: int, bank_nbr: Tensor | None) -> Tensor:
        batch_size = x.size(0) if bank_nbr is None else bank_nbr.size(0)
        num_nodes = x.size(0)
        k = min(self.k, batch_size - 1)
        parts = []
        if k >= 1:
            batch_knn = knn_graph(x[:batch_size].detach(), k, metric=self._metric, backend="torch")  # [2, Bk]
            parts.append(batch_knn)
        if bank_nbr is not None:
            target = torch.arange(batch_size, device=x.device).repeat_interleave(bank_nbr.size(1))
            parts.append(torch.stack([bank_nbr.reshape(-1), target], dim=0))  # [2, B k_bank]
        edge_index = torch.cat(parts, dim=1)  # [2, E]
        log_w = gaussian_edge_weight(x, edge_index, sigma, log=True)  # [E]
        edge_index, log_w = symmetrize(edge_index, log_w, num_nodes, reduce="max")  # [2, E'], [E']
        weight = log_normalize_edge_weight(edge_index, log_w, num_nodes, mode="sym_row")  # [E']
        y = nn.functional.one_hot(labels, num_classes).to(x.dtype) * visible.unsqueeze(-1)  # [N, C]
        out = self.propagation(y, edge_index, weight, visible=visible)  # [N, C]
        return out[hidden]  # [U, C]

    @property
    def _metric(self) -> str:
        return "cosine" if self.normalize_embeddings else "l2"

    def _loss(self, scores: Tensor, target: Tensor) -> Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(scores.device, scores.dtype)
        if self.loss_form == "released":
            return nn.functional.cross_entropy(scores, target, weight=weight)
        probs = scores.clamp_min(0)  # [U, C]
        probs = probs / probs.sum(-1, keepdim=True).clamp_min(self.eps)  # [U, C]
        nll = -probs.gather(1, target.view(-1, 1)).view(-1).clamp_min(self.eps).log()  # [U]
        if weight is None:
            return nll.mean()
        w = weight[target]  # [U]
        return (w * nll).sum() / w.sum().clamp_min(self.eps)


def _check_sigma(sigma: float | str) -> None:
    """A positive finite number or a per-batch heuristic (:data:`graphs.sigma.BATCH_SIGMA_HEURISTICS`).

    A bare ``"sqrt"`` / ``"dicm"`` names a corpus value (the pipeline's embed stage), never a per-batch one:
    it gets a pointer to the per-batch spelling.
    """
    if not isinstance(sigma, str):
        resolve_sigma(sigma)  # validates a number
        return
    if sigma in BATCH_SIGMA_HEURISTICS:
        return
    names = BATCH_SIGMA_HEURISTICS
    hint = ""
    if f"batch-{sigma}" in BATCH_SIGMA_HEURISTICS:
        hint = f"; the per-batch heuristic is spelled 'batch-{sigma}'"
    raise ValueError(f"Expected 'sigma' to be a positive float or one of {names} (got '{sigma}'){hint}")
