"""The sentence-transformers adapters of G-Loss: :class:`GLossST` encodes, :class:`graphs.losses.GLoss` scores;
:class:`GLossCEST` adds cross-entropy through a :class:`~pipeline.training.st_head.ClassifierHead`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn

from graphs.losses import GLoss
from pipeline.training.st_head import classifier_head

__all__ = ["GLossCEST", "GLossST", "split_labels"]


def split_labels(labels: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(class ids [B], row ids [B] or None)`` of the labels a sentence-transformers loss receives: ``[B]``,
    or ``[B, 2]`` of (label, dataset row id) as :class:`~pipeline.training.st_data.GLossDataCollator` makes."""
    if labels.dim() == 1:
        return labels.long(), None
    if labels.dim() != 2 or labels.size(1) != 2:
        raise ValueError(f"Expected 'labels' of shape [B] or [B, 2] (got {list(labels.shape)})")
    return labels[:, 0].long(), labels[:, 1].long()


def _one_column(columns: Tensor | Sequence[Any] | Iterable[Any], owner: str) -> Any:
    """The single element of ``columns`` (one feature dict or one embedding tensor per text column); a lone
    tensor passes as it is."""
    if isinstance(columns, Tensor):
        return columns
    columns = list(columns)
    if len(columns) != 1:
        raise ValueError(f"Expected a single text column for {owner} (got {len(columns)})")
    return columns[0]


class GLossST(nn.Module):
    r"""G-Loss (Sharma et al., "G-Loss: Graph-Guided Fine-Tuning of Language Models", LoG 2025) as a
    sentence-transformers loss, usable with :class:`~sentence_transformers.SentenceTransformerTrainer`.
    It encodes the single text column and hands the embeddings to :class:`graphs.losses.GLoss`:

    .. math::
        \mathcal{L} = \mathrm{GLoss}(f_\theta(\text{texts}), \mathbf{y})

    Inputs are single texts with an integer class label. For ``graph="bank"`` the loss also needs each row's
    dataset row id (it locates the batch in the memory bank): give the dataset an int ``row_id`` column and
    the trainer ``data_collator=GLossDataCollator(preprocess_fn=model.preprocess)``
    (:mod:`pipeline.training.st_data`), which hands the loss labels ``[B, 2]`` of (label, row id) while the
    ``label`` column stays an int, as ``BatchSamplers.GROUP_BY_LABEL`` needs. A ``label`` column holding
    ``[label, row_id]`` pairs works too, with the default sampler only. The bank is only updated while the
    model is in training mode.

    Requirements: at least 2 classes with at least 2 members each in a batch (the global batch with
    :obj:`gather_across_devices`); ``BatchSamplers.GROUP_BY_LABEL`` guarantees it.

    Args:
        model (SentenceTransformer): The encoder being fine-tuned.
        gather_across_devices (bool, optional): In a data-parallel run (the trainer's DDP), build the graph
            of the global batch, gathered from every rank with gradients (see :mod:`graphs.distributed`);
            without a process group it changes nothing. (default: :obj:`False`)
        **gloss_kwargs: Arguments of :class:`graphs.losses.GLoss` (``graph``, ``sigma``, ``gamma``, ...),
            with its defaults but one: ``combined`` defaults to :obj:`False` here (standalone G-Loss, as
            ``gloss train --loss gloss``) and to :obj:`True` in :class:`GLossCEST` (``--loss gloss+ce``).

    Defaults against the command line: ``sigma="batch-sqrt"`` (GLoss's default) is recomputed on every batch,
    where ``gloss train``'s default ``--sigma sqrt`` is computed once on the pre-trained training split;
    pass that number (``RUN/embed/sigma.json``) to match a command-line run. The other G-Loss defaults
    (``gamma``, ``graph``, ``k``, ``loss_form``, ``variant``) are the command line's.

    Shapes:
        - **input:** one feature dict of a batch of :math:`B` texts, labels :math:`(B)` or :math:`(B, 2)`;
          :meth:`compute_loss_from_embeddings` takes ``[embeddings]`` (one :math:`(B, D)` tensor per text
          column, the convention wrappers call) or the tensor itself
        - **output:** scalar, the ``"g_loss"`` part alone (the sentence-transformers trainer sums every value
          of a returned dict, and G-Loss's ``stat_*`` statistics must never be summed)

    Example::

        >>> loss = GLossST(model, graph="knn", k=5, sigma="batch-sqrt")
        >>> trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss)
    """

    combined_default = False  # standalone G-Loss: the released standalone code's scaling

    def __init__(self, model: SentenceTransformer, *, gather_across_devices: bool = False, **gloss_kwargs: Any):
        super().__init__()
        self.model = model
        gloss_kwargs.setdefault("combined", self.combined_default)
        self.gloss = GLoss(gather_across_devices=gather_across_devices, **gloss_kwargs)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = _one_column(sentence_features, self.__class__.__name__)
        embeddings = self.model(features)["sentence_embedding"]  # [B, D]
        return self.compute_loss_from_embeddings([embeddings], labels)

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor] | Tensor, labels: Tensor) -> Tensor:
        return self._g_loss(_one_column(embeddings, self.__class__.__name__), labels)

    def _g_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        class_ids, row_ids = split_labels(labels)
        self.gloss.train(self.model.training)  # the trainer toggles the model, not the loss
        return self.gloss(embeddings, class_ids, indices=row_ids)["g_loss"]

    @property
    def gather_across_devices(self) -> bool:
        return self.gloss.gather_across_devices

    def get_config_dict(self) -> dict[str, Any]:
        return self.gloss.get_config_dict()

    @property
    def citation(self) -> str:
        return self.gloss.citation


class GLossCEST(GLossST):
    r"""G-Loss plus cross-entropy of a linear head, for single-sentence classification in the
    sentence-transformers trainer (which has no single-sentence classification loss):

    .. math::
        \mathcal{L} = \lambda\, \mathrm{GLoss}(\mathbf{X}, \mathbf{y})
            + (1 - \lambda)\, \mathrm{CE}(\mathbf{W}\mathbf{X} + \mathbf{b}, \mathbf{y})

    The head is a :class:`~pipeline.training.st_head.ClassifierHead` appended to the model (reused when the
    model already ends with one), so the trainer saves it with the model, DDP synchronises it with the
    encoder, and :func:`~pipeline.training.st_head.predict_labels` predicts with the reloaded model
    (``SentenceTransformer(path, trust_remote_code=True)``). Labels and the bank mode are as in
    :class:`GLossST`.

    Args:
        model (SentenceTransformer): The encoder being fine-tuned; a head is appended to it.
        num_labels (int): Number of classes :math:`C`.
        lam (float, optional): Weight :math:`\lambda` of G-Loss. (default: :obj:`0.8`)
        return_parts (bool, optional): Return ``{"g_loss": ..., "ce": ...}`` (each already weighted; the
            trainer sums and logs them), or their sum as a scalar, for wrappers that do arithmetic on the loss
            (``MatryoshkaLoss``). (default: :obj:`True`)
        gather_across_devices (bool, optional): As in :class:`GLossST`, for the G-Loss part (cross-entropy
            is per row). (default: :obj:`False`)
        **gloss_kwargs: Arguments of :class:`graphs.losses.GLoss`; ``combined`` defaults to :obj:`True`
            (the released combined code's scaling, as ``gloss train --loss gloss+ce``).

    Shapes:
        - **input:** as :class:`GLossST`; :meth:`compute_loss_from_embeddings` also takes ``logits``
          :math:`(B, C)` (computed by the head when left out)
        - **output:** ``{"g_loss": scalar, "ce": scalar}``, or a scalar with ``return_parts=False``

    Example::

        >>> loss = GLossCEST(model, num_labels=8, lam=0.8, graph="knn", k=5)
        >>> SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss).train()
        >>> predict_labels(model, ["oil prices rose"])  # tensor([class id])
    """

    combined_default = True  # G-Loss + CE: the released combined code's scaling

    def __init__(self, model: SentenceTransformer, num_labels: int, lam: float = 0.8, *,
                 return_parts: bool = True, gather_across_devices: bool = False, **gloss_kwargs: Any):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"Expected 'lam' in [0, 1] (got {lam})")
        super().__init__(model, gather_across_devices=gather_across_devices, **gloss_kwargs)
        self.head = classifier_head(model, num_labels)
        self.lam = lam
        self.return_parts = return_parts

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> dict[str, Tensor] | Tensor:
        features = _one_column(sentence_features, self.__class__.__name__)
        out = self.model(features)
        return self.compute_loss_from_embeddings([out["sentence_embedding"]], labels, logits=out["logits"])

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor] | Tensor, labels: Tensor,
                                     logits: Tensor | None = None) -> dict[str, Tensor] | Tensor:
        embeddings = _one_column(embeddings, self.__class__.__name__)  # [B, D]
        if logits is None:
            logits = self.head({"sentence_embedding": embeddings})["logits"]  # [B, C]
        parts = {"g_loss": self.lam * self._g_loss(embeddings, labels),
                 "ce": (1.0 - self.lam) * F.cross_entropy(logits, split_labels(labels)[0])}
        return parts if self.return_parts else parts["g_loss"] + parts["ce"]

    def get_config_dict(self) -> dict[str, Any]:
        return {"num_labels": self.head.num_labels, "lam": self.lam} | super().get_config_dict()
