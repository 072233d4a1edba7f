"""``gloss predict --predictor`` on a real 1-epoch CE run of the shipped tiny dataset, against what
``gloss evaluate`` chose and predicted."""

import json
import shutil

import numpy as np
import pytest

from tests.cli import gloss, prepare_tiny

ONE_EPOCH = ["--epochs", "1", "--max-length", "16", "--batch-size", "16", "--seed", "3"]


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory):
    run = prepare_tiny(tiny_root, tmp_path_factory.mktemp("predict") / "run")
    result = gloss("train", "--run-dir", run, "--loss", "ce", *ONE_EPOCH)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def evaluated(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    result = gloss("evaluate", "--run-dir", run, "--tsne-max", "0", "--predictor", "lpa")
    assert result.exit_code == 0, result.output
    return run


def _predict(run, source, *args):
    out = source.parent / "out.jsonl"
    result = gloss("predict", "--run", run, "--input", source, "--output", out, *args, catch_exceptions=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if result.exit_code == 0 else None
    return result, rows


@pytest.mark.parametrize(("args", "key"), [
    ((), "lpa-inductive"), (("--predictor", "knn"), "knn"), (("--predictor", "mix"), "mix-inductive"),
    (("--predictor", "head"), "head"), (("--predictor", "lpa", "--transductive"), "lpa-transductive"),
    (("--predictor", "mix", "--transductive"), "mix-transductive")])
def test_predict_on_the_test_texts_gives_what_evaluate_predicted(evaluated, tmp_path, args, key):
    import pandas as pd

    texts = pd.read_csv(evaluated / "prepare" / "test.csv", keep_default_na=False)["text"]
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    metrics = json.loads((evaluated / "evaluate" / "metrics.json").read_text())
    result, rows = _predict(evaluated, test, *args)
    assert result.exit_code == 0, result.output
    assert f"predict ({key})" in result.output  # the default is evaluate's headline predictor
    labels = json.loads((evaluated / "prepare" / "labels.json").read_text())
    with np.load(evaluated / "evaluate" / "predictions_test.npz") as saved:
        expected = [labels[i] for i in saved[key]]
    if key.endswith("-transductive"):  # the graph holds the test texts but not the val ones here: most agree
        assert np.mean([r["label"] == e for r, e in zip(rows, expected, strict=True)]) >= 0.75
    else:
        assert [r["label"] for r in rows] == expected
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert (metrics["predictors"][key]["k"] is None) == (key == "head")


def test_graph_predictors_need_evaluate_first(trained, tmp_path):
    source = tmp_path / "new.txt"
    source.write_text("oil prices rose as crude output fell\n")
    result, _ = _predict(trained, source, "--predictor", "lpa")
    assert result.exit_code == 1
    assert "holds no k chosen for 'lpa-inductive'" in result.output and "gloss evaluate" in result.output
    result, _ = _predict(trained, source, "--predictor", "knn", "--transductive")
    assert result.exit_code == 1 and "--transductive applies to --predictor lpa or mix" in result.output
    result, rows = _predict(trained, source)  # a run without RUN/evaluate predicts with its head
    assert result.exit_code == 0 and "predict (head)" in result.output and len(rows) == 1


def test_a_csv_output_is_csv_and_another_name_is_warned(trained, tmp_path):
    import pandas as pd

    source = tmp_path / "docs.txt"
    source.write_text("a first document\n\nand a second one\n")
    out = tmp_path / "predictions.csv"
    result = gloss("predict", "--run", trained, "--input", source, "--output", out, "--predictor", "head")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    table["skipped"] = table["skipped"].fillna("")
    labels = json.loads((trained / "prepare" / "labels.json").read_text())
    assert list(table.columns) == ["row", "label", "skipped", *(f"p_{name}" for name in labels)]
    assert table["row"].tolist() == [1, 2, 3] and table["skipped"].tolist() == ["", "empty", ""]
    probabilities = table[[f"p_{name}" for name in labels]]
    assert probabilities.iloc[[0, 2]].sum(axis=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert table["label"][0] == labels[int(np.argmax(probabilities.iloc[0].to_numpy()))]
    assert "warning" not in result.output
    other = gloss("predict", "--run", trained, "--input", source, "--output", tmp_path / "predictions.txt")
    assert other.exit_code == 0 and "--output" in other.output and "writing JSON lines" in other.output
    assert json.loads((tmp_path / "predictions.txt").read_text().splitlines()[0])["row"] == 1
