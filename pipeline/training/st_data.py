"""The data collator of G-Loss's memory bank in the sentence-transformers trainer (:class:`GLossDataCollator`).

The bank mode needs each row's dataset row id beside its label. sentence-transformers passes a loss only the
``label`` column and tokenises every other column as text, and its ``GROUP_BY_LABEL`` batch sampler groups
rows by the ``label`` column's values (which must be hashable). So the label column stays an int and the row
id lives in its own int column (``row_id``); this collator takes it out before tokenising and hands the loss
``labels`` of shape ``[B, 2]`` (label, row id), the form :class:`~pipeline.training.st_loss.GLossST` reads.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

__all__ = ["ROW_ID_COLUMN", "GLossDataCollator"]

ROW_ID_COLUMN = "row_id"


class GLossDataCollator(SentenceTransformerDataCollator):
    r"""sentence-transformers' data collator that also passes a row-id column to the loss.

    A batch whose rows carry :obj:`row_id_column` gets ``batch["label"]`` of shape ``[B, 2]``
    (``[:, 0]`` the label, ``[:, 1]`` the row id); a batch without it is collated as by
    :class:`~sentence_transformers.sentence_transformer.data_collator.SentenceTransformerDataCollator`
    (e.g. an evaluation set without row ids).

    Args:
        *args, **kwargs: Those of ``SentenceTransformerDataCollator`` (``preprocess_fn=model.preprocess``, ...).
        row_id_column (str, optional): The column of dataset row ids. (default: ``"row_id"``)

    Shapes:
        - **input:** rows ``{"text": str, "label": int, "row_id": int}``
        - **output:** ``batch["label"]`` :math:`(B, 2)` long, plus the tokenised text columns

    Example::

        >>> train = train.add_column("row_id", list(range(len(train))))
        >>> collator = GLossDataCollator(preprocess_fn=model.preprocess)
        >>> trainer = SentenceTransformerTrainer(model, args, train, loss=loss, data_collator=collator)
    """

    def __init__(self, *args, row_id_column: str = ROW_ID_COLUMN, **kwargs):
        super().__init__(*args, **kwargs)
        self.row_id_column = row_id_column

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features or self.row_id_column not in features[0]:
            return super().__call__(features)
        row_ids = torch.tensor([row[self.row_id_column] for row in features], dtype=torch.long)  # [B]
        rest = [{key: value for key, value in row.items() if key != self.row_id_column} for row in features]
        batch = super().__call__(rest)
        if "label" not in batch:
            raise ValueError(f"Expected a label column beside '{self.row_id_column}' "
                             f"(one of {self.valid_label_columns})")
        labels = batch["label"]
        if labels.dim() != 1:
            raise ValueError(f"Expected one int label per row beside '{self.row_id_column}' "
                             f"(got labels of shape {list(labels.shape)})")
        batch["label"] = torch.stack([labels.long(), row_ids], dim=1)  # [B, 2]
        return batch
