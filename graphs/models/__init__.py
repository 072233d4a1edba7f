r"""Graph models: TextGCN and the BertGCN head."""

from .bertgcn import BertGCN, BertGCNHead, doc_node_features, replace_rows
from .sparse import symmetric_spmm
from .textgcn import TextGCN, TextGCNPyG

__all__ = [
    "symmetric_spmm",
    "TextGCN",
    "TextGCNPyG",
    "BertGCNHead",
    "BertGCN",
    "replace_rows",
    "doc_node_features",
]
