r"""Runs the TextGCN baseline on one benchmark for several seeds and writes a JSON summary.

    python scripts/run_textgcn.py --dataset R8 --seeds 0 1 2 --out results/textgcn/R8.json

Data: ``$GLOSS_DATA/<dataset>/{train,test}.csv`` (``--data-root`` overrides). The validation set is a
stratified 10% of train drawn with ``--split-seed`` (0), fixed across model seeds; the graph is built once
and shared by the seeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphs.text.graph import PAIR_COUNTS  # noqa: E402
from pipeline.baselines.textgcn import (  # noqa: E402
    MODEL_BACKENDS,
    SELECTS,
    TextGCNConfig,
    build_textgcn_graph,
    stratified_val_split,
    train_textgcn,
)
from pipeline.resources import peak_rss_mb  # noqa: E402


def git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


_JOB: dict = {}


def _run_seed(seed: int) -> dict:
    args, config, graph, tr, va, test = (_JOB[k] for k in ("args", "config", "graph", "tr", "va", "test"))
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res = train_textgcn(
        tr["text"].tolist(),
        tr["label"].tolist(),
        va["text"].tolist(),
        va["label"].tolist(),
        test["text"].tolist(),
        test["label"].tolist(),
        args.dataset,
        seed,
        config,
        graph=graph,
        log_every=args.log_every,
    )
    run = {
        "seed": seed,
        "test_accuracy": res.test_accuracy,
        "test_macro_f1": res.test_macro_f1,
        "best_epoch": res.best_epoch,
        "stopped_epoch": res.stopped_epoch,
        "last_epoch_test_accuracy": res.last_test_accuracy,
        "last_epoch_test_macro_f1": res.last_test_macro_f1,
        "best_val_loss": min(r["val_loss"] for r in res.history),
        "best_epoch_val_acc": res.history[res.best_epoch - 1]["val_acc"],
        "seconds_per_epoch": res.seconds_per_epoch,
        "train_seconds": res.train_seconds,
        "wall_seconds": time.perf_counter() - t0,
        "peak_memory_mb": res.peak_memory_mb,
    }
    if not args.no_history:
        run["history"] = res.history
    print(
        f"[{args.dataset}] seed {seed}: test acc {res.test_accuracy:.4f} (best epoch {res.best_epoch}, "
        f"stopped {res.stopped_epoch}; at stop {res.last_test_accuracy:.4f}) "
        f"macro-F1 {res.test_macro_f1:.4f}",
        flush=True,
    )
    return run


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-root", default=os.environ.get("GLOSS_DATA", "data"))
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--val-size", type=float, default=0.1)
    d = TextGCNConfig()  # the defaults
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--early-stopping", type=int, default=d.early_stopping, help="0 disables early stopping")
    p.add_argument("--select", choices=SELECTS, default=d.select)
    p.add_argument("--window-size", type=int, default=d.window_size)
    p.add_argument("--pair-count", choices=PAIR_COUNTS, default=d.pair_count)
    p.add_argument("--min-count", type=int, default=d.min_count)
    p.add_argument("--backend", choices=MODEL_BACKENDS, default=d.backend)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (per seed process)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many seeds at once in forked processes that share the built graph",
    )
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--no-history", action="store_true", help="omit per-epoch histories from the JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    commit = git_commit()  # at start: the code that runs (later edits must not change the record)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    root = Path(args.data_root) / args.dataset
    train = pd.read_csv(root / "train.csv", keep_default_na=False, dtype=str)
    test = pd.read_csv(root / "test.csv", keep_default_na=False, dtype=str)
    tr_idx, va_idx = stratified_val_split(train["label"].tolist(), args.val_size, args.split_seed)
    tr, va = train.iloc[tr_idx], train.iloc[va_idx]
    texts = [*tr["text"], *va["text"], *test["text"]]
    graph, clean_s, build_s = build_textgcn_graph(
        texts,
        args.dataset,
        min_count=args.min_count,
        window_size=args.window_size,
        pair_count=args.pair_count,
    )
    print(
        f"[{args.dataset}] graph: {graph.num_nodes} nodes ({graph.num_words} words), "
        f"{graph.num_edges} edges, "
        f"clean {clean_s:.1f}s, build {build_s:.1f}s",
        flush=True,
    )

    config = TextGCNConfig(
        epochs=args.epochs,
        lr=args.lr,
        hidden=args.hidden,
        dropout=args.dropout,
        weight_decay=args.weight_decay,
        early_stopping=args.early_stopping or None,
        select=args.select,
        window_size=args.window_size,
        pair_count=args.pair_count,
        min_count=args.min_count,
        backend=args.backend,
    )
    job = {"args": args, "config": config, "graph": graph, "tr": tr, "va": va, "test": test}
    if args.jobs > 1 and len(args.seeds) > 1:
        _JOB.update(job)  # inherited by the forked workers: the graph is built once
        with mp.get_context("fork").Pool(min(args.jobs, len(args.seeds))) as pool:
            runs = pool.map(_run_seed, args.seeds)
    else:
        _JOB.update(job)
        runs = [_run_seed(seed) for seed in args.seeds]

    def stats(key: str) -> dict[str, float]:
        vals = np.array([r[key] for r in runs], dtype=float)
        return {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}

    out = {
        "method": "TextGCN",
        "dataset": args.dataset,
        "seeds": args.seeds,
        "test_accuracy": stats("test_accuracy"),
        "test_macro_f1": stats("test_macro_f1"),
        "last_epoch_test_accuracy": stats("last_epoch_test_accuracy"),
        "std_note": "sample standard deviation (ddof=1) over seeds",
        "selection": f"test scores at the epoch with the best {args.select}; early stopping as in TextGCN "
        f"(val loss above the mean of the previous {args.early_stopping} epochs)",
        "graph": {
            "num_docs": graph.num_docs,
            "num_words": graph.num_words,
            "num_nodes": graph.num_nodes,
            "num_edges": graph.num_edges,
            "num_windows": graph.num_windows,
            "clean_seconds": clean_s,
            "build_seconds": build_s,
        },
        "split": {
            "train": len(tr),
            "val": len(va),
            "test": len(test),
            "split_seed": args.split_seed,
            "val_size": args.val_size,
        },
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": runs,
        "peak_memory_mb": max([peak_rss_mb(), *[r["peak_memory_mb"] for r in runs]]),
        "peak_memory_note": "ru_maxrss of the process(es) that built the graph and trained (max over them)",
        "wall_seconds": time.perf_counter() - t_start,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_commit": commit,
        "git_note": "HEAD when the run started; '-dirty' means tracked files differed from it",
        "started": started,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"[{args.dataset}] mean test acc {out['test_accuracy']['mean']:.4f} "
        f"± {out['test_accuracy']['std']:.4f}"
        f" -> {args.out}",
        flush=True,
    )
    return out


if __name__ == "__main__":
    main()
