r"""One R8 slice trained by 1 process and by 2 data-parallel processes (torchrun, gloo) on the same global
batches; writes both runs' final metrics and their differences.

    GLOSS_DATA=../shared/data python scripts/compare_ddp.py --out results/ddp

Both runs train the same prepared slice with the same options; `--train-layers 0` (the adapter on the frozen
encoder: no dropout) by default, so the two must agree to float precision, not just within seed noise.
Finished runs are kept (rerunning skips them: the stages are up to date).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.atomic import write_text_atomic  # noqa: E402

TRAIN = ["--loss", "gloss+ce", "--sigma", "batch-sqrt", "--epochs", "3", "--batch-size", "32", "--seed", "0"]
COMPARED = ("train_total", "train_ce", "train_g_loss", "val_accuracy", "val_macro_f1")


def call(command: list[str], log: Path) -> float:
    """Runs ``command`` (output appended to ``log``); its wall seconds. Raises on failure."""
    started = time.perf_counter()
    with log.open("a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=True,
                       env=os.environ | {"OMP_NUM_THREADS": "1"})
    return round(time.perf_counter() - started, 1)


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train" / "history.jsonl").read_text().splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/ddp")
    parser.add_argument("--data-root", default=os.environ.get("GLOSS_DATA", "../shared/data"))
    parser.add_argument("--limit", default="1000")
    parser.add_argument("--limit-test", default="444")
    parser.add_argument("--train-layers", default="0")
    args = parser.parse_args()
    out = Path(args.out)
    runs, log = out / "runs", out / "commands.log"
    out.mkdir(parents=True, exist_ok=True)
    train = [*TRAIN, "--train-layers", args.train_layers]
    single, ddp = runs / "one-process", runs / "two-processes"
    if not (single / "prepare").is_dir():
        call(["gloss", "prepare", "--dataset", "R8", "--data-root", args.data_root, "--limit", args.limit,
              "--limit-test", args.limit_test, "--run-dir", str(single)], log)
    if not (ddp / "prepare").is_dir():
        shutil.copytree(single / "prepare", ddp / "prepare")
    seconds = {"one-process": call(["gloss", "train", "--run-dir", str(single), *train], log),
               "two-processes": call([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                      "--master-addr", "127.0.0.1", "--master-port", "29511", "--no-python",
                                      "gloss", "train", "--run-dir", str(ddp), *train], log)}
    for run in (single, ddp):
        call(["gloss", "evaluate", "--run-dir", str(run)], log)
    metrics = {name: json.loads((run / "evaluate" / "metrics.json").read_text()) for name, run in
               (("one-process", single), ("two-processes", ddp))}
    differences = [{key: abs(a[key] - b[key]) for key in COMPARED} | {"epoch": a["epoch"]}
                   for a, b in zip(history(single), history(ddp), strict=True)]
    report = {"command": "python scripts/compare_ddp.py " + " ".join(sys.argv[1:]), "train_options": train,
              "dataset": f"R8, train <= {args.limit}, test <= {args.limit_test}", "wall_seconds": seconds,
              "history_abs_differences": differences,
              "test": {name: {f"{part}_{k}": m[part][k] for part in ("head", "linear_probe")
                              for k in ("accuracy", "macro_f1")} for name, m in metrics.items()},
              "max_history_difference": max(max(v for k, v in d.items() if k != "epoch") for d in differences)}
    write_text_atomic(out / "comparison.json", json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["test"]), "max history difference", report["max_history_difference"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
