r"""Issue 15's measurement: lcl+ce vs scl+ce vs gloss+ce vs ce on the full R8 and MR training sets, each tuned
with the same budget (`gloss tune`, 6 trials of 2 epochs), then each loss's best values trained over 3 seeds
with early stopping (`gloss compare`, spec `scripts/sweep_tuned.toml`).

    GLOSS_DATA=../shared/data python scripts/measure_tuned.py          # run what is missing, then the tables
    python scripts/measure_tuned.py --aggregate-only                     # tables from what has finished

Resumable at every level: a prepared run directory is kept, a killed `gloss tune` continues its study
(``study.db``), the sweep skips finished runs. ``results/tuned/status.md`` says after every step what is done;
``results/tuned/progress.log`` has each step's command and wall time. Run directories (models, caches) stay
under ``results/tuned/runs/`` and are not committed; their manifests, histories and metrics are copied to
``results/tuned/metrics/``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # compare_baselines' helpers

from pipeline.atomic import write_text_atomic  # noqa: E402

OUT = Path("results/tuned")
SPEC = "scripts/sweep_tuned.toml"
MR_SPEC = "scripts/sweep_tuned_mr.toml"  # its MR half
DATASETS = ("mr", "R8")  # MR first: its epochs are the cheaper ones
LOSSES = ("ce", "scl+ce", "gloss+ce", "lcl+ce")
# The same for every loss: the budget of the issue, the partial fine-tuning this CPU affords, a pruner that can
# act within 6 trials (the default waits for 5 complete ones).
TUNE_OPTIONS = ["--trials", "6", "--tune-epochs", "2", "--train-layers", "1", "--pruner-startup", "2",
                "--no-plots"]
# LCL's weighting network as the main head (the cheaper variant): the paper's separate network is a second
# encoder trained in full whatever --train-layers says, which costs this CPU ~100x a top-layer epoch.
LOSS_OPTIONS = {"lcl+ce": ["--lcl-weighting", "head"]}


def tune_run_dir(dataset: str, loss: str) -> Path:
    return OUT / "runs" / f"tune-{dataset}-{loss}"


def step(command: list[str], log: Path) -> None:
    """Runs one gloss command, appending its output to ``log`` and a timing line to progress.log."""
    started = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
    with (OUT / "progress.log").open("a") as progress:
        progress.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} rc={code} {time.time() - started:.0f}s "
                       + " ".join(command) + "\n")
    if code != 0:
        raise SystemExit(f"measure_tuned: {' '.join(command)} failed (rc {code}); see {log}")


def tune(dataset: str, loss: str, data_root: str) -> None:
    run_dir = tune_run_dir(dataset, loss)
    log = OUT / "logs" / f"tune-{dataset}-{loss}.log"
    if not (run_dir / "prepare" / "manifest.json").is_file():
        step(["gloss", "prepare", "--dataset", dataset, "--data-root", data_root, "--run-dir", str(run_dir)], log)
    if loss.startswith("gloss") and not (run_dir / "embed" / "manifest.json").is_file():
        step(["gloss", "embed", "--run-dir", str(run_dir)], log)  # the corpus sigma heuristics of the space
    step(["gloss", "tune", "--run-dir", str(run_dir), "--loss", loss, *TUNE_OPTIONS, *LOSS_OPTIONS.get(loss, [])], log)


def tuned_summary() -> list[dict]:
    """One row per finished study: its best values and the seconds its trials took."""
    rows = []
    for dataset in DATASETS:
        for loss in LOSSES:
            tune_dir = tune_run_dir(dataset, loss) / "tune"
            if not (tune_dir / "best.json").is_file():
                continue
            best = json.loads((tune_dir / "best.json").read_text())
            rows.append({"dataset": dataset, "loss": loss, "best": best,
                         "trials_csv": (tune_dir / "trials.csv").read_text()})
    return rows


def _params(best: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())


def tuning_table(summary: list[dict]) -> list[str]:
    """Markdown rows: each study's best values, its validation score, trial outcomes and seconds."""
    lines = ["| dataset | loss | best values | best val | trial | complete / pruned | trials' seconds |",
             "|---|---|---|---|---|---|---|"]
    for row in summary:
        best = row["best"]
        trials = list(csv.DictReader(io.StringIO(row["trials_csv"])))
        seconds = sum(float(t["seconds"] or 0) for t in trials)
        lines.append(f"| {row['dataset']} | {row['loss']} | {_params(best)} | {best['monitor']} {best['value']:.4f} "
                     f"| {best['trial']} | {best['trials']['complete']} / {best['trials']['pruned']} | {seconds:.0f} |")
    return lines


def cost_lines() -> list[str]:
    """Wall time of every step of progress.log, by kind, and in all."""
    totals: dict[str, float] = {}
    progress = OUT / "progress.log"
    for line in progress.read_text().splitlines() if progress.is_file() else []:
        parts = line.split()
        kind = parts[4] if parts[3].endswith("gloss") else parts[3]
        totals[kind] = totals.get(kind, 0.0) + float(parts[2].rstrip("s"))
    totals.pop("compare", None)  # a sweep's own wall time; its runs are counted one by one below
    runs = [float(seconds) for log in sorted((OUT / "logs").glob("compare*.log"))
            for seconds in re.findall(r": done in (\d+(?:\.\d+)?)s", log.read_text())]
    totals["final runs"] = sum(runs)
    shown = ", ".join(f"{kind} {seconds / 60:.1f} min" for kind, seconds in totals.items())
    return [f"Wall time of the steps (`progress.log`; the final runs from the sweeps' logs, {len(runs)} runs): "
            f"{shown}; in all **{sum(totals.values()) / 3600:.2f} h** of one process (two ran side by side "
            "for most of it, each with one torch thread, on the 2-core machine)."]


def write_summary(summary: list[dict]) -> None:
    lines = ["# Tuned losses on MR and R8: the studies (`scripts/measure_tuned.py`)", "",
             "Each study: 6 trials of 2 epochs, `--train-layers 1`, seeded TPE, median pruner after 2 complete "
             "trials; trial 0 runs the defaults. Values below are what `best.json` holds.", ""]
    lines += tuning_table(summary) + [""] + cost_lines()
    write_text_atomic(OUT / "tuning.md", "\n".join(lines) + "\n")


def write_status() -> None:
    """status.md: which studies and final runs have finished, read from the run directories."""
    from pipeline.compare.sweep import is_finished

    done, todo = [], []
    for dataset in DATASETS:
        for loss in LOSSES:
            finished = (tune_run_dir(dataset, loss) / "tune" / "best.json").is_file()
            (done if finished else todo).append(f"study {dataset} {loss}")
    for run in final_runs():
        (done if is_finished(run) else todo).append(f"final run {run.name}")
    lines = ["# Issue 15 measurement: status", "",
             f"Updated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `scripts/measure_tuned.py`.", "",
             f"Done ({len(done)}):", ""] + [f"- {item}" for item in done]
    lines += ["", f"Still to run ({len(todo)}):", ""] + [f"- {item}" for item in todo]
    write_text_atomic(OUT / "status.md", "\n".join(lines) + "\n")


def final_runs() -> list[Path]:
    """The run directories of the final sweep (the MR half alone while an R8 study is unfinished)."""
    from pipeline.compare.spec import read_spec
    from pipeline.errors import GlossError

    try:
        return [OUT / "runs" / run.run_name for run in read_spec(SPEC)]
    except GlossError:  # an R8 study has not finished: its runs cannot be named yet
        return [OUT / "runs" / run.run_name for run in read_spec(MR_SPEC)]


def aggregate_finals(data_root: str) -> None:
    """The comparison table, plots and kept metrics of every final run that has finished so far."""
    from compare_baselines import grouped_by_dataset, keep_metrics

    from pipeline.compare.stage import run_compare
    from pipeline.compare.sweep import is_finished

    finished = grouped_by_dataset([str(d) for d in final_runs() if is_finished(d)])
    if finished:
        run_compare(None, finished, OUT, data_root, "gloss+ce:ce", echo=print)
        keep_metrics(finished, OUT / "metrics")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aggregate-only", action="store_true", help="Run nothing; tables of what finished.")
    parser.add_argument("--data-root", default=os.environ.get("GLOSS_DATA", "../shared/data"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    studies = [(d, loss) for d in DATASETS for loss in LOSSES]
    if not args.aggregate_only:
        for dataset, loss in studies:
            write_status()
            tune(dataset, loss, args.data_root)
        write_status()
        step(["gloss", "compare", "--spec", SPEC, "--out", str(OUT), "--data-root", args.data_root,
              "--pair", "gloss+ce:ce"], OUT / "logs" / "compare.log")
    aggregate_finals(args.data_root)
    write_status()
    summary = tuned_summary()
    write_text_atomic(OUT / "tuned.json", json.dumps([{k: v for k, v in row.items() if k != "trials_csv"}
                                                      for row in summary], indent=2) + "\n")
    write_summary(summary)
    print(f"measure_tuned: {len(summary)} finished studies; see {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
