r"""Text graphs: TextGCN cleaning and the document-word PMI / TF-IDF graph."""

from .clean import ENGLISH_STOP_WORDS, clean_corpus, clean_str, cleaning_defaults, tokenize
from .graph import (
    TextGraph,
    build_text_graph,
    encode_corpus,
    normalize_adjacency,
    pmi_matrix,
    scipy_to_torch_sparse,
    sliding_windows,
    tfidf_matrix,
    window_cooccurrence,
)

__all__ = [
    "ENGLISH_STOP_WORDS",
    "clean_str",
    "tokenize",
    "clean_corpus",
    "cleaning_defaults",
    "TextGraph",
    "build_text_graph",
    "encode_corpus",
    "sliding_windows",
    "window_cooccurrence",
    "pmi_matrix",
    "tfidf_matrix",
    "normalize_adjacency",
    "scipy_to_torch_sparse",
]
