"""A sweep of two tiny TextGCN runs produces every output; a second invocation runs nothing new."""

import json

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import require_benchmark_data


@pytest.fixture
def data():
    root = str(require_benchmark_data())
    return root


def test_sweep_runs_then_skips(data, tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text(
        'datasets = ["R8"]\nseeds = [0, 1]\nlimit = 120\nlimit_test = 54\n'
        '[[methods]]\nname = "textgcn"\nmethod = "textgcn"\noptions = { gcn-epochs = 20 }\n'
    )
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["compare", "--spec", str(spec), "--out", str(out), "--data-root", data])
    assert first.exit_code == 0, first.output
    assert first.output.count(": running") == 2
    for name in ("table.md", "table.csv", "results.json", "accuracy.png", "convergence.png", "silhouette.png",
                 "predictors.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    [row] = results["aggregated"]
    assert row["method"] == "textgcn" and row["accuracy"]["n"] == 2 and row["seeds"] == [0, 1]
    assert row["split_seeds"] == [0, 1]  # replicate s on split s, pooled in one row
    table = (out / "table.md").read_text()
    assert "not measured by gloss" in table and "97.07" in table  # published TextGCN R8, marked as such
    assert (out / "logs" / "R8-textgcn-seed0.log").is_file()
    second = CliRunner().invoke(main, ["compare", "--spec", str(spec), "--out", str(out), "--data-root", data])
    assert second.exit_code == 0 and second.output.count("skipped") == 2 and ": running" not in second.output


def test_compare_needs_spec_or_runs():
    result = CliRunner().invoke(main, ["compare"])
    assert result.exit_code == 1 and "--spec" in result.output


def test_bad_spec_is_one_line_error(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('datasets = ["R8"]\n')
    result = CliRunner().invoke(main, ["compare", "--spec", str(spec), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "'methods' is missing" in result.output


# --- parallel runs and the deadline, with stand-in runs (no training) -------------------------------------

_FAKE_RUN = """
import json, pathlib, sys, time
run_dir, seconds, code = pathlib.Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
(run_dir / "times.json").write_text(json.dumps([time.time()]))
time.sleep(seconds)
if code == 0:
    (run_dir / "evaluate").mkdir(exist_ok=True)
    (run_dir / "evaluate" / "manifest.json").write_text("{}")
(run_dir / "times.json").write_text(json.dumps([json.loads((run_dir / "times.json").read_text())[0], time.time()]))
sys.exit(code)
"""


def _fake_runs(monkeypatch, plan):
    """RunSpecs whose `gloss run` is a stand-in sleeping ``plan[seed] = (seconds, exit code)``."""
    import sys as _sys

    from pipeline.compare import sweep
    from pipeline.compare.spec import RunSpec

    def command(spec, run_dir, data_root):
        seconds, code = plan[spec.seed]
        return [_sys.executable, "-c", _FAKE_RUN, str(run_dir), str(seconds), str(code)]

    monkeypatch.setattr(sweep, "_command", command)
    monkeypatch.setattr(sweep, "POLL_S", 0.02)
    monkeypatch.setattr(sweep, "TERMINATE_GRACE_S", 2.0)
    return [RunSpec("R8", "ce", seed) for seed in plan]


def test_parallel_sweep_runs_several_at_once(monkeypatch, tmp_path):
    from pipeline.compare.sweep import run_sweep

    runs = _fake_runs(monkeypatch, {seed: (1.0, 0) for seed in range(4)})
    outcomes = []
    finished, failures = run_sweep(runs, tmp_path, None, echo=lambda line: None, parallel=2,
                                   on_done=lambda spec, outcome, seconds: outcomes.append((spec.seed, outcome)))
    assert failures == [] and len(finished) == 4 and sorted(outcomes) == [(s, "done") for s in range(4)]
    spans = sorted(json.loads((d / "times.json").read_text()) for d in finished)
    overlaps = sum(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])
    assert overlaps >= 2  # (0, 1) and (2, 3) at least ran side by side
    most_at_once = max(sum(s[0] <= t[0] < s[1] for s in spans) for t in spans)
    assert most_at_once <= 2


def test_deadline_cuts_the_running_run_and_keeps_what_finished(monkeypatch, tmp_path):
    import time

    from pipeline.compare.sweep import run_sweep

    runs = _fake_runs(monkeypatch, {0: (0.1, 0), 1: (60.0, 0), 2: (0.1, 0), 3: (0.1, 3)})
    outcomes, lines = {}, []
    started = time.monotonic()
    finished, failures = run_sweep(runs, tmp_path, None, echo=lines.append, deadline=started + 2.0,
                                   on_done=lambda spec, outcome, seconds: outcomes.update({spec.seed: outcome}))
    assert time.monotonic() - started < 10  # SIGTERM stopped the 60 s run
    assert outcomes == {0: "done", 1: "cut", 2: "not started", 3: "not started"}
    assert [p.name for p in finished] == [runs[0].run_name]
    assert failures == [runs[1].run_name, runs[2].run_name, runs[3].run_name]
    assert any("CUT at the deadline" in line for line in lines)
    # The next sweep skips the finished run and reports a failing one as failed.
    outcomes.clear()
    runs = _fake_runs(monkeypatch, {0: (0.1, 0), 1: (0.1, 0), 2: (0.1, 0), 3: (0.1, 3)})
    finished, failures = run_sweep(runs, tmp_path, None, echo=lines.append, parallel=3,
                                   on_done=lambda spec, outcome, seconds: outcomes.update({spec.seed: outcome}))
    assert outcomes == {0: "skipped", 1: "done", 2: "done", 3: "failed"} and failures == [runs[3].run_name]
