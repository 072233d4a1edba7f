"""Training objectives by name: which loss parts a batch contributes and whether a linear head is trained.

Every objective is one row of :data:`OBJECTIVES` (name -> embedding-loss factory, its part name, head);
adding a loss is adding a row (and its name to ``pipeline.options.LOSSES``).

| name       | parts                                   | head | early stopping on       |
|------------|-----------------------------------------|------|-------------------------|
| `ce`       | cross-entropy of the head               | yes  | val macro-F1            |
| `gloss`    | G-Loss alone (standalone)               | no   | val macro-silhouette    |
| `gloss+ce` | lambda * G-Loss + (1 - lambda) * CE     | yes  | val macro-F1            |
| `scl+ce`   | lambda * SupCon + (1 - lambda) * CE     | yes  | val macro-F1            |
| `lcl+ce`   | (1 - lambda) * (CE + CE(g)) + lambda * LCL | yes | val macro-F1            |
| `triplet`  | batch-all triplet (standalone)          | no   | val macro-silhouette    |
| `cosine`   | pairwise cosine vs same-label target    | no   | val macro-silhouette    |

The parts of a batch are a dict of named tensors, as every loss of :mod:`graphs.losses` returns; keys
starting with ``"stat_"`` are statistics (e.g. G-Loss's ``stat_unscored``), passed through but never
weighted into ``"total"``.

G-Loss is built with ``variant=`` (``"gloss"`` or the released code's ``"released"``) and
``combined=(loss == "gloss+ce")``. Class weights (a ``[C]`` tensor, e.g. ``--class-weights balanced``
resolved by the train stage) reach CE, G-Loss and SupCon alike (and both CE terms of ``lcl+ce``).

In a data-parallel run (an initialised process group when the objective is built) every part is a loss of the
global batch: the embedding losses gather it themselves (:mod:`graphs.distributed`) and CE gathers the shards'
logits and labels, so its weighted mean counts every document of the global batch once, as one process does,
whatever the shards' sizes and the class weights.

``lcl+ce`` (label-aware contrastive loss, Suresh & Ong 2021) weighs each anchor's negatives by
``softmax(g(x))``, the class distribution of a weighting network ``g``: with ``lcl_weighting="separate"``
(the paper) a :class:`WeightingNetwork` (a second encoder and its own linear head) that the objective owns as
a submodule, so the loop trains it (:meth:`Objective.param_groups`), checkpoints it
(:meth:`Objective.network_state`) and gives it each batch's tokenised ``features``; with ``"head"``, ``g`` is
the main head (no second encoder, no ``ce_weighting`` part: it would repeat ``ce``). A separate ``g`` is not
detached; the main head's logits are. The loss is proportional to the anchor's weight of its own class,
``w_i[y_i]``, so its gradient lowers the true class's probability: the weighting network's own CE balances
that, but flowing into the main head it undid the classifier (MR, ``head`` with the gradient: validation
accuracy 0.24 after 2 epochs, where ``ce`` reaches 0.79), so ``head`` uses the head's current confidence
as the weights and trains the head by CE alone.

``lam`` and ``temperature`` left ``None`` are resolved per loss (``options.loss_default``: 0.5 and 0.3 for
``lcl+ce``, else 0.8 and 0.1), so the config (and the train manifest) holds the values used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline import options

# encode_train() -> (embeddings [N, D], labels [N]) of the whole training set, with the current encoder
EncodeTrain = Callable[[], tuple[Tensor, Tensor]]


@dataclass
class ObjectiveConfig:
    """Hyperparameters of every objective (each uses the ones it needs)."""

    loss: str = options.DEFAULT_LOSS
    lam: float | None = None  # None: options.loss_default(loss, "lam")
    gamma: float = options.GAMMA
    sigma: float | str = options.DEFAULT_SIGMA
    graph: str = options.DEFAULT_GRAPH_MODE
    k: int = options.K
    bank_index: str = options.DEFAULT_BANK_INDEX  # graph="bank": "flat" (exact) | "ivf"
    nprobe: int = options.NPROBE  # bank_index="ivf": inverted lists visited per query
    loss_form: str = options.DEFAULT_LOSS_FORM
    variant: str = options.DEFAULT_VARIANT
    class_weights: str = options.DEFAULT_CLASS_WEIGHTS  # "none" | "balanced", resolved by the train stage
    temperature: float | None = None  # None: options.loss_default(loss, "temperature")
    margin: float = options.MARGIN
    lcl_weighting: str = options.DEFAULT_LCL_WEIGHTING  # lcl+ce: "separate" | "head"

    def __post_init__(self) -> None:
        if self.lam is None:
            self.lam = options.loss_default(self.loss, "lam")
        if self.temperature is None:
            self.temperature = options.loss_default(self.loss, "temperature")

    @property
    def reads_corpus_sigma(self) -> bool:
        """Whether training reads ``RUN/embed/sigma.json``: G-Loss with a corpus sigma (``sqrt``/``dicm``)."""
        return self.loss in options.G_LOSSES and self.sigma in options.CORPUS_SIGMA_HEURISTICS


@dataclass(frozen=True)
class _Context:
    """What an embedding-loss factory may need beyond the config."""

    num_classes: int
    sigma: float | str
    seed: int
    train_size: int | None
    dim: int | None
    class_weights: Tensor | None
    gather: bool = False  # a data-parallel run: the loss sees the global batch (graphs.distributed)


def _g_loss(config: ObjectiveConfig, ctx: _Context) -> nn.Module:
    from graphs.losses import GLoss

    bank = None
    if config.graph == "bank":
        if ctx.train_size is None or ctx.dim is None:
            raise ValueError("Expected 'train_size' and 'dim' (the memory bank's shape) for graph='bank'")
        from graphs.memory_bank import MemoryBank

        bank = MemoryBank(ctx.train_size, ctx.dim, index=config.bank_index, nprobe=config.nprobe)
    return GLoss(graph=config.graph, variant=config.variant, sigma=ctx.sigma, gamma=config.gamma, k=config.k,
                 loss_form=config.loss_form, class_weights=ctx.class_weights, num_classes=ctx.num_classes,
                 combined=config.loss == "gloss+ce", seed=ctx.seed, memory_bank=bank,
                 gather_across_devices=ctx.gather)


def _supervised_contrastive(config: ObjectiveConfig, ctx: _Context) -> nn.Module:
    from graphs.losses import SupervisedContrastiveLoss

    return SupervisedContrastiveLoss(config.temperature, class_weights=ctx.class_weights,
                                     gather_across_devices=ctx.gather)


def _label_aware(config: ObjectiveConfig, ctx: _Context) -> nn.Module:
    from graphs.losses import LabelAwareContrastiveLoss

    return LabelAwareContrastiveLoss(config.temperature, gather_across_devices=ctx.gather)


def _triplet(config: ObjectiveConfig, ctx: _Context) -> nn.Module:
    from graphs.losses import BatchAllTripletLoss

    return BatchAllTripletLoss(config.margin)


def _cosine(config: ObjectiveConfig, ctx: _Context) -> nn.Module:
    from graphs.losses import PairwiseCosineLoss

    return PairwiseCosineLoss()


@dataclass(frozen=True)
class ObjectiveSpec:
    """One row of :data:`OBJECTIVES`.

    Args:
        build: the embedding loss's factory ``(config, context) -> loss``, or ``None`` (CE alone).
        part: the name of the embedding loss's main part in its output dict.
        head: whether a linear head is trained with cross-entropy (weighted ``1 - lam`` beside an embedding
            loss); it also picks the early-stopping monitor.
        indexed: whether the loss takes the batch's dataset row ids (``indices=``; G-Loss's memory bank).
        weighted: whether the loss takes the class logits of a weighting network (``logits=``; LCL): a
            :class:`WeightingNetwork` for ``lcl_weighting="separate"`` (its CE is the part ``ce_weighting``,
            weighted like ``ce``), else the main head's logits.
    """

    build: Callable[[ObjectiveConfig, _Context], nn.Module] | None
    part: str | None
    head: bool
    indexed: bool = False
    weighted: bool = False


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "ce": ObjectiveSpec(None, None, head=True),
    "gloss": ObjectiveSpec(_g_loss, "g_loss", head=False, indexed=True),
    "gloss+ce": ObjectiveSpec(_g_loss, "g_loss", head=True, indexed=True),
    "scl+ce": ObjectiveSpec(_supervised_contrastive, "scl", head=True),
    "lcl+ce": ObjectiveSpec(_label_aware, "lcl", head=True, weighted=True),
    "triplet": ObjectiveSpec(_triplet, "triplet", head=False),
    "cosine": ObjectiveSpec(_cosine, "cosine", head=False),
}


def uses_weighting_network(config: ObjectiveConfig) -> bool:
    """Whether ``config`` needs a :class:`WeightingNetwork` (``lcl+ce`` with ``lcl_weighting="separate"``)."""
    spec = OBJECTIVES.get(config.loss)
    return spec is not None and spec.weighted and config.lcl_weighting == "separate"


class WeightingNetwork(nn.Module):
    """LCL's weighting network ``g``: a sentence encoder and its own linear head; ``features -> logits [B, C]``.

    Args:
        encoder: a ``SentenceTransformer`` (a second copy of the main encoder, e.g. from
            :meth:`from_encoder_config`).
        num_classes (int): number of classes.
    """

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.get_embedding_dimension(), num_classes)
        # what it trains of its encoder: --train-layers as the main encoder (pipeline.training.partial); a
        # plain attribute, not a submodule (its modules are the encoder's)
        self.batch_encoder = None

    def follow(self, batch_encoder) -> None:
        """Train the encoder as ``batch_encoder`` says (``partial.encoder_for_copy`` of the main batch encoder:
        the same --train-layers on the same cached inputs); :meth:`forward` then takes its pooled embeddings."""
        self.batch_encoder = batch_encoder

    @classmethod
    def from_encoder_config(cls, encoder_config, num_classes: int) -> WeightingNetwork:
        """A fresh copy of the encoder ``encoder_config`` names (loaded as the main one) and a new head."""
        from pipeline.encoder import load_encoder

        encoder = load_encoder(encoder_config)
        return cls(encoder, num_classes).to(encoder.device)

    def forward(self, inputs: dict[str, Tensor] | Tensor) -> Tensor:
        """Class logits ``[B, C]`` of a batch's tokenised features (run through the whole encoder) or of the
        pooled embeddings ``[B, D]`` its batch encoder computed."""
        embeddings = inputs if isinstance(inputs, Tensor) else self.encoder(dict(inputs))["sentence_embedding"]
        return self.head(embeddings)


def monitor_of(loss: str) -> str:
    """The validation score early stopping (and ``gloss tune``) maximises for ``loss``: macro-F1 of the head,
    else macro-silhouette."""
    return "val_macro_f1" if OBJECTIVES[loss].head else "val_macro_silhouette"


class Objective(nn.Module):
    """Maps (embeddings, head logits, labels) of a batch to named loss parts and their weighted total.

    Args:
        config (ObjectiveConfig): the loss name (a key of :data:`OBJECTIVES`) and its hyperparameters.
        num_classes (int): number of classes.
        sigma_value (float, optional): the resolved kernel width of G-Loss (e.g. the corpus value of the embed
            stage); ``None`` passes ``config.sigma`` on as is (a number or ``"batch-sqrt"``/``"batch-dicm"``).
        seed (int, optional): first seed of G-Loss's visible/hidden split; :meth:`reseed` restarts it.
        train_size, dim (int, optional): the shape of the memory bank of ``graph="bank"``.
        class_weights (Tensor, optional): ``[C]`` weight of each class in CE, G-Loss and SupCon (e.g.
            :func:`balanced_class_weights` of the training labels); ``None`` weighs every class alike.
        weighting (WeightingNetwork, optional): LCL's weighting network, required by (and only by)
            ``lcl+ce`` with ``lcl_weighting="separate"``; a submodule, trained and checkpointed with the run.
    """

    def __init__(self, config: ObjectiveConfig, num_classes: int, *, sigma_value: float | None = None,
                 seed: int = 0, train_size: int | None = None, dim: int | None = None,
                 class_weights: Tensor | None = None, weighting: nn.Module | None = None) -> None:
        super().__init__()
        spec = OBJECTIVES.get(config.loss)
        if spec is None:
            raise ValueError(f"Expected 'loss' to be one of {', '.join(OBJECTIVES)} (got '{config.loss}')")
        self.config = config
        self.num_classes = num_classes
        self.spec = spec
        self.has_head = spec.head
        sigma = sigma_value if sigma_value is not None else config.sigma
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if class_weights.shape != (num_classes,):
                raise ValueError(f"Expected 'class_weights' of shape [{num_classes}] "
                                 f"(got {list(class_weights.shape)})")
        from graphs.distributed import is_distributed

        self.gather = is_distributed()  # a data-parallel run: every part is a loss of the global batch
        context = _Context(num_classes, sigma, seed, train_size, dim, class_weights, gather=self.gather)
        self.embedding_loss: nn.Module | None = None if spec.build is None else spec.build(config, context)
        self.weighting = self._check_weighting(weighting)
        if spec.part is None:
            self.weights = {"ce": 1.0}
        elif spec.head:
            self.weights = {spec.part: config.lam, "ce": 1.0 - config.lam}
        else:
            self.weights = {spec.part: 1.0}
        if self.weighting is not None:
            self.weights["ce_weighting"] = 1.0 - config.lam
        self.register_buffer("class_weights", class_weights)

    def _check_weighting(self, weighting: nn.Module | None) -> nn.Module | None:
        if self.spec.weighted and self.config.lcl_weighting not in options.LCL_WEIGHTINGS:
            raise ValueError(options.choice_error("--lcl-weighting", self.config.lcl_weighting,
                                                  options.LCL_WEIGHTINGS))
        needed = uses_weighting_network(self.config)
        if needed and weighting is None:
            raise ValueError(f"Expected a 'weighting' network for loss '{self.config.loss}' with "
                             "lcl_weighting='separate' (WeightingNetwork.from_encoder_config)")
        if not needed and weighting is not None:
            raise ValueError(f"Expected no 'weighting' network: loss '{self.config.loss}' with lcl_weighting="
                             f"'{self.config.lcl_weighting}' has none")
        return weighting

    def param_groups(self, encoder_lr: float, head_lr: float) -> list[dict]:
        """Optimizer groups of what the objective trains itself (the weighting network: its encoder at
        ``encoder_lr``, its head at ``head_lr``); empty for every other objective."""
        if self.weighting is None:
            return []
        from pipeline.training.partial import param_groups

        return param_groups(self.weighting.encoder, self.weighting.batch_encoder, encoder_lr, head_lr,
                            self.weighting.head.parameters())

    def network_state(self) -> dict[str, Tensor]:
        """The state of the networks the objective trains (the weighting network), for checkpoints; ``{}``
        for every other objective (its buffers, e.g. a memory bank, are rebuilt every epoch)."""
        return {} if self.weighting is None else self.weighting.state_dict()

    def load_network_state(self, state: dict[str, Tensor] | None) -> None:
        """Load what :meth:`network_state` returned (``None``/``{}``: nothing to load)."""
        if self.weighting is not None:
            if not state:
                raise ValueError("Expected the weighting network's state in the checkpoint")
            self.weighting.load_state_dict(state)

    @property
    def monitor(self) -> str:
        """The validation score early stopping watches: macro-F1 of the head, else macro-silhouette."""
        return monitor_of(self.config.loss)

    @property
    def uses_bank(self) -> bool:
        return getattr(self.embedding_loss, "memory_bank", None) is not None

    def reseed(self, seed: int) -> None:
        """Restart every random draw the objective owns (G-Loss's visible/hidden split) at ``seed``."""
        reseed = getattr(self.embedding_loss, "reseed", None)
        if reseed is not None:
            reseed(seed)

    def on_epoch_start(self, encode_train: EncodeTrain) -> None:
        """Refresh what the objective keeps across batches: the memory bank of ``graph="bank"`` is refilled
        from ``encode_train()`` (called only then; G-Loss itself writes each batch's rows after its forward)."""
        if self.uses_bank:
            embeddings, labels = encode_train()
            self.embedding_loss.memory_bank.fill(embeddings, labels)

    @property
    def combines(self) -> bool:
        """Whether a batch has both a head (CE) and an embedding loss (what ``second_forward`` is for)."""
        return self.has_head and self.embedding_loss is not None

    def forward(self, embeddings: Tensor, logits: Tensor | None, labels: Tensor,
                indices: Tensor | None = None, *, loss_embeddings: Tensor | None = None,
                features: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Loss parts of one batch (and any statistics) plus the weighted sum of the parts under ``"total"``.

        ``loss_embeddings`` (optional) are what the embedding loss scores instead of ``embeddings``: a second
        encoder forward of the same batch, with fresh dropout (the released G-Loss code's second pass).
        ``features`` are the batch's tokenised inputs, encoded by the weighting network (when there is one).

        Shapes:
            embeddings [B, D], logits [B, C] or None, labels [B], indices [B] (dataset rows, bank mode),
            loss_embeddings [B, D] or None
        """
        parts: dict[str, Tensor] = {}
        if "ce" in self.weights:
            parts["ce"] = self._cross_entropy(logits, labels)
        if self.embedding_loss is not None:
            extra = {"indices": indices} if self.spec.indexed else {}
            if self.spec.weighted:
                extra["logits"] = self._weighting_logits(logits, labels, features, parts)
            scored = embeddings if loss_embeddings is None else loss_embeddings
            parts.update(self.embedding_loss(scored, labels, **extra))
        parts["total"] = sum(self.weights[name] * value for name, value in parts.items() if name in self.weights)
        return parts

    def _weighting_logits(self, logits: Tensor | None, labels: Tensor, features: dict[str, Tensor] | None,
                          parts: dict[str, Tensor]) -> Tensor:
        """The class logits of LCL's ``g``: the separate weighting network's (not detached; its CE goes to
        ``ce_weighting``), or the main head's, detached (see the module docstring)."""
        if self.weighting is None:
            return logits.detach()
        if features is None:
            raise ValueError("Expected the batch's tokenised 'features' for the weighting network")
        weighting_logits = self.weighting(features)  # [B, C]
        parts["ce_weighting"] = self._cross_entropy(weighting_logits, labels)
        return weighting_logits

    def _cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Class-weighted CE, the mean over the global batch: in a data-parallel run the shards' logits (with
        gradients) and labels are gathered first, so each rank computes the single-process value; a per-shard
        mean would weigh the documents of a smaller shard (an odd global batch, ``--balanced``) or of a shard
        with lighter classes more.

        Shapes:
            logits [B_r, C], labels [B_r] -> a scalar
        """
        if self.gather:
            from graphs.distributed import gather_rows

            logits, labels = gather_rows(logits, labels)  # [B, C], [B]
        return F.cross_entropy(logits, labels, weight=self.class_weights)


def balanced_class_weights(labels, num_classes: int) -> Tensor:
    """scikit-learn's ``compute_class_weight("balanced")``, ``n / (C * n_c)``, of the labels ``[N]`` (the whole
    training split, as the released G-Loss code computes it); a ``[C]`` float tensor."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    present = np.unique(labels)
    if len(present) != num_classes:
        missing = sorted(set(range(num_classes)) - set(present.tolist()))
        raise ValueError(f"Expected every class in the training labels for balanced class weights "
                         f"(missing class ids {missing})")
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
    return torch.tensor(weights, dtype=torch.float32)
