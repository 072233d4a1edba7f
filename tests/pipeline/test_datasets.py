import json

import pytest

from pipeline.datasets import load_dataset
from pipeline.errors import GlossError
from tests.conftest import write_csv


def test_reads_train_test_layout(toy_root):
    raw = load_dataset("toy", toy_root)
    assert raw.layout == "train-test-csv"
    assert len(raw.frames["train"]) == 30 and len(raw.frames["test"]) == 9
    assert raw.frames["train"]["source_row"].iloc[0] == 1


def test_reads_single_csv_with_split_column(tmp_path):
    rows = [("one", "x", "train"), ("two", "y", "train"), ("three", "x", "test"), ("four", "y", "validation")]
    write_csv(tmp_path / "mine.csv", rows, header="text,label,split")
    raw = load_dataset("mine", tmp_path)
    assert raw.layout == "split-column"
    assert {k: len(v) for k, v in raw.frames.items()} == {"train": 2, "val": 1, "test": 1}


def test_reads_jsonl_with_split_column(tmp_path):
    lines = [{"text": "a b", "label": 1, "split": "train"}, {"text": "c d", "label": 2, "split": "test"}]
    (tmp_path / "j.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    raw = load_dataset("j", tmp_path)
    assert raw.frames["train"]["label"].tolist() == ["1"]


def test_reads_textgcn_layout(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "tg.txt").write_text("0\ttrain\tpos\n1\ttest\tneg\n2\ttrain\tneg\n")
    (tmp_path / "corpus" / "tg.txt").write_text("good film\nbad film\nawful\n")
    raw = load_dataset("tg", tmp_path)
    assert raw.layout == "textgcn"
    assert raw.frames["train"]["text"].tolist() == ["good film", "awful"]
    assert raw.frames["test"]["label"].tolist() == ["neg"]


def test_missing_dataset_names_what_was_looked_for(tmp_path):
    with pytest.raises(GlossError, match=r"dataset 'R8' not found: looked for .*R8/train.csv.*text_gcn"):
        load_dataset("R8", tmp_path)


def test_unknown_dataset_lists_known_ones(toy_root):
    with pytest.raises(GlossError, match=r"unknown dataset 'nope'.*known: .*20ng.*toy"):
        load_dataset("nope", toy_root)


def test_missing_column(tmp_path):
    write_csv(tmp_path / "d" / "train.csv", [("x", "y")], header="body,label")
    write_csv(tmp_path / "d" / "test.csv", [("x", "y")])
    with pytest.raises(GlossError, match=r"train.csv: missing column\(s\) 'text' \(found: body, label\)"):
        load_dataset("d", tmp_path)


def test_missing_test_file(tmp_path):
    write_csv(tmp_path / "d" / "train.csv", [("x", "y")])
    with pytest.raises(GlossError, match=r"test.csv not found"):
        load_dataset("d", tmp_path)


def test_empty_text_names_file_and_row(tmp_path):
    write_csv(tmp_path / "d" / "train.csv", [("fine", "a"), ("   ", "b")])
    write_csv(tmp_path / "d" / "test.csv", [("x", "a")])
    with pytest.raises(GlossError, match=r"train.csv: row 2: empty or whitespace-only text"):
        load_dataset("d", tmp_path)


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.csv").write_bytes(b"text,label\nok,a\nbad \xff byte,b\n")
    write_csv(folder / "test.csv", [("x", "a")])
    with pytest.raises(GlossError, match=r"train.csv: line 3: bytes that are not UTF-8 \(byte 0xff"):
        load_dataset("d", tmp_path)


def test_field_over_csv_module_limit_is_read_whole(tmp_path):
    long_text = "word " * 40_000  # 200,000 characters, above csv's 131,072 default
    write_csv(tmp_path / "d" / "train.csv", [(long_text, "a"), ("short", "b")])
    write_csv(tmp_path / "d" / "test.csv", [("x", "a")])
    raw = load_dataset("d", tmp_path)
    assert len(raw.frames["train"]["text"].iloc[0]) == len(long_text)
