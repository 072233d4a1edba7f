"""The model card a trained model folder carries, the classifier it loads as in one call, and what `gloss run`
prints: its first line, epoch lines in words, the under-trained-head line. One `gloss run` on the shipped tiny
dataset (one epoch, max length 16: seconds)."""

import csv
import hashlib
import json
import shutil

import numpy as np
import pytest
import yaml

from pipeline.classifier import GlossClassifier
from pipeline.errors import GlossError
from pipeline.model_card import card_facts, render_card
from tests.cli import gloss

RUN_ARGS = ["--epochs", "1", "--max-length", "16", "--batch-size", "16", "--seed", "1"]


@pytest.fixture(scope="module")
def finished(tiny_root, tmp_path_factory):
    """``gloss run`` of G-Loss + CE on the tiny dataset: (run dir, console output)."""
    run = tmp_path_factory.mktemp("card") / "run"
    result = gloss("run", "--dataset", "tiny", "--data-root", tiny_root, "--run-dir", run, *RUN_ARGS)
    assert result.exit_code == 0, result.output
    return run, result.output


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_first_line_names_dataset_encoder_loss_and_layers(finished):
    first = finished[1].splitlines()[0]
    assert first.startswith("run: tiny | all-MiniLM-L6-v2 | loss gloss+ce | --train-layers auto -> 0 (adapter"), first


def test_epoch_lines_use_words_and_leave_statistics_to_the_history(finished):
    run, output = finished
    epoch = next(line for line in output.splitlines() if line.startswith("train: epoch 1: training loss"))
    assert "validation accuracy" in epoch and "macro-F1" in epoch and "g_loss" in epoch
    assert "stat" not in epoch and "=" not in epoch
    history = json.loads((run / "train" / "history.jsonl").read_text().splitlines()[0])
    assert "train_stat_g_loss_hidden" in history


def test_card_names_the_training_and_carries_validation_and_test_results(finished):
    run, _ = finished
    card = (run / "train" / "model" / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["base_model"] == "all-MiniLM-L6-v2" and "g-loss" in meta["tags"]
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["split"] for r in results] == ["validation", "test"]
    test_scores = {m["type"]: m["value"] for m in results[1]["metrics"]}
    evaluated = json.loads((run / "evaluate" / "test_results.json").read_text())
    assert test_scores["accuracy"] == pytest.approx(evaluated["accuracy"], abs=5e-5)
    rows = json.loads((run / "prepare" / "manifest.json").read_text())["summary"]["rows"]
    assert f"train {rows['train']}, val {rows['val']}, test {rows['test']}" in card
    assert "| `--lambda` | 0.8 |" in card and "`--train-layers 0`" in card
    assert "arXiv 2604.25853" in card and "@inproceedings" in card
    assert "sentence-transformers model trained" not in card  # not the generic card


def test_the_train_stage_card_holds_validation_results_only(finished):
    run, _ = finished
    prepare = json.loads((run / "prepare" / "manifest.json").read_text())
    train = json.loads((run / "train" / "manifest.json").read_text())
    facts = card_facts("tiny", prepare["summary"], train["config"], train["summary"])
    card = render_card(facts)
    # the train manifest records the card as the train stage wrote it (gloss run adds the test results later)
    recorded = train["outputs"]["model/README.md"]["sha256"]
    assert recorded == hashlib.sha256(card.encode()).hexdigest()
    results = _front_matter(card)["model-index"][0]["results"]
    assert [r["dataset"]["split"] for r in results] == ["validation"]
    ce = render_card({**facts, "loss": "ce"})
    assert "G-Loss" not in ce and "Citation" not in ce


def test_model_folder_loads_as_a_classifier_in_one_call(finished):
    run, _ = finished
    classifier = GlossClassifier.from_pretrained(run / "train" / "model")
    labels = json.loads((run / "prepare" / "labels.json").read_text())
    assert classifier.labels == labels
    with open(run / "prepare" / "test.csv", newline="") as handle:
        test = [row["text"] for row in csv.DictReader(handle)]
    proba = classifier.predict_proba(test)
    assert proba.shape == (len(test), len(labels))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    logits = np.load(run / "train" / "logits_test.npy")  # what the train stage's head gave the same texts
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(proba, expected / expected.sum(1, keepdims=True), atol=1e-4)
    assert classifier.predict(test) == [labels[i] for i in logits.argmax(1)]


def test_a_folder_without_head_is_a_one_line_error(finished, tmp_path):
    run, _ = finished
    folder = shutil.copytree(run / "train" / "model", tmp_path / "model", ignore=shutil.ignore_patterns("head.pt"))
    with pytest.raises(GlossError, match="no classification head"):
        GlossClassifier.from_pretrained(folder)
    with pytest.raises(GlossError, match="not a sentence-transformers model folder"):
        GlossClassifier.from_pretrained(tmp_path)


def test_quick_run_says_the_head_looks_under_trained():
    from pipeline.stages.evaluate import undertrained_head_line

    summary = {"head": {"accuracy": 0.733, "macro_f1": 0.31}, "linear_probe": {"accuracy": 0.963, "macro_f1": 0.9},
               "reference_probe": None, "label_propagation": {"accuracy": 0.95, "macro_f1": 0.9}}
    line = undertrained_head_line(summary)
    assert line.startswith("evaluate: the head looks under-trained") and "23.0 points below the linear probe" in line
    assert undertrained_head_line({**summary, "linear_probe": {"accuracy": 0.78, "macro_f1": 0.7},
                                   "label_propagation": {"accuracy": 0.77, "macro_f1": 0.7}}) is None  # 4.7 points
    assert undertrained_head_line({**summary, "head": None}) is None


def test_epoch_line_in_words():
    from pipeline.training.loop import epoch_line

    record = {"epoch": 2, "train_ce": 1.065, "train_g_loss": 0.9178, "train_total": 0.9472,
              "train_stat_unscored": 104.0, "train_stat_g_loss_hidden": 1920.0, "val_accuracy": 0.9,
              "val_macro_f1": 0.88, "seconds": 12.4}
    assert epoch_line(record, improved=True) == ("train: epoch 2: training loss 0.9472 (ce 1.0650, g_loss 0.9178); "
                                                 "validation accuracy 0.9000, macro-F1 0.8800; 12s (best so far)")


def test_accuracy_plot_shows_at_least_twenty_points_and_marks_the_break():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.compare.plots import accuracy_limits, mark_axis_break

    cells = [{"mean": 0.9625, "std": 0.0005, "n": 3}, {"mean": 0.9643, "std": None, "n": 1}]
    low, high = accuracy_limits(cells)
    assert high - low >= 20 and low == 70.0 and high <= 100.0
    assert accuracy_limits([{"mean": 0.1, "std": 0.0, "n": 1}])[0] == 0.0
    fig, ax = plt.subplots()
    ax.set_ylabel("test accuracy (%)")
    mark_axis_break(ax, low)
    assert ax.get_ylabel() == "test accuracy (%), axis from 70" and len(ax.lines) == 2
    plt.close(fig)
