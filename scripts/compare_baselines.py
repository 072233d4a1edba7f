r"""Answers "does graph-guided fine-tuning beat the graph baselines?" in one command: runs what the sweep
specs are missing (fine-tuning losses and TextGCN on slices, BertGCN from the CE runs, TextGCN on the full
benchmarks), then writes one comparison of every finished run.

    GLOSS_DATA=../shared/data python scripts/compare_baselines.py              # run + aggregate
    python scripts/compare_baselines.py --aggregate-only                        # tables from finished runs

Each spec's sweep keeps its runs and logs under its own output folder (finished runs are skipped, a killed
sweep continues); the combined table, results.json and plots go to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.compare.spec import read_spec  # noqa: E402
from pipeline.compare.stage import run_compare  # noqa: E402
from pipeline.compare.sweep import is_finished  # noqa: E402
from pipeline.errors import GlossError  # noqa: E402

# (spec, sweep output folder), in the order they must run: BertGCN starts from the CE runs of the first.
SWEEPS = (
    ("scripts/sweep_finetune.toml", "results/compare"),
    ("scripts/sweep_bertgcn.toml", "results/compare"),
    ("scripts/sweep_seeds.toml", "results/compare"),
    ("scripts/sweep_textgcn.toml", "results/sweeps/textgcn"),
)


# Small per-run files worth committing beside the table (runs/ itself holds models and embeddings).
KEPT = ("prepare/manifest.json", "train/manifest.json", "train/history.jsonl", "evaluate/metrics.json")


def keep_metrics(run_dirs: list[str], out: Path) -> None:
    """Copies each run's manifests, training history and metrics to ``out/<run>[-train<limit>]/``
    (atomically; the suffix keeps a slice's run apart from the full dataset's run of the same name)."""
    from pipeline.atomic import write_text_atomic
    from pipeline.manifest import load_manifest

    for run_dir in map(Path, run_dirs):
        limit = load_manifest(run_dir, "prepare").config.get("limit")
        folder = out / (run_dir.name + (f"-train{limit}" if limit else ""))
        for name in KEPT:
            source = run_dir / name
            if source.is_file():
                target = folder / name.replace("/", "-")
                target.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(target, source.read_text())


def grouped_by_dataset(run_dirs: list[str]) -> list[str]:
    """A stable reordering that keeps each dataset's (or slice's) runs together, in first-seen order."""
    from pipeline.compare.aggregate import dataset_label
    from pipeline.manifest import load_manifest

    labels = {d: dataset_label(load_manifest(d, "prepare").config) for d in run_dirs}
    first = {label: i for i, label in reversed(list(enumerate(labels.values())))}
    return sorted(run_dirs, key=lambda d: first[labels[d]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/compare", help="Folder of the combined table and plots.")
    parser.add_argument("--aggregate-only", action="store_true", help="Run nothing; compare finished runs.")
    parser.add_argument("--data-root", default=os.environ.get("GLOSS_DATA"))
    parser.add_argument("--pair", default="gloss+ce:ce")
    args = parser.parse_args()
    try:
        if not args.aggregate_only:
            for spec, out in SWEEPS:
                run_compare(spec, [], out, args.data_root, args.pair, echo=print)
        # The specs' order (datasets, then methods, then seeds) is the table's order.
        run_dirs = [str(Path(out) / "runs" / run.run_name) for spec, out in SWEEPS for run in read_spec(spec)]
        run_dirs = [d for d in dict.fromkeys(run_dirs) if is_finished(Path(d))]
        run_dirs = grouped_by_dataset(run_dirs)
        result = run_compare(None, run_dirs, args.out, args.data_root, args.pair, echo=print)
        keep_metrics(run_dirs, Path(args.out) / "metrics")
    except GlossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"compare_baselines: {len(run_dirs)} runs; wrote {', '.join(result['files'])} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
