"""Tests that need the benchmark data say so: one summary line counts the skips, and CI=true fails instead."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_TEST = "tests/pipeline/compare/test_sweep.py"  # light to import; needs GLOSS_DATA


def _pytest(tmp_path, **env):
    environment = {key: value for key, value in os.environ.items() if key != "CI"}
    environment.update(GLOSS_DATA=str(tmp_path / "nowhere"), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", DATA_TEST],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)


def test_skips_for_missing_data_are_counted_in_one_line(tmp_path):
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("gloss: ")]
    assert lines == ["gloss: 1 test(s) skipped because GLOSS_DATA does not point at the benchmark data; set "
                     "GLOSS_DATA to the folder holding R8/, mr/, ... (see the README's Data section) to run them"]


def test_missing_data_fails_under_ci(tmp_path):
    result = _pytest(tmp_path, CI="true")
    assert result.returncode == 1, result.stdout
    assert "CI=true: GLOSS_DATA does not point at the benchmark data" in result.stdout
    assert "skipped because" not in result.stdout
