import json

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import write_csv

# From ../shared/data/README.md: train, test, classes.
BENCHMARK_COUNTS = {
    "mr": (7108, 3554, 2),
    "R8": (5485, 2189, 8),
    "R52": (6532, 2568, 52),
    "ohsumed": (3357, 4043, 23),
    "20ng": (11314, 7532, 20),
}


def _prepare(*args):
    return CliRunner().invoke(main, ["prepare", *args], catch_exceptions=False)


@pytest.mark.parametrize("name", sorted(BENCHMARK_COUNTS))
def test_prepares_each_benchmark_with_published_counts(name, data_root, tmp_path):
    result = _prepare("--dataset", name, "--data-root", str(data_root), "--run-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "prepare" / "manifest.json").read_text())
    train, test, classes = BENCHMARK_COUNTS[name]
    rows = manifest["summary"]["rows"]
    assert manifest["summary"]["num_classes"] == classes
    assert rows["train"] + rows["val"] == train and rows["test"] == test
    assert abs(rows["val"] - 0.1 * train) < classes  # 10% per class, rounded
    assert manifest["outputs"]["val.csv"]["rows"] == rows["val"]
    val = pd.read_csv(tmp_path / "prepare" / "val.csv", keep_default_na=False)
    train_df = pd.read_csv(tmp_path / "prepare" / "train.csv", keep_default_na=False)
    assert not set(val["source_row"]) & set(train_df["source_row"])


def test_second_prepare_is_skipped_and_force_reruns(toy_root, tmp_path):
    args = ("--dataset", "toy", "--data-root", str(toy_root), "--run-dir", str(tmp_path))
    first = _prepare(*args)
    assert "wrote" in first.output
    created = json.loads((tmp_path / "prepare" / "manifest.json").read_text())["created"]
    second = _prepare(*args)
    assert "up to date" in second.output
    assert json.loads((tmp_path / "prepare" / "manifest.json").read_text())["created"] == created
    third = _prepare(*args, "--force")
    assert "wrote" in third.output and "up to date" not in third.output


def test_limit_keeps_a_stratified_sample(toy_root, tmp_path):
    result = _prepare("--dataset", "toy", "--data-root", str(toy_root), "--run-dir", str(tmp_path), "--limit", "9")
    assert result.exit_code == 0
    train = pd.read_csv(tmp_path / "prepare" / "train.csv")
    assert len(train) == 9 and sorted(train["label"].value_counts().tolist()) == [3, 3, 3]
    test = pd.read_csv(tmp_path / "prepare" / "test.csv")
    assert len(test) == 3  # 9 of 27 train documents kept -> a third of the 9 test documents


def test_data_root_from_environment(toy_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GLOSS_DATA", str(toy_root))
    result = _prepare("--dataset", "toy", "--run-dir", str(tmp_path))
    assert result.exit_code == 0 and "3 classes" in result.output


def test_config_file_gives_defaults_and_flags_win(toy_root, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'data-root = "{toy_root}"\n[prepare]\ndataset = "toy"\nval_fraction = 0.2\n')
    run = tmp_path / "run"
    result = _prepare("--config", str(config), "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    assert json.loads((run / "prepare" / "manifest.json").read_text())["config"]["val_fraction"] == 0.2
    result = _prepare("--config", str(config), "--run-dir", str(run), "--val-fraction", "0.3")
    assert json.loads((run / "prepare" / "manifest.json").read_text())["config"]["val_fraction"] == 0.3


def test_config_file_unknown_key_is_one_line_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("prepare:\n  datset: R8\n")
    result = CliRunner().invoke(main, ["prepare", "--config", str(config)])
    assert result.exit_code == 1
    assert "[prepare] has no option 'datset'" in result.output


def test_label_in_test_not_in_train(tmp_path):
    write_csv(tmp_path / "d" / "train.csv", [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")])
    write_csv(tmp_path / "d" / "test.csv", [("e", "x"), ("f", "z")])
    result = CliRunner().invoke(main, ["prepare", "--dataset", "d", "--data-root", str(tmp_path),
                                       "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "test.csv: row 2: label 'z' in test does not occur in train" in result.output
    assert not (tmp_path / "run" / "prepare").exists()


def test_single_class_dataset_is_refused(tmp_path):
    write_csv(tmp_path / "d" / "train.csv", [("a", "x"), ("b", "x")])
    write_csv(tmp_path / "d" / "test.csv", [("e", "x")])
    result = CliRunner().invoke(main, ["prepare", "--dataset", "d", "--data-root", str(tmp_path),
                                       "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and "single class ('x')" in result.output


def test_duplicates_are_counted_and_kept(tmp_path):
    rows = [("same", "x")] * 3 + [(f"t{i}", "x") for i in range(7)] + [(f"u{i}", "y") for i in range(10)]
    write_csv(tmp_path / "d" / "train.csv", rows)
    write_csv(tmp_path / "d" / "test.csv", [("e", "x")])
    run = tmp_path / "run"
    result = _prepare("--dataset", "d", "--data-root", str(tmp_path), "--run-dir", str(run))
    assert result.exit_code == 0
    summary = json.loads((run / "prepare" / "manifest.json").read_text())["summary"]
    assert summary["rows"]["train"] + summary["rows"]["val"] == 20
    assert sum(summary["duplicate_rows_kept"].values()) in (1, 2)  # 3 copies: 2 duplicates, maybe split by val


def test_bad_option_value_is_one_line_exit_1(toy_root, tmp_path):
    result = CliRunner().invoke(main, ["prepare", "--dataset", "toy", "--data-root", str(toy_root),
                                       "--val-fraction", "1.5"])
    assert result.exit_code == 1 and "--val-fraction" in result.output
    assert len(result.output.strip().splitlines()) == 1
