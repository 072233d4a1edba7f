"""Running a sweep: every run of a spec that has not finished, one `gloss run` subprocess each, with a
log per run. Finished runs (an evaluate manifest on disk) are skipped; a killed sweep continues where it
stopped, and a killed run resumes its stages (and its training from the last checkpoint)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.artifacts import checkpoint_path
from pipeline.compare.aggregate import NAME_FILE
from pipeline.compare.spec import RunSpec


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "evaluate" / "manifest.json").is_file()


def run_sweep(runs: list[RunSpec], out_dir: Path, data_root: str | None, echo: Callable[[str], None] = print,
              extra_env: dict | None = None) -> tuple[list[Path], list[str]]:
    """Run what is missing; return (finished run directories, failures)."""
    import os

    runs_dir, logs_dir = out_dir / "runs", out_dir / "logs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    logs_dir.mkdir(parents=True, exist_ok=True)
    finished, failures = [], []
    for number, spec in enumerate(runs, start=1):
        run_dir = runs_dir / spec.run_name
        prefix = f"compare: [{number}/{len(runs)}] {spec.run_name}"
        if is_finished(run_dir):
            echo(f"{prefix}: finished earlier, skipped")
            finished.append(run_dir)
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / NAME_FILE).write_text(spec.method + "\n")
        command = [sys.executable, "-m", "pipeline.cli", "run", *spec.cli_args(), "--run-dir", str(run_dir)]
        if data_root:
            command += ["--data-root", data_root]
        if checkpoint_path(run_dir).is_file():
            command.append("--resume")
        log = logs_dir / f"{spec.run_name}.log"
        echo(f"{prefix}: running (log: {log})")
        started = time.perf_counter()
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(extra_env or {})})
        seconds = time.perf_counter() - started
        if code == 0 and is_finished(run_dir):
            echo(f"{prefix}: done in {seconds:.0f}s")
            finished.append(run_dir)
        else:
            echo(f"{prefix}: FAILED (exit {code}) after {seconds:.0f}s, see {log}")
            failures.append(spec.run_name)
    return finished, failures
