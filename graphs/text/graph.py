r"""The heterogeneous document-word graph of TextGCN
(`Yao et al., AAAI 2019 <https://arxiv.org/abs/1809.05679>`_), built with vectorised scipy.sparse algebra.

Nodes are every document (train and test: the graph is transductive) and every vocabulary word.
**Node order:** documents first, in the order given (callers pass train documents, then test documents),
then words in sorted vocabulary order. :meth:`TextGraph.doc_node_ids` and :meth:`TextGraph.word_node_ids`
give the node ids.

Edges (:math:`A_{ij}`):

* word-word: positive point-wise mutual information over sliding windows of ``window_size`` tokens
  (a document shorter than the window is a single window; an empty document has none),

  .. math::
      \mathrm{PMI}(i, j) = \log \frac{\#W(i, j) \cdot \#W}{\#W(i) \cdot \#W(j)},

  where :math:`\#W` is the number of windows, :math:`\#W(i)` the number of windows containing word
  :math:`i` and :math:`\#W(i, j)` the number of windows containing both (``pair_count="windows"``, the
  paper's definition). ``pair_count="positions"`` counts, as the released TextGCN code does, every pair
  of token positions in a window holding the two words, i.e. :math:`\#W(i, j) = \sum_w n_w(i)\, n_w(j)`
  with :math:`n_w(i)` the occurrences of :math:`i` in window :math:`w` (:math:`\#W(i)` stays the number
  of windows). Only pairs with :math:`\mathrm{PMI} > 0` become edges; there are no word self-pairs.
* document-word: TF-IDF with :math:`\mathrm{tf}` the raw count of the word in the document and
  :math:`\mathrm{idf} = \log(N_{docs} / \mathrm{df})`, df the number of documents containing the word
  (natural log, no smoothing, as in TextGCN's code).
* document-document: none.

:math:`A` is made symmetric by an element-wise maximum with its transpose, and the GCN propagation matrix is
:math:`\hat{A} = D^{-1/2}(A + I)D^{-1/2}` with :math:`D_{ii} = \sum_j (A + I)_{ij}`.

Window co-occurrences are counted as :math:`M^\top M` of a sparse window-by-word incidence matrix
:math:`M`, built and multiplied in chunks of windows so that peak memory stays bounded on long corpora.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = [
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

PairCount = Literal["windows", "positions"]
PAIR_COUNTS: tuple[str, ...] = get_args(PairCount)  # ("windows", "positions")


def encode_corpus(docs: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    r"""Builds the sorted vocabulary of a tokenised corpus and encodes it as one flat id array.

    Args:
        docs (Sequence[Sequence[str]]): One token list per document.

    Returns:
        (list[str], np.ndarray, np.ndarray): The vocabulary, the concatenated token ids ``[T]`` (int64)
        and the document lengths ``[N_docs]`` (int64).
    """
    vocab = sorted({word for doc in docs for word in doc})
    index = {word: i for i, word in enumerate(vocab)}
    lengths = np.fromiter((len(doc) for doc in docs), dtype=np.int64, count=len(docs))
    tokens = np.fromiter((index[w] for doc in docs for w in doc), dtype=np.int64, count=int(lengths.sum()))
    return vocab, tokens, lengths


def sliding_windows(lengths: np.ndarray, window_size: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Start offsets (into the flat token array) and sizes of every sliding window.

    A document of length :math:`L \geq` ``window_size`` has :math:`L - w + 1` windows of ``window_size``
    tokens; a shorter, non-empty document is one window of :math:`L` tokens; an empty one has none.

    Args:
        lengths (np.ndarray): Document lengths ``[N_docs]``.
        window_size (int): Tokens per window.

    Returns:
        (np.ndarray, np.ndarray): ``starts`` ``[N_windows]`` and ``sizes`` ``[N_windows]`` (int64).
    """
    if window_size < 1:
        raise ValueError(f"Expected 'window_size' to be at least 1 (got {window_size})")
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    num_win = np.where(lengths == 0, 0, np.maximum(lengths - window_size + 1, 1))  # [N_docs]
    win_doc = np.repeat(np.arange(len(lengths)), num_win)  # [N_windows]
    first = np.cumsum(num_win) - num_win  # [N_docs] index of each doc's first window
    starts = offsets[win_doc] + (np.arange(len(win_doc)) - first[win_doc])  # [N_windows]
    sizes = np.minimum(lengths, window_size)[win_doc]  # [N_windows]
    return starts, sizes


def window_cooccurrence(
    tokens: np.ndarray,
    lengths: np.ndarray,
    num_words: int,
    window_size: int = 20,
    pair_count: PairCount = "windows",
    chunk_tokens: int = 4_000_000,
) -> tuple[sp.csr_matrix, np.ndarray, int]:
    r"""Word-pair co-occurrence counts over sliding windows, :math:`M^\top M` accumulated over chunks.

    Args:
        tokens (np.ndarray): Flat token ids ``[T]``.
        lengths (np.ndarray): Document lengths ``[N_docs]``.
        num_words (int): Vocabulary size ``V``.
        window_size (int, optional): Tokens per window. (default: :obj:`20`)
        pair_count (str, optional): ``"windows"`` (windows containing both words) or ``"positions"``
            (pairs of token positions in a window; released TextGCN code). (default: :obj:`"windows"`)
        chunk_tokens (int, optional): Window-token entries per chunk of :math:`M`; bounds memory.
            (default: :obj:`4_000_000`)

    Returns:
        (scipy.sparse.csr_matrix, np.ndarray, int): Pair counts ``[V, V]`` (int64, symmetric, zero
        diagonal), windows per word ``#W(i)`` ``[V]`` and the number of windows ``#W``.
    """
    if pair_count not in PAIR_COUNTS:
        raise ValueError(f"Expected 'pair_count' to be 'windows' or 'positions' (got {pair_count!r})")
    starts, sizes = sliding_windows(lengths, window_size)
    num_windows = len(starts)
    window_freq = np.zeros(num_words, dtype=np.int64)
    pairs = sp.csr_matrix((num_words, num_words), dtype=np.int64)
    ends = np.cumsum(sizes)  # [N_windows] cumulative entries, to cut chunks
    lo = 0
    while lo < num_windows:
        base = ends[lo - 1] if lo > 0 else 0
        hi = max(int(np.searchsorted(ends, base + chunk_tokens, side="right")), lo + 1)
        size = sizes[lo:hi]
        total = int(size.sum())
        rows = np.repeat(np.arange(hi - lo), size)  # [E] window of each entry
        within = np.arange(total) - np.repeat(np.cumsum(size) - size, size)  # [E] position in window
        cols = tokens[np.repeat(starts[lo:hi], size) + within]  # [E] word of each entry
        m = sp.csr_matrix((np.ones(total, dtype=np.int64), (rows, cols)), shape=(hi - lo, num_words))
        m.sum_duplicates()  # data = occurrences of the word in the window
        counts = m.copy()
        m.data[:] = 1  # binary incidence
        window_freq += np.bincount(m.indices, minlength=num_words)
        inc = m if pair_count == "windows" else counts
        pairs = pairs + (inc.T.tocsr() @ inc)
        lo = hi
    pairs = pairs.tocsr()
    pairs.setdiag(0)
    pairs.eliminate_zeros()
    return pairs, window_freq, num_windows


def pmi_matrix(
    pairs: sp.csr_matrix,
    window_freq: np.ndarray,
    num_windows: int,
    positive: bool = True,
) -> sp.csr_matrix:
    r"""Point-wise mutual information of every co-occurring word pair.

    Args:
        pairs (scipy.sparse.csr_matrix): Pair counts :math:`\#W(i, j)` ``[V, V]``.
        window_freq (np.ndarray): Windows per word :math:`\#W(i)` ``[V]``.
        num_windows (int): Number of windows :math:`\#W`.
        positive (bool, optional): Keep only pairs with PMI > 0. (default: :obj:`True`)

    Returns:
        scipy.sparse.csr_matrix: PMI values ``[V, V]`` (float64).
    """
    coo = pairs.tocoo()
    freq = window_freq.astype(np.float64)
    pmi = np.log(coo.data * float(num_windows) / (freq[coo.row] * freq[coo.col]))  # [nnz]
    keep = pmi > 0 if positive else np.ones_like(pmi, dtype=bool)
    return sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=pairs.shape)


def tfidf_matrix(tokens: np.ndarray, lengths: np.ndarray, num_words: int) -> sp.csr_matrix:
    r"""TextGCN's TF-IDF: raw term count times :math:`\log(N_{docs} / \mathrm{df})`.

    Args:
        tokens (np.ndarray): Flat token ids ``[T]``.
        lengths (np.ndarray): Document lengths ``[N_docs]``.
        num_words (int): Vocabulary size ``V``.

    Returns:
        scipy.sparse.csr_matrix: TF-IDF weights ``[N_docs, V]`` (float64).
    """
    num_docs = len(lengths)
    doc_of_token = np.repeat(np.arange(num_docs), lengths)  # [T]
    counts = sp.csr_matrix(
        (np.ones(len(tokens), dtype=np.float64), (doc_of_token, tokens)), shape=(num_docs, num_words)
    )
    counts.sum_duplicates()
    df = np.bincount(counts.indices, minlength=num_words).astype(np.float64)  # [V]
    idf = np.log(num_docs / np.maximum(df, 1.0))  # [V]
    counts.data *= idf[counts.indices]
    counts.eliminate_zeros()  # words found in every document get idf = 0
    return counts


def normalize_adjacency(adj: sp.spmatrix, add_self_loops: bool = True) -> sp.csr_matrix:
    r"""Symmetric GCN normalisation :math:`D^{-1/2}(A + I)D^{-1/2}`.

    Args:
        adj (scipy.sparse.spmatrix): Adjacency ``[N, N]``.
        add_self_loops (bool, optional): Add :math:`I` first. (default: :obj:`True`)

    Returns:
        scipy.sparse.csr_matrix: The normalised adjacency ``[N, N]``.
    """
    if adj.shape[0] != adj.shape[1]:
        raise ValueError(f"Expected 'adj' to be square (got shape {adj.shape})")
    a = sp.csr_matrix(adj, dtype=np.float64)
    if add_self_loops:
        a = a + sp.eye(a.shape[0], dtype=np.float64, format="csr")
    deg = np.asarray(a.sum(axis=1)).ravel()  # [N]
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)  # [N]
    d = sp.diags(inv_sqrt)
    return (d @ a @ d).tocsr()


def scipy_to_torch_sparse(
    mat: sp.spmatrix,
    dtype: torch.dtype = torch.float32,
    layout: torch.layout = torch.sparse_csr,
) -> Tensor:
    r"""Converts a scipy sparse matrix to a torch sparse CSR (or COO) tensor.

    Args:
        mat (scipy.sparse.spmatrix): The matrix ``[R, C]``.
        dtype (torch.dtype, optional): Value type. (default: :obj:`torch.float32`)
        layout (torch.layout, optional): :obj:`torch.sparse_csr` or :obj:`torch.sparse_coo`.
            (default: :obj:`torch.sparse_csr`)
    """
    csr = sp.csr_matrix(mat)
    csr.sort_indices()
    crow = torch.from_numpy(csr.indptr.astype(np.int64))
    col = torch.from_numpy(csr.indices.astype(np.int64))
    val = torch.from_numpy(csr.data).to(dtype)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        out = torch.sparse_csr_tensor(crow, col, val, size=csr.shape, check_invariants=False)
    if layout == torch.sparse_csr:
        return out
    if layout == torch.sparse_coo:
        return out.to_sparse_coo().coalesce()
    raise ValueError(f"Expected 'layout' to be torch.sparse_csr or torch.sparse_coo (got {layout})")


@dataclass
class TextGraph:
    r"""A built TextGCN graph.

    Args:
        adjacency (scipy.sparse.csr_matrix): Symmetric weighted adjacency :math:`A` without self-loops
            ``[N_nodes, N_nodes]``; documents first, then words.
        vocab (list[str]): The words, in node order.
        num_docs (int): Number of document nodes.
        num_windows (int): Number of sliding windows used for PMI.

    Shapes:
        - **adjacency:** :math:`(N_{docs} + V, N_{docs} + V)`
    """

    adjacency: sp.csr_matrix
    vocab: list[str]
    num_docs: int
    num_windows: int = 0
    _normalized: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def num_words(self) -> int:
        return len(self.vocab)

    @property
    def num_nodes(self) -> int:
        return self.num_docs + self.num_words

    @property
    def num_edges(self) -> int:
        r"""Non-zeros of :math:`A` (each undirected edge counted twice, no self-loops)."""
        return int(self.adjacency.nnz)

    def doc_node_ids(self, doc_index: Tensor | np.ndarray | Sequence[int] | None = None) -> Tensor:
        r"""Node ids of documents (all, or those at positions ``doc_index`` of the input corpus)."""
        if doc_index is None:
            return torch.arange(self.num_docs)
        idx = torch.as_tensor(doc_index, dtype=torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_docs):
            raise ValueError(
                f"Expected 'doc_index' to lie in [0, {self.num_docs}) (got {idx.min()}..{idx.max()})"
            )
        return idx

    def word_node_ids(self) -> Tensor:
        r"""Node ids of the words, in vocabulary order."""
        return torch.arange(self.num_docs, self.num_nodes)

    def normalized_adjacency(self) -> sp.csr_matrix:
        r""":math:`D^{-1/2}(A + I)D^{-1/2}` as scipy CSR (computed once, then cached)."""
        if self._normalized is None:
            self._normalized = normalize_adjacency(self.adjacency)
        return self._normalized

    def to_torch_sparse(
        self,
        normalized: bool = True,
        dtype: torch.dtype = torch.float32,
        layout: torch.layout = torch.sparse_csr,
    ) -> Tensor:
        r"""The (normalised) adjacency as a torch sparse tensor ``[N_nodes, N_nodes]``."""
        mat = self.normalized_adjacency() if normalized else self.adjacency
        return scipy_to_torch_sparse(mat, dtype=dtype, layout=layout)

    def to_edge_index(
        self, normalized: bool = False, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        r"""PyG ``edge_index`` ``[2, E]`` and ``edge_weight`` ``[E]``.

        With ``normalized=False`` (the default) the edges of :math:`A` without self-loops, ready for
        :class:`torch_geometric.nn.GCNConv` with ``normalize=True``; with ``normalized=True`` the entries
        of :math:`D^{-1/2}(A + I)D^{-1/2}` including self-loops.
        """
        coo = (self.normalized_adjacency() if normalized else self.adjacency).tocoo()
        edge_index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))  # [2, E]
        edge_weight = torch.from_numpy(coo.data).to(dtype)  # [E]
        return edge_index, edge_weight


def build_text_graph(
    docs: Sequence[Sequence[str]],
    window_size: int = 20,
    pair_count: PairCount = "windows",
    chunk_tokens: int = 4_000_000,
) -> TextGraph:
    r"""Builds the TextGCN graph of a tokenised corpus (see the module docstring for the definition).

    Args:
        docs (Sequence[Sequence[str]]): Cleaned token lists, train documents then test documents
            (e.g. from :func:`graphs.text.clean.clean_corpus`).
        window_size (int, optional): Sliding-window size for PMI. (default: :obj:`20`)
        pair_count (str, optional): ``"windows"`` (paper) or ``"positions"`` (released code).
            (default: :obj:`"windows"`)
        chunk_tokens (int, optional): Window-token entries per chunk of the incidence matrix.
            (default: :obj:`4_000_000`)

    Returns:
        TextGraph: The graph; document ``i`` is node ``i``, word ``j`` of ``vocab`` is node ``N_docs + j``.
    """
    if len(docs) == 0:
        raise ValueError(f"Expected 'docs' to hold at least one document (got {len(docs)})")
    vocab, tokens, lengths = encode_corpus(docs)
    num_docs, num_words = len(docs), len(vocab)
    pairs, window_freq, num_windows = window_cooccurrence(
        tokens, lengths, num_words, window_size=window_size, pair_count=pair_count, chunk_tokens=chunk_tokens
    )
    pmi = pmi_matrix(pairs, window_freq, num_windows)  # [V, V]
    del pairs
    tfidf = tfidf_matrix(tokens, lengths, num_words)  # [N_docs, V]
    zeros_dd = sp.csr_matrix((num_docs, num_docs))
    zeros_wd = sp.csr_matrix((num_words, num_docs))
    upper = sp.bmat([[zeros_dd, tfidf], [zeros_wd, pmi]], format="csr")  # [N, N] docs then words
    adj = upper.maximum(upper.T.tocsr()).tocsr()  # element-wise max with the transpose
    adj.eliminate_zeros()
    adj.sort_indices()
    return TextGraph(adjacency=adj, vocab=vocab, num_docs=num_docs, num_windows=num_windows)
