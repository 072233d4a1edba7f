"""``--preset``: named option defaults beneath ``--config`` and flags (flags > file > preset > defaults)."""

import pytest
from click.testing import CliRunner

from pipeline import options
from pipeline.cli import main
from tests.cli import Captured, capture_stages


@pytest.fixture
def captured(monkeypatch):
    """Replace the train and run stages by a spy: the resolved config is captured, nothing is trained."""
    return capture_stages(monkeypatch, "train", "run")


def _config(captured, *args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert isinstance(result.exception, Captured), result.output
    return captured["config"]


def test_reference_preset_sets_the_released_codes_training(captured):
    config = _config(captured, "train", "--run-dir", "r", "--preset", "reference", "--train-layers", "all")
    assert config.preset == "reference"
    assert (config.objective.variant, config.objective.class_weights) == ("released", "balanced")
    assert (config.encoder.pooling, config.encoder.max_length) == ("cls", 128)
    loop = config.loop
    assert (loop.optimizer, loop.lr, loop.head_lr, loop.weight_decay) == ("adam", 1e-5, 1e-5, 0.0)
    assert (loop.schedule, loop.milestones, loop.warmup_ratio, loop.grad_clip) == ("multistep", (30,), 0.0, 1.0)
    assert (loop.batch_size, loop.epochs, loop.patience, loop.second_forward, loop.bucket) == (
        128, 200, 10, True, False)
    assert _config(captured, "train", "--run-dir", "r").preset is None


def test_precedence_flags_over_config_over_preset_over_defaults(captured, tmp_path):
    file = tmp_path / "c.toml"
    file.write_text('lr = 3e-5\nseed = 4\n[train]\nepochs = 5\npatience = 3\n')
    for order in (["--config", file, "--preset", "reference"], ["--preset", "reference", "--config", file]):
        config = _config(captured, "train", "--run-dir", "r", *order, "--patience", "7", "--train-layers", "all")
        assert config.loop.patience == 7  # flag
        assert (config.loop.lr, config.loop.epochs, config.loop.seed) == (3e-5, 5, 4)  # file over preset
        assert (config.loop.batch_size, config.loop.schedule) == (128, "multistep")  # preset over defaults
        assert config.loop.warmup_ratio == 0.0 and config.preset == "reference"
        assert config.objective.gamma == options.GAMMA  # untouched by all three: the default


def test_the_preset_may_come_from_the_config_file(captured, tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("run:\n  preset: reference\n  epochs: 1\n")
    config = _config(captured, "run", "--config", file, "--limit", "300")
    assert config.train.preset == "reference" and config.train.loop.epochs == 1
    assert config.train.objective.variant == "released" and config.evaluate.probe == "both"
    assert config.prepare.limit == 300


@pytest.mark.parametrize("layers", [["--train-layers", "0"], ["--train-layers", "auto", "--device", "cpu"]])
@pytest.mark.parametrize("command", ["train", "tune"])
def test_lr_where_nothing_trains_at_it_is_a_one_line_error(captured, tmp_path, layers, command):
    """At --train-layers 0 the adapter and head learn at --head-lr: a given --lr would change nothing."""
    file = tmp_path / "c.toml"
    file.write_text("lr = 3e-5\n")
    for given in (["--lr", "1e-5"], ["--config", file]):
        result = CliRunner().invoke(main, [command, "--run-dir", "r", *layers, *map(str, given)])
        assert result.exit_code == 1 and not isinstance(result.exception, Captured), result.output
        assert "trains no pre-trained weight" in result.output and "--head-lr" in result.output
        assert len(result.output.strip().splitlines()) == 1
    # where an encoder layer trains, --lr applies
    assert _config(captured, "train", "--run-dir", "r", "--train-layers", "1", "--lr", "1e-5").loop.lr == 1e-5


def test_a_presets_lr_is_reported_and_not_applied_at_zero_layers(captured):
    result = CliRunner().invoke(main, ["train", "--run-dir", "r", "--preset", "reference", "--train-layers", "0"])
    assert isinstance(result.exception, Captured), result.output
    assert "--preset reference: its lr 1e-05 is not applied" in result.output
    assert len(result.output.strip().splitlines()) == 1
    loop = captured["config"].loop
    assert (loop.lr, loop.head_lr) == (options.LR, 1e-5)


def test_unknown_preset_is_a_one_line_error():
    result = CliRunner().invoke(main, ["train", "--run-dir", "r", "--preset", "paper"])
    assert result.exit_code == 1 and "--preset" in result.output and "reference" in result.output


def test_every_preset_key_is_an_option_of_train_or_run():
    names = {p.name for command in ("train", "run") for p in main.commands[command].params}
    for preset, values in options.PRESETS.items():
        assert set(values) <= names, preset
