import numpy as np

from pipeline.evaluation.propagation import transductive_propagation


def test_two_blobs_are_propagated_perfectly():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    x = np.where(y[:, None] == 0, 1.0, -1.0) * np.ones((120, 6)) + 0.2 * rng.normal(size=(120, 6))
    order = rng.permutation(120)
    x, y = x[order], y[order]
    result = transductive_propagation(x[:80], y[:80], x[80:], 2, k=5)
    assert (result["predictions"] == y[80:]).all()
    assert result["converged"] and result["unreached"] == 0 and result["k"] == 5


def test_weights_are_clipped_and_unreached_test_nodes_get_the_majority_class():
    # Train: two class-1 points near +x and one class-0 point near +y; the only test point points along -x,
    # so its cosine similarity to every train point is <= 0: every edge to it weighs 0 and it is unreached.
    train_x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    train_y = np.array([1, 1, 0])
    result = transductive_propagation(train_x, train_y, np.array([[-1.0, 0.0]]), 2, k=1)
    assert result["unreached"] == 1 and result["predictions"].tolist() == [1]
    assert result["edges"] == 2  # 0-1 and the positive-weight edge from 2 to its nearest neighbour


def test_k_is_capped_by_the_number_of_nodes():
    result = transductive_propagation(np.eye(3)[:2], np.array([0, 1]), np.eye(3)[2:], 2, k=10)
    assert result["k"] == 2
