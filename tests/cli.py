"""Invoking the ``gloss`` command in tests: one runner helper, and RUN/prepare of the shipped tiny dataset."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from pipeline.cli import main

# Stage-test training options: two short epochs on the tiny dataset.
TINY = ["--epochs", "2", "--max-length", "16", "--batch-size", "16", "--patience", "5", "--seed", "3"]


def gloss(*args, catch_exceptions: bool = False) -> Result:
    """``gloss ARGS`` in-process (arguments may be paths or numbers)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=catch_exceptions)


def prepare_tiny(tiny_root: Path, run: Path, *options) -> Path:
    """``gloss prepare --dataset tiny`` into ``run`` (extra ``options`` such as ``--limit``); returns ``run``."""
    result = gloss("prepare", "--dataset", "tiny", "--data-root", tiny_root, *options, "--run-dir", run)
    assert result.exit_code == 0, result.output
    return run


class Captured(Exception):
    """Raised by :func:`capture_stages`' spy in place of a stage's work."""


def capture_stages(monkeypatch, *names: str) -> dict:
    """Replace the ``run`` of the named stages (``pipeline.stages.<name>``) by a spy that records the resolved
    config in the returned dict under ``"config"`` and raises :class:`Captured`: nothing runs."""
    import importlib

    seen: dict = {}

    def spy(config, *args, **kwargs):
        seen["config"] = config
        raise Captured

    for name in names:
        monkeypatch.setattr(importlib.import_module(f"pipeline.stages.{name}"), "run", spy)
    return seen
