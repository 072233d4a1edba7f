"""A trained model folder as a text classifier in one call: :meth:`GlossClassifier.from_pretrained`.

It reads the folders ``gloss train`` writes (``RUN/train/model/``: the encoder, its linear head in
``head.pt`` and the label names in ``labels.json``) and the folders of sentence-transformers' own trainer
with :class:`~pipeline.training.st_loss.GLossCEST` (a :class:`~pipeline.training.st_head.ClassifierHead` as
the last module). ``predict`` gives label names and ``predict_proba`` class probabilities, as in SetFit and
scikit-learn.

Example::

    >>> from pipeline.classifier import GlossClassifier
    >>> classifier = GlossClassifier.from_pretrained("runs/demo/train/model")
    >>> classifier.predict(["oil prices rose", "the bank raised its rate"])
    ['crude', 'interest']
    >>> classifier.predict_proba(["oil prices rose"]).shape   # [N, C], columns in classifier.labels
    (1, 8)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.artifacts import HEAD_FILE, LABELS_FILE, load_head
from pipeline.errors import GlossError

__all__ = ["GlossClassifier"]


class GlossClassifier:
    """A sentence-transformers encoder with its linear head and label names.

    Args:
        encoder (SentenceTransformer): The encoder (its ``encode`` gives the sentence embeddings).
        head (torch.nn.Linear): The linear head, :math:`D \\to C`.
        labels (list[str]): The class names, in the head's output order.

    Shapes:
        - **predict_proba:** :math:`(N, C)` float32, rows summing to 1
        - **predict:** a list of :math:`N` label names
    """

    def __init__(self, encoder, head, labels: list[str]):
        if head.out_features != len(labels):
            raise ValueError(f"Expected {head.out_features} label names for the head (got {len(labels)})")
        self.encoder, self.head, self.labels = encoder, head, list(labels)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> GlossClassifier:
        """The classifier saved in ``path`` (a ``gloss train`` model folder or a sentence-transformers folder
        whose last module is a ``ClassifierHead``); a one-line error when the folder has no head."""
        from sentence_transformers import SentenceTransformer

        folder = Path(path)
        if not (folder / "modules.json").is_file():
            raise GlossError(f"{folder}: not a sentence-transformers model folder (no modules.json)")
        modules = json.loads((folder / "modules.json").read_text())
        st_head = bool(modules) and modules[-1].get("type", "").endswith("ClassifierHead")
        encoder = SentenceTransformer(str(folder), device=device, trust_remote_code=st_head)
        if st_head:
            head_module = encoder[-1]
            encoder = SentenceTransformer(modules=list(encoder)[:-1], device=device)
            head = head_module.linear
        else:
            head = load_head(folder, device=device)
            if head is None:
                raise GlossError(f"{folder}: no classification head ({HEAD_FILE}); this model was trained without "
                                 "one (a standalone embedding loss): use SentenceTransformer(path).encode(texts)")
        return cls(encoder, head.eval(), _label_names(folder, head.out_features))

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities of ``texts``: ``[N, C]``, columns in :attr:`labels` order."""
        import torch

        if not len(texts):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        embeddings = self.encoder.encode(list(texts), batch_size=batch_size, convert_to_tensor=True)  # [N, D]
        with torch.inference_mode():
            logits = self.head(embeddings.to(next(self.head.parameters()).device).float())  # [N, C]
            return torch.softmax(logits, dim=-1).cpu().numpy()

    def predict(self, texts: list[str], batch_size: int = 32) -> list[str]:
        """The most probable label name of each of ``texts``."""
        return [self.labels[i] for i in self.predict_proba(texts, batch_size).argmax(axis=1)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(labels={len(self.labels)}, dim={self.head.in_features})"


def _label_names(folder: Path, num_classes: int) -> list[str]:
    """``labels.json`` of the folder, else the class ids as names (a sentence-transformers folder has none)."""
    path = folder / LABELS_FILE
    if not path.is_file():
        return [str(i) for i in range(num_classes)]
    labels = json.loads(path.read_text())
    if len(labels) != num_classes:
        raise GlossError(f"{path}: {len(labels)} label names for a head of {num_classes} classes")
    return labels
