"""`gloss run` stops before any training, with one line, exit code 1 and nothing written, on input or options
that would otherwise fail late (header-only files, a dataset too small for a validation split) or that are
meaningless (`--limit 0`, `--epochs 0`, a negative `--k`)."""

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import write_csv

ROWS = [("a", "x"), ("b", "y"), ("c", "x"), ("d", "y")]


@pytest.mark.parametrize("train, test, args, message", [
    ([], ROWS, (), "d/train.csv: no train documents (a header only)"),
    (ROWS, [], (), "d/test.csv: no test documents (a header only)"),
    ([("a", "x"), ("b", "y")], ROWS, (), "too small for a validation split"),
    (ROWS, ROWS, ("--limit", "0"), "--limit"),
    (ROWS, ROWS, ("--epochs", "0"), "--epochs"),
    (ROWS, ROWS, ("--k", "-1"), "--k"),
])
def test_run_stops_before_training(tmp_path, train, test, args, message):
    write_csv(tmp_path / "d" / "train.csv", train)
    write_csv(tmp_path / "d" / "test.csv", test)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--dataset", "d", "--data-root", str(tmp_path), "--run-dir", str(run),
                                       *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("run: d |")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not run.exists() or not any(run.iterdir())
