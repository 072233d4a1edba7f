"""G-Loss: a graph-guided loss computed by label propagation over a similarity graph of embeddings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from graphs.distributed import gather_rows
from graphs.edge_weights import dense_transition, gaussian_edge_weight, log_normalize_edge_weight, symmetrize
from graphs.knn import knn_edge_index, knn_graph
from graphs.memory_bank import MemoryBank
from graphs.propagation import DifferentiableLabelPropagation, harmonic_label_propagation
from graphs.sigma import BATCH_SIGMA_HEURISTICS, resolve_sigma

__all__ = ["GLoss", "VARIANTS"]

logger = logging.getLogger(__name__)

GRAPHS = ("dense", "knn", "bank")
LOSS_FORMS = ("nll", "released")
# "gloss": the paper's intent, a row-stochastic T; "released": the arithmetic of the released code.
VARIANTS = ("gloss", "released")

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

    Two variants (:data:`VARIANTS`):

    - ``"gloss"`` (default): the formula above, the paper's intent with a row-stochastic
      :math:`\mathbf{T}`, in the embeddings' precision, a stratified split, and a choice of
      :obj:`loss_form`.
    - ``"released"``: the arithmetic of the released code (``Combined with CE/losses.py`` and
      ``Standalone/losses_unsupervised.py``), in float64 with no damping. The columns of
      :math:`\mathbf{S}` are normalised before its rows (``Tran = S / S.sum(0)``, ``T = Tran / Tran.sum(1)``,
      see :func:`~graphs.edge_weights.dense_transition` with ``column_first=True``); the propagated scores
      are the logits of a (class-weighted) cross-entropy over all :math:`C` classes,
      :math:`\mathcal{L} = \sum_{i \in u} w_{y_i} \ell_i / \sum_{i \in u} w_{y_i}` with
      :math:`\ell_i = -\log \mathrm{softmax}(\mathbf{F}_i)_{y_i}`; with :obj:`combined` (the code that
      adds a CE head) that mean is divided once more by :math:`|u|`, as the released code does. The
      visible set is ``randperm(B) < gamma * B`` (:math:`\lceil \gamma B \rceil` nodes, not stratified),
      and hidden nodes whose class has no visible node are kept. It implies its own loss form and is
      dense-only. (The released code also builds the kernel in the embeddings' dtype before casting to
      float64; here everything after the input is float64, and :math:`\mathbf{T}` is formed in log-space,
      equal to the direct form wherever that is representable.)

    Three graphs are available (``"knn"`` and ``"bank"`` for the ``"gloss"`` variant only):

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
    (every hidden node of a degenerate batch counts). Hidden nodes that propagation does not reach
    (``"knn"`` / ``"bank"``: a component without a visible node, so :math:`\mathbf{F}_i = 0`) are left
    out of the mean too, and counted in ``"stat_g_loss_unreached"``; ``"stat_g_loss_hidden"`` counts the
    batch's hidden nodes, so their ratio is the unreached share. Statistics are never summed into a
    total (see :mod:`graphs.losses.parts`). The ``"released"`` variant is degenerate only with nothing
    hidden or nothing visible.

    Args:
        graph (str, optional): ``"dense"``, ``"knn"`` or ``"bank"``. (default: ``"dense"``)
        variant (str, optional): ``"gloss"`` or ``"released"`` (see above). (default: ``"gloss"``)
        sigma (float or str, optional): Kernel width, or ``"batch-sqrt"`` / ``"batch-dicm"`` to recompute
            it on every batch with :func:`~graphs.sigma.sigma_sqrt_median` /
            :func:`~graphs.sigma.sigma_dicm` (on the L2-normalised nodes). The command line's default,
            ``--sigma sqrt``, is the same heuristic computed once on the pre-trained embeddings of the whole
            training split, which a loss does not see; give that number here to match a command-line run
            (``RUN/embed/sigma.json``). (default: :obj:`"batch-sqrt"`)
        gamma (float, optional): Share of batch nodes whose labels stay visible. The paper uses 0.5 to
            0.7; the default 0.6 is its middle. The split is stratified per class (each class with at
            least two members keeps at least one visible and one hidden node; a singleton class is
            visible) and drawn from a :class:`torch.Generator` seeded with :obj:`seed` (``"released"``:
            ``randperm(B) < gamma * B`` from the same generator). (default: :obj:`0.6`)
        k (int, optional): Neighbours per node for ``"knn"`` and ``"bank"`` (``"bank"`` adds :obj:`k` bank
            neighbours to the :obj:`k` batch neighbours). (default: :obj:`10`)
        num_iters (int, optional): Largest number of propagation steps of ``"knn"`` / ``"bank"``.
            (default: :obj:`50`)
        tol (float, optional): Early-stopping tolerance of the propagation. (default: :obj:`1e-6`)
        loss_form (str, optional): ``"gloss"`` variant only: ``"nll"`` (paper, Eq. 1) or ``"released"``
            (the propagated scores of the row-stochastic :math:`\mathbf{T}` are the logits of
            :func:`~torch.nn.functional.cross_entropy`). The ``"released"`` variant implies its own form
            and accepts only the default. (default: ``"nll"``)
        class_weights (Sequence[float] or Tensor, optional): Weight :math:`w_c` of each class in the
            (weighted) mean over hidden nodes, kept in float64 (e.g. scikit-learn's ``"balanced"``
            weights of the training labels, as the released code passes). (default: :obj:`None`)
        num_classes (int, optional): Number of classes :math:`C` (matters for ``loss_form="released"``
            and the ``"released"`` variant, whose logits span all classes). (default: largest label + 1)
        combined (bool, optional): ``"released"`` variant only: divide the loss by the number of hidden
            nodes once more, as the released combined (G-Loss + CE) code does; :obj:`False` is the
            standalone code. The command line sets it from ``--loss`` (:obj:`True` for ``gloss+ce``, its
            default; :obj:`False` for ``gloss``). (default: :obj:`True`)
        seed (int, optional): Seed of the visible/hidden split; :meth:`reseed` restarts it.
            (default: :obj:`0`)
        memory_bank (MemoryBank, optional): The bank of ``"bank"`` mode. (default: :obj:`None`)
        bank_update (bool, optional): Write the batch's detached embeddings into the bank after each
            forward in training mode. (default: :obj:`True`)
        normalize_embeddings (bool, optional): L2-normalise the embeddings first, as the paper.
            (default: :obj:`True`)
        damping (float, optional): :math:`\epsilon` of the dense solve
            :math:`(\mathbf{I} - (1-\epsilon)\mathbf{T}_{uu})`, which keeps it non-singular when hidden
            nodes are cut off from the seeds (only happens for tiny :math:`\sigma`); not used by
            ``"released"``. (default: :obj:`1e-6`)
        eps (float, optional): Floor of probabilities and row sums in the ``"nll"`` form; a hidden row
            whose propagated scores sum to at most :obj:`eps` is unreached. (default: :obj:`1e-8`)
        gather_across_devices (bool, optional): In a data-parallel run (an initialised
            :mod:`torch.distributed` process group), build the graph of the **global** batch: embeddings are
            gathered from every rank with gradients, labels, row ids and a given visible mask without (see
            :mod:`graphs.distributed`). Every rank then draws the same visible/hidden split (same seed, same
            labels) and, with ``"bank"``, writes the same rows into its bank, so the banks stay equal. Without
            a process group it changes nothing. (default: :obj:`False`)

    Shapes:
        - **input:** embeddings :math:`(B, D)`, labels :math:`(B)`, indices :math:`(B)` (``"bank"``),
          visible :math:`(B)` (optional fixed split)
        - **output:** ``{"g_loss": scalar, "stat_unscored", "stat_g_loss_unreached",
          "stat_g_loss_hidden": long scalars}`` (hidden nodes without a seed of their class, hidden nodes
          not reached, all hidden nodes; detached). ``"released"`` gives a float64 ``g_loss``.

    Example::

        >>> loss = GLoss(variant="released", sigma=0.1, gamma=0.7, num_classes=4, combined=False)
        >>> out = loss(torch.randn(32, 16), torch.arange(32) % 4)
        >>> sorted(out)
        ['g_loss', 'stat_g_loss_hidden', 'stat_g_loss_unreached', 'stat_unscored']
    """

    def __init__(
        self,
        graph: str = "dense",
        sigma: float | str = "batch-sqrt",
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
        variant: str = "gloss",
        combined: bool = True,
        gather_across_devices: bool = False,
    ):
        super().__init__()
        _check_config(graph, variant, loss_form, gamma, k, sigma, damping)
        if graph == "bank":
            if memory_bank is None:
                raise ValueError("Expected a 'memory_bank' for graph='bank'")
            if (memory_bank.metric == "cosine") != normalize_embeddings:
                raise ValueError(
                    f"Expected a memory bank with metric='{'cosine' if normalize_embeddings else 'l2'}' "
                    f"for normalize_embeddings={normalize_embeddings} (got '{memory_bank.metric}')"
                )
        self.graph = graph
        self.variant = variant
        self.combined = combined
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
        self.gather_across_devices = gather_across_devices
        self.propagation = DifferentiableLabelPropagation(num_iters=num_iters, tol=tol)
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float64)
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
        if self.gather_across_devices:
            embeddings, labels, indices, visible = gather_rows(embeddings, labels, indices, visible,
                                                               with_grad=(True, False, False, False))
        # The graph is built in at least float32 and outside autocast: the kernel, log-space normalisation
        # and the solve are not meaningful in half precision (and torch.linalg.solve rejects it).
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self._compute(embeddings, labels, indices, visible)

    def _compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None,
                 visible: Tensor | None) -> dict[str, Tensor]:
        x, x_all, y_all, visible_all, bank_nbr = self._nodes(embeddings, labels, indices, visible)
        hidden = self._hidden(visible_all, x.size(0))  # [U]
        keep = self._scored_hidden(y_all, visible_all, hidden)  # [U] bool
        loss, unreached = None, hidden.new_zeros(())
        if keep is not None:
            scores = self._scores(x_all, y_all, visible_all, hidden, bank_nbr)  # [U, C]
            if self.variant == "released":
                loss = self._released_loss(scores, y_all[hidden])
            else:
                reached = scores.clamp_min(0).sum(-1) > self.eps  # [U], F_i = 0: no path to a seed
                unreached = (keep & ~reached).sum()
                if bool((keep & reached).any()):
                    loss = self._loss(scores[keep & reached], y_all[hidden][keep & reached])
                else:
                    logger.debug("G-Loss: no scored hidden node is reached by propagation, returning zero")
        if loss is None:
            loss = embeddings.sum() * 0.0
        unscored = hidden.new_tensor(hidden.numel()) if keep is None else (~keep).sum()
        out = {"g_loss": loss, "stat_unscored": unscored.detach(), "stat_g_loss_unreached": unreached.detach(),
               "stat_g_loss_hidden": hidden.new_tensor(hidden.numel())}

        if self.graph == "bank" and self.bank_update and self.training:
            self.memory_bank.update(indices, x.detach(), labels)
        return out

    def _nodes(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None,
               visible: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """The (normalised) batch, and all nodes of the graph: ``(x, x_all, y_all, visible_all, bank_nbr)``."""
        labels = labels.to(embeddings.device)
        if self.variant == "released":
            x = embeddings.double()  # the released code's graph arithmetic is float64
        else:
            x = embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings
        x = nn.functional.normalize(x, dim=-1) if self.normalize_embeddings else x
        if visible is None:
            visible = self.split(labels)
        visible = visible.to(embeddings.device)
        if self.graph != "bank":
            return x, x, labels, visible, None
        if indices is None:
            raise ValueError("Expected 'indices' (dataset row ids of the batch) for graph='bank'")
        return x, *self._with_bank(x, labels, visible, indices)

    def propagated_scores(self, embeddings: Tensor, labels: Tensor, visible: Tensor,
                          indices: Tensor | None = None) -> Tensor:
        r"""The propagated scores :math:`\mathbf{F}_u` of the hidden nodes that the loss is computed from
        (``"released"``: its float64 logits; ``"gloss"``: the harmonic solution of the row-stochastic
        :math:`\mathbf{T}`), for a fixed visible mask.

        Shapes:
            - **input:** embeddings :math:`(B, D)`, labels :math:`(B)`, visible :math:`(B)`
            - **output:** :math:`(U, C)`, rows in the order of ``visible.logical_not().nonzero()``
        """
        self._check_inputs(embeddings, labels, indices, visible)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x, x_all, y_all, visible_all, bank_nbr = self._nodes(embeddings, labels, indices, visible)
            hidden = self._hidden(visible_all, x.size(0))  # [U]
            return self._scores(x_all, y_all, visible_all, hidden, bank_nbr)  # [U, C]

    def reseed(self, seed: int) -> None:
        """Restart the generator of the visible/hidden split at :obj:`seed` (e.g. once per epoch)."""
        self.generator.manual_seed(seed)

    @torch.no_grad()
    def split(self, labels: Tensor) -> Tensor:
        r"""A random boolean mask of visible nodes from the loss's generator: stratified per class
        (``"gloss"``), or ``randperm(B) < gamma * B`` (``"released"``).

        Shapes:
            - **input:** labels :math:`(B)`
            - **output:** :math:`(B)`
        """
        lab = labels.detach().cpu()
        size = lab.numel()
        if size == 0:
            return torch.zeros(0, dtype=torch.bool, device=labels.device)
        if self.variant == "released":
            return (torch.randperm(size, generator=self.generator) < self.gamma * size).to(labels.device)
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
            "variant": self.variant,
            "combined": self.combined,
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
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return CITATION

    def extra_repr(self) -> str:
        form = f"combined={self.combined}" if self.variant == "released" else f"loss_form='{self.loss_form}'"
        return (f"graph='{self.graph}', variant='{self.variant}', sigma={self.sigma!r}, gamma={self.gamma}, "
                f"k={self.k}, {form}")

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

    def _scored_hidden(self, labels: Tensor, visible: Tensor, hidden: Tensor) -> Tensor | None:
        """Hidden nodes that can be scored (``"gloss"``: their class has a visible seed; ``"released"``:
        all), or ``None`` if degenerate."""
        seed_classes = labels[visible].unique()
        if hidden.numel() == 0 or seed_classes.numel() == 0:
            logger.debug("G-Loss: degenerate batch (%d hidden, %d seed classes), returning zero",
                         hidden.numel(), seed_classes.numel())
            return None
        if self.variant == "released":  # the released code keeps every hidden node
            return torch.ones_like(hidden, dtype=torch.bool)
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

    @staticmethod
    def _hidden(visible_all: Tensor, batch_size: int) -> Tensor:
        """The scored nodes: the batch's hidden rows (the first ``batch_size`` nodes); hidden bank rows
        (unlabelled documents) pass propagation on and are never scored. Shapes: [N] -> [U]."""
        return visible_all[:batch_size].logical_not().nonzero().view(-1)  # [U]

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
        y_bank = bank.labels[rows].clamp_min(0).to(x.device)  # [M]; an unlabelled row's value is never read
        x_all = torch.cat([x, x_bank], dim=0)  # [B + M, D]
        y_all = torch.cat([labels, y_bank], dim=0)  # [B + M]
        # Labelled bank rows are seeds; unlabelled ones are hidden, and never scored (see _hidden).
        visible_all = torch.cat([visible, bank.labelled[rows].to(visible.device)], dim=0)  # [B + M]
        bank_nbr = (inverse.to(x.device) + x.size(0)).view(-1, k)  # [B, k] node ids of bank neighbours
        return x_all, y_all, visible_all, bank_nbr

    def _scores(self, x: Tensor, labels: Tensor, visible: Tensor, hidden: Tensor,
                bank_nbr: Tensor | None) -> Tensor:
        """Propagated scores of the hidden nodes, on the graph and variant of this loss."""
        num_classes = self._num_classes(labels)
        sigma = resolve_sigma(self.sigma, x.detach(), labels)
        self.last_sigma = sigma
        if self.graph == "dense":
            return self._dense_scores(x, labels, visible, hidden, sigma, num_classes)
        return self._sparse_scores(x, labels, visible, hidden, sigma, num_classes, bank_nbr)

    def _dense_scores(self, x: Tensor, labels: Tensor, visible: Tensor, hidden: Tensor, sigma: float,
                      num_classes: int) -> Tensor:
        released = self.variant == "released"
        T_u = dense_transition(x, sigma, rows=hidden, column_first=released)  # [U, B]
        damping = 0.0 if released else self.damping
        return harmonic_label_propagation(T_u, labels, visible, num_classes, eps=damping)  # [U, C]

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
            parts.append(knn_edge_index(bank_nbr))  # [2, B k_bank]: bank entry -> batch row
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

    def _released_loss(self, scores: Tensor, target: Tensor) -> Tensor:
        """Class-weighted cross-entropy of the float64 scores as logits, ``/ U`` more when combined."""
        weight = None if self.class_weights is None else self.class_weights.to(scores.device, torch.float64)
        loss = nn.functional.cross_entropy(scores, target, weight=weight)
        return loss / target.numel() if self.combined else loss

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


def _check_config(graph: str, variant: str, loss_form: str, gamma: float, k: int, sigma: float | str,
                  damping: float) -> None:
    """The constructor's checks of the hyperparameters, each a one-line :class:`ValueError`."""
    if graph not in GRAPHS:
        raise ValueError(f"Expected 'graph' to be one of {GRAPHS} (got '{graph}')")
    if variant not in VARIANTS:
        raise ValueError(f"Expected 'variant' to be one of {VARIANTS} (got '{variant}')")
    if variant == "released" and graph != "dense":
        raise ValueError(f"Expected graph='dense' for variant='released', which is dense-only (got '{graph}')")
    if loss_form not in LOSS_FORMS:
        raise ValueError(f"Expected 'loss_form' to be one of {LOSS_FORMS} (got '{loss_form}')")
    if variant == "released" and loss_form != "nll":
        raise ValueError(f"Expected the default loss_form='nll' for variant='released', which implies its own "
                         f"loss form (got '{loss_form}')")
    if not 0 < gamma < 1:
        raise ValueError(f"Expected 'gamma' to lie in (0, 1) (got {gamma})")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"Expected 'k' to be a positive integer (got {k!r})")
    _check_sigma(sigma)
    if not 0 <= damping < 1:
        raise ValueError(f"Expected 'damping' to lie in [0, 1) (got {damping})")


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
