"""scripts/graph_predict_report.py: the report from run roots, the command it records (no path of this machine)
and one-line errors with a non-zero exit."""

import json

import pytest

from tests.pipeline.compare.test_predictors import block, run_with
from tests.scripts.script_module import load_script


@pytest.fixture(scope="module")
def report():
    return load_script("graph_predict_report")


def test_writes_the_table_and_names_the_roots_relative_to_the_working_directory(report, tmp_path, monkeypatch, capsys):
    for s in range(2):
        run_with(tmp_path / "sweep" / "runs" / f"ce-{s}", split_seed=s, seed=s, head=block(0.8), knn=block(0.9, 5))
    monkeypatch.chdir(tmp_path)
    assert report.main([str(tmp_path / "sweep"), "--out", "out", "--pair", "gloss+ce:ce", "--methods", "ce"]) == 0
    table = (tmp_path / "out" / "table.md").read_text()
    assert "Command: `python scripts/graph_predict_report.py sweep --out out --pair gloss+ce:ce --methods ce`" in table
    assert "Run roots: `sweep`" in table and "## gloss+ce − ce (every predictor)" in table
    assert json.loads((tmp_path / "out" / "results.json").read_text())["between_methods"]["method"] == "gloss+ce"
    assert "2 runs, 2 rows" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["missing", "--out", "out"], "error: run root missing: no such folder\n"),
    (["sweep", "--out", "out", "--pair", "gloss+ce"], "error: --pair gloss+ce: expected METHOD:BASELINE"),
])
def test_refusals_are_one_line_with_exit_1_and_write_nothing(report, tmp_path, monkeypatch, capsys, argv, message):
    (tmp_path / "sweep").mkdir()
    monkeypatch.chdir(tmp_path)
    assert report.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and not (tmp_path / "out").exists()
