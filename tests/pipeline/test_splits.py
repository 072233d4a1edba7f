import numpy as np
import pytest

from pipeline.splits import stratified_holdout, stratified_sample


def test_holdout_is_stratified_disjoint_and_seeded():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = stratified_holdout(labels, 0.1, seed=3)
    assert len(np.intersect1d(keep, held)) == 0
    assert len(keep) + len(held) == 100
    assert np.bincount(labels[held]).tolist() == [5, 3, 2]
    keep2, held2 = stratified_holdout(labels, 0.1, seed=3)
    assert held.tolist() == held2.tolist()
    _, held3 = stratified_holdout(labels, 0.1, seed=4)
    assert held.tolist() != held3.tolist()


def test_holdout_keeps_single_document_class_in_train(caplog):
    labels = np.array([0] * 20 + [1])
    keep, held = stratified_holdout(labels, 0.1, seed=0)
    assert 20 in keep and 20 not in held
    assert "cannot be stratified" in caplog.text


def test_holdout_takes_at_least_one_and_leaves_one():
    labels = np.array([0, 0, 1, 1, 1, 1])
    _, held = stratified_holdout(labels, 0.1, seed=0)
    assert np.bincount(labels[held]).tolist() == [1, 1]


def test_holdout_rejects_bad_fraction():
    with pytest.raises(ValueError, match="Expected 'fraction' in"):
        stratified_holdout(np.array([0, 1]), 1.5, seed=0)


def test_sample_keeps_proportions_and_every_class():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    rows = stratified_sample(labels, 20, seed=0)
    assert len(rows) == 20
    counts = np.bincount(labels[rows], minlength=3)
    assert counts[0] == 16 and counts[1] == 3 and counts[2] == 1


def test_sample_larger_than_data_returns_everything():
    assert stratified_sample(np.array([0, 1, 1]), 10, seed=0).tolist() == [0, 1, 2]
