"""``gloss embed``: pre-trained embeddings of train/val/test, and the sigma heuristics computed on them.

Outputs (``RUN/embed/``): ``embeddings_{train,val,test}.npy`` (float32 [N, D]; ``--no-test``: train and val only,
the test texts never read, as tuning needs) and ``sigma.json`` with the
paper's ``sqrt`` heuristic (sqrt(median pairwise distance / 3)) and the reference code's ``dicm``
(smallest distance between differently labelled points / 3), on L2-normalised training embeddings.

The embeddings are read from, or written to, the shared cache (:mod:`pipeline.cache`, kind ``embeddings``)
keyed by the encoder files' hash, pooling, max length, precision (float32 on CPU, float16 autocast on CUDA)
and the sha256 of the texts, so every run on the same data reuses them; ``train`` and ``val`` share one entry
of their union (:mod:`pipeline.cache_groups`), so every validation split of a dataset reads the one the
first wrote, and a ``--train-layers N`` run fills the same entries while it caches its frozen layers. The
stage still writes its outputs into ``RUN/embed/``. The encoder is loaded only when something is missing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import cache, options
from pipeline.artifacts import SPLITS, load_splits
from pipeline.encoder import (
    EncoderConfig,
    cached_split_embeddings,
    load_encoder,
    resolve_device,
    resolve_model_path,
)
from pipeline.manifest import Manifest, StageContext, load_manifest, run_stage

STAGE = "embed"


@dataclass
class EmbedConfig:
    encoder: EncoderConfig
    batch_size: int = options.EVAL_BATCH_SIZE
    test: bool = True  # False: train and val only (what tuning needs: the corpus sigma), the test texts never read

    def identity(self) -> dict:
        """The stage config; ``test`` only when off, so runs written before it keep their hash."""
        out = asdict(self)
        if self.test:
            del out["test"]
        return out


def sigma_heuristics(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    import torch

    from graphs.sigma import sigma_dicm, sigma_sqrt_median

    x = torch.nn.functional.normalize(torch.from_numpy(embeddings).double(), dim=-1)
    y = torch.from_numpy(np.array(labels))
    return {"sqrt": float(sigma_sqrt_median(x)), "dicm": float(sigma_dicm(x, y)), "on": "l2-normalised train embeddings"}


def run(config: EmbedConfig, run_dir: str | Path, force: bool = False, echo=print) -> Manifest:
    resolve_model_path(config.encoder.model)
    prepared = load_manifest(run_dir, "prepare")

    def body(ctx: StageContext) -> dict:
        splits = SPLITS if config.test else tuple(s for s in SPLITS if s != "test")
        frames, _ = load_splits(prepared, splits)
        loaded = []

        def encoder():
            if not loaded:
                loaded.append(load_encoder(config.encoder))
            return loaded[0]

        texts = {split: frames[split]["text"].tolist() for split in splits}
        arrays, cached = cached_split_embeddings(encoder, config.encoder, texts, config.batch_size, "embed", echo)
        for split in splits:
            np.save(ctx.output(f"embeddings_{split}.npy"), arrays[split])
        if cached:
            echo(f"embed: {', '.join(cached)} read from the cache in {cache.cache_root()}")
        sigma = sigma_heuristics(arrays["train"], frames["train"]["label_id"].to_numpy())
        ctx.output("sigma.json").write_text(json.dumps(sigma, indent=1) + "\n")
        device = str(loaded[0].device) if loaded else resolve_device(config.encoder.device)
        shapes = {split: list(array.shape) for split, array in arrays.items()}
        return {"shapes": shapes, "sigma": sigma, "device": device, "cached": cached}

    return run_stage(run_dir, STAGE, config.identity(), body, upstream={"prepare": prepared}, force=force, echo=echo)
