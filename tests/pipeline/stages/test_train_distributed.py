"""`torchrun --nproc-per-node 2 --no-python gloss train` on the tiny fixture (gloo, CPU): the run killed with
SIGKILL mid-training resumes with --resume, and ends with the metrics of one uninterrupted process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli import gloss, prepare_tiny
from tests.distributed import free_port

# --train-layers 0: the adapter trains (no dropout), so 1 and 2 processes agree to float precision; epochs enough
# for the kill to land mid-run; patience = epochs: no early stop
OPTIONS = ["--loss", "gloss+ce", "--sigma", "0.5", "--train-layers", "0", "--epochs", "30", "--patience", "30",
           "--batch-size", "16", "--max-length", "16", "--seed", "3"]
METRICS = ("train_total", "train_ce", "train_g_loss", "val_accuracy", "val_macro_f1")


def torchrun(run: Path, *extra: str) -> subprocess.Popen:
    gloss_command = str(Path(sys.executable).with_name("gloss"))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "--no-python", gloss_command, "train", "--run-dir", str(run),
               *OPTIONS, *extra]
    env = os.environ | {"OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def last_epoch(run: Path) -> int:
    last = run / ".scratch" / "train" / "last.pt"
    try:
        return int(torch.load(last, weights_only=True)["epoch"]) if last.is_file() else 0
    except (EOFError, RuntimeError, OSError):  # replaced while reading
        return 0


def kill_after_epoch(process: subprocess.Popen, run: Path, epoch: int, timeout: float = 240.0) -> int:
    """SIGKILL the whole torchrun session once ``run``'s last checkpoint is past ``epoch``; the epoch killed at."""
    deadline = time.monotonic() + timeout
    while last_epoch(run) < epoch:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return last_epoch(run)


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train" / "history.jsonl").read_text().splitlines()]


@pytest.mark.skipif(shutil.which("gloss", path=str(Path(sys.executable).parent)) is None,
                    reason="the gloss command is not installed beside this Python")
def test_a_killed_two_process_run_resumes_to_the_single_process_metrics(tmp_path, tiny_root):
    single = prepare_tiny(tiny_root, tmp_path / "single")
    shutil.copytree(single, tmp_path / "ddp")
    result = gloss("train", "--run-dir", single, *OPTIONS)
    assert result.exit_code == 0, result.output

    killed_at = kill_after_epoch(torchrun(tmp_path / "ddp"), tmp_path / "ddp", epoch=2)
    assert 2 <= killed_at < 30 and not (tmp_path / "ddp" / "train").exists()
    resumed = torchrun(tmp_path / "ddp", "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resumed from {tmp_path / 'ddp' / '.scratch' / 'train' / 'last.pt'} after epoch" in output
    assert output.count("train: wrote") == 1  # rank 0 alone writes (and speaks)

    manifest = json.loads((tmp_path / "ddp" / "train" / "manifest.json").read_text())
    assert manifest["summary"]["processes"] == 2
    expected, got = history(single), history(tmp_path / "ddp")
    assert len(got) == len(expected) == 30
    for a, b in zip(got, expected, strict=True):
        for key in METRICS:
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["epoch"], key)


def _two_ranks(monkeypatch) -> None:
    from pipeline.training import distributed

    monkeypatch.setattr(distributed, "init_from_environment", lambda device: distributed.Ranks(0, 2))


@pytest.mark.parametrize(("options", "message"), [
    (["--loss", "triplet"], "--loss triplet: data-parallel training needs a loss that sees the global batch"),
    (["--loss", "ce", "--batch-size", "3"], "--batch-size 3: with 2 processes the global batch needs at least 4"),
])
def test_what_cannot_train_data_parallel_is_refused_in_one_line(tmp_path, tiny_root, monkeypatch, options, message):
    run = prepare_tiny(tiny_root, tmp_path / "run")
    _two_ranks(monkeypatch)
    result = gloss("train", "--run-dir", run, "--train-layers", "0", *options, catch_exceptions=True)
    assert result.exit_code == 1 and message in result.output
    assert not (run / "train").exists()


def test_a_graph_baseline_under_torchrun_is_refused(tmp_path, tiny_root, monkeypatch):
    run = prepare_tiny(tiny_root, tmp_path / "run")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = gloss("train", "--run-dir", run, "--method", "textgcn", catch_exceptions=True)
    assert result.exit_code == 1
    assert "--method textgcn: data-parallel training (torchrun) is for --method finetune" in result.output


def test_stages_other_than_train_are_refused_under_torchrun(tmp_path, tiny_root, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = gloss("prepare", "--dataset", "tiny", "--data-root", tiny_root, "--run-dir", tmp_path / "run",
                   catch_exceptions=True)
    assert result.exit_code == 1 and "gloss prepare under torchrun (WORLD_SIZE=2): only `gloss train`" in result.output
    assert not (tmp_path / "run").exists()
