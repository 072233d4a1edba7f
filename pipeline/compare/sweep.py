"""Running a sweep: every run of a spec that has not finished, one `gloss run` subprocess each, with a
log per run. Finished runs (an evaluate manifest on disk) are skipped; a killed sweep continues where it
stopped, and a killed run resumes its stages (and its training from the last checkpoint).

``parallel=N`` keeps up to N runs going at once (one GPU fits several small encoders); ``deadline`` (a
``time.monotonic()`` value) stops launching runs once passed and stops the runs still going (SIGTERM, then
SIGKILL), which are counted as cut; what finished stays finished.

Before anything starts, a finished run whose split seed or tier is not the one the spec now asks for is a
one-line error: it would otherwise be skipped and reported under the spec's settings."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.artifacts import checkpoint_path
from pipeline.compare.aggregate import NAME_FILE, TIER_FILE, tier_name
from pipeline.compare.spec import RunSpec
from pipeline.errors import GlossError
from pipeline.manifest import load_manifest

# Outcomes reported to ``on_done(spec, outcome, seconds)``.
DONE, SKIPPED, FAILED, CUT, NOT_STARTED = "done", "skipped", "failed", "cut", "not started"
POLL_S = 0.2
TERMINATE_GRACE_S = 10.0


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "evaluate" / "manifest.json").is_file()


@dataclass
class _Running:
    spec: RunSpec
    prefix: str
    run_dir: Path
    log: Path
    handle: IO
    process: subprocess.Popen
    started: float


def _command(spec: RunSpec, run_dir: Path, data_root: str | None) -> list[str]:
    command = [sys.executable, "-m", "pipeline.cli", "run", *spec.cli_args(), "--run-dir", str(run_dir)]
    if data_root:
        command += ["--data-root", data_root]
    if checkpoint_path(run_dir).is_file():
        command.append("--resume")
    return command


def _launch(spec: RunSpec, prefix: str, out_dir: Path, data_root: str | None, env: dict) -> _Running:
    run_dir = out_dir / "runs" / spec.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / NAME_FILE).write_text(spec.method + "\n")
    if spec.tier is not None:
        (run_dir / TIER_FILE).write_text(spec.tier + "\n")
    command = _command(spec, run_dir, data_root)
    log = out_dir / "logs" / f"{spec.run_name}.log"
    handle = open(log, "a")
    handle.write(f"$ {' '.join(command)}\n")
    handle.flush()
    # Its own process group, so that a cut stops the run and anything it started.
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return _Running(spec, prefix, run_dir, log, handle, process, time.perf_counter())


def _stop(running: list[_Running]) -> None:
    """SIGTERM every run's process group, then SIGKILL what is still alive after the grace period."""
    for r in running:
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(r.process.pid, signal.SIGTERM)
    end = time.monotonic() + TERMINATE_GRACE_S
    for r in running:
        try:
            r.process.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # the group is already gone
                os.killpg(r.process.pid, signal.SIGKILL)
            r.process.wait()
        r.handle.close()


def _reap(r: _Running, echo, report, finished: list[Path], failures: list[str]) -> None:
    r.handle.close()
    seconds = time.perf_counter() - r.started
    if r.process.returncode == 0 and is_finished(r.run_dir):
        echo(f"{r.prefix}: done in {seconds:.0f}s")
        finished.append(r.run_dir)
        report(r.spec, DONE, seconds)
    else:
        echo(f"{r.prefix}: FAILED (exit {r.process.returncode}) after {seconds:.0f}s, see {r.log}")
        failures.append(r.spec.run_name)
        report(r.spec, FAILED, seconds)


def check_finished_runs(runs: list[RunSpec], out_dir: Path, echo: Callable[[str], None] = print) -> None:
    """A one-line error naming the first finished run whose split seed or tier differs from its spec; a
    finished run without a tier gets the spec's (said in one line)."""
    for spec in runs:
        run_dir = out_dir / "runs" / spec.run_name
        if not is_finished(run_dir):
            continue
        if spec.split_seed is not None:
            recorded = load_manifest(run_dir, "prepare").config.get("seed")
            if recorded != spec.split_seed:
                raise GlossError(f"{run_dir}: finished with split seed {recorded}, but the spec asks for "
                                 f"{spec.split_seed}: set the spec's split_seed, or move the run away")
        if tier_name(run_dir) is None and spec.tier is not None:
            (run_dir / TIER_FILE).write_text(spec.tier + "\n")
            echo(f"compare: {spec.run_name}: finished before tiers were recorded; recorded tier {spec.tier}")
        if tier_name(run_dir) != spec.tier:
            raise GlossError(f"{run_dir}: finished as tier {tier_name(run_dir)}, but the spec asks for {spec.tier}: "
                             "fix the spec's tier, or move the run away")


def run_sweep(runs: list[RunSpec], out_dir: Path, data_root: str | None, echo: Callable[[str], None] = print,
              extra_env: dict | None = None, *, parallel: int = 1, deadline: float | None = None,
              on_done: Callable[[RunSpec, str, float], None] | None = None) -> tuple[list[Path], list[str]]:
    """Run what is missing, up to ``parallel`` at once; return (finished run directories, failures). Runs
    that failed, were cut at ``deadline`` or never started before it are the failures."""
    if parallel < 1:
        raise ValueError(f"Expected 'parallel' to be at least 1 (got {parallel})")
    check_finished_runs(runs, out_dir, echo)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(extra_env or {})}
    report = on_done or (lambda spec, outcome, seconds: None)
    finished, failures = [], []
    pending = list(enumerate(runs, start=1))
    running: list[_Running] = []
    try:
        while pending or running:
            for r in [r for r in running if r.process.poll() is not None]:
                running.remove(r)
                _reap(r, echo, report, finished, failures)
            late = deadline is not None and time.monotonic() >= deadline
            if late:
                break
            while pending and len(running) < parallel:
                number, spec = pending.pop(0)
                prefix = f"compare: [{number}/{len(runs)}] {spec.run_name}"
                if is_finished(out_dir / "runs" / spec.run_name):
                    echo(f"{prefix}: finished earlier, skipped")
                    finished.append(out_dir / "runs" / spec.run_name)
                    report(spec, SKIPPED, 0.0)
                    continue
                running.append(_launch(spec, prefix, out_dir, data_root, env))
                echo(f"{prefix}: running (log: {running[-1].log})")
            if running:
                time.sleep(POLL_S)
    finally:
        if running:
            _stop(running)
    for r in running:
        seconds = time.perf_counter() - r.started
        echo(f"{r.prefix}: CUT at the deadline after {seconds:.0f}s (it resumes on the next sweep)")
        failures.append(r.spec.run_name)
        report(r.spec, CUT, seconds)
    for _, spec in pending:
        echo(f"compare: {spec.run_name}: not started, past the deadline")
        failures.append(spec.run_name)
        report(spec, NOT_STARTED, 0.0)
    return finished, failures
