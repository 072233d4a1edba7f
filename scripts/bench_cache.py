"""Benchmark the caching step of ``--train-layers N`` across validation splits: how long each split seed waits.

    nice python scripts/bench_cache.py                          # R8, split seeds 0 and 1, --train-layers 1
    python scripts/bench_cache.py --limit 48 --max-length 32    # smoke run
    nice python scripts/bench_cache.py --limit 600 --embed      # also time `gloss embed` after each step

Method: for each ``--split-seeds`` value, ``gloss prepare`` of ``--dataset`` (from ``$GLOSS_DATA``, with that
seed and ``--limit``) into its own run folder, a fresh packaged all-MiniLM-L6-v2 on the CPU, then the caching
step ``gloss train --train-layers N`` runs before its first epoch (:func:`pipeline.training.partial.build_encoder`
on train, val and test, batches of 64 as the train stage's evaluation batches), timed; every seed shares one
fresh private ``GLOSS_CACHE``, as runs on one machine do. ``hits`` are the splits found in the cache. With
``--embed``, the embed stage (``gloss embed``: the corpus sigma of G-Loss) then runs on the same run folder,
timed (``embed_seconds``, ``embed_hits``). The
machine's load average is printed beside the figures (a shared 2-core CPU: other processes slow every step).
Each line printed is one JSON object.
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


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _caching_step(run: Path, args) -> dict:
    from pipeline.artifacts import load_splits, split_texts
    from pipeline.encoder import EncoderConfig, load_encoder
    from pipeline.manifest import load_manifest
    from pipeline.training.partial import build_encoder

    frames, _ = load_splits(load_manifest(run, "prepare"))
    texts = split_texts(frames)
    config = EncoderConfig(max_length=args.max_length, device="cpu")
    model = load_encoder(config)
    load = _load()
    started = time.perf_counter()
    built = build_encoder(model, args.train_layers, config, texts, batch_size=64, echo=lambda _: None)
    return {"seconds": round(time.perf_counter() - started, 1), "hits": built.cache_hits,
            "documents": {split: len(t) for split, t in texts.items()}, "load_before": load, "load_after": _load()}


def _embed_stage(run: Path, args) -> dict:
    from pipeline.encoder import EncoderConfig
    from pipeline.stages import embed

    started = time.perf_counter()
    manifest = embed.run(embed.EmbedConfig(EncoderConfig(max_length=args.max_length, device="cpu")), run,
                         echo=lambda _: None)
    return {"embed_seconds": round(time.perf_counter() - started, 1), "embed_hits": manifest.summary["cached"],
            "load_after_embed": _load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="R8")
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-layers", default="1")
    parser.add_argument("--embed", action="store_true", help="time the embed stage after the caching step")
    args = parser.parse_args()
    from pipeline.stages import prepare

    data_root = os.environ.get("GLOSS_DATA", str(ROOT.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GLOSS_CACHE"] = str(Path(tmp) / "cache")
        for seed in args.split_seeds:
            run = Path(tmp) / f"split{seed}"
            config = prepare.PrepareConfig(args.dataset, data_root, seed=seed, limit=args.limit)
            prepare.run(config, run, echo=lambda _: None)
            record = {"dataset": args.dataset, "split_seed": seed, "limit": args.limit, "max_length": args.max_length,
                      "train_layers": args.train_layers, **_caching_step(run, args)}
            if args.embed:
                record.update(_embed_stage(run, args))
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
