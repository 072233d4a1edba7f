"""TextGCN and BertGCN through `gloss train --method ...`, written like fine-tuning runs for `evaluate`."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.cli import gloss as _gloss
from tests.conftest import require_benchmark_data


@pytest.fixture
def r8_run(tmp_path):
    root = str(require_benchmark_data())
    run = tmp_path / "run"
    assert _gloss("prepare", "--dataset", "R8", "--data-root", root, "--limit", "200", "--limit-test", "89", "--run-dir", str(run)).exit_code == 0
    return run


def _check_logits(run):
    labels = json.loads((run / "prepare" / "labels.json").read_text())
    logits = np.load(run / "train" / "logits_test.npy")
    assert logits.shape[1] == len(labels)
    np.testing.assert_allclose(np.exp(logits).sum(1), 1.0, atol=1e-4)
    return logits


def test_textgcn_stage_then_evaluate(r8_run):
    result = _gloss("train", "--run-dir", str(r8_run), "--method", "textgcn", "--gcn-epochs", "60")
    assert result.exit_code == 0, result.output
    _check_logits(r8_run)
    evaluated = _gloss("evaluate", "--run-dir", str(r8_run), "--tsne-max", "0")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((r8_run / "evaluate" / "metrics.json").read_text())
    assert metrics["method"] == "textgcn"
    # TextGCN beats a bag-of-words reference on the same split, scikit-learn's TF-IDF logistic regression
    # with its defaults (measured 0.93 against 0.80; the majority class is 0.49)
    reference, majority = _bag_of_words_accuracy(r8_run)
    assert metrics["headline"]["accuracy"] >= reference + 0.05 and reference > majority + 0.2, (
        metrics["headline"]["accuracy"], reference, majority)


def _bag_of_words_accuracy(run) -> tuple[float, float]:
    """Test accuracy of TF-IDF + logistic regression trained on the run's train split, and the majority class's."""
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, test = (pd.read_csv(run / "prepare" / f"{split}.csv", keep_default_na=False) for split in ("train", "test"))
    vectorizer = TfidfVectorizer()
    model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train["text"]), train["label"])
    predicted = model.predict(vectorizer.transform(test["text"]))
    majority = train["label"].value_counts().index[0]
    return float((predicted == test["label"]).mean()), float((test["label"] == majority).mean())


def test_bertgcn_stage_writes_logits_and_embeddings(r8_run):
    result = _gloss("train", "--run-dir", str(r8_run), "--method", "bertgcn", "--epochs", "1", "--max-length", "16",
                    "--batch-size", "32")
    assert result.exit_code == 0, result.output
    _check_logits(r8_run)
    manifest = json.loads((r8_run / "train" / "manifest.json").read_text())
    assert manifest["outputs"]["embeddings_test.npy"]["shape"][1] == 384
    assert manifest["summary"]["method"] == "bertgcn" and manifest["config"]["gcn"]["m"] == 0.7


def test_bertgcn_init_from_other_split_is_refused(r8_run, tmp_path):
    other = tmp_path / "other"
    root = os.environ["GLOSS_DATA"]
    assert _gloss("prepare", "--dataset", "R8", "--data-root", root, "--limit", "100", "--limit-test", "45", "--run-dir", str(other)).exit_code == 0
    result = CliRunner().invoke(main, ["train", "--run-dir", str(r8_run), "--method", "bertgcn",
                                       "--init-from", str(other)])
    assert result.exit_code == 1
    assert "differ from this run's" in result.output and "train.csv" in result.output
