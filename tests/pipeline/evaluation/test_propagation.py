import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.evaluation.propagation import knn_graph, label_propagation, transductive_propagation


def test_chain_graph_gives_the_harmonic_solution():
    # 0 - 1 - 2 - 3 - 4 with unit weights; node 0 is class 0, node 4 class 1.
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    w = sp.coo_matrix((np.ones(4), (edges[:, 0], edges[:, 1])), shape=(5, 5))
    w = (w + w.T).tocsr()
    labels = np.array([0, 0, 0, 0, 1])
    labelled = np.array([True, False, False, False, True])
    result = label_propagation(w, labels, labelled, 2, tol=1e-10, max_iter=10000)
    assert result["converged"]
    np.testing.assert_allclose(result["scores"][:, 0], [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-6)
    np.testing.assert_allclose(result["scores"].sum(axis=1), 1.0, atol=1e-6)


def test_weighted_star_and_unreached_node():
    # Node 2 hangs between labelled nodes 0 (weight 3) and 1 (weight 1); node 3 is isolated.
    w = sp.csr_matrix(np.array([[0, 0, 3, 0], [0, 0, 1, 0], [3, 1, 0, 0], [0, 0, 0, 0]], dtype=float))
    result = label_propagation(w, np.array([0, 1, 0, 0]), np.array([True, True, False, False]), 2)
    np.testing.assert_allclose(result["scores"][2], [0.75, 0.25])
    np.testing.assert_allclose(result["scores"][3], [0.0, 0.0])
    assert result["iterations"] <= 3


def test_knn_graph_is_symmetric_without_self_loops_and_clips_negative_similarity():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [-0.9, -0.1], [1.0, 0.0]])  # rows 0 and 4 duplicates
    w = knn_graph(x, k=2)
    assert (w != w.T).nnz == 0
    assert w.diagonal().sum() == 0
    assert w.min() >= 0
    dense = w.toarray()
    assert dense[0, 4] == pytest.approx(1.0) and dense[0, 1] > 0.99
    assert dense[0, 2] == 0  # opposite directions are never linked


def test_knn_graph_caps_k():
    assert knn_graph(np.eye(3), k=10).nnz <= 6
    assert knn_graph(np.ones((1, 4)), k=5).nnz == 0


def test_two_blobs_are_propagated_perfectly():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    x = np.where(y[:, None] == 0, 1.0, -1.0) * np.ones((120, 6)) + 0.2 * rng.normal(size=(120, 6))
    order = rng.permutation(120)
    x, y = x[order], y[order]
    result = transductive_propagation(x[:80], y[:80], x[80:], 2, k=5)
    assert (result["predictions"] == y[80:]).all()
    assert result["converged"] and result["unreached"] == 0 and result["k"] == 5
