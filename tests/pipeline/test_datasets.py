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


def test_unknown_dataset_lists_only_present_ones(toy_root):
    with pytest.raises(GlossError, match=r"unknown dataset 'nope' under .*\(present: toy\)") as caught:
        load_dataset("nope", toy_root)
    assert "did you mean" not in str(caught.value) and "20ng" not in str(caught.value).split(";")[0]


@pytest.mark.parametrize("asked, present", [("MR", "mr"), ("R-8", "R8"), ("ohsumd", "ohsumed")])
def test_unknown_dataset_suggests_the_closest_present_one(tmp_path, asked, present):
    for name in ("mr", "R8", "ohsumed"):
        write_csv(tmp_path / name / "train.csv", [("x", "a")])
    with pytest.raises(GlossError, match=rf"unknown dataset '{asked}' .*did you mean '{present}'\? present: mr, "
                                         r"ohsumed, R8\)"):
        load_dataset(asked, tmp_path)


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
    with pytest.raises(GlossError, match=r"train.csv: line 3: bytes that are not utf-8 \(byte 0xff"):
        load_dataset("d", tmp_path, encoding="utf-8")


def test_field_over_csv_module_limit_is_read_whole(tmp_path):
    long_text = "word " * 40_000  # 200,000 characters, above csv's 131,072 default
    write_csv(tmp_path / "d" / "train.csv", [(long_text, "a"), ("short", "b")])
    write_csv(tmp_path / "d" / "test.csv", [("x", "a")])
    raw = load_dataset("d", tmp_path)
    assert len(raw.frames["train"]["text"].iloc[0]) == len(long_text)


# Characters str.splitlines() breaks at but a line end is not (20ng's posts hold form feeds and \x1c-\x1e).
NOT_LINE_ENDS = "\x0c\x1c\x1e\x85\u2028\u2029\x0b"


def test_given_val_csv_is_used_and_an_index_column_ignored(tmp_path, caplog):
    """The G-Loss reference repository's layout: NAME/{train,val,test}.csv with an unnamed index column."""
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "train.csv").write_text(",text,label\n7,first doc,a\n3,second doc,b\n9,third doc,a\n")
    (folder / "val.csv").write_text(",text,label\n12,held doc,b\n")
    (folder / "test.csv").write_text("Unnamed: 0,text,label,source\n1,test doc,a,web\n")
    with caplog.at_level("INFO", logger="gloss"):
        raw = load_dataset("g", tmp_path)
    assert raw.layout == "train-val-test-csv"
    assert raw.frames["train"]["text"].tolist() == ["first doc", "second doc", "third doc"]
    assert raw.frames["val"]["text"].tolist() == ["held doc"] and raw.frames["val"]["label"].tolist() == ["b"]
    assert raw.ignored_columns == {"g/train.csv": ["Unnamed: 0"], "g/val.csv": ["Unnamed: 0"],
                                   "g/test.csv": ["Unnamed: 0", "source"]}
    assert "ignored column(s) an index column, 'source'" in caplog.text


@pytest.mark.parametrize("empty", ["train", "test", "val"])
def test_header_only_file_is_named(tmp_path, empty):
    for split in ("train", "val", "test"):
        write_csv(tmp_path / "d" / f"{split}.csv", [] if split == empty else [("x", "a"), ("y", "b")])
    with pytest.raises(GlossError, match=rf"d/{empty}.csv: no {empty} documents \(a header only\)"):
        load_dataset("d", tmp_path)


def test_lines_split_only_at_newlines_in_jsonl_and_textgcn(tmp_path):
    odd = f"one{NOT_LINE_ENDS}post"
    lines = [{"text": odd, "label": "a", "split": "train"}, {"text": "b doc", "label": "b", "split": "train"},
             {"text": odd, "label": "a", "split": "test"}]
    (tmp_path / "j.jsonl").write_text("\r\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\r\n")
    assert load_dataset("j", tmp_path).frames["test"]["text"].tolist() == [odd]
    (tmp_path / "corpus").mkdir()
    (tmp_path / "tg.txt").write_text("0\ttrain\ta\n1\ttrain\tb\n2\ttest\ta\n", newline="")
    (tmp_path / "corpus" / "tg.txt").write_text(f"{odd}\r\nplain\r\nlast {odd}", newline="")
    raw = load_dataset("tg", tmp_path)
    assert raw.frames["train"]["text"].tolist() == [odd, "plain"] and raw.frames["test"]["text"].tolist() == [f"last {odd}"]


def _cp1252_dataset(tmp_path):
    """A TextGCN-layout MR-like corpus in Windows-1252 (curly quotes, dashes, accents: not UTF-8)."""
    docs = ["the film\u2019s a charming caf\u00e9 romance , and it\u2019s never dull .",
            "a na\u00efve , clich\u00e9d mess \u2013 nothing more \u2026", "\u201cthe best picture of the year\u201d says nobody .",
            "its r\u00e9sum\u00e9 of horrors is long , but the scares are few ."] * 3
    (tmp_path / "corpus").mkdir()
    (tmp_path / "mr.txt").write_text("".join(f"{i}\t{'train' if i < 8 else 'test'}\t{i % 2}\n" for i in range(12)))
    (tmp_path / "corpus" / "mr.txt").write_bytes(("\n".join(docs) + "\n").encode("cp1252"))
    return docs


def test_cp1252_corpus_is_detected_and_logged(tmp_path, caplog):
    docs = _cp1252_dataset(tmp_path)
    raw = load_dataset("mr", tmp_path)
    assert raw.frames["train"]["text"].tolist() == docs[:8]
    # cp1250 ties with cp1252 in charset-normalizer here but reads "na\u00efve" as "na\u010fve": cp1252 wins ties.
    assert raw.encodings == {"mr.txt": "utf-8", "corpus/mr.txt": "cp1252"}
    assert "corpus/mr.txt: line 1: bytes that are not UTF-8 (byte 0x92" in caplog.text
    assert "read as cp1252, detected by charset-normalizer, tied with cp1250" in caplog.text
    given = load_dataset("mr", tmp_path, encoding="cp1252")
    assert given.frames["test"]["text"].tolist() == docs[8:] and given.encodings["corpus/mr.txt"] == "cp1252"


def test_undecodable_file_is_refused_with_an_encoding_hint(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.csv").write_bytes(b"text,label\n" + bytes(range(256)) * 8)
    write_csv(tmp_path / "d" / "test.csv", [("x", "a")])
    with pytest.raises(GlossError, match=r"train.csv: line 3: bytes that are not UTF-8 .*no encoding "
                                         r"charset-normalizer detects decodes the whole file.*pass --encoding"):
        load_dataset("d", tmp_path)
    with pytest.raises(GlossError, match=r"--encoding klingon: not a known encoding"):
        load_dataset("d", tmp_path, encoding="klingon")
