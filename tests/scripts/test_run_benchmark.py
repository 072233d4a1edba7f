"""The benchmark's specs (scripts/benchmark/*.toml) and driver (scripts/benchmark/run_benchmark.py): the runs the
specs ask for, the lanes' partition of every phase, a step's spec under another root, the inputs a step waits
for, a step's log and record, and status.md's counts on fake run folders. Nothing here trains."""

import json
import sys
from pathlib import Path

import pytest

from pipeline.compare.spec import read_spec
from tests.scripts.script_module import ROOT

SPECS = ROOT / "scripts" / "benchmark"
TIER_B_METHODS = ["ce", "scl+ce", "lcl+ce", "gloss+ce", "gloss+ce-bank"]


@pytest.fixture(scope="module")
def driver():
    """The driver as a module (registered: its dataclass needs its module in sys.modules)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_benchmark", SPECS / "run_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_benchmark"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["run_benchmark"]


def fake_best(path: Path, loss: str) -> None:
    params = {"lr": 3e-5, "head-lr": 1e-3} if loss == "ce" else {"lr": 1e-4, "lambda": 0.4}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"loss": loss, "params": params}))


def fake_studies(driver, root: Path, datasets=("R8", "mr")) -> None:
    for dataset in datasets:
        for loss in driver.TUNED_LOSSES:
            fake_best(driver.study_dir(root, dataset, loss) / "tune" / "best.json", loss)


def finish(run_dir: Path) -> None:
    (run_dir / "evaluate").mkdir(parents=True, exist_ok=True)
    (run_dir / "evaluate" / "manifest.json").write_text("{}")


def test_tier_b_is_five_methods_two_datasets_three_seeds_at_the_studies_best_values(driver, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the spec's tuned paths are relative to the working directory
    fake_studies(driver, Path(driver.SPEC_ROOT))
    runs = read_spec(SPECS / "tier_b.toml")
    assert len(runs) == 30 and {r.dataset for r in runs} == {"R8", "mr"}
    assert [r.method for r in runs if r.dataset == "R8" and r.seed == 0] == TIER_B_METHODS
    assert {r.tier for r in runs} == {"B"} and all(r.split_seed == r.seed for r in runs)
    assert sorted({r.seed for r in runs}) == [0, 1, 2]
    by_name = {(r.dataset, r.method, r.seed): dict(r.options) for r in runs}
    for options in by_name.values():
        assert options["train-layers"] == "1" and options["batch-size"] == 128 and options["max-length"] == 128
        assert options["optimizer"] == "adamw" and options["schedule"] == "constant" and options["patience"] == 3
        assert options["epochs"] == 30 and options["lr"] in (3e-5, 1e-4)
    assert by_name[("mr", "ce", 1)]["loss"] == "ce" and by_name[("mr", "ce", 1)]["head-lr"] == 1e-3
    assert by_name[("R8", "lcl+ce", 2)]["lcl-weighting"] == "separate"
    assert by_name[("R8", "gloss+ce", 0)]["graph"] == "dense"
    bank = by_name[("mr", "gloss+ce-bank", 0)]
    assert bank["graph"] == "bank" and bank["loss"] == "gloss+ce" and bank["lambda"] == 0.4


def test_the_specs_name_the_driver_s_studies_and_runs(driver):
    """The committed specs' paths are where the driver puts studies and the final ce runs (default root)."""
    root = Path(driver.SPEC_ROOT)
    tier_b = driver.read_config_file(SPECS / "tier_b.toml")
    for method in tier_b["methods"]:
        for dataset, path in method["tuned"].items():
            assert Path(path) == driver.study_dir(root, dataset, method["loss"]) / "tune" / "best.json"
    assert {m["name"] for m in tier_b["methods"] if "tuned" in m} - {"gloss+ce-bank"} == set(driver.TUNED_LOSSES)


def test_bertgcn_starts_each_seed_from_that_seed_s_tier_b_ce_run(driver):
    runs = read_spec(SPECS / "bertgcn.toml")
    assert len(runs) == 6 and {r.method for r in runs} == {"bertgcn"} and {r.tier for r in runs} == {"B"}
    ce_runs = driver.sweep_out(Path(driver.SPEC_ROOT), "final") / "runs"
    for run in runs:
        options = dict(run.options)
        assert options["train-layers"] == "1" and run.split_seed == run.seed
        assert Path(options["init-from"]) == ce_runs / f"{run.dataset}-ce-seed{run.seed}"


@pytest.mark.parametrize("spec", ["tier_b.toml", "bertgcn.toml", "adapter.toml"])
def test_every_tiered_spec_stops_early_with_patience_3_under_the_epoch_cap(driver, spec, tmp_path, monkeypatch):
    """Rows of one table share one stopping rule: without it a run trains gloss's default few epochs."""
    monkeypatch.chdir(tmp_path)
    fake_studies(driver, Path(driver.SPEC_ROOT))
    for run in read_spec(SPECS / spec):
        options = dict(run.options)
        assert options["patience"] == 3 and options["epochs"] == 30, (spec, run.method)


def test_adapter_is_ce_and_gloss_ce_untuned_at_no_trained_layer(driver):
    runs = read_spec(SPECS / "adapter.toml")
    assert len(runs) == 12 and {r.method for r in runs} == {"ce", "gloss+ce"} and {r.tier for r in runs} == {"adapter"}
    for run in runs:
        options = dict(run.options)
        assert options["train-layers"] == "0" and "lr" not in options and "lambda" not in options


@pytest.mark.parametrize("phase", ["cheap", "tune", "final", "bertgcn", "adapter", "graph-predict"])
def test_the_lanes_partition_every_phase(driver, phase):
    steps = driver.phase_steps(phase)
    lanes = driver.split_lanes(steps)
    a, b = lanes["A"], lanes["B"]
    assert not {s.name for s in a} & {s.name for s in b}
    assert sorted(s.name for s in a + b) == sorted(s.name for s in steps) and len(a) + len(b) == len(steps)
    assert len({s.name for s in steps}) == len(steps)
    assert a and b and abs(sum(s.cost for s in a) - sum(s.cost for s in b)) <= max(s.cost for s in steps)
    assert driver.split_lanes(driver.phase_steps(phase)) == lanes  # every process computes the same split


def test_tune_steps_split_each_dataset_and_the_costly_loss_over_both_lanes(driver):
    lanes = driver.split_lanes(driver.phase_steps("tune"))
    for lane in lanes.values():
        assert {s.dataset for s in lane} == {"R8", "mr"} and [s.method for s in lane].count("lcl+ce") == 1


def test_a_step_spec_under_another_root_with_the_epoch_cap(driver, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "elsewhere"
    fake_studies(driver, root)
    step = next(s for s in driver.phase_steps("final") if s.dataset == "mr" and s.method == "gloss+ce-bank")
    path = tmp_path / "step.yaml"
    path.write_text(yaml.safe_dump(driver.step_spec(step, root, epochs_cap=7)))
    runs = read_spec(path)
    assert [(r.dataset, r.method, r.seed) for r in runs] == [("mr", "gloss+ce-bank", s) for s in (0, 1, 2)]
    assert {dict(r.options)["epochs"] for r in runs} == {7} and dict(runs[0].options)["lambda"] == 0.4
    bertgcn = driver.phase_steps("bertgcn")[0]
    init = dict(read_spec(_written(driver, bertgcn, root, tmp_path))[1].options)["init-from"]
    assert Path(init) == root / "final" / "runs" / f"{bertgcn.dataset}-ce-seed1"


def _written(driver, step, root, folder):
    import yaml

    path = folder / f"{step.name}.yaml"
    path.write_text(yaml.safe_dump(driver.step_spec(step, root, epochs_cap=30)))
    return path


def test_a_step_waits_for_what_another_step_makes(driver, tmp_path):
    args = driver.parse_args(["bertgcn", "--root", str(tmp_path)])
    step = driver.phase_steps("bertgcn")[0]
    missing = driver.missing_inputs(step, tmp_path, 30)
    assert len(missing) == 3 and all("ce-seed" in str(p) for p in missing)
    with pytest.raises(SystemExit, match=r"^run_benchmark: bertgcn: .* needs .*-ce-seed0/evaluate/manifest.json"):
        driver.wait_for_inputs([step], tmp_path, args)
    for seed in (0, 1, 2):
        finish(tmp_path / "final" / "runs" / f"{step.dataset}-ce-seed{seed}")
    assert driver.missing_inputs(step, tmp_path, 30) == []
    final = driver.phase_steps("final")[0]
    assert driver.missing_inputs(final, tmp_path, 30) == [driver.study_dir(tmp_path, "R8", "ce") / "tune" / "best.json"]


def test_tune_commands_follow_the_tier_b_protocol(driver, tmp_path):
    args = driver.parse_args(["tune", "--root", str(tmp_path), "--trials", "5", "--tune-epochs", "2"])
    steps = {s.method: s for s in driver.phase_steps("tune") if s.dataset == "R8"}
    ce = driver.tune_commands(steps["ce"], tmp_path, args)
    assert [c[c.index("pipeline.cli") + 1] for c in ce] == ["prepare", "tune"]
    assert all(c[:3] == ["nice", "-n", "19"] for c in ce) and ce[0][-4:] == ["--seed", "0", "--run-dir", str(
        tmp_path / "tune" / "R8-ce")]
    tune = " ".join(ce[-1])
    for flags in ("--loss ce", "--train-layers 1", "--batch-size 128", "--max-length 128", "--optimizer adamw",
                  "--schedule constant", "--patience 3", "--tune-epochs 2", "--lr-grid 1e-5,3e-5,1e-4,3e-4,1e-3",
                  "--trials 5", "--tune-seed 0"):
        assert flags in tune
    assert "--epochs" not in ce[-1]
    gloss = driver.tune_commands(steps["gloss+ce"], tmp_path, args)
    assert [c[c.index("pipeline.cli") + 1] for c in gloss] == ["prepare", "embed", "tune"]
    assert "--lcl-weighting separate" in " ".join(driver.tune_commands(steps["lcl+ce"], tmp_path, args)[-1])


def test_a_step_runs_with_one_thread_and_logs_the_load(driver, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    script = "import os; print('threads', os.environ['OMP_NUM_THREADS'])"
    monkeypatch.setattr(driver, "tune_commands", lambda step, root, args: [[sys.executable, "-c", script]])
    args = driver.parse_args(["tune", "--root", str(tmp_path)])
    step = driver.phase_steps("tune")[0]
    assert driver.run_step(step, "B", tmp_path, args) == 0
    log = (tmp_path / "logs" / "tune" / f"{step.name}.log").read_text()
    assert "threads 1" in log and log.count("load average (1 min)") == 2
    record = json.loads((tmp_path / "logs" / driver.STEP_LOG).read_text())
    assert record["lane"] == "B" and record["exit"] == 0 and record["load_start"] >= 0 and record["seconds"] >= 0
    failing = [[sys.executable, "-c", "exit(3)"], [sys.executable, "-c", "print('ran on')"]]
    monkeypatch.setattr(driver, "tune_commands", lambda step, root, args: failing)
    assert driver.run_step(step, "B", tmp_path, args) == 3  # a step stops at its first failing command
    log = (tmp_path / "logs" / "tune" / f"{step.name}.log").read_text()
    assert "exit 3 after" in log and "ran on" not in log


def test_status_counts_runs_trials_and_wall_time(driver, tmp_path):
    root = tmp_path / "runs"
    finish(root / "final" / "runs" / "R8-ce-seed0")
    finish(root / "final" / "runs" / "mr-gloss-ce-bank-seed2")
    (root / "final" / "runs" / "R8-ce-seed1" / "train").mkdir(parents=True)  # started, not finished
    finish(root / "cheap" / "runs" / "20ng-textgcn-seed1")
    finish(root / "adapter" / "runs" / "mr-gloss-ce-seed0")
    trials = driver.study_dir(root, "R8", "scl+ce") / "tune" / "trials"
    for number, state in enumerate(["complete", "pruned", "fail", "running"]):
        (trials / f"trial-{number:04d}").mkdir(parents=True)
        (trials / f"trial-{number:04d}" / "trial.json").write_text(json.dumps({"state": state}))
    (root / "logs").mkdir()
    (root / "logs" / driver.STEP_LOG).write_text("".join(
        json.dumps({"phase": phase, "seconds": s}) + "\n" for phase, s in [("final", 1800), ("final", 1800),
                                                                            ("tune", 360)]))
    args = driver.parse_args(["status", "--root", str(root), "--out", str(tmp_path / "out")])
    rows = {r["phase"]: r for r in driver.status_rows(root, args)}
    assert (rows["final"]["done"], rows["final"]["remaining"], rows["final"]["hours"]) == (2, 28, 1.0)
    assert (rows["cheap"]["done"], rows["cheap"]["remaining"]) == (1, 44)
    assert (rows["adapter"]["done"], rows["adapter"]["remaining"]) == (1, 11)
    assert (rows["bertgcn"]["done"], rows["bertgcn"]["remaining"]) == (0, 6)
    assert (rows["graph-predict"]["done"], rows["graph-predict"]["remaining"]) == (0, 6)
    assert (rows["tune"]["unit"], rows["tune"]["done"], rows["tune"]["remaining"]) == ("trials", 3, 8 * 13 - 3)  # 5 grid + 8 own trials per study
    assert rows["tune"]["hours"] == pytest.approx(0.1)
    text = driver.write_status(root, args).read_text()
    assert "| final | runs | 2 | 28 | 1.00 |" in text and "from commit " in text and "Written " in text


def test_report_compares_every_finished_run_against_gloss_ce_once_it_has_runs(driver, tmp_path, capsys):
    args = driver.parse_args(["report", "--root", str(tmp_path), "--out", str(tmp_path / "out"), "--dry-run"])
    with pytest.raises(SystemExit, match="no finished run"):
        driver.report(tmp_path, args)
    finish(tmp_path / "cheap" / "runs" / "R8-textgcn-seed0")
    finish(tmp_path / "adapter" / "runs" / "mr-ce-seed2")
    (tmp_path / "final" / "runs" / "R8-ce-seed0").mkdir(parents=True)  # not finished: left out
    assert driver.report(tmp_path, args) == 0
    command = capsys.readouterr().out.splitlines()[-1]
    assert command.count("--runs ") == 2 and "--reference" not in command and "R8-ce-seed0" not in command
    finish(tmp_path / "graph-predict" / "runs" / "mr-gloss-ce-bank-test-seed0")  # saw the test texts: left out
    driver.report(tmp_path, args)
    assert capsys.readouterr().out.splitlines()[-1].count("--runs ") == 2
    finish(tmp_path / "final" / "runs" / "mr-gloss-ce-seed1")
    driver.report(tmp_path, args)
    command = capsys.readouterr().out.splitlines()[-1].split()
    assert command.count("--runs") == 3 and command[-2:] == ["--reference", "gloss+ce"]
    assert command[command.index("--out") + 1] == str(tmp_path / "out")


def test_report_keeps_each_runs_small_records(driver, tmp_path):
    run = tmp_path / "runs" / "R8-ce-seed0"
    for record, text in (("prepare/manifest.json", "{}"), ("train/history.jsonl", "{}\n"),
                         ("evaluate/metrics.json", '{"accuracy": 0.9}'), ("train/model/big.bin", "x")):
        (run / record).parent.mkdir(parents=True, exist_ok=True)
        (run / record).write_text(text)
    assert driver.collect_run_records([run], tmp_path / "metrics") == 3
    kept = sorted(p.name for p in (tmp_path / "metrics" / "R8-ce-seed0").iterdir())
    assert kept == ["evaluate-metrics.json", "prepare-manifest.json", "train-history.jsonl"]


def test_the_graph_predict_step_trains_gloss_ce_bank_with_the_test_texts_at_gloss_ces_tuned_values(
        driver, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "elsewhere"
    fake_studies(driver, root)
    steps = driver.phase_steps("graph-predict")
    assert [(s.dataset, s.method) for s in steps] == [("R8", "gloss+ce-bank-test"), ("mr", "gloss+ce-bank-test")]
    final = next(s for s in driver.phase_steps("final") if s.dataset == "mr" and s.method == "gloss+ce-bank")
    mr = steps[1]
    bank, with_test = (read_spec(_written(driver, s, root, tmp_path)) for s in (final, mr))
    assert [(r.seed, r.split_seed) for r in with_test] == [(r.seed, r.split_seed) for r in bank]
    for plain, test in zip(bank, with_test, strict=True):
        assert dict(test.options) == {**dict(plain.options), "unlabeled": "test"}


def test_report_names_runs_under_a_linked_root_by_their_path_in_the_checkout(driver, tmp_path, monkeypatch, capsys):
    checkout, lanes = tmp_path / "checkout", tmp_path / "lanes"
    finish(lanes / "final" / "runs" / "mr-ce-seed0")
    (checkout / "results" / "benchmark").mkdir(parents=True)
    (checkout / "results" / "benchmark" / "runs").symlink_to(lanes)
    monkeypatch.setattr(driver, "REPO", checkout)
    monkeypatch.chdir(checkout)
    args = driver.parse_args(["report", "--root", "results/benchmark/runs", "--out", str(tmp_path / "out"),
                              "--dry-run"])
    driver.report(args.root, args)
    command = capsys.readouterr().out.splitlines()[-1].split()
    assert command[command.index("--runs") + 1] == "results/benchmark/runs/final/runs/mr-ce-seed0"
