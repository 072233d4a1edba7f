"""`gloss tune` end to end on the shipped tiny dataset: a study of a 2-value lr grid and 1 own trial with an
epoch budget of 2, killed (SIGKILL) in its first trial and resumed; tuning at --train-layers 0, 1 and all
with the prepared test file removed (it is never read); the protocol (the same grid for every loss, then N
trials of each loss's own parameters at the best lr; no repeat on resuming; pruning) with training replaced
by a stand-in; and the inputs it refuses before training anything."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from pipeline import options
from pipeline.cli import main
from tests.cli import gloss as _gloss
from tests.cli import prepare_tiny

# Full fine-tuning (`--train-layers all`): the grid is over --lr; ce's own parameter is --head-lr.
STUDY = ["--loss", "ce", "--lr-grid", "2e-5,1e-4", "--trials", "1", "--tune-epochs", "2", "--schedule", "constant",
         "--max-length", "12", "--batch-size", "16", "--patience", "5", "--pruner-startup", "1", "--heartbeat", "1",
         "--train-layers", "all"]



def _prepare_without_test(tiny_root, run):
    """RUN/prepare of 20 tiny documents (16 train, 4 val), its test file removed: tuning must not read it."""
    prepare_tiny(tiny_root, run, "--limit", "20", "--val-fraction", "0.2")
    (run / "prepare" / "test.csv").unlink()
    return run


@pytest.fixture(scope="module")
def prepared(tiny_root, tmp_path_factory):
    return _prepare_without_test(tiny_root, tmp_path_factory.mktemp("tune") / "run")


def _kill_in_first_trial(run):
    """Start the study in a subprocess and SIGKILL it once its first trial is running."""
    cmd = [sys.executable, "-m", "pipeline.cli", "tune", "--run-dir", str(run), *STUDY]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = run / "tune" / "trials" / "trial-0000" / "trial.json"
    deadline = time.monotonic() + 60
    while not marker.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # its first heartbeat is recorded
    assert process.poll() is None, "the study finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _rows(run):
    return list(csv.DictReader(open(run / "tune" / "trials.csv")))


def test_killed_study_resumes_the_grid_then_tunes_at_the_best_lr(prepared):
    _kill_in_first_trial(prepared)
    # resumed at once, with a grace period (2 x 5 s) the killed trial's last heartbeat is still inside: it
    # must still be rerun
    result = _gloss("tune", "--run-dir", str(prepared), *STUDY, "--heartbeat", "5")
    assert result.exit_code == 0, result.output
    assert "trial 0 is marked running; waiting up to 10s for the heartbeat" in result.output
    assert "trial 0 was killed or interrupted; queued again" in result.output
    tune = prepared / "tune"
    rows = _rows(prepared)
    assert (rows[0]["state"], rows[0]["phase"], float(rows[0]["lr"])) == ("fail", "grid", 2e-5)  # killed
    [rerun] = [r for r in rows if r["retry_of"] == "0"]
    assert (rerun["phase"], float(rerun["lr"])) == ("grid", 2e-5)
    counted = [r for r in rows if r["state"] in ("complete", "pruned")]
    assert len(counted) == 3 and [r["phase"] for r in counted].count("own") == 1
    assert sorted(float(r["lr"]) for r in counted if r["phase"] == "grid") == [2e-5, 1e-4]
    grid = [r for r in counted if r["phase"] == "grid" and r["state"] == "complete"]
    [own] = [r for r in counted if r["phase"] == "own"]
    assert float(own["lr"]) == float(max(grid, key=lambda r: float(r["value"]))["lr"])  # at the best grid lr
    assert 1e-4 <= float(own["head-lr"]) <= 1e-2 and own["head-lr"] != rerun["head-lr"]
    assert all(r["pruned_at_epoch"] in ("", "1") for r in rows)  # never at the last epoch (2)
    # the killed trial's directory is marked and holds nothing that could pass for a result
    killed = tune / "trials" / "trial-0000"
    assert json.loads((killed / "trial.json").read_text())["state"] == "killed"
    assert not (killed / ".scratch").exists() and not (killed / "train").exists()
    # a complete trial trained without test embeddings or logits (and the test file is gone: never read)
    folder = tune / "trials" / f"trial-{int(grid[0]['trial']):04d}" / "train"
    outputs = json.loads((folder / "manifest.json").read_text())["outputs"]
    assert "embeddings_val.npy" in outputs and not any("test" in name for name in outputs)
    best = json.loads((tune / "best.json").read_text())
    assert best["monitor"] == "val_macro_f1" and set(best["params"]) == {"lr", "head-lr"}
    assert best["study"].startswith("tiny-ce-") and (tune / "optimization_history.png").is_file()
    design = best["design"]
    assert design["grid"] == {"param": "lr", "values": [2e-5, 1e-4]} and design["own"]["trials"] == 1
    assert (design["epochs_per_trial"], design["schedule"], design["train_layers"]) == (2, "constant", "all")
    assert "QMCSampler" in design["own"]["sampler"] and design["pruner"]["at_last_epoch"] is False
    # a finished study is not run again
    again = _gloss("tune", "--run-dir", str(prepared), *STUDY)
    assert "resuming study" in again.output and len(_rows(prepared)) == len(rows)


def test_db_of_another_config_is_refused_naming_the_keys(prepared):
    if not (prepared / "tune" / "study.db").is_file():
        pytest.skip("needs the study of the test above")
    result = CliRunner().invoke(main, ["tune", "--run-dir", str(prepared), *STUDY, "--batch-size", "8"])
    assert result.exit_code == 1
    assert "of another config" in result.output and "train.loop.batch_size (16 -> 8)" in result.output


@pytest.mark.parametrize(("layers", "grid"), [("0", ["--head-lr-grid", "1e-3"]), ("1", ["--lr-grid", "1e-4"]),
                                              ("all", ["--lr-grid", "1e-4"])])
def test_tuning_never_reads_the_test_split_in_any_mode(tiny_root, tmp_path, layers, grid):
    """The prepared test file is removed: a trial that read (and so could encode) test texts would fail."""
    run = _prepare_without_test(tiny_root, tmp_path / "run")
    result = _gloss("tune", "--run-dir", run, "--loss", "ce", "--train-layers", layers, *grid, "--trials", "0",
                    "--tune-epochs", "1", "--schedule", "constant", "--max-length", "12", "--batch-size", "16",
                    "--no-plots")
    assert result.exit_code == 0, result.output
    [row] = _rows(run)
    assert row["state"] == "complete"
    outputs = json.loads((run / "tune/trials/trial-0000/train/manifest.json").read_text())["outputs"]
    assert "embeddings_val.npy" in outputs and not any("test" in name for name in outputs)


@pytest.mark.parametrize(("args", "message"), [
    (["--trials", "-1"], "--trials -1: must be at least 0"),
    (["--method", "textgcn"], "tunes --method finetune"),
    (["--schedule", "linear"], "--schedule linear: decays to zero at --epochs"),
    (["--lr-grid", "1e-5,fast"], "--lr-grid 1e-5,fast: expected a comma list of learning rates"),
    (["--lr-grid", "1e-5,1e-5"], "1e-5 is listed twice"),
    (["--head-lr-grid", "1e-3"], "--head-lr-grid 1e-3: applies at --train-layers 0 only"),
    (["--train-layers", "0", "--lr-grid", "1e-5"], "--lr-grid 1e-5: --train-layers 0 trains no pre-trained weight"),
    (["--train-layers", "0"], "--loss ce: no parameter of its own to tune at --train-layers 0"),
    (["--loss", "scl+ce", "--lambda", "0.95"], "--lambda 0.95: outside its space"),
    (["--space", "{space}"], "unknown parameter 'sigmaa'"),
    (["--space", "{empty}"], "empty range [0.5, 0.5]"),
    (["--space", "{lr}"], "the learning rate is searched over --lr-grid"),
    (["--loss", "gloss+ce", "--space", "{space}"], "no [gloss+ce] table"),
])
def test_bad_input_is_one_line_before_training(tmp_path, args, message):
    (tmp_path / "typo.toml").write_text('[ce]\nsigmaa = { low = 0.1, high = 1.0 }\n')
    (tmp_path / "empty.toml").write_text('[ce]\nhead-lr = { low = 0.5, high = 0.5 }\n')
    (tmp_path / "lr.toml").write_text('[ce]\nlr = { low = 1e-5, high = 1e-4, log = true }\n')
    (tmp_path / "ce.toml").write_text('[ce]\nhead-lr = { low = 1e-4, high = 1e-2, log = true }\n')
    paths = {"space": tmp_path / "typo.toml", "empty": tmp_path / "empty.toml", "lr": tmp_path / "lr.toml"}
    if args[:2] == ["--loss", "gloss+ce"]:
        paths["space"] = tmp_path / "ce.toml"
    args = [a.format(**paths) for a in args]
    result = CliRunner().invoke(main, ["tune", "--run-dir", str(tmp_path / "none"), "--loss", "ce",
                                       "--schedule", "constant", "--train-layers", "1", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_tune_needs_a_prepared_run(tmp_path):
    result = CliRunner().invoke(main, ["tune", "--run-dir", str(tmp_path / "nothing"), "--loss", "ce",
                                       "--schedule", "constant", "--train-layers", "1"])
    assert result.exit_code == 1 and "gloss prepare" in result.output


class _Manifest:
    def __init__(self, value):
        self.summary = {"best_epoch": 1, "best_val": {"val_macro_f1": value}}


class _StandIn:
    """``train_stage.run`` replaced: records each trial's train config and scores it by ``score(config)``,
    reported after each of its epochs; an exception in ``outcomes`` (by call number) is raised instead."""

    def __init__(self, score, outcomes=None, epochs=2):
        self.score, self.outcomes, self.epochs, self.configs = score, outcomes or {}, epochs, []

    def __call__(self, config, folder, force, on_epoch_end, echo):
        assert config.write_test_outputs is False and config.loop.epochs == self.epochs
        self.configs.append(config)
        outcome = self.outcomes.get(len(self.configs), None)
        if isinstance(outcome, BaseException):
            raise outcome
        value = self.score(config) if outcome is None else outcome
        for epoch in range(1, self.epochs + 1):
            on_epoch_end(epoch, {"val_macro_f1": value})
        return _Manifest(value)


def _lr_score(config):
    """Best at lr 1e-4; the own parameters move it a little."""
    import math

    loop, objective = config.loop, config.objective
    return 0.9 - abs(math.log10(loop.lr) + 4) / 10 - abs(math.log10(loop.head_lr) + 3) / 100 - objective.lam / 100


def _tune(run, *args):
    return CliRunner().invoke(main, ["tune", "--run-dir", str(run), "--tune-epochs", "2", "--schedule", "constant",
                                     "--no-plots", *map(str, args)])


def test_every_loss_gets_the_same_lr_grid_then_n_trials_of_its_own_at_the_best(tiny_root, tmp_path, monkeypatch):
    from pipeline.stages import tune as stage

    seen = {}
    for loss in ("ce", "scl+ce"):
        run = prepare_tiny(tiny_root, tmp_path / loss)
        stand_in = _StandIn(_lr_score)
        monkeypatch.setattr(stage.train_stage, "run", stand_in)
        result = _tune(run, "--loss", loss, "--train-layers", "1", "--lr-grid", "1e-5,1e-4,1e-3", "--trials", "4")
        assert result.exit_code == 0, result.output
        rows = _rows(run)
        assert [r["phase"] for r in rows] == ["grid"] * 3 + ["own"] * 4
        assert all(r["state"] == "complete" for r in rows)  # last-epoch scores: never pruned
        configs = stand_in.configs
        seen[loss] = [c.loop.lr for c in configs[:3]]
        assert all(c.loop.lr == 1e-4 for c in configs[3:])  # the best grid lr
        own = {"ce": lambda c: c.loop.head_lr, "scl+ce": lambda c: (c.objective.lam, c.objective.temperature)}[loss]
        assert len({own(c) for c in configs[3:]}) == 4 and len({own(c) for c in configs[:3]}) == 1  # grid: defaults
        best = json.loads((run / "tune" / "best.json").read_text())
        assert best["design"]["grid"] == {"param": "lr", "values": [1e-5, 1e-4, 1e-3]}
        assert best["design"]["own"]["trials"] == 4 and best["params"]["lr"] == 1e-4
    assert seen["ce"] == seen["scl+ce"] == [1e-5, 1e-4, 1e-3]


def test_grid_trials_are_never_pruned(tiny_root, tmp_path, monkeypatch):
    """Every loss sees every grid value for the trial's full epochs, whatever trial number a grid trial has (a
    killed grid trial reruns after the own trials started); the own trials may be pruned."""
    from pipeline.stages import tune as stage

    run = prepare_tiny(tiny_root, tmp_path / "run")
    monkeypatch.setattr(stage.train_stage, "run", _StandIn(_lr_score))
    result = _tune(run, "--loss", "ce", "--train-layers", "1", "--lr-grid", "1e-4,1e-3,1e-5", "--trials", "2",
                   "--pruner-startup", "1")  # the 2nd and 3rd grid trials score below the 1st at every epoch
    assert result.exit_code == 0, result.output
    rows = _rows(run)
    assert [(r["phase"], r["state"]) for r in rows[:3]] == [("grid", "complete")] * 3


def test_a_resumed_study_never_repeats_a_parameter_set(tiny_root, tmp_path, monkeypatch):
    from pipeline.stages import tune as stage

    run = prepare_tiny(tiny_root, tmp_path / "run")
    args = ["--loss", "scl+ce", "--train-layers", "1", "--lr-grid", "1e-5,1e-4", "--trials", "6"]
    monkeypatch.setattr(stage.train_stage, "run", _StandIn(_lr_score, {5: KeyboardInterrupt()}))
    first = _tune(run, *args)  # stopped in its 3rd own trial
    assert first.exit_code == 130, first.output
    monkeypatch.setattr(stage.train_stage, "run", _StandIn(_lr_score))
    second = _tune(run, *args)
    assert second.exit_code == 0, second.output
    counted = [r for r in _rows(run) if r["state"] == "complete"]
    assert len(counted) == 8
    sets = [(r["lr"], r["lambda"], r["temperature"]) for r in counted]
    assert len(set(sets)) == len(sets), sets


def test_at_zero_layers_the_grid_is_over_head_lr(tiny_root, tmp_path, monkeypatch):
    from pipeline.stages import tune as stage

    run = prepare_tiny(tiny_root, tmp_path / "run")
    stand_in = _StandIn(_lr_score)
    monkeypatch.setattr(stage.train_stage, "run", stand_in)
    result = _tune(run, "--loss", "scl+ce", "--train-layers", "0", "--head-lr-grid", "1e-3,1e-2", "--trials", "1")
    assert result.exit_code == 0, result.output
    assert [c.loop.head_lr for c in stand_in.configs] == [1e-3, 1e-2, 1e-3]
    assert {c.loop.lr for c in stand_in.configs} == {options.LR}  # trains nothing at 0 layers: never varied
    best = json.loads((run / "tune" / "best.json").read_text())
    assert "lr" not in best["params"] and best["params"]["head-lr"] == 1e-3
    assert best["design"]["grid"]["param"] == "head-lr" and best["design"]["train_layers"] == "0"


def test_interrupted_and_failed_trials_without_training(tiny_root, tmp_path, monkeypatch):
    """Ctrl-C in a trial exits 130 and the trial reruns on resuming; a trial's own error is counted, not rerun."""
    from pipeline.errors import GlossError
    from pipeline.stages import tune as stage

    run = prepare_tiny(tiny_root, tmp_path / "run")
    args = ["--loss", "ce", "--train-layers", "1", "--lr-grid", "2e-5", "--trials", "2"]
    outcomes = {1: KeyboardInterrupt(), 2: 0.6, 3: GlossError("train: the loss diverged at epoch 1"), 4: 0.7}
    stand_in = _StandIn(_lr_score, outcomes)
    monkeypatch.setattr(stage.train_stage, "run", stand_in)
    first = _tune(run, *args)
    assert first.exit_code == 130 and "interrupted" in first.output
    assert json.loads((run / "tune/trials/trial-0000/trial.json").read_text())["state"] == "interrupted"
    second = _tune(run, *args)
    assert second.exit_code == 0, second.output
    rows = _rows(run)
    assert [(r["phase"], r["state"], r["retry_of"]) for r in rows] == [
        ("grid", "fail", ""), ("grid", "complete", "0"), ("own", "fail", ""), ("own", "complete", "")]
    assert rows[0]["error"] == "" and "diverged" in rows[2]["error"] and rows[3]["value"] == "0.7"
    assert json.loads((run / "tune" / "best.json").read_text())["trial"] == 3


def test_a_grid_without_a_complete_trial_stops_in_one_line(tiny_root, tmp_path, monkeypatch):
    from pipeline.errors import GlossError
    from pipeline.stages import tune as stage

    run = prepare_tiny(tiny_root, tmp_path / "run")
    monkeypatch.setattr(stage.train_stage, "run", _StandIn(_lr_score, {1: GlossError("train: the loss diverged")}))
    result = _tune(run, "--loss", "ce", "--train-layers", "1", "--lr-grid", "1", "--trials", "2")
    assert result.exit_code == 1 and "no trial of the lr grid completed" in result.output.splitlines()[-1]
    assert [r["state"] for r in _rows(run)] == ["fail"]


def test_a_corpus_sigma_for_tuning_is_computed_without_the_test_texts(tiny_root, tmp_path):
    """`gloss embed --no-test` (what a G-Loss study needs for `--sigma sqrt`) never reads the test split: with
    the prepared test file removed it embeds train and val, and the study tunes on its sigma."""
    run = _prepare_without_test(tiny_root, tmp_path / "run")
    result = _gloss("embed", "--run-dir", str(run), "--max-length", "12", "--no-test")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "embed").glob("embeddings_*.npy")) == [
        "embeddings_train.npy", "embeddings_val.npy"]
    study = ["--loss", "gloss+ce", "--sigma", "sqrt", "--lr-grid", "1e-4", "--trials", "0", "--tune-epochs", "1",
             "--schedule", "constant", "--max-length", "12", "--batch-size", "16", "--train-layers", "all"]
    result = _gloss("tune", "--run-dir", str(run), *study)
    assert result.exit_code == 0, result.output
    assert [r["state"] for r in _rows(run)] == ["complete"]
