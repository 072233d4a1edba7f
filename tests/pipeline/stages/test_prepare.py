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
    result = _prepare("--dataset", "toy", "--data-root", str(toy_root), "--run-dir", str(tmp_path), "--limit", "9",
                      "--limit-test", "3")
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


def _summary(run):
    return json.loads((run / "prepare" / "manifest.json").read_text())["summary"]


def _refused(tmp_path, *args, dataset="d"):
    """A prepare that must stop: one line, exit code 1, nothing written."""
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["prepare", "--dataset", dataset, "--data-root", str(tmp_path),
                                       "--run-dir", str(run), *args])
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (run / "prepare").exists()
    return result.output


def test_limit_alone_keeps_the_whole_test_set(toy_root, tmp_path):
    result = _prepare("--dataset", "toy", "--data-root", str(toy_root), "--run-dir", str(tmp_path), "--limit", "9")
    assert result.exit_code == 0, result.output
    rows = _summary(tmp_path)["rows"]
    assert rows["train"] == 9 and rows["val"] == 1 and rows["test"] == 9  # val in proportion, test whole


def test_given_val_split_is_used_not_carved(tmp_path, toy_root):
    folder = tmp_path / "g"
    folder.mkdir()
    train = "".join(f"{i},train doc {i},{'ab'[i % 2]}\n" for i in range(10))
    (folder / "train.csv").write_text(",text,label\n" + train)
    (folder / "val.csv").write_text(",text,label\n20,val doc a,a\n21,val doc b,b\n")
    (folder / "test.csv").write_text(",text,label\n30,test doc,a\n")
    run = tmp_path / "run"
    assert _prepare("--dataset", "g", "--data-root", str(tmp_path), "--run-dir", str(run)).exit_code == 0
    summary = _summary(run)
    assert summary["val_split"] == "given" and summary["rows"] == {"train": 10, "val": 2, "test": 1}
    assert summary["layout"] == "train-val-test-csv" and summary["ignored_columns"]["g/val.csv"] == ["Unnamed: 0"]
    assert pd.read_csv(run / "prepare" / "val.csv")["text"].tolist() == ["val doc a", "val doc b"]
    _prepare("--dataset", "toy", "--data-root", str(toy_root), "--run-dir", str(tmp_path / "toy-run"))
    assert _summary(tmp_path / "toy-run")["val_split"] == "carved"


def test_unseen_test_labels_are_refused_or_dropped_and_counted(tmp_path):
    write_csv(tmp_path / "d" / "train.csv", [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")])
    write_csv(tmp_path / "d" / "test.csv", [("e", "x"), ("f", "z"), ("g", "z"), ("h", "y")])
    assert "label 'z' in test does not occur in train" in _refused(tmp_path)
    assert "--drop-unseen-labels" in _refused(tmp_path)
    run = tmp_path / "kept"
    result = _prepare("--dataset", "d", "--data-root", str(tmp_path), "--run-dir", str(run), "--drop-unseen-labels")
    assert result.exit_code == 0, result.output
    summary = _summary(run)
    assert summary["dropped_unseen_labels"] == {"val": 0, "test": 2} and summary["rows"]["test"] == 2
    assert pd.read_csv(run / "prepare" / "test.csv")["text"].tolist() == ["e", "h"]


@pytest.mark.parametrize("empty", ["train", "test"])
def test_header_only_file_stops_before_anything_is_written(tmp_path, empty):
    for split in ("train", "test"):
        write_csv(tmp_path / "d" / f"{split}.csv", [] if split == empty else [("a", "x"), ("b", "y"), ("c", "x")])
    assert f"d/{empty}.csv: no {empty} documents (a header only)" in _refused(tmp_path)


def test_too_small_for_a_validation_split_stops(tmp_path):
    write_csv(tmp_path / "d" / "train.csv", [("a", "x"), ("b", "y")])
    write_csv(tmp_path / "d" / "test.csv", [("c", "x")])
    assert "train.csv: too small for a validation split (2 documents, every class has one" in _refused(tmp_path)


@pytest.mark.parametrize("args, message", [
    (("--limit", "0"), "--limit"), (("--limit", "1"), "--limit"), (("--limit", "2"), "--limit 2: fewer than the 3"),
    (("--limit-test", "0"), "--limit-test"), (("--encoding", "klingon"), "--encoding klingon: not a known"),
])
def test_bad_slice_or_encoding_options_stop(toy_root, args, message):
    assert message in _refused(toy_root, *args, dataset="toy")


def test_encoding_is_detected_or_given_and_recorded(tmp_path, caplog):
    folder = tmp_path / "w"
    folder.mkdir()
    rows = "".join(f"caf\u00e9 \u2013 review {i} \u2019s,{'ab'[i % 2]}\n" for i in range(8))
    (folder / "train.csv").write_bytes(("text,label\n" + rows).encode("cp1252"))
    write_csv(folder / "test.csv", [("plain", "a")])
    run = tmp_path / "run"
    result = _prepare("--dataset", "w", "--data-root", str(tmp_path), "--run-dir", str(run), "--encoding", "cp1252")
    assert result.exit_code == 0, result.output
    assert _summary(run)["encodings"] == {"w/train.csv": "cp1252", "w/test.csv": "cp1252"}
    assert pd.read_csv(run / "prepare" / "train.csv")["text"].str.startswith("caf\u00e9 \u2013").all()
    _prepare("--dataset", "w", "--data-root", str(tmp_path), "--run-dir", str(run), "--force")
    detected = _summary(run)["encodings"]
    assert detected["w/test.csv"] == "utf-8" and f"read as {detected['w/train.csv']}, detected" in caplog.text
