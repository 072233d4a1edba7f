"""Benchmark --train-layers: one training epoch slice per mode, same documents, same seed, same batches.

    nice -n 5 python scripts/bench_train.py                    # 256 R8 training documents, length 128
    python scripts/bench_train.py --docs 48 --max-length 32    # smoke run

Method: the first ``--docs`` documents of ``$GLOSS_DATA/R8/train.csv`` (``--val-docs`` more validate), the
packaged all-MiniLM-L6-v2 at ``--max-length``, ``gloss+ce`` (sigma 0.5) with batches of 32, length-bucketed,
seed 0 (``--device``, ``--precision``, ``--compile`` as in ``gloss train``; default CPU, fp32 there). Each mode (``all``, ``2``, ``1``, ``0``) loads a fresh encoder, builds its batch encoder into a
fresh private cache (``cache_seconds``: the cost of computing the frozen part of the training and validation
documents once; ``0`` reads nothing cached either) and runs one epoch of :func:`pipeline.training.loop.fit`;
``docs_per_s`` is the epoch's training documents over its training seconds (validation not counted), as in
``history.jsonl``. Speedups are against ``all`` in the same run. The machine's load average is printed beside
the figures (a shared 2-core CPU: other processes slow every mode). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("all", "2", "1", "0")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _texts(docs: int, val_docs: int):
    import pandas as pd

    root = Path(os.environ.get("GLOSS_DATA", ROOT.parent / "shared" / "data"))
    frame = pd.read_csv(root / "R8" / "train.csv", keep_default_na=False, dtype=str)
    names = sorted(frame["label"].unique())
    labels = frame["label"].map({n: i for i, n in enumerate(names)}).to_numpy()
    texts = frame["text"].tolist()
    return texts[:docs], labels[:docs], texts[docs : docs + val_docs], labels[docs : docs + val_docs], len(names)


def bench_mode(mode: str, data, args) -> dict:
    import torch

    from pipeline.encoder import EncoderConfig, load_encoder
    from pipeline.training.loop import Checkpoints, FitCallbacks, FitData, LoopConfig, fit
    from pipeline.training.objectives import Objective, ObjectiveConfig
    from pipeline.training.partial import build_encoder

    train_texts, train_labels, val_texts, val_labels, classes = data
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["GLOSS_CACHE"] = str(Path(scratch) / "cache")
        torch.manual_seed(0)
        config = EncoderConfig(max_length=args.max_length, device=args.device)
        model = load_encoder(config)
        load_before = _load()
        started = time.perf_counter()
        built = build_encoder(model, mode, config, {"train": train_texts, "val": val_texts}, 64, echo=lambda _: None)
        cache_seconds = time.perf_counter() - started
        head = torch.nn.Linear(model.get_embedding_dimension(), classes).to(model.device)
        objective = Objective(ObjectiveConfig(loss="gloss+ce", sigma=0.5), classes, seed=0).to(model.device)
        loop = LoopConfig(epochs=1, batch_size=32, seed=0, eval_batch_size=64, compile=args.compile,
                          precision=args.precision)
        result = fit(model, head, objective, FitData(train_texts, train_labels, val_texts, val_labels), loop,
                     Checkpoints(Path(scratch) / "ckpt"), encoder=built.encoder,
                     callbacks=FitCallbacks(echo=lambda _: None, progress=False))
    record = result.history[0]
    cached_docs = len(train_texts) + len(val_texts)
    out = {"docs_per_s": record["docs_per_second"], "train_seconds": record["train_seconds"],
           "mean_padded_length": record["mean_padded_length"], "train_total": round(record["train_total"], 4),
           "cache_seconds": round(cache_seconds, 2),
           "cache_docs_per_s": round(cached_docs / cache_seconds, 2) if mode != "all" else None,
           "load_before": load_before, "load_after": _load()}
    print(json.dumps({"mode": mode, **out}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=256, help="training documents (an epoch slice of R8)")
    parser.add_argument("--val-docs", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--compile", action="store_true", help="torch.compile the trained part (measured, not assumed)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16 (--precision of gloss train)")
    args = parser.parse_args()
    import torch

    data = _texts(args.docs, args.val_docs)
    modes = {mode: bench_mode(mode, data, args) for mode in args.modes.split(",")}
    summary = {"docs": args.docs, "val_docs": args.val_docs, "max_length": args.max_length, "batch_size": 32,
               "loss": "gloss+ce", "seed": 0, "device": args.device, "precision": args.precision,
               "compile": args.compile,
               "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "docs_per_s": {m: r["docs_per_s"] for m, r in modes.items()},
               "cache_seconds": {m: r["cache_seconds"] for m, r in modes.items() if m != "all"},
               "cache_docs_per_s": {m: r["cache_docs_per_s"] for m, r in modes.items() if m != "all"},
               "mean_padded_length": modes[next(iter(modes))]["mean_padded_length"],
               "load_average": [min(r["load_before"] for r in modes.values()),
                                max(r["load_after"] for r in modes.values())]}
    if "all" in modes:
        for mode in modes:
            if mode != "all":
                summary[f"speedup_train_layers{mode}"] = round(modes[mode]["docs_per_s"] / modes["all"]["docs_per_s"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
