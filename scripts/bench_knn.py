r"""Benchmark of exact kNN graphs: FAISS and torch top-k (both through :mod:`graphs.knn`) against
scikit-learn's brute-force ``NearestNeighbors(algorithm="brute", metric="cosine")``.

    python scripts/bench_knn.py                 # N = 10k, 18,846 (20ng_like), 50k, 100k; dim 384, k = 10
    python scripts/bench_knn.py --quick         # N = 2k, 5k
    python scripts/bench_knn.py > results/bench_knn.jsonl

Data: seeded standard-normal float32 rows, L2-normalised (the same rows for every backend of one N).
Each run builds the directed kNN graph end to end (``knn_graph`` for FAISS / torch: normalisation, search
with the node itself excluded, the ``[2, N k]`` edge index; for scikit-learn: ``fit`` + ``kneighbors`` with
k + 1 neighbours, self dropped, edge index).

Memory: every (backend, N) runs in a fresh subprocess, which reports ``ru_maxrss`` (peak resident set)
once the data exists (``rss_before_mb``) and after the search (``peak_rss_mb``); ``search_peak_mb`` is the
difference, the extra memory the search needed at its peak. tracemalloc would miss torch's and FAISS's
native allocations, hence the fresh process.

Agreement: for every backend the cosine similarities of each node's k neighbours are recomputed in float64
from the same data and sorted; they must equal FAISS's within 1e-5 (ties between equally similar
neighbours may be broken differently, so sets are compared by value). The share of nodes whose index sets
are identical is reported too.

Output: one JSON object per line (per run, with ``os.getloadavg()`` before and after, since the machine
is shared), then a summary object (``"summary": true``) checking the targets: the 20ng-sized graph in under
5 s with FAISS, and FAISS at least 3x faster than scikit-learn at N = 100k.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"10k": 10_000, "20ng_like": 18_846, "50k": 50_000, "100k": 100_000}
QUICK_SIZES = {"2k": 2_000, "5k": 5_000}
BACKENDS = ("faiss", "torch", "sklearn")
TOLERANCE = 1e-5


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_data(n: int, dim: int, seed: int) -> np.ndarray:
    """Seeded L2-normalised float32 rows. Shapes: [n, dim]."""
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _sklearn_graph(x: np.ndarray, k: int) -> np.ndarray:
    """k neighbours of every row (self dropped) with scikit-learn brute force. Shapes: [N, D] -> [N, k]."""
    from sklearn.neighbors import NearestNeighbors

    _, idx = (
        NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric="cosine").fit(x).kneighbors(x)
    )  # [N, k+1]
    n = len(x)
    is_self = idx == np.arange(n)[:, None]  # [N, k+1]
    is_self[~is_self.any(axis=1), -1] = True  # self pushed out by duplicates: drop the farthest instead
    nbr = idx[~is_self].reshape(n, k)  # [N, k]
    np.stack([nbr.reshape(-1), np.repeat(np.arange(n), k)])  # the [2, N k] edge index, as knn_graph returns
    return nbr


def worker(backend: str, n: int, dim: int, k: int, seed: int, result: str) -> None:
    """One run in this (fresh) process: print a JSON line, save the neighbours to ``result``."""
    sys.path.insert(0, str(ROOT))
    import torch

    from graphs.knn import knn_graph

    threads = {"torch": torch.get_num_threads()}
    try:
        import faiss

        threads["faiss_omp"] = faiss.omp_get_max_threads()
    except ImportError:  # pragma: no cover
        pass
    if backend == "sklearn":
        import sklearn.neighbors  # noqa: F401  (import outside the timing, like torch and faiss)
    x = make_data(n, dim, seed)
    rss_before = _rss_mb()
    load_before = os.getloadavg()
    started = time.perf_counter()
    if backend == "sklearn":
        nbr = _sklearn_graph(x, k)
    else:
        edge_index = knn_graph(torch.from_numpy(x), k, metric="cosine", backend=backend)  # [2, N k]
        nbr = edge_index[0].view(n, k).numpy()  # rows sorted by target: the neighbours of node i
    seconds = time.perf_counter() - started
    peak = _rss_mb()
    np.save(result, nbr.astype(np.int64))
    print(
        json.dumps(
            {
                "backend": backend,
                "n": n,
                "dim": dim,
                "k": k,
                "seconds": round(seconds, 3),
                "rss_before_mb": round(rss_before, 1),
                "peak_rss_mb": round(peak, 1),
                "search_peak_mb": round(peak - rss_before, 1),
                "threads": threads,
                "load_before": [round(v, 2) for v in load_before],
                "load_after": [round(v, 2) for v in os.getloadavg()],
            }
        )
    )


def sorted_similarities(x: np.ndarray, nbr: np.ndarray, block: int = 8192) -> np.ndarray:
    """Cosine similarity of every node to its neighbours in float64, sorted descending. Shapes: [N, k]."""
    out = np.empty(nbr.shape, dtype=np.float64)
    for start in range(0, len(x), block):
        q = x[start : start + block].astype(np.float64)  # [b, D]
        sims = np.einsum("bd,bkd->bk", q, x[nbr[start : start + block]].astype(np.float64))  # [b, k]
        out[start : start + block] = -np.sort(-sims, axis=1)
    return out


def compare(x: np.ndarray, reference: np.ndarray, other: np.ndarray) -> dict:
    """Agreement of two ``[N, k]`` neighbour lists: by sorted similarity values, and by exact index sets."""
    diff = np.abs(sorted_similarities(x, reference) - sorted_similarities(x, other)).max()
    same_sets = (np.sort(reference, axis=1) == np.sort(other, axis=1)).all(axis=1).mean()
    no_self = bool((other != np.arange(len(x))[:, None]).all())
    return {
        "max_similarity_diff": float(diff),
        "same_index_sets": float(same_sets),
        "self_excluded": no_self,
        "agree": bool(diff <= TOLERANCE and no_self),
    }


def run_one(backend: str, n: int, args, tmp: Path) -> tuple[dict, np.ndarray]:
    result = tmp / f"{backend}-{n}.npy"
    command = [
        sys.executable,
        __file__,
        "--worker",
        backend,
        "--n",
        str(n),
        "--dim",
        str(args.dim),
        "--k",
        str(args.k),
        "--seed",
        str(args.seed),
        "--result",
        str(result),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {backend} n={n} failed:\n{done.stderr}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return record, np.load(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 2k and 5k only.")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.dim, args.k, args.seed, args.result)
        return

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "faiss" not in backends:
        backends.insert(0, "faiss")  # the reference of the agreement check
    sizes = QUICK_SIZES if args.quick else SIZES
    started = time.perf_counter()
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_start": [round(v, 2) for v in os.getloadavg()],
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_knn-") as tmp:
        for case, n in sizes.items():
            x = make_data(n, args.dim, args.seed)
            reference = None
            for backend in backends:
                record, nbr = run_one(backend, n, args, Path(tmp))
                if reference is None:
                    reference = nbr
                record = {"case": case, **record, **compare(x, reference, nbr)}
                rows.append(record)
                print(json.dumps(record), flush=True)

    def seconds(backend: str, case: str) -> float | None:
        return next((r["seconds"] for r in rows if r["backend"] == backend and r["case"] == case), None)

    command = "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    summary: dict = {
        "summary": True,
        "command": command,
        "quick": args.quick,
        "dim": args.dim,
        "k": args.k,
        "machine": machine,
        "load_end": [round(v, 2) for v in os.getloadavg()],
        "all_agree": all(r["agree"] for r in rows),
        "seconds": {case: {b: seconds(b, case) for b in backends} for case in sizes},
        "peak_mb": {
            case: {r["backend"]: r["search_peak_mb"] for r in rows if r["case"] == case} for case in sizes
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if not args.quick:
        faiss_20ng = seconds("faiss", "20ng_like")
        summary["target_20ng_faiss_under_5s"] = {
            "seconds": faiss_20ng,
            "met": faiss_20ng is not None and faiss_20ng < 5,
        }
        f, s = seconds("faiss", "100k"), seconds("sklearn", "100k")
        ratio = round(s / f, 2) if f and s else None
        summary["target_faiss_3x_sklearn_100k"] = {"speedup": ratio, "met": ratio is not None and ratio >= 3}
    print(json.dumps(summary), flush=True)
    if not summary["all_agree"]:
        raise SystemExit("bench_knn: the backends disagree on the neighbours (see the lines above)")


if __name__ == "__main__":
    main()
