import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphs.text import (
    build_text_graph,
    encode_corpus,
    normalize_adjacency,
    sliding_windows,
    tfidf_matrix,
    window_cooccurrence,
)

# Three documents, windows of 3 tokens. Vocabulary (sorted): a b c d e -> word nodes 3..7.
DOCS = [["a", "b", "c"], ["a", "b", "a", "d"], ["c", "d", "e"]]
A, B, C, D, E = 3, 4, 5, 6, 7
# Windows: W1 = doc0 [a b c]; doc1 has 4 tokens -> W2 = [a b a], W3 = [b a d]; W4 = doc2 [c d e].  #W = 4.
# Windows per word: #W(a) = 3 (W1-W3), #W(b) = 3, #W(c) = 2 (W1, W4), #W(d) = 2 (W3, W4), #W(e) = 1.
# Windows holding both words: (a,b) 3, (a,c) 1, (b,c) 1, (a,d) 1, (b,d) 1, (c,d) 1, (c,e) 1, (d,e) 1.
#   PMI(a,b) = log(3*4 / (3*3)) = log(4/3)  > 0  kept
#   PMI(a,c) = log(1*4 / (3*2)) = log(2/3)  < 0  dropped (likewise b-c, a-d, b-d)
#   PMI(c,d) = log(1*4 / (2*2)) = 0              dropped (only PMI > 0 is kept)
#   PMI(c,e) = PMI(d,e) = log(1*4 / (2*1)) = log 2
# TF-IDF with N = 3 documents: df = 2 for a, b, c, d and 1 for e.
#   doc1-a: tf 2 -> 2*log(3/2); doc1-b, doc1-d, doc0-a/b/c, doc2-c/d: log(3/2); doc2-e: log(3).


@pytest.fixture()
def graph():
    return build_text_graph(DOCS, window_size=3)


def test_node_layout(graph):
    assert graph.vocab == ["a", "b", "c", "d", "e"]
    assert (graph.num_docs, graph.num_words, graph.num_nodes, graph.num_windows) == (3, 5, 8, 4)
    assert graph.doc_node_ids().tolist() == [0, 1, 2]
    assert graph.word_node_ids().tolist() == [3, 4, 5, 6, 7]
    assert graph.doc_node_ids([2, 0]).tolist() == [2, 0]
    with pytest.raises(ValueError, match="Expected 'doc_index'"):
        graph.doc_node_ids([3])


def test_pmi_by_hand(graph):
    a = graph.adjacency.toarray()
    assert a[A, B] == pytest.approx(math.log(4 / 3))
    assert a[C, E] == pytest.approx(math.log(2))
    assert a[D, E] == pytest.approx(math.log(2))
    for i, j in [(A, C), (B, C), (A, D), (B, D), (C, D)]:  # PMI <= 0: no edge
        assert a[i, j] == 0
    words = a[3:, 3:]
    assert np.all(np.diag(words) == 0)
    assert np.all(words[words != 0] > 0)


def test_tfidf_by_hand(graph):
    a = graph.adjacency.toarray()
    assert a[1, A] == pytest.approx(2 * math.log(3 / 2))
    assert a[1, B] == pytest.approx(math.log(3 / 2))
    assert a[1, D] == pytest.approx(math.log(3 / 2))
    assert a[2, E] == pytest.approx(math.log(3))
    assert a[0, E] == 0 and a[1, C] == 0
    assert np.all(a[:3, :3] == 0)  # no document-document edges


def test_symmetric_no_self_loops(graph):
    a = graph.adjacency.toarray()
    np.testing.assert_allclose(a, a.T)
    assert np.all(np.diag(a) == 0)
    assert graph.num_edges == np.count_nonzero(a) == 2 * (3 + 9)  # 3 PMI pairs + 9 doc-word pairs


def test_normalized_adjacency_matches_dense(graph):
    a = graph.adjacency.toarray() + np.eye(graph.num_nodes)
    d = np.diag(1 / np.sqrt(a.sum(1)))
    np.testing.assert_allclose(graph.normalized_adjacency().toarray(), d @ a @ d, rtol=1e-12)
    dense = graph.to_torch_sparse(dtype=torch.float64).to_dense().numpy()
    np.testing.assert_allclose(dense, d @ a @ d, rtol=1e-12)
    coo = graph.to_torch_sparse(dtype=torch.float64, layout=torch.sparse_coo).to_dense().numpy()
    np.testing.assert_allclose(coo, d @ a @ d, rtol=1e-12)


def test_edge_index_round_trip(graph):
    for normalized in (False, True):
        ei, ew = graph.to_edge_index(normalized=normalized, dtype=torch.float64)
        dense = torch.zeros(graph.num_nodes, graph.num_nodes, dtype=torch.float64)
        dense[ei[0], ei[1]] = ew
        ref = graph.normalized_adjacency() if normalized else graph.adjacency
        np.testing.assert_allclose(dense.numpy(), ref.toarray())


def test_positions_pair_count_differs_only_on_repeats():
    # "positions" counts position pairs: W2 = [a b a] gives (a,b) two pairs, so #W(a,b) = 1 + 2 + 1 = 4
    # and PMI(a,b) = log(4*4 / (3*3)) = log(16/9); every other pair has no repeated word in a window.
    g = build_text_graph(DOCS, window_size=3, pair_count="positions")
    a, ref = g.adjacency.toarray(), build_text_graph(DOCS, window_size=3).adjacency.toarray()
    assert a[A, B] == pytest.approx(math.log(16 / 9))
    diff = np.argwhere(~np.isclose(a, ref))
    assert sorted(map(tuple, diff.tolist())) == [(A, B), (B, A)]


def test_window_cooccurrence_counts():
    vocab, tokens, lengths = encode_corpus(DOCS)
    pairs, freq, n = window_cooccurrence(tokens, lengths, len(vocab), window_size=3)
    assert n == 4
    assert freq.tolist() == [3, 3, 2, 2, 1]
    expect = np.zeros((5, 5), dtype=int)
    for (i, j), c in {
        (0, 1): 3,
        (0, 2): 1,
        (1, 2): 1,
        (0, 3): 1,
        (1, 3): 1,
        (2, 3): 1,
        (2, 4): 1,
        (3, 4): 1,
    }.items():
        expect[i, j] = expect[j, i] = c
    np.testing.assert_array_equal(pairs.toarray(), expect)
    pos, _, _ = window_cooccurrence(tokens, lengths, len(vocab), window_size=3, pair_count="positions")
    expect[0, 1] = expect[1, 0] = 4
    np.testing.assert_array_equal(pos.toarray(), expect)
    with pytest.raises(ValueError, match="Expected 'pair_count'"):
        window_cooccurrence(tokens, lengths, len(vocab), pair_count="pairs")


def test_sliding_windows():
    starts, sizes = sliding_windows(np.array([3, 4, 0, 1]), 3)
    assert starts.tolist() == [0, 3, 4, 7]
    assert sizes.tolist() == [3, 3, 3, 1]
    with pytest.raises(ValueError, match="Expected 'window_size'"):
        sliding_windows(np.array([3]), 0)


def test_tfidf_matrix_words_in_every_doc_vanish():
    tokens, lengths = np.array([0, 1, 0, 0]), np.array([2, 2])
    m = tfidf_matrix(tokens, lengths, 2).toarray()
    assert m[:, 0].tolist() == [0, 0]  # df = N -> idf = 0
    assert m[0, 1] == pytest.approx(math.log(2))


def test_chunked_build_equals_single_chunk():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    docs = [list(rng.choice(words, size=int(rng.integers(0, 40)))) for _ in range(25)]
    one = build_text_graph(docs, window_size=5)
    many = build_text_graph(docs, window_size=5, chunk_tokens=50)
    np.testing.assert_allclose(one.adjacency.toarray(), many.adjacency.toarray())
    a = one.adjacency.toarray()
    np.testing.assert_allclose(a, a.T)
    assert np.all(a >= 0)


def test_normalize_adjacency_isolated_node():
    out = normalize_adjacency(sp.csr_matrix(np.zeros((2, 2))), add_self_loops=False)
    assert out.nnz == 0
    with pytest.raises(ValueError, match="Expected 'adj' to be square"):
        normalize_adjacency(sp.csr_matrix(np.zeros((2, 3))))


def test_empty_corpus_rejected():
    with pytest.raises(ValueError, match="Expected 'docs'"):
        build_text_graph([])
