"""The GPU suite's driver (scripts/gpu_suite.py) on a CPU: its spec, the budget stop, the summary and the exit
code, with stand-in runs (the real tiny suite is a CI step: `bash scripts/gpu_suite.sh --tiny`)."""

import json
import sys
import time
from pathlib import Path

import pytest

from pipeline.compare.spec import read_spec
from tests.scripts.script_module import ROOT, load_script


@pytest.fixture(scope="module")
def suite():
    return load_script("gpu_suite")


def test_tiny_and_full_presets(suite, tmp_path):
    tiny = suite.parse_args(["--tiny", "--out", str(tmp_path)])
    assert tiny.datasets == ["R8"] and tiny.epochs == 1 and tiny.out == tmp_path and tiny.budget_s == 170
    full = suite.parse_args(["--budget-s", "60", "--parallel", "2"])
    assert full.datasets == suite.DATASETS and full.budget_s == 60 and full.parallel == 2
    assert full.out == ROOT / "results" / "gpu"


@pytest.mark.parametrize("flags", [["--train-layers", "--precision"], []])
def test_spec_has_three_losses_and_only_the_options_this_checkout_has(suite, tmp_path, flags):
    args = suite.parse_args(["--tiny", "--out", str(tmp_path), "--model", "/m"])
    path = tmp_path / "spec.toml"
    path.write_text(suite.spec_text(args, flags))
    runs = read_spec(path)
    assert [r.method for r in runs] == ["ce", "scl+ce", "gloss+ce"] and {r.dataset for r in runs} == {"R8"}
    assert {r.tier for r in runs} == {"gpu-full"}  # its rows never pool with the CPU tiers
    options = dict(runs[0].options)
    assert options["limit"] == 64 and options["limit_test"] == 64 and options["max-length"] == 32
    assert options["model"] == "/m" and options["device"] == "cpu" and options["epochs"] == 1
    assert ("train-layers" in options) == bool(flags) and ("precision" in options) == bool(flags)
    if flags:
        assert options["train-layers"] == "all"


def test_full_spec_is_bf16_full_fine_tuning(suite, tmp_path):
    args = suite.parse_args(["--out", str(tmp_path)])
    path = tmp_path / "spec.toml"
    path.write_text(suite.spec_text(args, ["--train-layers", "--precision"]))
    runs = read_spec(path)
    assert len(runs) == 15 and "limit" not in dict(runs[0].options)
    assert dict(runs[0].options)["precision"] == "bf16" and dict(runs[0].options)["device"] == "cuda"


def test_tiny_environment_hides_faiss(suite, tmp_path):
    import subprocess

    args = suite.parse_args(["--tiny", "--out", str(tmp_path)])
    env = suite.run_environment(args)
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path / "no-faiss")
    done = subprocess.run([sys.executable, "-c", "import faiss"], env={**env, "PATH": ""}, capture_output=True,
                          text=True)
    assert done.returncode == 1 and "hidden by scripts/gpu_suite.py" in done.stderr


def _fake_sweep(monkeypatch, plan):
    """Runs of the spec become stand-ins that sleep ``plan[method]`` seconds (see test_sweep.py)."""
    from pipeline.compare import stage, sweep
    from tests.pipeline.compare.test_sweep import _FAKE_RUN

    def command(spec, run_dir, data_root):
        return [sys.executable, "-c", _FAKE_RUN, str(run_dir), str(plan[spec.method]), "0"]

    monkeypatch.setattr(sweep, "_command", command)
    monkeypatch.setattr(sweep, "POLL_S", 0.02)
    monkeypatch.setattr(sweep, "TERMINATE_GRACE_S", 2.0)
    compared = []
    monkeypatch.setattr(stage, "run_compare", lambda spec, dirs, *a, **k: compared.append(dirs))
    return compared


def test_budget_stops_the_sweep_and_keeps_what_finished(suite, monkeypatch, tmp_path):
    compared = _fake_sweep(monkeypatch, {"ce": 0.1, "scl+ce": 60.0, "gloss+ce": 0.1})
    args = suite.parse_args(["--tiny", "--out", str(tmp_path), "--parallel", "1"])
    args.flags = []
    started = time.monotonic()
    rows, problems = suite.run_sweep_and_report(args, {}, deadline=started + 2.0)
    assert time.monotonic() - started < 10
    assert [(r["method"], r["outcome"]) for r in rows] == [("ce", "done"), ("scl+ce", "cut"),
                                                            ("gloss+ce", "not started")]
    assert problems == ["run R8-scl-ce-seed0: cut", "run R8-gloss-ce-seed0: not started"]
    assert [Path(d).name for d in compared[0]] == ["R8-ce-seed0"]
    lines = (tmp_path / "runs.csv").read_text().splitlines()
    assert lines[0].startswith("dataset,method,outcome,wall_s") and len(lines) == 4


def test_main_prints_a_summary_and_exits_non_zero_on_any_failure(suite, monkeypatch, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    knn = {"faiss": None, "backend": "torch", "cuda": False}
    monkeypatch.setattr(suite, "supported_options", lambda options: (options, []))
    monkeypatch.setattr(suite, "check_knn", lambda env, tiny: (dict(knn), []))
    monkeypatch.setattr(suite, "run_tests", lambda env, out, timeout: ({"tests": 7, "failures": 0, "errors": 0,
                                                                        "skipped": 7, "seconds": 1.0}, []))
    row = {"dataset": "R8", "method": "ce", "outcome": "done", "wall_s": 3.0, "accuracy": 0.5, "macro_f1": 0.25}
    monkeypatch.setattr(suite, "run_sweep_and_report", lambda args, env, deadline: ([row], []))
    argv = ["--tiny", "--out", str(tmp_path), "--model", str(model)]
    assert suite.main(argv) == 0
    out = capsys.readouterr().out
    assert "faiss: hidden (no-FAISS branch)" in out and "7 skipped" in out and "acc 0.5000" in out
    assert out.rstrip().endswith("gpu suite: OK")
    assert json.loads((tmp_path / "summary.json").read_text())["problems"] == []

    cut = {**row, "outcome": "cut", "accuracy": None}
    monkeypatch.setattr(suite, "run_sweep_and_report",
                        lambda args, env, deadline: ([cut], ["run R8-ce-seed0: cut"]))
    assert suite.main(argv) == 1
    assert capsys.readouterr().out.rstrip().endswith("gpu suite: FAILED: run R8-ce-seed0: cut")


def test_full_suite_without_cuda_fails_before_the_sweep(suite, monkeypatch, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    monkeypatch.setattr(suite, "supported_options", lambda options: (options, []))
    monkeypatch.setattr(suite, "check_knn", lambda env, tiny: ({"faiss": None, "backend": "torch", "cuda": False},
                                                               ["no CUDA device: the full suite needs one"]))
    monkeypatch.setattr(suite, "run_sweep_and_report", lambda *a: pytest.fail("the sweep must not start"))
    assert suite.main(["--out", str(tmp_path), "--model", str(model)]) == 1
    assert "FAILED: no CUDA device" in capsys.readouterr().out


def test_knn_check_sees_the_stub(suite, tmp_path):
    args = suite.parse_args(["--tiny", "--out", str(tmp_path)])
    info, problems = suite.check_knn(suite.run_environment(args), tiny=True)
    assert problems == [] and info["faiss"] is None and info["backend"] == "torch"
    assert info["faiss_found_at"].startswith(str(tmp_path / "no-faiss"))


def test_knn_check_fails_when_faiss_is_not_hidden(suite, tmp_path):
    pytest.importorskip("faiss")
    args = suite.parse_args(["--out", str(tmp_path)])  # the full suite's environment: no stub
    info, problems = suite.check_knn(suite.run_environment(args), tiny=True)
    assert info["faiss"] is not None and any("FAISS was not hidden" in p for p in problems)
    assert any("auto picked 'faiss'" in p for p in problems)  # AUTO_TORCH_MAX_PAIRS = 0: FAISS when importable
