r"""Benchmark of ``gloss predict --predictor lpa`` (inductive): milliseconds per new text after loading.

    python scripts/bench_predict.py                  # training sets of 11,314 (20ng-sized) and 100,000 rows
    python scripts/bench_predict.py --quick          # 2,000 rows, a few texts
    python scripts/bench_predict.py > results/bench_predict.json

Training set: seeded synthetic embeddings, ``[N, 384]`` float32 around 20 class centres (the shape of the
packaged MiniLM's embeddings of 20 Newsgroups' training split; 100k rows for a large corpus). Loading (not
timed per text): the packaged ``all-MiniLM-L6-v2`` encoder and label spreading over the k-NN graph of the
training set (``k`` = 10), exactly what :class:`pipeline.predict.Predictor` does when a run is loaded.

Per text (timed): one text at a time, the encoder's embedding (max length 128, CPU unless ``--device``) plus
the predictor's kNN search of the training set and the weighted vote of the neighbours' spread scores. Texts are
the first ``--texts`` documents of ``$GLOSS_DATA/20ng/test.csv`` when it exists, else synthetic sentences.
Output: one JSON object with, per training-set size, the load time and the median / p90 / mean ms per text,
and whether each median meets the goal (under 1000 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_MS = 1000.0
DIM, CLASSES, K = 384, 20, 10


def _texts(count: int) -> list[str]:
    path = Path(os.environ.get("GLOSS_DATA", "")) / "20ng" / "test.csv"
    if path.is_file():
        import pandas as pd

        return pd.read_csv(path, keep_default_na=False)["text"].head(count).tolist()
    return [f"synthetic document {i} about topic {i % CLASSES} and its many words" for i in range(count)]


def _setup(rows: int, seed: int = 0):
    from pipeline.artifacts import PredictionSetup

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, rows)
    centres = rng.normal(size=(CLASSES, DIM)).astype(np.float32)
    embeddings = (centres[labels] + 2.0 * rng.normal(size=(rows, DIM))).astype(np.float32)
    return PredictionSetup([f"class{c}" for c in range(CLASSES)], embeddings, labels,
                           chosen={"lpa-inductive": {"k": K, "alpha": None}})


def bench(rows: int, texts: list[str], model) -> dict:
    from pipeline.encoder import embed_texts
    from pipeline.predict import Predictor

    setup = _setup(rows)
    start = time.perf_counter()
    predictor = Predictor("lpa-inductive", setup)  # label spreading over the training graph
    load_s = time.perf_counter() - start
    embed_texts(model, texts[:1])  # warm-up
    times = []
    for text in texts:
        start = time.perf_counter()
        probabilities = predictor.probabilities(embed_texts(model, [text]))
        times.append((time.perf_counter() - start) * 1000)
        assert probabilities.shape == (1, CLASSES)
    median = statistics.median(times)
    return {"training_rows": rows, "dim": DIM, "k": K, "texts": len(texts), "load_s": round(load_s, 2),
            "median_ms_per_text": round(median, 1), "p90_ms_per_text": round(float(np.percentile(times, 90)), 1),
            "mean_ms_per_text": round(statistics.mean(times), 1), "meets_goal": median < GOAL_MS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--texts", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from pipeline.encoder import EncoderConfig, load_encoder

    sizes = [2000] if args.quick else [11314, 100000]
    texts = _texts(5 if args.quick else args.texts)
    model = load_encoder(EncoderConfig(max_length=128, device=args.device))
    results = [bench(rows, texts, model) for rows in sizes]
    print(json.dumps({"benchmark": "predict inductive lpa", "goal_ms_per_text": GOAL_MS, "results": results,
                      "device": args.device, "machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "loadavg": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
