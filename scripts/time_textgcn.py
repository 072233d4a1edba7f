r"""Times one TextGCN training epoch with each implementation on the same graph.

    python scripts/time_textgcn.py --dataset R8 --epochs 5 --repeats 3

An epoch is what :func:`pipeline.baselines.textgcn.train_textgcn` does: a training forward pass with
dropout, backward, an Adam step, and an evaluation forward pass. Implementations:

* ``sparse``: :class:`graphs.models.TextGCN` on the precomputed normalised CSR adjacency
  (:func:`graphs.models.symmetric_spmm`), naive epoch (two forward passes);
* ``sparse-shared``: the same model as the training loop drives it (the evaluation pass's first-layer
  product is reused by the next training step, one large product fewer per epoch);
* ``pyg-sparse``: :class:`graphs.models.TextGCNPyG` (``GCNConv``, ``cached=True``) on a torch sparse raw
  adjacency;
* ``pyg-edge-index``: the same on ``edge_index`` / ``edge_weight`` (materialises an ``[E, 200]`` message
  tensor; skipped when that would exceed ``--max-message-gb``).

Repeats are interleaved across implementations so that load from other processes hits all of them alike.
Prints one JSON line with the median wall and CPU (``time.process_time``, all threads) seconds per epoch of
each; on a shared machine the CPU seconds are the steadier measure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphs.models import TextGCN, TextGCNPyG, get_spmm_backend  # noqa: E402
from pipeline import options  # noqa: E402
from pipeline.baselines.textgcn import build_textgcn_graph  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default=os.environ.get("GLOSS_DATA", "data"))
    p.add_argument("--epochs", type=int, default=5, help="epochs per timed block")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-message-gb", type=float, default=4.0)
    p.add_argument("--hidden", type=int, default=options.GCN_HIDDEN)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    root = Path(args.data_root) / args.dataset
    train = pd.read_csv(root / "train.csv", keep_default_na=False, dtype=str)
    test = pd.read_csv(root / "test.csv", keep_default_na=False, dtype=str)
    graph, _, _ = build_textgcn_graph([*train["text"], *test["text"]], args.dataset)
    classes = sorted(set(train["label"]))
    y = torch.tensor([classes.index(c) for c in train["label"]])
    n_train = len(train)
    tr_nodes = torch.arange(n_train)

    inputs = {
        "sparse": (graph.to_torch_sparse(),),
        "pyg-sparse": (graph.to_torch_sparse(normalized=False),),
    }
    message_gb = (graph.num_edges + graph.num_nodes) * args.hidden * 4 / 2**30
    if message_gb <= args.max_message_gb:
        inputs["pyg-edge-index"] = graph.to_edge_index()

    def make(name: str) -> torch.nn.Module:
        torch.manual_seed(0)
        cls = TextGCN if name.startswith("sparse") else TextGCNPyG
        return cls(graph.num_nodes, len(classes), args.hidden)

    names = ["sparse", "sparse-shared", *[n for n in inputs if n != "sparse"]]
    models = {n: make(n) for n in names}
    opts = {n: torch.optim.Adam(m.parameters(), lr=options.GCN_LR) for n, m in models.items()}
    state: dict[str, torch.Tensor] = {}

    def epoch(name: str) -> None:
        model, opt = models[name], opts[name]
        args_in = inputs["sparse" if name.startswith("sparse") else name]
        model.train()
        if name == "sparse-shared":
            if "h1" not in state:
                state["h1"] = model.first_layer(*args_in)
            out = model(*args_in, state["h1"])
        else:
            out = model(*args_in)
        loss = F.cross_entropy(out[tr_nodes], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()
        if name == "sparse-shared":
            state["h1"] = model.first_layer(*args_in)
            with torch.no_grad():
                model(*args_in, state["h1"].detach())
        else:
            with torch.no_grad():
                model(*args_in)

    for name in names:  # warm-up (builds the GCNConv caches)
        epoch(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.epochs):
                epoch(name)
            times[name].append((time.perf_counter() - t0) / args.epochs)
            cpu[name].append((time.process_time() - c0) / args.epochs)
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "num_nodes": graph.num_nodes,
                "num_edges": graph.num_edges,
                "torch_threads": torch.get_num_threads(),
                "epochs_per_block": args.epochs,
                "repeats": args.repeats,
                "seconds_per_epoch_median": {n: statistics.median(t) for n, t in times.items()},
                "cpu_seconds_per_epoch_median": {n: statistics.median(t) for n, t in cpu.items()},
                "seconds_per_epoch_all": times,
                "spmm_kernel": get_spmm_backend(),
                "skipped": []
                if "pyg-edge-index" in inputs
                else [f"pyg-edge-index (messages {message_gb:.1f} GB)"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
