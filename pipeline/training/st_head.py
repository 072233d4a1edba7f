"""A linear classification head that lives in a ``SentenceTransformer`` pipeline, so it is saved and loaded
with the model (:class:`ClassifierHead`), and prediction with it (:func:`predict_labels`)."""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Module
from torch import Tensor, nn

__all__ = ["ClassifierHead", "classifier_head", "predict_labels"]


class ClassifierHead(Module):
    r"""A linear head on the sentence embedding, as the last module of a
    :class:`~sentence_transformers.SentenceTransformer`: it adds ``"logits"`` to the features and leaves
    ``"sentence_embedding"`` as it was, so ``model.encode`` still returns the embeddings.

    .. math::
        \mathbf{z} = \mathbf{W}\mathbf{x} + \mathbf{b}

    ``model.save_pretrained`` writes it to its own sub-folder (``config.json`` + ``model.safetensors``);
    ``modules.json`` names this class, so reloading needs ``SentenceTransformer(path, trust_remote_code=True)``
    (sentence-transformers 6 asks for it for any module class outside its own package) and gloss installed.

    Args:
        in_features (int): Embedding dimension :math:`D`.
        num_labels (int): Number of classes :math:`C`.

    Shapes:
        - **input:** ``features["sentence_embedding"]`` :math:`(B, D)`
        - **output:** the features plus ``features["logits"]`` :math:`(B, C)`
    """

    config_keys = ["in_features", "num_labels"]

    def __init__(self, in_features: int, num_labels: int):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"Expected 'num_labels' of at least 2 (got {num_labels})")
        self.in_features = in_features
        self.num_labels = num_labels
        self.linear = nn.Linear(in_features, num_labels)

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        features["logits"] = self.linear(features["sentence_embedding"])  # [B, C]
        return features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs) -> ClassifierHead:
        where = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder, "revision": revision,
                 "local_files_only": local_files_only}
        head = cls(**cls.load_config(model_name_or_path, **where))
        cls.load_torch_weights(model_name_or_path, model=head, **where)
        return head


def classifier_head(model: SentenceTransformer, num_labels: int) -> ClassifierHead:
    """The model's :class:`ClassifierHead` (its last module); a new one of ``num_labels`` classes is appended
    when it has none. One with another number of classes is an error."""
    last = model[-1]
    if isinstance(last, ClassifierHead):
        if last.num_labels != num_labels:
            raise ValueError(f"Expected the model's ClassifierHead to have {num_labels} labels "
                             f"(got {last.num_labels})")
        return last
    head = ClassifierHead(model.get_embedding_dimension(), num_labels).to(model.device)
    model.append(head)
    return head


@torch.no_grad()
def predict_labels(model: SentenceTransformer, texts: list[str], batch_size: int = 32) -> Tensor:
    """Class ids of ``texts`` from the model's :class:`ClassifierHead`.

    Shapes:
        - **output:** long :math:`(N)`
    """
    if not isinstance(model[-1], ClassifierHead):
        raise ValueError("Expected a model whose last module is a ClassifierHead (train it with GLossCEST)")
    logits = model.encode(texts, batch_size=batch_size, output_value="logits", convert_to_tensor=True)
    return torch.stack(list(logits)).argmax(dim=-1) if len(texts) else torch.zeros(0, dtype=torch.long)
