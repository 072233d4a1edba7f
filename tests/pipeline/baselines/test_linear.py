"""`--method tfidf|frozen`: logistic regression with C chosen on val, run like every other method."""

import csv
import json
import shutil

import numpy as np
import pytest

from pipeline.baselines.linear import LinearConfig, choose_c, log_proba_by_label_id, parse_c_grid
from pipeline.compare.aggregate import read_run
from tests.cli import gloss

FAST = ["--max-length", "16", "--val-fraction", "0.3"]


def _blobs(seed: int, n: int, spread: float):
    """Two overlapping Gaussian classes in 5 dimensions."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return rng.normal(size=(n, 5)) * spread + y[:, None], y


def test_choose_c_keeps_the_best_val_macro_f1_and_ties_go_to_the_smaller_c():
    train_x, train_y = _blobs(0, 40, 0.1)  # separable: every C scores 1.0 on val
    val_x, val_y = _blobs(1, 20, 0.1)
    chosen = choose_c(train_x, train_y, val_x, val_y, LinearConfig(c_grid=(100.0, 1.0, 0.01)), num_classes=2)
    assert [s["c"] for s in chosen.scores] == [0.01, 1.0, 100.0]
    assert all(s["val_macro_f1"] == 1.0 for s in chosen.scores) and chosen.c == 0.01

    train_x, train_y = _blobs(2, 60, 1.0)  # overlapping: the grid's scores differ; the best one is kept
    val_x, val_y = _blobs(3, 60, 1.0)
    chosen = choose_c(train_x, train_y, val_x, val_y, LinearConfig(c_grid=(1e-4, 1e-2, 1.0, 100.0)), num_classes=2)
    best = max(s["val_macro_f1"] for s in chosen.scores)
    assert len({s["val_macro_f1"] for s in chosen.scores}) > 1
    assert chosen.c == min(s["c"] for s in chosen.scores if s["val_macro_f1"] == best)


def test_log_probabilities_are_placed_by_label_id():
    x, y = _blobs(0, 40, 0.1)
    chosen = choose_c(x, y * 2, x, y * 2, LinearConfig(c_grid=(1.0,)), num_classes=3)  # classes 0 and 2 of 3
    logits = log_proba_by_label_id(chosen.model, x, 3)
    assert logits.shape == (40, 3) and np.all(np.isneginf(logits[:, 1]))
    np.testing.assert_allclose(np.exp(logits).sum(1), 1.0, atol=1e-5)
    assert np.array_equal(logits.argmax(1), y * 2)


def test_c_grid_errors():
    assert parse_c_grid("10, 0.1,1") == (0.1, 1.0, 10.0)
    for bad in ("", "0,1", "a,1", "-1"):
        with pytest.raises(ValueError, match="--c-grid"):
            parse_c_grid(bad)


def test_bad_c_grid_is_a_one_line_error_before_any_work(tiny_root, tmp_path):
    result = gloss("run", "--method", "tfidf", "--dataset", "tiny", "--data-root", tiny_root, "--c-grid", "1,x",
                   "--run-dir", tmp_path / "run")
    assert result.exit_code == 1 and "--c-grid 1,x" in result.output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("method", ["tfidf", "frozen"])
def test_runs_like_every_method_and_records_the_choice(method, tiny_root, tmp_path):
    run = tmp_path / "run"
    result = gloss("run", "--method", method, "--dataset", "tiny", "--data-root", tiny_root, *FAST, "--run-dir", run)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "train" / "manifest.json").read_text())["summary"]
    name = f"{method}-lr"
    assert summary["method"] == name and summary["c_grid"] == [0.01, 0.1, 1, 10, 100, 1000, 10000]
    assert summary["c"] in summary["c_grid"]
    assert [s["c"] for s in summary["c_scores"]] == summary["c_grid"]
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["method"] == name and metrics["headline"]["source"] == "head"
    assert {"accuracy", "macro_f1", "weighted_f1", "confusion_matrix"} <= set(metrics["head"])
    assert (metrics["linear_probe"] is not None) == (method == "frozen")  # frozen-lr writes its embeddings
    record = read_run(run)
    assert record.method == name and record.best_epoch == 1 and len(record.val_macro_f1_by_epoch) == 1


def _shuffled_test_labels(tiny_root, tmp_path):
    """A copy of the tiny dataset whose test labels are rotated (same label set, most rows changed)."""
    root = tmp_path / "shuffled"
    shutil.copytree(tiny_root / "tiny", root / "tiny")
    with open(root / "tiny" / "test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.roll([row["label"] for row in rows], len(rows) // 4)
    assert sum(a != row["label"] for a, row in zip(labels, rows, strict=True)) > len(rows) // 2
    with open(root / "tiny" / "test.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": row["text"], "label": label} for row, label in zip(rows, labels, strict=True))
    return root


@pytest.mark.parametrize("method", ["tfidf", "frozen"])
def test_shuffling_the_test_labels_changes_no_choice(method, tiny_root, tmp_path):
    chosen = []
    for root in (tiny_root, _shuffled_test_labels(tiny_root, tmp_path)):
        run = tmp_path / f"run-{len(chosen)}"
        result = gloss("prepare", "--dataset", "tiny", "--data-root", root, "--val-fraction", "0.3", "--run-dir", run)
        assert result.exit_code == 0, result.output
        result = gloss("train", "--method", method, "--max-length", "16", "--run-dir", run)
        assert result.exit_code == 0, result.output
        summary = json.loads((run / "train" / "manifest.json").read_text())["summary"]
        chosen.append((summary["c"], [{k: v for k, v in s.items() if k != "seconds"} for s in summary["c_scores"]]))
    assert chosen[0] == chosen[1]


@pytest.mark.parametrize("seed_option", ["--seed", "--split-seed"])  # another validation split: the same pool
def test_frozen_reads_the_embedding_cache_on_its_second_run(tiny_root, tmp_path, seed_option, monkeypatch):
    monkeypatch.setenv("GLOSS_CACHE", str(tmp_path / "cache"))
    hits = []
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        result = gloss("run", "--method", "frozen", "--dataset", "tiny", "--data-root", tiny_root, *FAST,
                       "--max-length", "17", seed_option, seed, "--run-dir", run)
        assert result.exit_code == 0, result.output
        hits.append(json.loads((run / "train" / "manifest.json").read_text())["summary"]["embedding_cache_hits"])
    assert hits == [[], ["train", "val", "test"]]


def test_a_sweep_runs_tfidf_over_seeds(tiny_root, tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text('datasets = ["tiny"]\nseeds = [0, 1]\noptions = { val-fraction = 0.3 }\n'
                    '[[methods]]\nname = "tfidf-lr"\nmethod = "tfidf"\n')
    result = gloss("compare", "--spec", spec, "--out", tmp_path / "out", "--data-root", tiny_root)
    assert result.exit_code == 0, result.output
    [row] = json.loads((tmp_path / "out" / "results.json").read_text())["aggregated"]
    assert row["method"] == "tfidf-lr" and row["accuracy"]["n"] == 2 and row["macro_f1"]["n"] == 2
