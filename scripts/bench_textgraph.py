r"""Benchmarks the TextGCN graph builder: one JSON line per dataset.

    python scripts/bench_textgraph.py [--datasets mr R8 R52 ohsumed 20ng] [--pair-count windows]

Every dataset is built in a fresh Python subprocess, so that ``peak_rss_mb`` (the subprocess's
``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is the honest peak of reading the CSVs, cleaning, building and
normalising that dataset's graph alone (including the interpreter and imported libraries, about 0.3 GB).
Data: ``$GLOSS_DATA/<dataset>/{train,test}.csv`` (``--data-root`` overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATASETS = ["mr", "R8", "R52", "ohsumed", "20ng"]


def bench_one(name: str, data_root: str, pair_count: str) -> dict:
    import resource

    import pandas as pd

    from graphs.text import build_text_graph, clean_corpus, cleaning_defaults

    t0 = time.perf_counter()
    root = Path(data_root) / name
    train = pd.read_csv(root / "train.csv", keep_default_na=False, dtype=str)
    test = pd.read_csv(root / "test.csv", keep_default_na=False, dtype=str)
    t1 = time.perf_counter()
    docs = clean_corpus([*train["text"], *test["text"]], **cleaning_defaults(name))
    t2 = time.perf_counter()
    graph = build_text_graph(docs, pair_count=pair_count)
    t3 = time.perf_counter()
    adj = graph.normalized_adjacency()
    t4 = time.perf_counter()
    n_docs = graph.num_docs
    a = graph.adjacency
    word_word = int(a[n_docs:, n_docs:].nnz)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "dataset": name,
        "pair_count": pair_count,
        "docs": n_docs,
        "words": graph.num_words,
        "nodes": graph.num_nodes,
        "edges": graph.num_edges // 2,
        "edges_word_word": word_word // 2,
        "edges_doc_word": (graph.num_edges - word_word) // 2,
        "adjacency_nnz": int(adj.nnz),
        "windows": graph.num_windows,
        "tokens": int(sum(len(d) for d in docs)),
        "read_seconds": round(t1 - t0, 2),
        "clean_seconds": round(t2 - t1, 2),
        "graph_seconds": round(t3 - t2, 2),
        "normalize_seconds": round(t4 - t3, 2),
        "build_seconds": round(t4 - t1, 2),
        "peak_rss_mb": round(rss / 2**20 if sys.platform == "darwin" else rss / 1024, 1),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--data-root", default=os.environ.get("GLOSS_DATA", "data"))
    p.add_argument("--pair-count", choices=["windows", "positions"], default="windows")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one dataset in this process
    args = p.parse_args()
    if args.one:
        print(json.dumps(bench_one(args.one, args.data_root, args.pair_count)), flush=True)
        return
    for name in args.datasets:
        if not (Path(args.data_root) / name / "train.csv").exists():
            print(json.dumps({"dataset": name, "skipped": f"not found under {args.data_root}"}), flush=True)
            continue
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--data-root",
            args.data_root,
            "--pair-count",
            args.pair_count,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
