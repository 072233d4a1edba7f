from collections import Counter

import numpy as np
import pandas as pd
import pytest

from pipeline.baselines import TextGCNConfig, stratified_val_split, train_textgcn
from tests.conftest import require_benchmark_data


def _toy_corpus(n_per_class: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    vocab = {
        "sport": ["goal", "match", "team", "score", "coach"],
        "tech": ["chip", "code", "data", "cloud", "laptop"],
    }
    shared = ["today", "report", "people", "new", "week"]
    texts, labels = [], []
    for label, words in vocab.items():
        for _ in range(n_per_class):
            toks = list(rng.choice(words, size=6)) + list(rng.choice(shared, size=4))
            rng.shuffle(toks)
            texts.append(" ".join(toks))
            labels.append(label)
    return texts, labels


def test_stratified_val_split_keeps_singletons_in_train():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 19 + ["lonely"]
    tr, va = stratified_val_split(labels, 0.1, seed=0)
    assert len(va) == 10 and len(tr) == 90
    assert set(tr).isdisjoint(va) and set(tr) | set(va) == set(range(100))
    assert 99 in tr  # the single "lonely" example
    assert Counter(labels[i] for i in va) == Counter({"a": 5, "b": 3, "c": 2})
    tr2, va2 = stratified_val_split(labels, 0.1, seed=0)
    assert np.array_equal(va, va2)
    with pytest.raises(ValueError, match="Expected 'val_size'"):
        stratified_val_split(labels, 1.5)


def test_train_textgcn_toy_corpus():
    texts, labels = _toy_corpus(20, seed=0)
    test_texts, test_labels = _toy_corpus(10, seed=1)
    tr, va = stratified_val_split(labels, 0.2, seed=0)
    res = train_textgcn(
        [texts[i] for i in tr],
        [labels[i] for i in tr],
        [texts[i] for i in va],
        [labels[i] for i in va],
        test_texts,
        test_labels,
        "toy",
        seed=0,
        config=TextGCNConfig(epochs=30, hidden=16, min_count=1),
    )
    assert res.classes == ["sport", "tech"]
    val_losses = [r["val_loss"] for r in res.history]
    assert res.best_epoch == 1 + int(np.argmin(val_losses))  # lowest val loss, earliest of ties
    assert res.stopped_epoch == len(res.history) == _first_stop(val_losses, 10, 30)
    assert set(res.history[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "val_macro_f1",
        "seconds",
    }
    assert res.test_proba.shape == (20, 2)
    np.testing.assert_allclose(res.test_proba.sum(1), 1, rtol=1e-5)
    assert len(res.test_pred) == 20 and set(res.test_pred) <= {"sport", "tech"}
    assert res.test_accuracy == pytest.approx(np.mean(np.array(res.test_pred) == np.array(test_labels)))
    assert res.test_accuracy >= 0.9
    assert res.peak_memory_mb > 0 and res.graph_build_seconds > 0
    summary = res.summary()
    assert "history" not in summary and summary["config"]["seed"] == 0


def _first_stop(val_losses, window, epochs):
    """The epoch TextGCN's rule stops at, replayed on a history: the first prefix it fires on, else ``epochs``."""
    from pipeline.baselines.textgcn import should_stop

    return next((e for e in range(1, len(val_losses) + 1) if should_stop(val_losses[:e], window)), epochs)


def test_should_stop_is_textgcns_rule():
    from pipeline.baselines.textgcn import should_stop

    assert should_stop([1.0, 1.0, 1.0, 1.0, 2.0], 3)  # 2.0 > mean of the 3 before it
    assert not should_stop([1.0, 1.0, 1.0, 2.0], 3)  # epoch 4 = window + 1: too early to stop
    assert not should_stop([3.0, 2.0, 1.0, 1.5, 1.4], 3)  # 1.4 < mean(2.0, 1.0, 1.5)
    assert not should_stop([1.0, 1.0, 1.0, 1.0, 1.0], 3)  # equal is not worse
    assert not should_stop([1.0] * 10 + [9.0], None) and not should_stop([1.0] * 10 + [9.0], 0)


def _overfitting_run(epochs):
    """A toy corpus with 30% of the training labels flipped: val loss falls, then rises (overfitting)."""
    texts, labels = _toy_corpus(20, seed=0)
    test_texts, test_labels = _toy_corpus(10, seed=1)
    rng = np.random.default_rng(0)
    noisy = [("tech" if y == "sport" else "sport") if rng.random() < 0.3 else y for y in labels]
    tr, va = stratified_val_split(labels, 0.2, seed=0)
    return train_textgcn([texts[i] for i in tr], [noisy[i] for i in tr], [texts[i] for i in va],
                         [labels[i] for i in va], test_texts, test_labels, "toy", seed=0,
                         config=TextGCNConfig(epochs=epochs, hidden=16, min_count=1, early_stopping=5))


def test_textgcn_stops_early_and_reports_the_best_epoch_not_the_last():
    res = _overfitting_run(200)
    val_losses = [r["val_loss"] for r in res.history]
    # early stopping fired (the run did not use its 200 epochs), at the first epoch the rule fires on
    assert res.stopped_epoch == len(res.history) == _first_stop(val_losses, 5, 200) < 200
    assert res.best_epoch == 1 + int(np.argmin(val_losses)) < res.stopped_epoch
    # the reported test predictions are the best epoch's: a run cut at that epoch ends with the same ones
    cut = _overfitting_run(res.best_epoch)
    assert cut.stopped_epoch == res.best_epoch
    np.testing.assert_array_equal(cut.test_proba, res.test_proba)
    assert (res.test_accuracy, res.test_macro_f1) == (cut.last_test_accuracy, cut.last_test_macro_f1)


def test_train_textgcn_rejects_unseen_labels():
    texts, labels = _toy_corpus(3, seed=0)
    with pytest.raises(ValueError, match="Expected 'test_labels' to use only training labels"):
        train_textgcn(texts, labels, texts, labels, texts[:1], ["other"], "toy", seed=0, config=TextGCNConfig(epochs=1))


@pytest.mark.slow
def test_textgcn_learns_on_r8_slice():
    root = require_benchmark_data() / "R8"
    train = pd.read_csv(root / "train.csv", keep_default_na=False, dtype=str).iloc[:250]
    test = pd.read_csv(root / "test.csv", keep_default_na=False, dtype=str).iloc[:200]
    tr, va = train.iloc[:200], train.iloc[200:]
    res = train_textgcn(
        tr["text"].tolist(),
        tr["label"].tolist(),
        va["text"].tolist(),
        va["label"].tolist(),
        test["text"].tolist(),
        test["label"].tolist(),
        "R8",
        seed=0,
        config=TextGCNConfig(epochs=100),
    )
    majority = test["label"].value_counts().iloc[0] / len(test)
    # Always predicting the majority class scores `majority`; learning must halve its error rate.
    assert res.test_accuracy > majority + 0.5 * (1 - majority), (res.test_accuracy, majority)


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    from pipeline.baselines.textgcn import macro_f1

    rng = np.random.default_rng(0)
    for _ in range(20):
        y, p = rng.integers(0, 6, size=40), rng.integers(0, 7, size=40)
        expected = f1_score(y, p, labels=range(8), average="macro", zero_division=0)
        assert macro_f1(y, p, 8) == pytest.approx(expected)
    assert macro_f1(np.array([1, 1]), np.array([1, 1]), 2) == 0.5  # class 0 absent from both: counts as 0
