"""Smaller error messages that point the right way: the Ctrl-C hint says that training starts over without
--resume, a usage error in a subcommand of a group names the full command, a YAML error has its line, and a
CSV with missing columns says why (case, or a header separated by ';' or tabs)."""

import pytest
from click.testing import CliRunner

from pipeline.cli import INTERRUPTED_HINT, main
from pipeline.config_file import read_config_file
from pipeline.errors import GlossError
from pipeline.predict import read_documents
from tests.conftest import write_csv


def test_the_interrupt_hint_says_training_starts_over_without_resume():
    assert "--resume" in INTERRUPTED_HINT and "starts over without it" in INTERRUPTED_HINT


def test_a_usage_error_in_a_group_names_the_full_command():
    result = CliRunner().invoke(main, ["cache", "clear", "--kind", "x"])
    assert result.exit_code == 1
    assert "(see `gloss cache clear --help`)" in result.output, result.output


def test_a_yaml_syntax_error_names_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lambda: 0.5\n  epochs: [1\n")
    with pytest.raises(GlossError, match=r"c\.yaml: not valid YAML \(line 4, column 1: "):
        read_config_file(path)


@pytest.mark.parametrize("header, rows, hint", [
    ("Text,Label", [("a", "x")], "column names are case-sensitive: rename 'Text' -> 'text', 'Label' -> 'label'"),
    ("text;label", [("a;x",)], "the header looks separated by semicolons: a .csv must be comma-separated"),
    ("text\tlabel", [("a\tx",)], "the header looks separated by tabs"),
])
def test_missing_columns_say_why(tmp_path, header, rows, hint):
    write_csv(tmp_path / "d" / "train.csv", rows, header=header)
    write_csv(tmp_path / "d" / "test.csv", [("a", "x")])
    result = CliRunner().invoke(main, ["prepare", "--dataset", "d", "--data-root", str(tmp_path), "--run-dir",
                                       str(tmp_path / "run")])
    assert result.exit_code == 1 and "train.csv: missing column(s)" in result.output and hint in result.output
    with pytest.raises(GlossError, match="missing column 'text'") as error:
        read_documents(tmp_path / "d" / "train.csv")
    assert hint.split(":")[0] in str(error.value)
