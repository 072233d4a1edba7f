import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from pipeline.cli import main
from pipeline.manifest import run_stage

FAST = ("--tsne-max", "20", "--knn-k", "5")


@pytest.fixture(autouse=True)
def one_thread():
    """Run BLAS/OpenMP single-threaded: on a shared, loaded machine OpenMP spin-waits make t-SNE 10x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _split(run: Path, split: str) -> pd.DataFrame:
    return pd.read_csv(run / "prepare" / f"{split}.csv", keep_default_na=False)


def fabricate_train(run: Path, *, logits: bool = True, embeddings: bool = True, method: str = "finetune",
                    loss: str | None = "gloss+ce", tamper=None) -> dict[str, np.ndarray]:
    """A fake `train` stage: separable embeddings, logits right except on every fourth test document."""
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16, dtype=np.float32) * 4.0
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        y = _split(run, split)["label_id"].to_numpy()
        if embeddings:
            arrays[f"embeddings_{split}.npy"] = (centres[y] + rng.normal(size=(len(y), 16))).astype(np.float32)
        if logits and split != "train":
            predicted = y.copy()
            predicted[::4] = (y[::4] + 1) % 3
            arrays[f"logits_{split}.npy"] = (np.eye(3)[predicted] * 5 + rng.normal(size=(len(y), 3))).astype(np.float32)
    if tamper:
        tamper(arrays)

    def body(ctx):
        for name, array in arrays.items():
            np.save(ctx.output(name), array)
        history = [{"epoch": e, "loss": 1.0 / e, "val_accuracy": 0.5 + 0.1 * e, "val_macro_f1": 0.4 + 0.1 * e,
                    "val_macro_silhouette": 0.1 * e, "seconds": 1.5} for e in (1, 2, 3)]
        ctx.output("history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        return {"best_epoch": 3, "seconds_per_epoch": 1.5, "peak_rss_mb": 321.0, "has_head": logits}

    run_stage(run, "train", {"method": method, "loss": loss}, body, force=True, echo=lambda _: None)
    return arrays


@pytest.fixture
def run(toy_root, tmp_path) -> Path:
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["prepare", "--dataset", "toy", "--data-root", str(toy_root), "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return run


def _evaluate(run: Path, *args: str):
    return CliRunner().invoke(main, ["evaluate", "--run-dir", str(run), *FAST, *args])


def _drawn_confusion(figures) -> tuple[str, np.ndarray]:
    """The title and the drawn (row-normalised) matrix of the saved confusion-matrix figure."""
    [ax] = [f.axes[0] for f in figures if f.axes[0].images]
    return ax.get_title(), np.asarray(ax.images[0].get_array())


def _row_normalised(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def test_evaluate_end_to_end_matches_sklearn_and_skips_a_second_run(run, saved_figures):
    arrays = fabricate_train(run)
    result = _evaluate(run)
    assert result.exit_code == 0, result.output
    out = run / "evaluate"
    for name in ("metrics.json", "confusion_matrix.png", "tsne.png", "manifest.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    test = _split(run, "test")
    y, predicted = test["label_id"].to_numpy(), arrays["logits_test.npy"].argmax(axis=1)
    head = metrics["head"]
    assert head["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert head["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert head["weighted_f1"] == pytest.approx(f1_score(y, predicted, average="weighted"))
    report = classification_report(y, predicted, target_names=["a", "b", "c"], output_dict=True)
    assert head["per_class"]["b"]["f1-score"] == pytest.approx(report["b"]["f1-score"])
    assert head["confusion_matrix"] == confusion_matrix(y, predicted).tolist()
    assert head["accuracy"] < 1.0  # every fourth prediction is wrong
    assert metrics["headline"] == {"accuracy": head["accuracy"], "macro_f1": head["macro_f1"], "absent_classes": 0,
                                   "source": "head"}
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["headline"] == metrics["headline"] and head["val"]["absent_classes"] == 0
    assert metrics["linear_probe"]["accuracy"] == 1.0
    assert metrics["label_propagation"]["accuracy"] == 1.0
    assert metrics["silhouette"]["macro_silhouette"] > 0.3
    assert metrics["method"] == "finetune" and metrics["loss"] == "gloss+ce"
    assert metrics["train"] == {"best_epoch": 3, "seconds_per_epoch": 1.5, "peak_rss_mb": 321.0, "has_head": True}
    assert metrics["history"]["epochs"] == 3
    assert "test accuracy" in result.output and "linear probe" in result.output and "macro-silhouette" in result.output
    title, drawn = _drawn_confusion(saved_figures)  # the headline's (the head's) confusion matrix is drawn
    assert "test confusion (head, rows normalised)" in title
    np.testing.assert_allclose(drawn, _row_normalised(head["confusion_matrix"]))
    [tsne] = [f.axes[0] for f in saved_figures if f.axes[0].get_title().startswith("t-SNE")]
    assert sum(len(c.get_offsets()) for c in tsne.collections) == metrics["tsne_points"] == len(y)

    second = _evaluate(run)
    assert second.exit_code == 0 and "up to date" in second.output and "test accuracy" in second.output
    assert "wrote" in _evaluate(run, "--force").output


def test_standalone_gloss_uses_the_linear_probe_as_headline(run, saved_figures):
    fabricate_train(run, logits=False, loss="gloss")
    result = _evaluate(run)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["head"] is None
    assert metrics["headline"]["source"] == "linear_probe"
    assert metrics["headline"]["accuracy"] == metrics["linear_probe"]["accuracy"] == 1.0
    assert metrics["confusion_matrix_source"] == "linear_probe"
    assert (run / "evaluate" / "confusion_matrix.png").is_file()
    title, drawn = _drawn_confusion(saved_figures)
    assert "test confusion (linear probe, rows normalised)" in title
    np.testing.assert_allclose(drawn, _row_normalised(metrics["linear_probe"]["confusion_matrix"]))
    assert "from the linear probe" in result.output


def test_textgcn_without_embeddings_has_head_metrics_only(run):
    fabricate_train(run, embeddings=False, method="textgcn", loss=None)
    result = _evaluate(run)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["silhouette"] is None and metrics["linear_probe"] is None and metrics["label_propagation"] is None
    assert not (run / "evaluate" / "tsne.png").exists()
    assert "null" in (run / "evaluate" / "metrics.json").read_text()


def test_bad_row_count_names_the_file(run):
    fabricate_train(run, tamper=lambda a: a.update({"logits_test.npy": a["logits_test.npy"][:-1]}))
    result = _evaluate(run)
    assert result.exit_code == 1
    assert "logits_test.npy: 8 rows, but the test split has 9 documents" in result.output
    assert not (run / "evaluate").exists()


def test_wrong_class_count_and_nan_embeddings_name_the_file(run):
    fabricate_train(run, tamper=lambda a: a.update({"logits_test.npy": np.zeros((9, 4), np.float32)}))
    result = _evaluate(run)
    assert result.exit_code == 1 and "logits_test.npy: 4 class columns, but the dataset has 3 classes" in result.output

    def add_nan(arrays):
        arrays["embeddings_train.npy"][2, 5] = np.nan

    fabricate_train(run, tamper=add_nan)
    result = _evaluate(run)
    assert result.exit_code == 1 and "embeddings_train.npy: row 2 holds NaN" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_train_stage_and_missing_run_dir(run):
    result = _evaluate(run)
    assert result.exit_code == 1 and "run `gloss train" in result.output
    missing = CliRunner().invoke(main, ["evaluate"])
    assert missing.exit_code == 1 and "Missing option '--run-dir'" in missing.output


def test_nothing_to_evaluate(run):
    fabricate_train(run, logits=False, embeddings=False)
    result = _evaluate(run)
    assert result.exit_code == 1 and "nothing to evaluate" in result.output


def test_config_file_sets_options_and_tsne_max_zero_skips_the_plot(run, tmp_path):
    fabricate_train(run)
    config = tmp_path / "c.toml"
    config.write_text("[evaluate]\ntsne-max = 0\nknn_k = 3\n")
    result = CliRunner().invoke(main, ["evaluate", "--config", str(config), "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["tsne_points"] is None and not (run / "evaluate" / "tsne.png").exists()
    assert metrics["label_propagation"]["k"] == 3
    manifest = json.loads((run / "evaluate" / "manifest.json").read_text())
    assert manifest["config"]["knn_k"] == 3 and manifest["summary"]["headline"]["source"] == "head"


def test_embedding_dimensions_must_agree(run):
    fabricate_train(run, tamper=lambda a: a.update({"embeddings_train.npy": a["embeddings_train.npy"][:, :15]}))
    result = _evaluate(run)
    assert result.exit_code == 1
    assert "embeddings_train.npy: 15 dimensions, but embeddings_test.npy has 16" in result.output


def test_probe_both_adds_the_reference_probe_and_a_standalone_headline_can_come_from_it(run):
    fabricate_train(run, logits=False, loss="gloss")
    result = _evaluate(run, "--probe", "both")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    reference = metrics["reference_probe"]
    assert {"accuracy", "macro_f1", "best_epoch", "epochs_run", "lr", "max_epochs", "patience"} <= set(reference)
    assert (reference["lr"], reference["max_epochs"], reference["patience"]) == (1e-4, 50, 10)
    assert 1 <= reference["best_epoch"] <= reference["epochs_run"] <= 50
    assert metrics["linear_probe"] is not None and metrics["headline"]["source"] == "linear_probe"
    assert "reference probe: acc" in result.output
    only = _evaluate(run, "--probe", "reference", "--force")
    assert only.exit_code == 0, only.output
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["linear_probe"] is None and metrics["headline"]["source"] == "reference_probe"
    assert metrics["headline"]["accuracy"] == metrics["reference_probe"]["accuracy"]


def test_reference_probe_needs_val_embeddings(run):
    fabricate_train(run, logits=False, loss="gloss", tamper=lambda arrays: arrays.pop("embeddings_val.npy"))
    result = _evaluate(run, "--probe", "reference")
    assert result.exit_code == 1
    assert "the reference probe needs" in result.output and "embeddings_val.npy" in result.output


def _chosen(run: Path) -> tuple[dict, dict]:
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    with np.load(run / "evaluate" / "predictions_test.npz") as saved:
        predictions = {key: saved[key] for key in saved.files}
    return metrics, predictions


def test_graph_predictors_ignore_the_test_labels(run):
    """k and alpha come from validation: shuffling the test labels changes no chosen value and no prediction."""
    fabricate_train(run)
    assert CliRunner().invoke(main, ["evaluate", "--run-dir", str(run), "--tsne-max", "0"]).exit_code == 0
    before, predicted = _chosen(run)
    path = run / "prepare" / "test.csv"
    test = pd.read_csv(path, keep_default_na=False)
    order = np.random.default_rng(1).permutation(len(test))
    test[["label", "label_id"]] = test[["label", "label_id"]].to_numpy()[order]
    test.to_csv(path, index=False)
    result = CliRunner().invoke(main, ["evaluate", "--run-dir", str(run), "--tsne-max", "0", "--force"])
    assert result.exit_code == 0, result.output
    after, predicted_after = _chosen(run)
    graph_keys = {"knn", "lpa-transductive", "lpa-inductive", "mix-transductive", "mix-inductive"}
    assert graph_keys <= set(before["predictors"])
    chosen_fields = ("k", "alpha", "k_given", "val_accuracy", "val_macro_f1", "setting")
    for key in graph_keys:
        assert {f: after["predictors"][key][f] for f in chosen_fields} == \
            {f: before["predictors"][key][f] for f in chosen_fields}, key
        assert before["predictors"][key]["k_given"] is False
    assert predicted.keys() == predicted_after.keys()
    for key in predicted:
        np.testing.assert_array_equal(predicted[key], predicted_after[key])
    # The shuffle did reach the scores: the test metrics moved.
    assert after["predictors"]["knn"]["accuracy"] != before["predictors"]["knn"]["accuracy"]


def test_predictor_headline_and_given_k(run):
    fabricate_train(run)
    result = _evaluate(run, "--predictor", "mix", "--transductive")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    chosen = metrics["predictors"]["mix-transductive"]
    assert metrics["headline"] == {"accuracy": chosen["accuracy"], "macro_f1": chosen["macro_f1"],
                                   "absent_classes": chosen["absent_classes"], "source": "mix-transductive"}
    assert (metrics["predictor"], metrics["setting"], metrics["k"]) == ("mix", "transductive", 5)
    assert metrics["alpha"] == chosen["alpha"] and chosen["k_given"] is True
    assert all(block["k"] in (None, 5) for block in metrics["predictors"].values())
    assert "graph predictors" in result.output


def test_mix_without_a_head_is_refused_before_any_work(run):
    fabricate_train(run, logits=False, loss="gloss")
    result = _evaluate(run, "--predictor", "mix")
    assert result.exit_code != 0
    assert "--predictor mix" in result.output and "no head" in result.output
    assert not (run / "evaluate").exists()
