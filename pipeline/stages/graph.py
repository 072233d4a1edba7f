"""``gloss graph``: the corpus kNN graph of the pre-trained embeddings (train + val + test), for inspection
and transductive prediction.

Output (``RUN/graph/graph.npz``): ``edge_index`` int64 [2, E] in PyG ``source_to_target`` direction (row 0 =
the neighbour, the source; row 1 = the node that lists it, the target; the direction of ``gloss inspect``'s
``edges.csv``), ``weight`` float32 [E] (the ``cosine`` of :mod:`graphs.edge_weights`: the cosine similarity
of the two ends, unclipped), ``split`` [N] (0 train, 1 val, 2 test), ``label`` int64 [N], ``row`` [N] (row
within its split). Nodes are train rows, then val, then test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import options as defaults
from pipeline.artifacts import SPLITS, load_matrix, load_splits, split_labels
from pipeline.errors import GlossError
from pipeline.manifest import Manifest, StageContext, load_manifest, run_stage

STAGE = "graph"
SPLIT_CODES = {split: code for code, split in enumerate(SPLITS)}  # train 0, val 1, test 2


@dataclass
class GraphConfig:
    k: int = defaults.K
    metric: str = defaults.DEFAULT_METRIC
    backend: str = defaults.DEFAULT_BACKEND


def run(config: GraphConfig, run_dir: str | Path, force: bool = False, echo=print) -> Manifest:
    if config.k < 1:
        raise GlossError(f"--k must be at least 1 (got {config.k})")
    prepared = load_manifest(run_dir, "prepare")
    documents = sum(prepared.summary.get("rows", {}).values())
    if 0 < documents <= config.k:
        raise GlossError(
            f"--k {config.k}: {prepared.stage_dir} has {documents} documents (train + val + test), so at most "
            f"{documents - 1} neighbours each; lower --k"
        )
    embedded = load_manifest(run_dir, "embed")

    def body(ctx: StageContext) -> dict:
        import torch

        from graphs.edge_weights import edge_cosine
        from graphs.knn import knn_graph

        labels = split_labels(load_splits(prepared)[0])
        parts = [load_matrix(embedded.output(f"embeddings_{s}.npy"), len(labels[s]), split=s) for s in SPLIT_CODES]
        x = torch.nn.functional.normalize(torch.from_numpy(np.concatenate(parts)), dim=-1)  # [N, D]
        edge_index = knn_graph(x, config.k, metric=config.metric, backend=config.backend)  # [2, N*k]
        weight = edge_cosine(x, edge_index)  # [E] cosine similarity
        split = np.concatenate([np.full(len(p), code) for p, code in zip(parts, SPLIT_CODES.values(), strict=True)])
        label = np.concatenate([labels[s] for s in SPLIT_CODES])
        row = np.concatenate([np.arange(len(p)) for p in parts])
        same = label[edge_index[0].numpy()] == label[edge_index[1].numpy()]
        with open(ctx.output("graph.npz", nodes=len(label), edges=int(edge_index.shape[1])), "wb") as handle:
            np.savez(handle, edge_index=edge_index.numpy(), weight=weight.numpy().astype(np.float32),
                     split=split.astype(np.int8), label=label.astype(np.int64), row=row.astype(np.int64))
        return {"nodes": int(len(label)), "edges": int(edge_index.shape[1]), "k": config.k,
                "edge_homophily": float(same.mean())}

    return run_stage(run_dir, STAGE, asdict(config), body, upstream={"prepare": prepared, "embed": embedded},
                     force=force, echo=echo)
