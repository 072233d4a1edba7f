"""``gloss train --graph bank --unlabeled``: unlabelled documents in G-Loss's memory bank, on the tiny dataset."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.cli import gloss, prepare_tiny

FAST = ["--epochs", "1", "--max-length", "8", "--batch-size", "16", "--seed", "1", "--sigma", "batch-sqrt"]
BANK = ["--loss", "gloss+ce", "--graph", "bank", "--k", "3"]


@pytest.fixture(scope="module")
def prepared(tiny_root, tmp_path_factory):
    return prepare_tiny(tiny_root, tmp_path_factory.mktemp("unlabeled") / "run", "--val-fraction", "0.25")


def _train(prepared, folder, *args, spy=None):
    run = folder / "run"
    shutil.copytree(prepared, run)
    if spy:
        spy(run)
    return run, gloss("train", "--run-dir", run, *BANK, *FAST, *args, catch_exceptions=True)


def test_test_documents_join_the_bank_and_their_labels_are_never_read(prepared, tmp_path, monkeypatch):
    from graphs.memory_bank import UNLABELLED
    from pipeline.training.objectives import Objective

    banks = []
    original = Objective.on_epoch_start

    def spy(self, encode_train):
        original(self, encode_train)
        banks.append(self.embedding_loss.memory_bank.labels.clone())

    monkeypatch.setattr(Objective, "on_epoch_start", spy)
    run, result = _train(prepared, tmp_path / "a", "--unlabeled", "test")
    assert result.exit_code == 0, result.output
    rows = json.loads((run / "prepare" / "manifest.json").read_text())["summary"]["rows"]
    assert "unlabelled documents (test) join the memory bank" in result.output
    assert len(banks[0]) == rows["train"] + rows["test"]
    assert (banks[0][rows["train"]:] == UNLABELLED).all() and (banks[0][:rows["train"]] >= 0).all()
    manifest = json.loads((run / "train" / "manifest.json").read_text())
    assert manifest["config"]["unlabeled"] == "test" and manifest["summary"]["unlabeled_documents"] == rows["test"]

    def shuffle_test_labels(copy):
        path = copy / "prepare" / "test.csv"
        test = pd.read_csv(path, keep_default_na=False)
        test[["label", "label_id"]] = test[["label", "label_id"]].to_numpy()[::-1]
        test.to_csv(path, index=False)

    shuffled, result = _train(prepared, tmp_path / "b", "--unlabeled", "test", spy=shuffle_test_labels)
    assert result.exit_code == 0, result.output
    history = [json.loads(x) for x in (run / "train" / "history.jsonl").read_text().splitlines()]
    again = [json.loads(x) for x in (shuffled / "train" / "history.jsonl").read_text().splitlines()]
    for key in ("train_g_loss", "train_ce", "val_macro_f1"):
        assert again[0][key] == pytest.approx(history[0][key], abs=1e-6), key
    np.testing.assert_allclose(np.load(shuffled / "train" / "embeddings_val.npy"),
                               np.load(run / "train" / "embeddings_val.npy"), atol=1e-5)


@pytest.mark.parametrize(("args", "message"), [
    (["--unlabeled", "test", "--graph", "dense"], "--unlabeled: applies to --graph bank only (got --graph dense)"),
    (["--unlabeled", "test", "--loss", "ce"], "--unlabeled: needs a G-Loss term"),
    (["--unlabeled", "missing.txt"], "neither test nor val+test nor a file"),
])
def test_unlabeled_option_errors(prepared, tmp_path, args, message):
    _, result = _train(prepared, tmp_path, *args)
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "run" / "train" / "manifest.json").exists()


def test_tune_refuses_the_test_split(prepared, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    result = gloss("tune", "--run-dir", run, *BANK, "--unlabeled", "val+test", "--trials", "1",
                   catch_exceptions=True)
    assert result.exit_code == 1 and "--unlabeled val+test: `gloss tune` never reads the test split" in result.output
