"""The one-command GPU suite (run through ``scripts/gpu_suite.sh``): the CUDA tests, then a full-data sweep
(five datasets x ce, scl+ce, gloss+ce, one seed, a fixed epoch budget, full fine-tuning in bf16, several runs
at once on the one GPU), a table with per-run metrics and wall times in ``results/gpu/``, a summary, and a
non-zero exit on any failure.

``--tiny`` runs the same code path on a CPU in CI: R8, 64 training documents, 64 test documents, max length
32, one epoch per loss, with FAISS hidden behind a stub package first on ``PYTHONPATH`` (the suite checks that
``graphs.knn`` really runs without it).

Needs torch, transformers, sentence-transformers and torch-geometric, the data under ``$GLOSS_DATA``, and no
network: the encoder is the float16 copy ``scripts/make_local_encoder.py`` writes to ``.device/minilm-fp16/``
(made here when missing), loaded as float32.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

DATASETS = ["20ng", "mr", "R52", "R8", "ohsumed"]  # largest training set first: the longest runs start first
LOSSES = ["ce", "scl+ce", "gloss+ce"]
FULL = {"datasets": DATASETS, "epochs": 3, "max_length": 128, "device": "cuda", "precision": "bf16",
        "parallel": 3, "budget_s": 480, "out": ROOT / "results" / "gpu"}
TINY = {"datasets": ["R8"], "epochs": 1, "max_length": 32, "device": "cpu", "precision": "fp32", "limit": 64,
        "limit_test": 64, "parallel": 3, "budget_s": 170, "out": ROOT / ".device" / "gpu-suite-tiny"}
REPORT_RESERVE_S = 20  # kept back from the budget for the table and the summary
FAISS_STUB = "raise ImportError('FAISS is hidden by scripts/gpu_suite.py --tiny (the no-FAISS branch)')\n"

# Run in the environment the sweep's runs get: which FAISS graphs.knn sees, and which backend it picks for a
# search that would go to FAISS if it were importable (AUTO_TORCH_MAX_PAIRS = 0).
KNN_CHECK = """
import importlib.util, json, torch
import graphs.knn as knn
knn.AUTO_TORCH_MAX_PAIRS = 0
x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
_, index = knn.knn_search(x, x, 3, exclude_self=True)
ref = (torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).t()).fill_diagonal_(-2)
spec = importlib.util.find_spec("faiss")
print(json.dumps({**knn.backend_info(), "backend": knn.resolve_backend("auto", x),
                  "correct": bool(torch.equal(index, ref.topk(3, dim=1).indices)),
                  "faiss_found_at": spec.origin if spec else None, "cuda": torch.cuda.is_available()}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CUDA tests plus a full-data sweep; --tiny: the same on a CPU.")
    parser.add_argument("--tiny", action="store_true", help="R8, 64 documents, max length 32, 1 epoch, on a CPU.")
    parser.add_argument("--out", type=Path, default=None, help="Output folder (results/gpu; --tiny: .device/...).")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="Wall-clock budget: no run starts after it, running runs are stopped, finished kept.")
    parser.add_argument("--parallel", type=int, default=None, help="Runs at once (default 3).")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--model", default=str(ROOT / ".device" / "minilm-fp16"), help="Local encoder folder.")
    parser.add_argument("--skip-tests", action="store_true", help="Only the sweep.")
    args = parser.parse_args(argv)
    preset = TINY if args.tiny else FULL
    for key in ("out", "budget_s", "parallel", "epochs", "datasets"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    args.preset = preset
    return args


def supported_options(options: list[str]) -> tuple[list[str], list[str]]:
    """Which of ``options`` (``--flag`` names) `gloss run --help` lists here: (present, missing)."""
    text = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "COLUMNS": "200"}).stdout
    present = [o for o in options if o in text]
    return present, [o for o in options if o not in present]


def spec_text(args: argparse.Namespace, flags: list[str]) -> str:
    """The sweep spec (TOML): datasets x the three losses x seed 0 with the suite's options."""
    preset = args.preset
    options = {"epochs": args.epochs, "max-length": preset["max_length"], "device": preset["device"],
               "model": args.model, "train-layers": "all", "precision": preset["precision"]}
    options = {k: v for k, v in options.items() if k not in ("train-layers", "precision") or f"--{k}" in flags}
    lines = [f"datasets = {json.dumps(args.datasets)}", "seeds = [0]", 'tier = "gpu-full"']
    lines += [f"{key} = {preset[key]}" for key in ("limit", "limit_test") if key in preset]
    lines.append("options = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + " }")
    for loss in LOSSES:
        lines += ["", "[[methods]]", f"name = {json.dumps(loss)}", f"loss = {json.dumps(loss)}"]
    return "\n".join(lines) + "\n"


def run_environment(args: argparse.Namespace) -> dict[str, str]:
    """Environment of the tests and runs: the project in place, offline, FAISS hidden with --tiny."""
    paths = [str(ROOT)]
    if args.tiny:
        stub = args.out / "no-faiss" / "faiss"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text(FAISS_STUB)
        paths.insert(0, str(stub.parent))
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    env = {"PYTHONPATH": os.pathsep.join(paths), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if args.tiny:
        env["GLOSS_CACHE"] = str(args.out / "cache")  # a clean cache: every stage really runs
    return env


def check_knn(env: dict[str, str], tiny: bool) -> tuple[dict, list[str]]:
    """The kNN backend the runs' environment gets; with --tiny, proof that FAISS was hidden and torch ran."""
    done = subprocess.run([sys.executable, "-c", KNN_CHECK], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env})
    if done.returncode != 0:
        return {}, [f"kNN check failed: {done.stderr.strip().splitlines()[-1:]}"]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    problems = [] if info["correct"] else ["kNN check: wrong neighbours"]
    if tiny:
        stub = env["PYTHONPATH"].split(os.pathsep)[0]
        if info["faiss"] is not None or not str(info["faiss_found_at"]).startswith(stub):
            problems.append(f"FAISS was not hidden (graphs.knn sees {info['faiss_file']})")
        if info["backend"] != "torch":
            problems.append(f"without FAISS, auto picked {info['backend']!r}, not 'torch'")
    elif not info["cuda"]:
        problems.append("no CUDA device: the full suite needs one (use --tiny on a CPU)")
    return info, problems


def run_tests(env: dict[str, str], out: Path, timeout: float) -> tuple[dict, list[str]]:
    """``pytest -m gpu`` (the CUDA tests; all skipped without a GPU); counts from its JUnit XML."""
    xml = out / "gpu-tests.xml"
    xml.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={xml}",
               "tests"]
    started = time.perf_counter()
    with open(out / "gpu-tests.log", "w") as log:
        try:
            code = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=max(1.0, timeout)).returncode
        except subprocess.TimeoutExpired:
            return {"seconds": time.perf_counter() - started}, ["CUDA tests cut by the budget"]
    counts = {"seconds": round(time.perf_counter() - started, 1), "exit": code}
    if xml.is_file():
        suite = ElementTree.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
    problems = [] if code == 0 else [f"CUDA tests failed (exit {code}), see {out / 'gpu-tests.log'}"]
    return counts, problems


def run_metrics(run_dir: Path) -> dict:
    from pipeline.compare.aggregate import read_run

    try:
        record = read_run(run_dir)
    except Exception as exc:  # a run that did not finish has no metrics
        return {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return {"accuracy": record.accuracy, "macro_f1": record.macro_f1, "train_seconds": record.train_seconds,
            "seconds_per_epoch": record.seconds_per_epoch, "best_epoch": record.best_epoch}


def run_sweep_and_report(args: argparse.Namespace, env: dict, deadline: float) -> tuple[list[dict], list[str]]:
    """The sweep (``parallel`` at once, stopped at ``deadline``), the compare table, runs.csv."""
    from pipeline.compare.spec import read_spec
    from pipeline.compare.stage import run_compare
    from pipeline.compare.sweep import DONE, SKIPPED, run_sweep

    spec = args.out / "spec.toml"
    spec.write_text(spec_text(args, args.flags))
    by_loss = {loss: i for i, loss in enumerate(LOSSES)}
    runs = sorted(read_spec(spec), key=lambda r: by_loss[r.method])  # every dataset's ce first, and so on
    rows: list[dict] = []

    def record(run, outcome: str, seconds: float) -> None:
        rows.append({"dataset": run.dataset, "method": run.method, "run": run.run_name, "outcome": outcome,
                     "wall_s": round(seconds, 1)})

    data = os.environ.get("GLOSS_DATA")
    finished, _ = run_sweep(runs, args.out, data, echo=print, extra_env=env, parallel=args.parallel,
                            deadline=deadline, on_done=record)
    for row in rows:
        if row["outcome"] in (DONE, SKIPPED):
            row.update(run_metrics(args.out / "runs" / row["run"]))
    problems = [f"run {r['run']}: {r['outcome']}" for r in rows if r["outcome"] not in (DONE, SKIPPED)]
    if finished:
        run_compare(None, [str(d) for d in finished], args.out, data, "gloss+ce:ce", echo=print)
    write_rows(args.out / "runs.csv", rows)
    return rows, problems


def write_rows(path: Path, rows: list[dict]) -> None:
    fields = ["dataset", "method", "outcome", "wall_s", "accuracy", "macro_f1", "train_seconds",
              "seconds_per_epoch", "best_epoch", "run"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def summary_lines(summary: dict) -> list[str]:
    knn = summary.get("knn", {})
    faiss = "hidden (no-FAISS branch)" if summary["tiny"] and knn.get("faiss") is None else knn.get("faiss")
    lines = [f"gpu suite: {'tiny (CPU)' if summary['tiny'] else 'full'}; faiss: {faiss}; "
             f"kNN auto backend: {knn.get('backend')}; cuda: {knn.get('cuda')}"]
    lines.append(f"gpu suite: `gloss run` options: {summary.get('options', '?')}")
    if summary["missing_options"]:
        lines.append(f"gpu suite: not in this checkout's `gloss run`, left out: {' '.join(summary['missing_options'])}")
    tests = summary.get("tests")
    if tests:
        lines.append(f"gpu suite: CUDA tests: {tests.get('tests', '?')} run, {tests.get('failures', '?')} failed, "
                     f"{tests.get('errors', '?')} errors, {tests.get('skipped', '?')} skipped in {tests['seconds']}s")
    for row in summary.get("runs", []):
        metrics = (f"acc {row['accuracy']:.4f} macro-F1 {row['macro_f1']:.4f}" if row.get("accuracy") is not None
                   else "")
        lines.append(f"  {row['dataset']:8} {row['method']:9} {row['outcome']:11} {row['wall_s']:7.1f}s  {metrics}")
    lines.append(f"gpu suite: {summary['wall_s']:.0f}s wall; results in {summary['out']}")
    verdict = "OK" if not summary["problems"] else "FAILED: " + "; ".join(summary["problems"])
    lines.append(f"gpu suite: {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = started + args.budget_s - min(REPORT_RESERVE_S, args.budget_s / 10)
    env = run_environment(args)
    if not Path(args.model).is_dir():
        from make_local_encoder import write_copy  # a sibling script

        from pipeline.encoder import resolve_model_path
        from pipeline.errors import GlossError

        try:
            write_copy(Path(resolve_model_path("packaged")), Path(args.model))
        except GlossError as exc:
            print(f"gpu suite: no encoder at {args.model} and none to copy ({exc}); run "
                  "scripts/make_local_encoder.py where the packaged encoder is installed and bring .device/ along")
            return 2
    args.flags, missing = supported_options(["--train-layers", "--precision"])
    knn, problems = check_knn(env, args.tiny)
    options = spec_text(args, args.flags).split("options = ", 1)[1].splitlines()[0]
    summary = {"tiny": args.tiny, "out": str(args.out), "knn": knn, "options": options, "missing_options": missing,
               "problems": problems}
    if not problems or args.tiny:
        if not args.skip_tests:
            summary["tests"], failed = run_tests(env, args.out, deadline - time.monotonic())
            problems += failed
        summary["runs"], failed = run_sweep_and_report(args, env, deadline)
        problems += failed
    summary["wall_s"] = round(time.monotonic() - started, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(summary_lines(summary)))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
