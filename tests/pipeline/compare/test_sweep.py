"""A sweep of two tiny TextGCN runs produces every output; a second invocation runs nothing new."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main


@pytest.fixture
def data():
    root = os.environ.get("GLOSS_DATA")
    if not root or not Path(root, "R8", "train.csv").is_file():
        pytest.skip("GLOSS_DATA does not point at the benchmark data")
    return root


def test_sweep_runs_then_skips(data, tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text(
        'datasets = ["R8"]\nseeds = [0, 1]\nlimit = 120\nlimit_test = 54\n'
        '[[methods]]\nname = "textgcn"\nmethod = "textgcn"\noptions = { gcn-epochs = 20 }\n'
    )
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["compare", "--spec", str(spec), "--out", str(out), "--data-root", data])
    assert first.exit_code == 0, first.output
    assert first.output.count(": running") == 2
    for name in ("table.md", "table.csv", "results.json", "accuracy.png", "convergence.png", "silhouette.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    [row] = results["aggregated"]
    assert row["method"] == "textgcn" and row["accuracy"]["n"] == 2 and row["seeds"] == [0, 1]
    table = (out / "table.md").read_text()
    assert "not measured by gloss" in table and "97.07" in table  # published TextGCN R8, marked as such
    assert (out / "logs" / "R8-textgcn-seed0.log").is_file()
    second = CliRunner().invoke(main, ["compare", "--spec", str(spec), "--out", str(out), "--data-root", data])
    assert second.exit_code == 0 and second.output.count("skipped") == 2 and ": running" not in second.output


def test_compare_needs_spec_or_runs():
    result = CliRunner().invoke(main, ["compare"])
    assert result.exit_code == 1 and "--spec" in result.output


def test_bad_spec_is_one_line_error(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('datasets = ["R8"]\n')
    result = CliRunner().invoke(main, ["compare", "--spec", str(spec), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "'methods' is missing" in result.output
