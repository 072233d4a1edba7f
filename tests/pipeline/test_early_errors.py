"""`gloss run` stops before any training, with one line, exit code 1 and nothing written, on input or options
that would otherwise fail late (header-only files, a dataset too small for a validation split, a single class,
an unseen test label, an unknown --sigma, a run directory that cannot be created) or that are meaningless
(`--limit 0`, `--epochs 0`, a negative `--k`); `gloss prepare`, `gloss train` and `gloss predict` likewise stop
before loading data or a model."""

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.errors import GlossError
from tests.conftest import write_csv

ROWS = [("a", "x"), ("b", "y"), ("c", "x"), ("d", "y")]


@pytest.mark.parametrize("train, test, args, message", [
    ([], ROWS, (), "d/train.csv: no train documents (a header only)"),
    (ROWS, [], (), "d/test.csv: no test documents (a header only)"),
    ([("a", "x"), ("b", "y")], ROWS, (), "too small for a validation split"),
    (ROWS, ROWS, ("--limit", "0"), "--limit"),
    (ROWS, ROWS, ("--epochs", "0"), "--epochs"),
    (ROWS, ROWS, ("--k", "-1"), "--k"),
    (ROWS, ROWS, ("--sigma", "foo"), "--sigma"),
    ([("a", "x"), ("b", "x"), ("c", "x")], ROWS, (), "the training data has a single class ('x')"),
    ([("a", "x"), ("b", "y"), ("c", "z")], [("a", "x")], ("--val-fraction", "0.5"), "every class has one"),
    (ROWS, [("a", "w")], (), "label 'w' in test does not occur in train"),
    ([("a", "x"), ("b", "y"), ("c", "z")] * 2, ROWS[:2], ("--limit", "2", "--val-fraction", "0.5"),
     "--limit 2: fewer than the 3 classes"),
])
def test_run_stops_before_training(tmp_path, train, test, args, message):
    write_csv(tmp_path / "d" / "train.csv", train)
    write_csv(tmp_path / "d" / "test.csv", test)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--dataset", "d", "--data-root", str(tmp_path), "--run-dir", str(run),
                                       *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("run: d ")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not run.exists()


class WorkStarted(Exception):
    pass


@pytest.fixture
def no_work(monkeypatch):
    """Every stage and model load raises WorkStarted: an error must come before any of them."""
    from pipeline import encoder, predict
    from pipeline.stages import prepare, train

    def started(*args, **kwargs):
        raise WorkStarted

    for module, name in ((prepare, "load_dataset"), (train, "resolve_model_path"),
                         (encoder, "load_encoder"), (predict, "load_manifest")):
        monkeypatch.setattr(module, name, started)


def _one_line_error(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1 and not isinstance(result.exception, WorkStarted), result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("run: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("where, message", [("afile/sub", "afile is a file, not a folder"),
                                            ("/proc/gloss-x", "cannot create anything in /proc")])
@pytest.mark.parametrize("command", ["run", "prepare"])
def test_a_run_directory_that_cannot_be_made_is_one_line_before_any_work(tmp_path, no_work, where, message,
                                                                          command):
    (tmp_path / "afile").write_text("x")
    run = where if where.startswith("/") else tmp_path / where
    line = _one_line_error(command, "--dataset", "d", "--data-root", tmp_path, "--run-dir", run, "--sigma", "sqrt"
                           ) if command == "run" else _one_line_error(command, "--dataset", "d", "--run-dir", run)
    assert f"--run-dir {run}: " in line and message in line


def test_a_stage_that_cannot_make_its_run_directory_says_so_in_one_line(tmp_path):
    from pipeline.manifest import run_stage

    (tmp_path / "afile").write_text("x")
    with pytest.raises(GlossError, match="cannot create the run directory .*afile/run"):
        run_stage(tmp_path / "afile" / "run", "prepare", {}, lambda ctx: {})


def test_predict_checks_its_output_and_input_before_loading_anything(tmp_path, no_work):
    docs = tmp_path / "docs.txt"
    docs.write_text("a document\n")
    line = _one_line_error("predict", "--run", tmp_path, "--input", docs, "--output", "/proc/gloss-x/pred.jsonl")
    assert "--output /proc/gloss-x/pred.jsonl: cannot create anything in /proc" in line
    line = _one_line_error("predict", "--run", tmp_path, "--input", docs, "--output", tmp_path)
    assert "is a directory" in line
    write_csv(tmp_path / "docs.csv", [("a document", "x")], header="Text,label")
    line = _one_line_error("predict", "--run", tmp_path, "--input", tmp_path / "docs.csv")
    assert "docs.csv: missing column 'text'" in line


def test_train_before_prepare_stops_before_loading_the_model(tmp_path, no_work):
    line = _one_line_error("train", "--run-dir", tmp_path)
    assert "prepare/manifest.json not found: run `gloss prepare" in line


@pytest.mark.parametrize("command", ["run", "train"])
def test_an_unknown_sigma_is_refused_before_torch_is_imported(command):
    import subprocess
    import sys

    code = ("import sys\nfrom pipeline.cli import main\nfrom pipeline.errors import GlossError\ntry:\n"
            f"    main(['{command}', '--sigma', 'foo', '--run-dir', 'r'], standalone_mode=False)\n"
            "except GlossError as exc:\n    print(exc.message, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ("--sigma foo: expected one of sqrt, dicm, batch-sqrt, batch-dicm, or a positive number "
                           "False")
