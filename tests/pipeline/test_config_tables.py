"""``--config`` tables: `gloss run` applies the tables of the stages it runs, mapped by meaning; `gloss tune`
reads ``[train]``; flags > own table > inherited tables > top level; a misspelt key in any table is an error
whichever command reads the file."""

import pytest
from click.testing import CliRunner

from pipeline import options
from pipeline.cli import main
from tests.cli import Captured, capture_stages


@pytest.fixture
def captured(monkeypatch):
    """The run and tune stages replaced by a spy: the resolved config is captured, nothing runs."""
    return capture_stages(monkeypatch, "run", "tune")


def _resolved(captured, tmp_path, text, *args, suffix=".toml", command="run"):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    result = CliRunner().invoke(main, [command, "--config", str(path), *map(str, args)])
    assert isinstance(result.exception, Captured), result.output
    return captured["config"]


def _refused(tmp_path, text, *args, suffix=".toml"):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    result = CliRunner().invoke(main, [*args[:1], "--config", str(path), *args[1:]])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_run_applies_the_stage_tables(captured, tmp_path):
    config = _resolved(captured, tmp_path, "[train]\nlambda = 0.5\nepochs = 1\n[evaluate]\nprobe = 'both'\n"
                                           "[embed]\nmax-length = 32\n")
    assert (config.train.objective.lam, config.train.loop.epochs, config.evaluate.probe) == (0.5, 1, "both")
    assert config.train.encoder.max_length == 32
    config = _resolved(captured, tmp_path, "prepare:\n  val-fraction: 0.2\n  limit: 300\n", suffix=".yaml")
    assert (config.prepare.val_fraction, config.prepare.limit) == (0.2, 300)


def test_prepare_seed_is_the_split_seed_not_the_training_seed(captured, tmp_path):
    config = _resolved(captured, tmp_path, "[prepare]\nseed = 5\n")
    assert (config.prepare.seed, config.train.loop.seed) == (5, options.SEED)
    config = _resolved(captured, tmp_path, "[prepare]\nseed = 5\n[train]\nseed = 9\n")
    assert (config.prepare.seed, config.train.loop.seed) == (5, 9)


def test_precedence_flags_over_run_over_stage_tables_over_top_level(captured, tmp_path):
    # lr trains only where pre-trained layers do: --train-layers 1, not the CPU's auto -> 0
    text = ('train-layers = "1"\nlr = 1e-4\nepochs = 7\npatience = 2\n[train]\nlr = 2e-4\nepochs = 6\n'
            "[run]\nlr = 3e-4\n")
    config = _resolved(captured, tmp_path, text, "--epochs", 4)
    assert config.train.loop.epochs == 4  # flag
    assert config.train.loop.lr == 3e-4  # [run] over [train] and top level
    assert config.train.loop.patience == 2  # top level where nothing else sets it
    config = _resolved(captured, tmp_path, text)
    assert config.train.loop.epochs == 6  # [train] over top level


def test_tune_reads_the_train_table_beneath_its_own(captured, tmp_path):
    config = _resolved(captured, tmp_path, "[train]\nlambda = 0.5\nepochs = 3\n[tune]\nepochs = 2\n",
                       "--run-dir", tmp_path / "r", command="tune")
    assert (config.train.objective.lam, config.train.loop.epochs) == (0.5, 2)


@pytest.mark.parametrize("text, message", [
    ("[embed]\nbatch-size = 64\n", "[embed] batch-size has no counterpart in `gloss run` (it is the batch size of "
                                    "embedding"),
    ("[evaluate]\nseed = 3\n", "[evaluate] seed has no counterpart in `gloss run` (it seeds evaluate's t-SNE"),
    ("[evaluate]\nknn-k = 3\n", "[evaluate] knn-k has no counterpart in `gloss run` (`gloss run` has no such"),
    ("[train]\nforce = true\n", "[train] force has no counterpart in `gloss run` (it reruns that stage alone"),
    ("[prepare]\nrun-dir = 'a'\n[train]\nrun-dir = 'b'\n", "[prepare] and [train] give run-dir different values"),
])
def test_run_refuses_a_stage_key_without_a_counterpart(tmp_path, text, message):
    assert message in _refused(tmp_path, text, "run")


def test_a_conflict_between_stage_tables_is_settled_by_the_run_table(captured, tmp_path):
    config = _resolved(captured, tmp_path, "[embed]\nmodel = 'a'\n[train]\nmodel = 'b'\n[run]\nmodel = 'c'\n")
    assert config.train.encoder.model == "c"


@pytest.mark.parametrize("command", [("run",), ("prepare", "--dataset", "x"), ("train", "--run-dir", "r"),
                                     ("evaluate", "--run-dir", "r")])
def test_a_misspelt_key_in_any_table_is_an_error_whichever_command_reads_it(tmp_path, command):
    line = _refused(tmp_path, "[train]\nlamda = 0.5\n", *command)
    assert "[train] has no option 'lamda'; did you mean 'lambda'?" in line
    line = _refused(tmp_path, "train:\n  lambda: 0.5\npredict:\n  output: x\n", *command, suffix=".yaml")
    assert "unknown section [predict]" in line
