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
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.atomic import write_text_atomic  # noqa: E402

OUT = Path("results/tuned")
SPEC = "scripts/sweep_tuned.toml"
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


def write_status(done: list[str], todo: list[str]) -> None:
    lines = ["# Issue 15 measurement: status", "",
             f"Updated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `scripts/measure_tuned.py`.", "", "Done:", ""]
    lines += [f"- {item}" for item in done] or ["- nothing yet"]
    lines += ["", "Still to run:", ""] + ([f"- {item}" for item in todo] or ["- nothing"])
    write_text_atomic(OUT / "status.md", "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aggregate-only", action="store_true", help="Run nothing; tables of what finished.")
    parser.add_argument("--data-root", default=os.environ.get("GLOSS_DATA", "../shared/data"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    studies = [(d, loss) for d in DATASETS for loss in LOSSES]
    if not args.aggregate_only:
        for index, (dataset, loss) in enumerate(studies):
            write_status([f"tune {d} {x}" for d, x in studies[:index]],
                         [f"tune {d} {x}" for d, x in studies[index:]] + ["final runs (3 seeds)"])
            tune(dataset, loss, args.data_root)
        write_status([f"tune {d} {x}" for d, x in studies], ["final runs (3 seeds)"])
        step(["gloss", "compare", "--spec", SPEC, "--out", str(OUT), "--data-root", args.data_root,
              "--pair", "gloss+ce:ce"], OUT / "logs" / "compare.log")
        write_status([f"tune {d} {x}" for d, x in studies] + ["final runs (3 seeds)"], [])
    summary = tuned_summary()
    write_text_atomic(OUT / "tuned.json", json.dumps(summary, indent=2) + "\n")
    print(f"measure_tuned: {len(summary)} finished studies; see {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
