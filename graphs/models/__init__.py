r"""Graph models: TextGCN and the BertGCN head."""

from .bertgcn import BertGCN, BertGCNHead, doc_node_features, replace_rows
from .sparse import get_spmm_backend, set_spmm_backend, symmetric_spmm
from .textgcn import TextGCN, TextGCNPyG

__all__ = [
    "symmetric_spmm",
    "set_spmm_backend",
    "get_spmm_backend",
    "TextGCN",
    "TextGCNPyG",
    "BertGCNHead",
    "BertGCN",
    "replace_rows",
    "doc_node_features",
]
