"""The benchmark's driver: its phases as steps that two lanes share, each step resumable, every child `gloss`
process at ``nice -n 19`` with one torch thread, a log per step and the 1-minute load average at each step's
start and end.

Phases (run in the order given; each skips what has finished, so a killed lane restarts with the same command):

- ``cheap``: the cheap baselines (``cheap_graph.toml``, ``cheap_frozen.toml``: textgcn, tfidf-lr, frozen-lr).
- ``tune``: per dataset (R8, mr) and loss (ce, scl+ce, lcl+ce, gloss+ce) a study in ``ROOT/tune/<dataset>-<loss>``:
  ``gloss prepare`` (split seed 0), ``gloss embed`` where the loss may draw a corpus sigma, then ``gloss tune``
  with ``tier_b.toml``'s options (the lr grid, then ``--trials`` trials of the loss's own parameters).
- ``final``: ``tier_b.toml`` (every loss at its study's best values, 3 seeds on splits 0, 1, 2).
- ``bertgcn``: ``bertgcn.toml`` (each seed from its own tier-B ce run); ``adapter``: ``adapter.toml``.
- ``graph-predict``: ``graph_predict.toml`` (gloss+ce-bank with the unlabelled test documents in its graph;
  ``scripts/graph_predict_report.py`` reports it beside tier B's runs, the benchmark's table leaves it out).
- ``report``: ``gloss compare`` over every finished run of the other sweep phases into ``--out`` with
  ``--reference gloss+ce``.
- ``status``: ``--out``/status.md: per phase, runs (tune: trials) done and remaining, wall time so far, the
  commit of the tree the driver runs from and the time of writing.

A sweep phase's step is one (spec, dataset, method): ``gloss compare`` of that slice of the spec into
``ROOT/<phase>``. ``--lane A|B`` takes one half of every phase's steps (a deterministic partition, balanced
by each step's runs, lcl+ce counting twice for its second encoder); no ``--lane`` runs them all. Start both
lanes, or restart them after a stop, with::

    for lane in A B; do nohup python scripts/benchmark/run_benchmark.py cheap tune final bertgcn adapter \\
        --lane $lane --wait 720 > results/benchmark/lane-$lane.out 2>&1 & done

A step whose inputs another step makes (a study's best.json, the ce run a BertGCN run starts from) waits for
them up to ``--wait`` minutes (default 0: a one-line error before the phase starts anything). Steps are
recorded in ``ROOT/logs/steps.jsonl``; ``--dry-run`` prints each step's commands and runs nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipeline.artifacts import default_run_name, method_slug  # noqa: E402
from pipeline.config_file import read_config_file  # noqa: E402

SPECS = REPO / "scripts" / "benchmark"
SPEC_ROOT = "results/benchmark/runs"  # the root the committed specs name; a step's spec names --root instead
DEFAULT_ROOT = REPO / SPEC_ROOT
DEFAULT_OUT = REPO / "results" / "benchmark"
PHASE_SPECS = {"cheap": ["cheap_graph.toml", "cheap_frozen.toml"], "final": ["tier_b.toml"],
               "bertgcn": ["bertgcn.toml"], "adapter": ["adapter.toml"], "graph-predict": ["graph_predict.toml"]}
PHASES = ["cheap", "tune", "final", "bertgcn", "adapter", "graph-predict", "report", "status"]
REPORTED = ("cheap", "final", "bertgcn", "adapter")  # graph-predict's runs see the test texts: reported apart
LANES = ("A", "B")
TUNED_DATASETS = ["R8", "mr"]
TUNED_LOSSES = ["ce", "scl+ce", "lcl+ce", "gloss+ce"]
SIGMA_LOSSES = ("gloss", "gloss+ce")  # may draw a corpus sigma (sqrt, dicm): `gloss embed` first
TUNE_SPLIT_SEED = 0
TUNE_SEED = 0
LR_GRID = "1e-5,3e-5,1e-4,3e-4,1e-3"  # 1e-3 added: the first studies chose the top of 1e-5..3e-4 (val)
RELATIVE_COST = {"lcl+ce": 2.0}  # the separate weighting network is a second encoder
REFERENCE = "gloss+ce"
STEP_LOG = "steps.jsonl"
POLL_S = 60


@dataclass(frozen=True)
class Step:
    """One unit of a phase's work queue: a study (``tune``) or a slice of a sweep spec (one dataset, one
    method). ``runs`` are the run directories (sweeps) it makes; ``cost`` is what the lane split balances."""

    phase: str
    name: str
    dataset: str
    method: str
    spec: Path | None = None
    runs: tuple[str, ...] = field(default=())
    cost: float = 1.0


def study_dir(root: Path, dataset: str, loss: str) -> Path:
    return root / "tune" / f"{dataset}-{method_slug(loss)}"


def sweep_out(root: Path, phase: str) -> Path:
    """Where a sweep phase's ``gloss compare`` writes (its runs in ``runs/``, their logs in ``logs/``)."""
    return root / phase


def _datasets(data: dict, override: list[str] | None) -> list[str]:
    return list(override) if override else list(data["datasets"])


def sweep_steps(phase: str, datasets: list[str] | None = None) -> list[Step]:
    """A sweep phase's steps, in spec order: one per (spec, dataset, method), with its run names."""
    steps = []
    for spec_name in PHASE_SPECS[phase]:
        spec = SPECS / spec_name
        data = read_config_file(spec)
        seeds = [int(s) for s in data.get("seeds", [0])]
        for dataset in _datasets(data, datasets):
            for method in data["methods"]:
                runs = tuple(default_run_name(dataset, method["name"], s) for s in seeds)
                cost = RELATIVE_COST.get(method.get("loss", ""), 1.0) * len(runs)
                steps.append(Step(phase, f"{spec.stem}-{dataset}-{method_slug(method['name'])}", dataset,
                                  method["name"], spec, runs, cost))
    return steps


def tune_steps(datasets: list[str] | None = None) -> list[Step]:
    return [Step("tune", f"tune-{d}-{method_slug(loss)}", d, loss, cost=RELATIVE_COST.get(loss, 1.0))
            for d in (datasets or TUNED_DATASETS) for loss in TUNED_LOSSES]


def phase_steps(phase: str, datasets: list[str] | None = None) -> list[Step]:
    return tune_steps(datasets) if phase == "tune" else sweep_steps(phase, datasets)


def split_lanes(steps: list[Step]) -> dict[str, list[Step]]:
    """A partition of ``steps`` into the lanes: in order, each step goes to the lane with the least cost so
    far (ties: A), so the lanes get about equal work and both always compute the same split."""
    lanes: dict[str, list[Step]] = {lane: [] for lane in LANES}
    load = dict.fromkeys(LANES, 0.0)
    for step in steps:
        lane = min(LANES, key=lambda name: load[name])
        lanes[lane].append(step)
        load[lane] += step.cost
    return lanes


# --- a sweep step's spec --------------------------------------------------------------------------------
def _at_root(value, root: Path):
    """``value`` with the committed specs' root (``results/benchmark/runs``) replaced by ``root``."""
    if isinstance(value, str) and value.startswith(SPEC_ROOT + "/"):
        return str(root / value[len(SPEC_ROOT) + 1:])
    if isinstance(value, dict):
        return {k: _at_root(v, root) for k, v in value.items()}
    return value


def step_spec(step: Step, root: Path, epochs_cap: int) -> dict:
    """The step's slice of its spec (its dataset and method), paths under ``root``, the epoch cap applied to
    every spec that sets an epoch cap."""
    data = read_config_file(step.spec)
    method = dict(next(m for m in data["methods"] if m["name"] == step.method))
    if "tuned" in method:
        tuned = method["tuned"]
        if isinstance(tuned, dict):
            tuned = tuned.get(step.dataset) or str(study_dir(root, step.dataset, method["loss"]) / "tune" /
                                                   "best.json")
        method["tuned"] = _at_root(tuned, root)
    if "options" in method:
        method["options"] = _at_root(method["options"], root)
    sliced = {key: value for key, value in data.items() if key not in ("datasets", "methods", "datasets_options")}
    sliced.update(datasets=[step.dataset], methods=[method])
    if step.dataset in data.get("datasets_options", {}):
        sliced["datasets_options"] = {step.dataset: data["datasets_options"][step.dataset]}
    if "epochs" in sliced.get("options", {}):
        sliced["options"] = {**sliced["options"], "epochs": epochs_cap}
    return sliced


def missing_inputs(step: Step, root: Path, epochs_cap: int) -> list[Path]:
    """What the step needs from other steps and does not find: a study's best.json, the finished run an
    ``init-from`` names."""
    if step.phase == "tune":
        return []
    method = step_spec(step, root, epochs_cap)["methods"][0]
    needed = [Path(method["tuned"])] if "tuned" in method else []
    init_from = method.get("options", {}).get("init-from")
    if init_from:
        seeds = read_config_file(step.spec).get("seeds", [0])
        needed += [Path(init_from.format(dataset=step.dataset, seed=s, split_seed=s, method=step.method)) /
                   "evaluate" / "manifest.json" for s in seeds]
    return [path for path in needed if not path.is_file()]


# --- commands -------------------------------------------------------------------------------------------
def gloss(*args: str) -> list[str]:
    return ["nice", "-n", "19", sys.executable, "-m", "pipeline.cli", *args]


def _flags(options: dict) -> list[str]:
    flags = []
    for key, value in options.items():
        flags += [f"--{key}", str(value)]
    return flags


def tune_commands(step: Step, root: Path, args) -> list[list[str]]:
    """``gloss prepare`` (split 0), ``gloss embed`` for a loss that may draw a corpus sigma, ``gloss tune``
    with ``tier_b.toml``'s shared options (but the epoch cap) and the loss's own options there."""
    spec = read_config_file(SPECS / "tier_b.toml")
    shared = {k: v for k, v in spec.get("options", {}).items() if k != "epochs"}
    own = next(m for m in spec["methods"] if m["name"] == step.method).get("options", {})
    run_dir = str(study_dir(root, step.dataset, step.method))
    data_root = ["--data-root", args.data_root] if args.data_root else []
    commands = [gloss("prepare", "--dataset", step.dataset, "--seed", str(TUNE_SPLIT_SEED), "--run-dir", run_dir,
                      *data_root)]
    if step.method in SIGMA_LOSSES:
        commands.append(gloss("embed", "--run-dir", run_dir, "--max-length", str(shared["max-length"]), "--no-test"))
    commands.append(gloss("tune", "--run-dir", run_dir, "--loss", step.method, *_flags({**shared, **own}),
                          "--tune-epochs", str(args.tune_epochs), "--lr-grid", args.lr_grid,
                          "--trials", str(args.trials), "--tune-seed", str(TUNE_SEED)))
    return commands


def sweep_command(step: Step, root: Path, args) -> tuple[list[str], dict]:
    spec = step_spec(step, root, args.epochs_cap)
    command = gloss("compare", "--spec", str(root / "specs" / step.phase / f"{step.name}.yaml"),
                    "--out", str(sweep_out(root, step.phase)))
    if args.data_root:
        command += ["--data-root", args.data_root]
    return command, spec


# --- running a step -------------------------------------------------------------------------------------
def load_average() -> float:
    return os.getloadavg()[0]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def run_step(step: Step, lane: str, root: Path, args) -> int:
    """Run the step's commands in order (stopping at the first failure), logging to
    ``ROOT/logs/<phase>/<step>.log``; append its record (times, load averages, exit code) to steps.jsonl."""
    if step.phase == "tune":
        commands = tune_commands(step, root, args)
    else:
        command, spec = sweep_command(step, root, args)
        commands = [command]
    if args.dry_run:
        for command in commands:
            print(" ".join(command))
        return 0
    if step.phase != "tune":
        import yaml

        path = Path(commands[0][commands[0].index("--spec") + 1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    log = root / "logs" / step.phase / f"{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    record = {"phase": step.phase, "step": step.name, "lane": lane, "start": _now(), "load_start": load_average()}
    started = time.time()
    code = 0
    with open(log, "a") as handle:
        handle.write(f"# {record['start']} lane {lane}, load average (1 min) {record['load_start']:.2f}\n")
        for command in commands:
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            code = subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
            if code != 0:
                break
        record.update(end=_now(), load_end=load_average(), seconds=round(time.time() - started, 1), exit=code)
        handle.write(f"# {record['end']} exit {code} after {record['seconds']:.0f}s, load average (1 min) "
                     f"{record['load_end']:.2f}\n")
    with open(root / "logs" / STEP_LOG, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"{step.phase}: {step.name}: {'done' if code == 0 else f'FAILED (exit {code})'} in "
          f"{record['seconds']:.0f}s, log {log}", flush=True)
    return code


def wait_for_inputs(steps: list[Step], root: Path, args) -> None:
    """Return once every step's inputs exist; raise SystemExit with one line naming the first missing one
    when ``--wait`` minutes pass first (0: at once)."""
    deadline = time.time() + 60 * args.wait
    while True:
        missing = [(s, path) for s in steps for path in missing_inputs(s, root, args.epochs_cap)]
        if not missing or args.dry_run:
            return
        step, path = missing[0]
        if time.time() >= deadline:
            raise SystemExit(f"run_benchmark: {step.phase}: {step.name} needs {path} ({len(missing)} input(s) "
                             f"missing): run the phase that makes it first, or give --wait MINUTES")
        print(f"{step.phase}: waiting for {path} ({len(missing)} input(s) missing)", flush=True)
        time.sleep(POLL_S)


def run_phase(phase: str, lane: str | None, root: Path, args) -> list[str]:
    """Run the lane's steps of ``phase`` (all steps without a lane); return the failed steps' names."""
    steps = phase_steps(phase, args.datasets)
    if lane is not None:
        steps = split_lanes(steps)[lane]
    wait_for_inputs(steps, root, args)
    return [s.name for s in steps if run_step(s, lane or "-", root, args) != 0]


# --- report and status ----------------------------------------------------------------------------------
def finished_runs(root: Path, datasets: list[str] | None = None,
                  phases: tuple[str, ...] = REPORTED) -> list[tuple[Step, Path]]:
    """Every finished run of the sweep ``phases``, with its step."""
    from pipeline.compare.sweep import is_finished

    return [(s, sweep_out(root, s.phase) / "runs" / run) for phase in phases
            for s in sweep_steps(phase, datasets) for run in s.runs
            if is_finished(sweep_out(root, s.phase) / "runs" / run)]


def report(root: Path, args) -> int:
    """``gloss compare`` of every finished run into ``--out``, paired against gloss+ce once it has runs."""
    finished = finished_runs(root, args.datasets)
    if not finished:
        raise SystemExit(f"run_benchmark: report: no finished run under {root}")
    command = gloss("compare", *[a for _, run in finished for a in ("--runs", _shown(run))], "--out", str(args.out))
    if any(step.method == REFERENCE for step, _ in finished):
        command += ["--reference", REFERENCE]
    else:
        print(f"report: no finished {REFERENCE} run yet: the tables without its paired tests")
    if args.dry_run:
        print(" ".join(command))
        return 0
    collect_run_records([run for _, run in finished], Path(args.out) / "metrics")
    return subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode


RUN_RECORDS = ("prepare/manifest.json", "train/manifest.json", "train/history.jsonl", "evaluate/metrics.json")


def collect_run_records(runs: list[Path], out: Path) -> int:
    """Copy each finished run's small records (``RUN_RECORDS``, as ``prepare-manifest.json`` ...) into
    ``out/<run name>/``, so the committed results keep every run's metrics while run folders stay ignored.
    Returns the number of files copied."""
    import shutil

    copied = 0
    for run in runs:
        for record in RUN_RECORDS:
            source = run / record
            if source.is_file():
                target = out / run.name / record.replace("/", "-")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                copied += 1
    return copied


def study_progress(root: Path, step: Step, budget: int) -> tuple[int, int]:
    """(trials done, trials remaining) of a study: complete, pruned and failed trials count, as in
    ``gloss tune --trials``; a study without best.json has at least one to go."""
    trials = study_dir(root, step.dataset, step.method) / "tune" / "trials"
    done = 0
    for record in trials.glob("trial-*/trial.json"):
        try:
            done += json.loads(record.read_text()).get("state") in ("complete", "pruned", "fail", "failed")
        except (OSError, ValueError):
            continue
    has_best = (study_dir(root, step.dataset, step.method) / "tune" / "best.json").is_file()
    return done, max(budget - done, 0 if has_best else 1)


def phase_seconds(root: Path) -> dict[str, float]:
    """Wall seconds of the finished steps per phase (both lanes, from steps.jsonl)."""
    seconds: dict[str, float] = {}
    path = root / "logs" / STEP_LOG
    for line in path.read_text().splitlines() if path.is_file() else []:
        record = json.loads(line)
        seconds[record["phase"]] = seconds.get(record["phase"], 0.0) + record.get("seconds", 0.0)
    return seconds


def pinned_commit() -> str:
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown (not a git checkout)"
    return commit + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def status_rows(root: Path, args) -> list[dict]:
    """Per phase: its unit (runs or trials), done, remaining, wall hours so far."""
    from pipeline.compare.sweep import is_finished

    seconds = phase_seconds(root)
    rows = []
    for phase in PHASES[:PHASES.index("report")]:
        if phase == "tune":
            budget = len(args.lr_grid.split(",")) + args.trials
            progress = [study_progress(root, s, budget) for s in tune_steps(args.datasets)]
            done, remaining, unit = sum(p[0] for p in progress), sum(p[1] for p in progress), "trials"
        else:
            runs = [sweep_out(root, phase) / "runs" / r for s in sweep_steps(phase, args.datasets) for r in s.runs]
            done, unit = sum(is_finished(r) for r in runs), "runs"
            remaining = len(runs) - done
        rows.append({"phase": phase, "unit": unit, "done": done, "remaining": remaining,
                     "hours": seconds.get(phase, 0.0) / 3600})
    return rows


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_status(root: Path, args) -> Path:
    rows = status_rows(root, args)
    lines = ["# Benchmark status", "",
             f"Written {_now()} from commit {pinned_commit()}; runs and studies under `{_shown(root)}`.", "",
             "| phase | unit | done | remaining | wall time so far (h) |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['phase']} | {r['unit']} | {r['done']} | {r['remaining']} | {r['hours']:.2f} |" for r in rows]
    lines += ["", f"Wall time: finished steps of both lanes (`logs/{STEP_LOG}`). Tune counts complete, pruned and "
              f"failed trials against {len(args.lr_grid.split(','))} grid + {args.trials} trials per study."]
    path = Path(args.out) / "status.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# --- command line ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phases", nargs="+", choices=PHASES, metavar="PHASE",
                        help=f"one or more of {', '.join(PHASES)}, run in the order given")
    parser.add_argument("--lane", choices=LANES, default=None,
                        help="run this lane's half of each phase's steps (default: every step)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help=f"runs, studies and logs (default: {SPEC_ROOT})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="report and status.md (default: results/benchmark)")
    parser.add_argument("--epochs-cap", type=int, default=30, help="epoch cap of the final runs (default: 30)")
    parser.add_argument("--tune-epochs", type=int, default=3, help="epochs E of each tuning trial (default: 3)")
    parser.add_argument("--trials", type=int, default=8,
                        help="trials N of each loss's own parameters after the lr grid (default: 8)")
    parser.add_argument("--lr-grid", default=LR_GRID, help=f"the shared learning rates (default: {LR_GRID})")
    parser.add_argument("--datasets", type=lambda text: text.split(","), default=None,
                        help="comma list replacing every spec's and study's datasets (a smoke test on a small one)")
    parser.add_argument("--data-root", default=None, help="folder of the datasets (default: $GLOSS_DATA)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="minutes a step waits for inputs another lane makes (default: 0, an error at once)")
    parser.add_argument("--dry-run", action="store_true", help="print each step's commands, run nothing")
    args = parser.parse_args(argv)
    for name in ("epochs_cap", "tune_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: expected at least 1")
    if args.trials < 0:
        parser.error(f"--trials {args.trials}: expected 0 or more")
    # absolute, links kept: a root linked into the checkout is reported by its path in the checkout
    args.root, args.out = Path(os.path.abspath(args.root)), Path(os.path.abspath(args.out))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    failed: list[str] = []
    for phase in args.phases:
        if phase == "report":
            if report(args.root, args) != 0:
                failed.append("report")
        elif phase == "status":
            print(f"status: wrote {write_status(args.root, args)}")
        else:
            failed += run_phase(phase, args.lane, args.root, args)
    if failed:
        print(f"run_benchmark: {len(failed)} step(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
