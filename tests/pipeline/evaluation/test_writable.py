"""Evaluation hands torch only writable arrays: pandas' ``to_numpy()`` is read-only (copy-on-write), and
``torch.from_numpy`` on such an array printed PyTorch's 'non-writable array' warning on every evaluation.
The warning is printed once per process, so a check on warnings alone depends on test order: these tests make
``torch.from_numpy`` / ``torch.as_tensor`` refuse read-only arrays outright."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.evaluation.propagation import transductive_propagation


@pytest.fixture
def strict_torch(monkeypatch):
    def strict(original):
        def convert(array, *args, **kwargs):
            if isinstance(array, np.ndarray) and not array.flags.writeable:
                raise AssertionError("a read-only array reached torch without a copy")
            return original(array, *args, **kwargs)

        return convert

    monkeypatch.setattr(torch, "from_numpy", strict(torch.from_numpy))
    monkeypatch.setattr(torch, "as_tensor", strict(torch.as_tensor))


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.flags.writeable = False
    return array


def test_labels_as_pandas_hands_them_are_read_only():
    assert not pd.DataFrame({"label_id": [0, 1]})["label_id"].to_numpy().flags.writeable


def test_propagation_copies_read_only_inputs(strict_torch):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 10)
    x = (np.where(y[:, None] == 0, 1.0, -1.0) + 0.1 * rng.normal(size=(20, 4))).astype(np.float32)
    train_y = _read_only(pd.DataFrame({"label_id": y[:14]})["label_id"].to_numpy())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not writable.*")
        result = transductive_propagation(_read_only(x[:14]), train_y, _read_only(x[14:]), 2, k=3)
    assert (result["predictions"] == y[14:]).all()
