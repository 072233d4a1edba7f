import numpy as np
import pytest

from pipeline.training.batching import plan_batches


def _cover(batches, n):
    rows = np.concatenate(batches)
    return sorted(rows.tolist()) == list(range(n))


def test_plan_covers_every_row_once_and_is_seeded():
    lengths = np.arange(100) % 37
    labels = np.arange(100) % 4
    a = plan_batches(lengths, labels, 16, seed=1, epoch=1)
    b = plan_batches(lengths, labels, 16, seed=1, epoch=1)
    c = plan_batches(lengths, labels, 16, seed=1, epoch=2)
    assert _cover(a, 100)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in c]


def test_bucketing_reduces_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 128, size=2000)
    labels = np.zeros(2000, dtype=int)

    def padding(batches):
        return sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches)

    bucketed = plan_batches(lengths, labels, 32, seed=0, epoch=1, bucket=True)
    plain = plan_batches(lengths, labels, 32, seed=0, epoch=1, bucket=False)
    assert _cover(bucketed, 2000)
    assert padding(bucketed) < 0.2 * padding(plain)


def test_balanced_batches_have_two_per_present_class():
    labels = np.repeat(np.arange(10), [30, 3, 5, 7, 2, 9, 11, 4, 6, 8])
    batches = plan_batches(np.ones(len(labels)), labels, 16, seed=0, epoch=1, balanced=True)
    assert _cover(batches, len(labels))
    for batch in batches:
        counts = np.bincount(labels[batch])
        assert counts[counts > 0].min() >= 2
        assert len(batch) <= 16


def test_no_single_document_batch():
    batches = plan_batches(np.ones(33), np.zeros(33, dtype=int), 16, seed=0, epoch=1, bucket=False)
    assert min(len(b) for b in batches) >= 2 and _cover(batches, 33)


@pytest.mark.parametrize("world_size", [2, 4])
def test_balanced_batches_keep_a_row_for_every_rank(world_size):
    # a class with one document and groups of 2 and 3 that leave short batches: each joins a neighbour
    labels = np.repeat(np.arange(6), [1, 3, 2, 5, 2, 3])
    for epoch in range(1, 6):
        batches = plan_batches(np.ones(len(labels)), labels, 2 * world_size, seed=0, epoch=epoch, balanced=True,
                               min_size=world_size)
        assert _cover(batches, len(labels))
        assert min(len(batch) for batch in batches) >= world_size, [len(b) for b in batches]
