import pytest

from pipeline.errors import GlossError
from pipeline.predict import read_documents
from pipeline.textfile import decode_file, split_lines

# Characters str.splitlines() breaks at but a line end is not (20ng's posts hold form feeds and \x1c-\x1e).
NOT_LINE_ENDS = "\x0c\x1c\x1d\x1e\x85\u2028\u2029\x0b"


@pytest.mark.parametrize("text, lines", [
    ("", []), ("a", ["a"]), ("a\n", ["a"]), ("a\r\nb\r\n", ["a", "b"]), ("a\n\nb", ["a", "", "b"]),
    ("a\rb\n", ["a\rb"]), (f"x{NOT_LINE_ENDS}y\nz", [f"x{NOT_LINE_ENDS}y", "z"]),
])
def test_split_lines_only_at_newlines(text, lines):
    assert split_lines(text) == lines


def test_decode_file_reports_the_encoding_used(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\n")
    assert decode_file(path) == ("hello\n", "utf-8-sig")
    path.write_bytes("caf\u00e9\n".encode())
    assert decode_file(path) == ("caf\u00e9\n", "utf-8")
    path.write_bytes("caf\u00e9 \u2013 ok\n".encode("cp1252"))
    assert decode_file(path, "cp1252") == ("caf\u00e9 \u2013 ok\n", "cp1252")
    with pytest.raises(GlossError, match=r"f.txt: line 1: bytes that are not utf-8 \(byte 0xe9 at offset 3\); see --encoding"):
        decode_file(path, "utf-8")


def test_predict_input_lines_split_only_at_newlines(tmp_path):
    """A 2-line input is 2 documents, whatever separators the documents hold."""
    path = tmp_path / "docs.txt"
    path.write_text(f"first{NOT_LINE_ENDS}post\r\nsecond post\n", newline="")
    assert read_documents(path) == [f"first{NOT_LINE_ENDS}post", "second post"]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"text": "one\u2028two"}\n\n{"text": "three\u0085"}\n', encoding="utf-8")
    assert read_documents(jsonl) == ["one\u2028two", "", "three\u0085"]


def test_predict_input_encoding(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_bytes("na\u00efve \u2013 film\nsecond\n".encode("cp1252"))
    assert read_documents(path, "cp1252") == ["na\u00efve \u2013 film", "second"]
    with pytest.raises(GlossError, match="docs.txt: line 1: bytes that are not utf-8"):
        read_documents(path, "utf-8")


@pytest.mark.parametrize("name, content, message", [
    ("bad.csv", 'text,label\n"unclosed quote,a\nb,c,d,e\n', r"bad\.csv: not a readable CSV"),
    ("empty.csv", "", r"empty\.csv: the file is empty"),
    ("other.csv", "body\nhello\n", r"other\.csv: missing column 'text' \(found: body\)$"),
])
def test_predict_csv_input_errors_name_the_file(tmp_path, name, content, message):
    """A malformed or empty --input CSV is a one-line GlossError naming it (was a pandas traceback)."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(GlossError, match=message):
        read_documents(path)


def test_predict_csv_input_reads_the_text_column(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("text\nhello\n")
    assert read_documents(good) == ["hello"]
