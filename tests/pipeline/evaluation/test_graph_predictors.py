import numpy as np
import pytest

from pipeline.evaluation.graph_predictors import (
    ALPHA_CHOICES,
    K_CHOICES,
    TrainingGraph,
    choose_predictors,
    labels_of,
    predictor_key,
    setting_of,
)


def _clusters(n: int, seed: int, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (np.eye(3, 8)[y] * 2 + rng.normal(scale=noise, size=(n, 8))).astype(np.float32), y


def test_separable_data_every_predictor_is_right_and_ties_go_to_the_smallest_k_and_alpha():
    train_x, train_y = _clusters(90, 0)
    val_x, val_y = _clusters(30, 1)
    test_x, test_y = _clusters(30, 2)
    head = np.eye(3)[val_y], np.eye(3)[test_y]
    chosen = choose_predictors(TrainingGraph(train_x, train_y, 3), val_x, val_y, test_x,
                               head_val=head[0], head_test=head[1])
    assert list(chosen) == ["knn", "lpa-transductive", "lpa-inductive", "mix-transductive", "mix-inductive"]
    for key, choice in chosen.items():
        np.testing.assert_array_equal(choice.test_predictions, test_y, err_msg=key)
        assert choice.val_macro_f1 == 1.0
        assert choice.k == K_CHOICES[0] and not choice.k_given  # every k ties: the smallest wins
    assert chosen["mix-inductive"].alpha == ALPHA_CHOICES[0]  # every alpha ties: the smallest wins
    assert chosen["knn"].alpha is None


def test_mix_weights_the_head_against_the_graph_as_chosen_on_validation():
    """A head that is wrong on every val/test document: mix must choose alpha = 1 (the graph alone)."""
    train_x, train_y = _clusters(90, 0)
    val_x, val_y = _clusters(30, 1)
    test_x, test_y = _clusters(30, 2)
    wrong = lambda y: np.eye(3)[(y + 1) % 3]  # noqa: E731
    chosen = choose_predictors(TrainingGraph(train_x, train_y, 3), val_x, val_y, test_x,
                               head_val=wrong(val_y), head_test=wrong(test_y), k=7)
    assert chosen["mix-inductive"].alpha > 0.5
    np.testing.assert_array_equal(chosen["mix-inductive"].test_predictions, test_y)
    assert chosen["knn"].k == 7 and chosen["knn"].k_given
    assert "mix-inductive" not in choose_predictors(TrainingGraph(train_x, train_y, 3), val_x, val_y, test_x)


def test_inductive_lpa_spreads_labels_knn_does_not():
    """A training document with a wrong label among its class: the vote of its neighbour copies it, spreading
    (alpha_s = 0.9) outvotes it."""
    x = np.array([[1, 0], [1, 0.01], [1, 0.02], [0, 1], [0.01, 1], [0.02, 1]], dtype=np.float32)
    y = np.array([0, 0, 1, 1, 1, 1])  # row 2 is mislabelled
    graph = TrainingGraph(x, y, 2)
    weights, ids = graph.query(np.array([[1, 0.021]], dtype=np.float32), 1)
    assert labels_of(graph.knn_scores(weights, ids, 1), 0).tolist() == [1]
    assert graph.spread_scores(2)[2].argmax() == 0
    assert labels_of(graph.lpa_scores(weights, ids, 1), 0).tolist() == [0]


def test_unreached_documents_get_the_majority_class():
    assert labels_of(np.array([[0.0, 0.0], [0.2, 0.8]]), fallback=0).tolist() == [0, 1]
    assert labels_of(np.array([[0.0, 0.0]]), fallback=1).tolist() == [1]


@pytest.mark.parametrize(("predictor", "setting", "key", "back"), [
    ("head", "inductive", "head", "inductive"), ("knn", "transductive", "knn", "inductive"),
    ("lpa", "transductive", "lpa-transductive", "transductive"), ("mix", "inductive", "mix-inductive", "inductive")])
def test_predictor_keys(predictor, setting, key, back):
    assert predictor_key(predictor, setting) == key
    assert setting_of(key) == back
