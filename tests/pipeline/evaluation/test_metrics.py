import numpy as np
import pytest
from sklearn.metrics import classification_report, f1_score

from pipeline.errors import GlossError
from pipeline.evaluation.metrics import (
    accuracy_and_macro_f1,
    check_label_ids,
    classification_metrics,
    silhouette,
)

NAMES = ["a", "b", "c"]


def test_classification_metrics_by_hand():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    metrics = classification_metrics(y_true, y_pred, NAMES)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    # a: P=3/3 R=3/4 F1=6/7; b: P=1/2 R=1/2 F1=1/2; c: P=2/3 R=2/2 F1=4/5
    f1 = [6 / 7, 1 / 2, 4 / 5]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert metrics["weighted_f1"] == pytest.approx((4 * f1[0] + 2 * f1[1] + 2 * f1[2]) / 8)
    assert metrics["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.75, "f1-score": 6 / 7, "support": 4})
    assert metrics["per_class"]["c"]["precision"] == pytest.approx(2 / 3)
    assert metrics["confusion_matrix"] == [[3, 1, 0], [0, 1, 1], [0, 0, 2]]


def test_classification_metrics_match_sklearn_on_random_predictions():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
    names = [f"class{i}" for i in range(5)]
    metrics = classification_metrics(y_true, y_pred, names)
    report = classification_report(y_true, y_pred, target_names=names, output_dict=True)
    assert metrics["accuracy"] == pytest.approx(report["accuracy"])
    assert metrics["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert metrics["weighted_f1"] == pytest.approx(report["weighted avg"]["f1-score"])
    assert metrics["per_class"]["class3"]["recall"] == pytest.approx(report["class3"]["recall"])
    scores = accuracy_and_macro_f1(y_true, y_pred, num_classes=5)
    assert scores["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert scores["absent_classes"] == 0


def test_macro_f1_averages_over_the_training_label_set_and_counts_absent_classes():
    """A split without class c (in gold and in predictions) scores c as 0, not as if C were 2."""
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0])
    present = [4 / 5, 2 / 3]  # a: P=2/3 R=1 F1=4/5; b: P=1 R=1/2 F1=2/3; c: absent from both
    scores = accuracy_and_macro_f1(y_true, y_pred, num_classes=3)
    assert scores == {"accuracy": 0.75, "macro_f1": pytest.approx(sum(present) / 3), "absent_classes": 1}
    metrics = classification_metrics(y_true, y_pred, NAMES)
    assert metrics["macro_f1"] == pytest.approx(sum(present) / 3) and metrics["absent_classes"] == 1
    assert metrics["weighted_f1"] == pytest.approx((2 * present[0] + 2 * present[1]) / 4)
    # a class only predicted (never gold) is not absent: it is a false positive
    assert accuracy_and_macro_f1(np.array([0, 0]), np.array([0, 2]), num_classes=3)["absent_classes"] == 1


def test_class_absent_from_test_is_reported_with_zero_support():
    metrics = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), NAMES)
    assert metrics["per_class"]["c"]["support"] == 0
    assert len(metrics["confusion_matrix"]) == 3


def test_out_of_range_prediction_is_a_one_line_error_naming_the_source():
    with pytest.raises(GlossError, match=r"logits_test.npy: row 1: label id 3 is out of range for 3 classes"):
        classification_metrics(np.array([0, 1]), np.array([0, 3]), NAMES, source="logits_test.npy")
    with pytest.raises(GlossError, match="label id -1"):
        check_label_ids(np.array([-1]), 3, "x")


def _blobs(separation: float, per_class: int = 40, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(classes, 8) * separation
    x = np.concatenate([c + rng.normal(size=(per_class, 8)) for c in centres])
    y = np.repeat(np.arange(classes), per_class)
    return x, y


def test_macro_silhouette_near_one_for_separated_clusters_and_near_zero_for_shuffled_labels():
    x, y = _blobs(separation=100.0)
    good = silhouette(x, y)
    assert good["macro_silhouette"] > 0.9 and good["silhouette"] > 0.9 and good["metric"] == "cosine"
    shuffled = silhouette(x, np.random.default_rng(0).permutation(y))
    assert abs(shuffled["macro_silhouette"]) < 0.1


def test_macro_silhouette_weights_classes_equally():
    from sklearn.metrics import silhouette_samples, silhouette_score

    x, y = _blobs(separation=3.0)
    keep = np.r_[0:40, 40:50, 80:85]  # unbalanced: 40 / 10 / 5
    x, y = x[keep], y[keep]
    scores = silhouette_samples(x, y, metric="cosine")
    result = silhouette(x, y)
    assert result["macro_silhouette"] == pytest.approx(np.mean([scores[y == c].mean() for c in range(3)]))
    assert result["silhouette"] == pytest.approx(silhouette_score(x, y, metric="cosine"))


def test_silhouette_sample_cap_is_seeded_and_undefined_cases_give_none():
    x, y = _blobs(separation=5.0)
    capped = silhouette(x, y, max_samples=50, seed=3)
    assert capped["samples"] == 50 and capped == silhouette(x, y, max_samples=50, seed=3)
    assert silhouette(x, np.zeros(len(y), dtype=int)) is None
    assert silhouette(x[:3], np.arange(3)) is None
