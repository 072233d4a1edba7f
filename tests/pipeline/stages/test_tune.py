"""`gloss tune` end to end on the shipped tiny dataset: a 3-trial study with an epoch budget of 2, killed
(SIGKILL) in its first trial and resumed, where deliberately bad learning rates are pruned; and the inputs
it refuses before training anything."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.cli import gloss as _gloss
from tests.cli import prepare_tiny

# lr 2e-5 (the command line's value) is trial 0; the space holds only learning rates that wreck the encoder,
# and a median pruner that may prune after a single complete trial.
BAD_LR_SPACE = '[ce]\nlr = { low = 0.02, high = 0.1, log = true }\n'
# Full fine-tuning (`--train-layers all`): the CPU default, the adapter of `0`, learns at --head-lr, so a bad
# encoder lr would not show.
STUDY = ["--loss", "ce", "--trials", "3", "--tune-epochs", "2", "--max-length", "12", "--batch-size", "16",
         "--patience", "5", "--pruner-startup", "1", "--heartbeat", "1", "--train-layers", "all"]



@pytest.fixture(scope="module")
def prepared(tiny_root, tmp_path_factory):
    # 16 training documents (one batch per epoch) and 4 validation documents: tuning never reads test
    return prepare_tiny(tiny_root, tmp_path_factory.mktemp("tune") / "run", "--limit", "20", "--val-fraction", "0.2")


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "bad-lr.toml"
    path.write_text(BAD_LR_SPACE)
    return path


def _kill_in_first_trial(run, space):
    """Start the study in a subprocess and SIGKILL it once its first trial is running."""
    cmd = [sys.executable, "-m", "pipeline.cli", "tune", "--run-dir", str(run), "--space", str(space), *STUDY]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = run / "tune" / "trials" / "trial-0000" / "trial.json"
    deadline = time.monotonic() + 60
    while not marker.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # its first heartbeat is recorded
    assert process.poll() is None, "the study finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.filterwarnings("ignore:Fixed parameter lr:UserWarning")  # trial 0 lies outside the bad space
def test_killed_study_resumes_prunes_bad_trials_and_never_looks_at_test(prepared, space):
    _kill_in_first_trial(prepared, space)
    time.sleep(2.5)  # twice the heartbeat: the killed trial is stale
    result = _gloss("tune", "--run-dir", str(prepared), "--space", str(space), *STUDY)
    assert result.exit_code == 0, result.output
    assert "trial 0 was killed or interrupted; queued again" in result.output
    tune = prepared / "tune"
    rows = list(csv.DictReader(open(tune / "trials.csv")))
    states = {int(r["trial"]): r["state"] for r in rows}
    assert states[0] == "fail" and states[1] == "complete"  # the killed trial, and its rerun
    assert rows[1]["retry_of"] == "0" and float(rows[1]["lr"]) == 2e-5
    assert sorted(states.values()).count("pruned") >= 1
    assert sum(s in ("complete", "pruned") for s in states.values()) == 3
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert all(float(r["lr"]) >= 0.02 and r["pruned_at_epoch"] == "1" and r["value"] == "" for r in pruned)
    # the killed trial's directory is marked and holds nothing that could pass for a result
    killed = tune / "trials" / "trial-0000"
    assert json.loads((killed / "trial.json").read_text())["state"] == "killed"
    assert not (killed / ".scratch").exists() and not (killed / "train").exists()
    for row in pruned:
        folder = tune / "trials" / f"trial-{int(row['trial']):04d}"
        assert json.loads((folder / "trial.json").read_text())["state"] == "pruned"
        assert not (folder / ".scratch").exists() and (folder / "history.jsonl").is_file()
    # the complete trial trained without test embeddings or logits
    train = tune / "trials" / "trial-0001" / "train"
    outputs = json.loads((train / "manifest.json").read_text())["outputs"]
    assert "embeddings_val.npy" in outputs and not any("test" in name for name in outputs)
    best = json.loads((tune / "best.json").read_text())
    assert best["trial"] == 1 and best["params"] == {"lr": 2e-5} and best["monitor"] == "val_macro_f1"
    assert best["study"].startswith("tiny-ce-") and (tune / "optimization_history.png").is_file()
    assert "importances need 2 or more complete trials" in result.output
    # a finished study is not run again
    again = _gloss("tune", "--run-dir", str(prepared), "--space", str(space), *STUDY)
    assert "resuming study" in again.output and len(list(csv.DictReader(open(tune / "trials.csv")))) == len(rows)


def test_db_of_another_config_is_refused_naming_the_keys(prepared, space):
    if not (prepared / "tune" / "study.db").is_file():
        pytest.skip("needs the study of the test above")
    result = CliRunner().invoke(main, ["tune", "--run-dir", str(prepared), "--space", str(space), *STUDY,
                                       "--batch-size", "8"])
    assert result.exit_code == 1
    assert "of another config" in result.output and "train.loop.batch_size (16 -> 8)" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--trials", "0"], "--trials 0: a study needs at least 1 trial"),
    (["--method", "textgcn"], "tunes --method finetune"),
    (["--space", "{space}"], "unknown parameter 'sigmaa'"),
    (["--space", "{empty}"], "empty range [0.5, 0.5]"),
    (["--loss", "gloss+ce", "--space", "{space}"], "no [gloss+ce] table"),
])
def test_bad_input_is_one_line_before_training(prepared, tmp_path, args, message):
    (tmp_path / "typo.toml").write_text('[ce]\nsigmaa = { low = 0.1, high = 1.0 }\n')
    (tmp_path / "empty.toml").write_text('[ce]\nlr = { low = 0.5, high = 0.5 }\n')
    (tmp_path / "ce.toml").write_text('[ce]\nlr = { low = 1e-5, high = 1e-4, log = true }\n')
    paths = {"space": tmp_path / "typo.toml", "empty": tmp_path / "empty.toml"}
    if args[:2] == ["--loss", "gloss+ce"]:
        paths["space"] = tmp_path / "ce.toml"
    args = [a.format(**paths) for a in args]
    result = CliRunner().invoke(main, ["tune", "--run-dir", str(tmp_path / "none"), "--loss", "ce", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_tune_needs_a_prepared_run(tmp_path):
    result = CliRunner().invoke(main, ["tune", "--run-dir", str(tmp_path / "nothing"), "--loss", "ce"])
    assert result.exit_code == 1 and "gloss prepare" in result.output


class _Manifest:
    def __init__(self, value):
        self.summary = {"best_epoch": 1, "best_val": {"val_macro_f1": value}}


def test_interrupted_and_failed_trials_without_training(tiny_root, tmp_path, monkeypatch):
    """Ctrl-C in a trial exits 130 and the trial reruns on resuming; a trial's own error is counted, not rerun."""
    from pipeline.errors import GlossError
    from pipeline.stages import tune as stage

    run = prepare_tiny(tiny_root, tmp_path / "run")
    outcomes = iter([KeyboardInterrupt(), GlossError("train: the loss diverged at epoch 1"), 0.6])

    def fake_run(config, folder, force, on_epoch_end, echo):
        assert config.write_test_outputs is False and config.loop.epochs == 2
        outcome = next(outcomes)
        if isinstance(outcome, BaseException):
            raise outcome
        on_epoch_end(1, {"val_macro_f1": outcome})
        return _Manifest(outcome)

    monkeypatch.setattr(stage.train_stage, "run", fake_run)
    args = ["tune", "--run-dir", str(run), "--loss", "ce", "--trials", "2", "--tune-epochs", "2", "--no-plots"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 130 and "interrupted" in first.output
    assert json.loads((run / "tune/trials/trial-0000/trial.json").read_text())["state"] == "interrupted"
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    rows = list(csv.DictReader(open(run / "tune" / "trials.csv")))
    assert [(r["state"], r["retry_of"]) for r in rows] == [("fail", ""), ("fail", "0"), ("complete", "")]
    assert rows[0]["error"] == "" and "diverged" in rows[1]["error"] and rows[2]["value"] == "0.6"
    assert json.loads((run / "tune" / "best.json").read_text())["trial"] == 2
