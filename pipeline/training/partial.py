"""What the fine-tuning loop trains: every layer, the top N on cached frozen layers, or an adapter.

``--train-layers`` picks one of three *batch encoders*, each mapping a split's rows to pooled embeddings:

- ``all`` -> :class:`FullEncoder`: texts are tokenised per batch and run through the whole model.
- ``N`` (1 <= N < layers) -> :class:`CachedLayersEncoder`: the embeddings and all but the top ``N`` transformer
  layers are frozen; their per-token outputs are computed once per dataset (eval mode, stored as float16,
  unpadded) in the shared cache (:mod:`pipeline.cache`, kind ``frozen-layers``, keyed by the encoder files'
  hash, the layer split, max length, the texts' hash and the dtype; ``train`` and ``val`` in one entry of
  their union, which every validation split of the dataset shares: :mod:`pipeline.cache_groups`), and every
  batch runs only the top ``N`` layers and the pooling on them, padded per batch (length bucketing still
  pays). The pass that computes them also stores the pre-trained pooled embeddings (``embeddings`` cache).
- ``0`` -> :class:`AdapterEncoder`: the whole encoder is frozen and a residual ``Dense`` layer
  (``sentence_transformers`` ``Dense(D, D, tanh, use_residual=True)``, zero-initialised: training starts at
  the pre-trained embedding, ``e + tanh(W e + b)``) is trained on the pre-trained pooled embeddings, read from
  the ``embeddings`` cache that ``gloss embed`` fills (so a run after ``gloss embed`` encodes nothing). Being
  new, the adapter learns at ``--head-lr``, like the head (``--lr`` is for pre-trained weights).

The model being trained is always the real ``SentenceTransformer`` (trained layers updated in place, the
``Dense`` appended as its third module), so the saved folder is a normal sentence-transformers model whatever
was frozen. Frozen layers see no dropout (they run once, in eval mode); the trained ones keep theirs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from pipeline import cache, options
from pipeline.cache_groups import cache_groups, earlier_entries
from pipeline.encoder import (
    EncoderConfig,
    cached_split_embeddings,
    embed_texts,
    embedding_cache_parts,
    resolve_model_path,
    to_device,
    token_lengths,
)
from pipeline.errors import GlossError
from pipeline.hashing import sha256_json

__all__ = ["AdapterEncoder", "CachedLayersEncoder", "FullEncoder", "TokenStates", "build_encoder",
           "cached_split_states", "parse_train_layers", "resolve_train_layers"]

Echo = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- options

def parse_train_layers(value: str) -> str:
    """``all``, ``auto`` or a non-negative integer (as a string); ``GlossError`` otherwise."""
    text = str(value).strip().lower()
    if text in (options.TRAIN_LAYERS_ALL, options.TRAIN_LAYERS_AUTO) or (text.isdigit()):
        return str(int(text)) if text.isdigit() else text
    raise GlossError(f"--train-layers {value}: expected all, auto or a number of top layers (0 = adapter)")


def resolve_train_layers(value: str, device: str) -> str:
    """``auto`` -> ``all`` on CUDA, ``options.TRAIN_LAYERS_CPU`` on a CPU; others as given."""
    value = parse_train_layers(value)
    if value != options.TRAIN_LAYERS_AUTO:
        return value
    return options.TRAIN_LAYERS_ALL if str(device).startswith("cuda") else options.TRAIN_LAYERS_CPU


def describe(train_layers: str) -> str:
    if train_layers == options.TRAIN_LAYERS_ALL:
        return "full fine-tuning"
    if train_layers == "0":
        return "adapter: a residual Dense layer on the frozen pre-trained pooled embeddings"
    return f"the top {train_layers} transformer layer{'s' if train_layers != '1' else ''} on cached frozen lower layers"


# ---------------------------------------------------------------------------------------------- the BERT parts

def _bert(model):
    bert = getattr(model[0], "auto_model", None)
    if bert is None or not hasattr(bert, "embeddings") or not hasattr(getattr(bert, "encoder", None), "layer"):
        raise GlossError("--train-layers N: needs a BERT-style encoder (embeddings + encoder.layer); "
                         "use --train-layers all")
    return bert


def layer_count(model) -> int:
    return len(_bert(model).encoder.layer)


def run_layers(bert, hidden: Tensor, mask: Tensor, layers) -> Tensor:
    """``layers`` of ``bert`` on ``hidden`` [B, T, H] with the padding ``mask`` [B, T], as ``BertModel`` runs them."""
    extended, _ = bert._create_attention_masks(mask, None, hidden, None, None)
    for layer in layers:
        hidden = layer(hidden, extended)
    return hidden


def lower_states(model, features: dict, frozen: int) -> Tensor:
    """The per-token outputs of the embeddings and the first ``frozen`` layers: [B, T, H]."""
    bert = _bert(model)
    hidden = bert.embeddings(input_ids=features["input_ids"], token_type_ids=features.get("token_type_ids"))
    return run_layers(bert, hidden, features["attention_mask"], bert.encoder.layer[:frozen])


def freeze(model, train_layers: int) -> None:
    """Freeze the encoder's embeddings and all but its top ``train_layers`` layers (everything for 0)."""
    bert = _bert(model)
    for parameter in model[0].parameters():
        parameter.requires_grad_(False)
    if train_layers > 0:
        for layer in bert.encoder.layer[len(bert.encoder.layer) - train_layers:]:
            layer.requires_grad_(True)


def _apply(modules, features: dict) -> Tensor:
    for module in modules:
        features = module(features)
    return features["sentence_embedding"]


# ---------------------------------------------------------------------------------------------- cached states

@dataclass
class TokenStates:
    """Frozen-part outputs: every document's unpadded per-token states, concatenated; a split's view of a
    cache entry holding more documents (``train+val``) also carries ``rows``, its documents' rows in the entry.

    Shapes:
        states [T, H] float16 (T = total tokens; in memory or memory-mapped), offsets [P + 1] int64,
        rows [N] int64 or ``None`` (N = P: every document, in order)
    """

    states: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray | None = None

    def _entry_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows) if self.rows is None else self.rows[rows]

    @property
    def lengths(self) -> np.ndarray:
        """Token counts [N] of this view's documents."""
        lengths = np.diff(self.offsets)
        return lengths if self.rows is None else lengths[self.rows]

    def take(self, rows: np.ndarray) -> TokenStates:
        """The view of the documents ``rows`` [M] of this one (the states are shared, not copied)."""
        return TokenStates(self.states, self.offsets, self._entry_rows(np.asarray(rows, dtype=np.int64)))

    def padded(self, rows: np.ndarray, device, dtype=torch.float32) -> tuple[Tensor, Tensor]:
        """The rows' states padded to the batch's longest: hidden [B, T, H] and attention mask [B, T]."""
        entry_rows = self._entry_rows(rows)
        lengths = np.diff(self.offsets)[entry_rows]
        hidden = torch.zeros(len(rows), int(lengths.max()), self.states.shape[1], dtype=dtype)
        mask = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for i, row in enumerate(entry_rows):
            start, end = int(self.offsets[row]), int(self.offsets[row + 1])
            hidden[i, : end - start] = torch.from_numpy(np.asarray(self.states[start:end]))
            mask[i, : end - start] = 1
        return hidden.to(device), mask.to(device)


def frozen_cache_parts(encoder: EncoderConfig, frozen: int, layers: int, texts: list[str], device) -> dict:
    """What a split's frozen-part states depend on: the key of its ``frozen-layers`` cache entry."""
    return {
        "encoder": cache.folder_hash(resolve_model_path(encoder.model)),
        "frozen_layers": frozen,
        "layers": layers,
        "max_length": encoder.max_length,
        "texts": sha256_json(texts),
        "documents": len(texts),
        "dtype": "float16",
        "computed": "float16-autocast" if str(device).startswith("cuda") else "float32",
    }


def load_states(folder) -> TokenStates:
    """A cache entry's states: read into memory up to ``options.FROZEN_IN_MEMORY_MB``, memory-mapped beyond."""
    path = folder / "states.npy"
    mmap = "r" if path.stat().st_size > options.FROZEN_IN_MEMORY_MB * 2**20 else None
    return TokenStates(np.load(path, mmap_mode=mmap), np.load(folder / "offsets.npy"))


def _write_states(model, frozen: int, texts: list[str], batch_size: int, folder, pooled: bool) -> np.ndarray | None:
    """Write the frozen part's states of ``texts`` into ``folder``; with ``pooled``, also run the rest of the
    pre-trained model on them in the same pass and return the pooled embeddings [N, D] float32 (what
    :func:`pipeline.encoder.embed_texts` gives, for the ``embeddings`` cache)."""
    lengths = np.asarray(token_lengths(model, texts), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    bert = _bert(model)
    out = np.lib.format.open_memmap(folder / "states.npy", mode="w+", dtype=np.float16,
                                    shape=(int(offsets[-1]), bert.config.hidden_size))
    embeddings = np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32) if pooled else None
    order = np.argsort(-lengths, kind="stable")
    device = model.device
    context = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), context:
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            features = to_device(model.preprocess([texts[i] for i in rows]), device)
            lower = lower_states(model, features, frozen)  # [B, T, H]
            if embeddings is not None:
                top = run_layers(bert, lower, features["attention_mask"], bert.encoder.layer[frozen:])
                features = {"token_embeddings": top, "attention_mask": features["attention_mask"]}
                embeddings[rows] = _apply(list(model)[1:], features).float().cpu().numpy()
            hidden = lower.float().cpu().numpy()
            for i, row in enumerate(rows):
                out[offsets[row] : offsets[row + 1]] = hidden[i, : lengths[row]]
    model.train(was_training)
    out.flush()
    del out
    np.save(folder / "offsets.npy", offsets)
    return embeddings


def cached_states(model, encoder: EncoderConfig, frozen: int, texts: list[str], batch_size: int,
                  announce: Callable[[], None] | None = None) -> tuple[TokenStates, bool]:
    """The frozen-part states of ``texts`` from the cache, computed and stored when missing (``announce()`` is
    called first then); and whether it was a hit. Computing them also fills the ``embeddings`` entry of
    ``texts`` when that is missing (the rest of the model runs in the same pass), so ``gloss embed`` and
    ``--train-layers 0`` after a ``--train-layers N`` run encode nothing."""
    parts = frozen_cache_parts(encoder, frozen, layer_count(model), texts, model.device)
    if announce is not None and cache.lookup(options.CACHE_FROZEN_LAYERS, parts) is None:
        announce()
    pooled_parts = embedding_cache_parts(encoder, texts)
    pooled = []

    def write(folder) -> None:
        pooled.append(_write_states(model, frozen, texts, batch_size, folder,
                                    pooled=cache.lookup(options.CACHE_EMBEDDINGS, pooled_parts) is None))

    folder, hit = cache.get_or_create(options.CACHE_FROZEN_LAYERS, parts, write)
    if pooled and pooled[0] is not None:
        cache.get_or_create(options.CACHE_EMBEDDINGS, pooled_parts,
                            lambda tmp: np.save(tmp / "embeddings.npy", pooled[0]))
    return load_states(folder), hit


def cached_split_states(model, encoder: EncoderConfig, frozen: int, texts: dict[str, list[str]], batch_size: int,
                        echo: Echo) -> tuple[dict[str, TokenStates], list[str]]:
    """The frozen-part states of every split in ``texts`` (split -> :class:`TokenStates`) through
    :func:`cached_states`, ``train`` and ``val`` read from one entry of their union
    (:mod:`pipeline.cache_groups`: every split seed of a dataset shares it); and the splits the cache had.
    An entry written per split by earlier versions is still read when the union's entry is missing."""
    layers = layer_count(model)
    states, hits = {}, []
    for group in cache_groups(texts):
        earlier = earlier_entries(options.CACHE_FROZEN_LAYERS, group, texts,
                                  lambda t: frozen_cache_parts(encoder, frozen, layers, t, model.device))
        if earlier is not None:
            states.update({split: load_states(folder) for split, folder in earlier.items()})
            hits += list(group.rows)
            continue
        entry, hit = cached_states(
            model, encoder, frozen, group.texts, batch_size,
            announce=lambda g=group: echo(f"train: caching the embeddings and {frozen} frozen layers of {g.name} "
                                          f"({len(g.texts)} documents)"))
        states.update({split: entry.take(rows) for split, rows in group.rows.items()})
        hits += list(group.rows) if hit else []
    return {split: states[split] for split in texts}, [split for split in texts if split in hits]


# ---------------------------------------------------------------------------------------------- batch encoders

class FullEncoder:
    """``--train-layers all``: every batch tokenised and run through the whole model.

    Args:
        model (SentenceTransformer): the model being trained.
        texts (dict): split name -> its texts (at least ``train`` and ``val``).
    """

    train_layers = options.TRAIN_LAYERS_ALL

    def __init__(self, model, texts: dict[str, list[str]]) -> None:
        self.model, self.texts = model, texts

    def lengths(self, split: str) -> np.ndarray:
        """Token counts of a split's documents [N] (length bucketing, mean padded length)."""
        return np.asarray(token_lengths(self.model, self.texts[split]))

    def batch(self, split: str, rows: np.ndarray) -> Tensor:
        """Pooled embeddings [B, D] of ``rows``, in the model's current mode, with gradients."""
        features = to_device(self.model.preprocess([self.texts[split][i] for i in rows]), self.model.device)
        return self.model(features)["sentence_embedding"]

    def embed(self, split: str, batch_size: int, progress: bool | str = False, echo: Echo | None = None) -> np.ndarray:
        """Eval-mode pooled embeddings of a whole split: float32 [N, D]."""
        return embed_texts(self.model, self.texts[split], batch_size, progress=progress, echo=echo)

    def compile(self) -> None:
        """``torch.compile`` the transformer's forward (the state dict keeps its keys)."""
        auto_model = self.model[0].auto_model
        auto_model.forward = torch.compile(auto_model.forward, dynamic=True)


class _CachedEncoder:
    """What the two cached encoders share: eval-mode embedding of a whole split from its cached inputs."""

    def __init__(self, model) -> None:
        self.model = model

    def _forward(self, split: str, rows: np.ndarray) -> Tensor:
        raise NotImplementedError

    def batch(self, split: str, rows: np.ndarray) -> Tensor:
        return self._forward(split, rows)

    def embed(self, split: str, batch_size: int, progress: bool | str = False, echo: Echo | None = None) -> np.ndarray:
        lengths = self.lengths(split)
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((len(lengths), self.model.get_embedding_dimension()), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        device = self.model.device
        context = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
        with torch.inference_mode(), context:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                out[rows] = self._forward(split, rows).float().cpu().numpy()
        self.model.train(was_training)
        return out


class CachedLayersEncoder(_CachedEncoder):
    """``--train-layers N``: the top ``N`` layers and the pooling on cached frozen-layer states.

    Args:
        model (SentenceTransformer): the model being trained (its lower layers frozen by :func:`freeze`).
        train_layers (int): ``N``.
        states (dict): split name -> :class:`TokenStates` of the frozen part.
    """

    def __init__(self, model, train_layers: int, states: dict[str, TokenStates]) -> None:
        super().__init__(model)
        self.train_layers, self.states = str(train_layers), states
        self.bert = _bert(model)
        self.top = list(self.bert.encoder.layer[layer_count(model) - train_layers:])
        self._top_layers = self._run_top

    def lengths(self, split: str) -> np.ndarray:
        return self.states[split].lengths

    def _run_top(self, hidden: Tensor, mask: Tensor) -> Tensor:
        return run_layers(self.bert, hidden, mask, self.top)

    def _forward(self, split: str, rows: np.ndarray) -> Tensor:
        hidden, mask = self.states[split].padded(rows, self.model.device)
        hidden = self._top_layers(hidden, mask)  # [B, T, H]
        return _apply(list(self.model)[1:], {"token_embeddings": hidden, "attention_mask": mask})  # [B, D]

    def compile(self) -> None:
        self._top_layers = torch.compile(self._run_top, dynamic=True)


class AdapterEncoder(_CachedEncoder):
    """``--train-layers 0``: the modules after the pooling (the appended ``Dense``) on frozen pooled embeddings.

    Args:
        model (SentenceTransformer): Transformer, Pooling and the trained ``Dense``.
        pooled (dict): split name -> pre-trained pooled embeddings, float32 [N, D].
        lengths (dict): split name -> token counts [N] (length bucketing keeps the batch plan of other modes).
    """

    train_layers = "0"

    def __init__(self, model, pooled: dict[str, np.ndarray], lengths: dict[str, np.ndarray]) -> None:
        super().__init__(model)
        self.pooled, self._lengths = pooled, lengths

    def lengths(self, split: str) -> np.ndarray:
        return self._lengths[split]

    def _forward(self, split: str, rows: np.ndarray) -> Tensor:
        embeddings = torch.from_numpy(self.pooled[split][rows]).to(self.model.device)
        return _apply(list(self.model)[2:], {"sentence_embedding": embeddings})

    def compile(self) -> None:
        pass  # one small matmul: nothing to gain

    def fresh_parameters(self) -> list[nn.Parameter]:
        """The adapter's weights: new, so the loop trains them at ``--head-lr`` (as the head), not ``--lr``."""
        return [p for module in list(self.model)[2:] for p in module.parameters()]


def adapter(dim: int) -> nn.Module:
    """The trained module of ``--train-layers 0``: ``e + tanh(W e + b)``, W and b zero at the start."""
    from sentence_transformers.sentence_transformer.modules import Dense

    return Dense(dim, dim, use_residual=True, init_weight=torch.zeros(dim, dim), init_bias=torch.zeros(dim))


def param_groups(model, batch_encoder, lr: float, new_lr: float, new=()) -> list[dict]:
    """Optimizer groups of ``model`` trained through ``batch_encoder``: its trainable pre-trained weights at
    ``lr``; the batch encoder's fresh modules (the adapter of ``0``) and ``new`` parameters (a head) at ``new_lr``
    (that group only when there is something in it)."""
    fresh = list(getattr(batch_encoder, "fresh_parameters", list)())
    fresh_ids = {id(p) for p in fresh}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in fresh_ids], "lr": lr}]
    fresh += list(new)
    return groups + ([{"params": fresh, "lr": new_lr}] if fresh else [])


def encoder_for_copy(built, model):
    """A batch encoder of the same kind and cached inputs as ``built`` (a batch encoder of
    :func:`build_encoder`) for ``model``, another copy of the same pre-trained encoder (LCL's weighting
    network): frozen like the first, the adapter appended for ``0``, the cached states shared, not copied."""
    if isinstance(built, FullEncoder):
        return FullEncoder(model, built.texts)
    if isinstance(built, CachedLayersEncoder):
        freeze(model, int(built.train_layers))
        return CachedLayersEncoder(model, int(built.train_layers), built.states)
    if isinstance(built, AdapterEncoder):
        freeze(model, 0)
        model.append(adapter(model.get_embedding_dimension()).to(model.device))
        return AdapterEncoder(model, built.pooled, built._lengths)
    raise TypeError(f"Expected a batch encoder of build_encoder (got {type(built).__name__})")


@dataclass
class BuiltEncoder:
    """:func:`build_encoder`'s result: the batch encoder and what caching cost (for the manifest)."""

    encoder: object
    cache_kind: str | None
    cache_hits: list[str]
    cache_seconds: float


def build_encoder(model, train_layers: str, encoder: EncoderConfig, texts: dict[str, list[str]],
                  batch_size: int, echo: Echo = print) -> BuiltEncoder:
    """The batch encoder of a resolved ``--train-layers`` over ``texts`` (split -> texts), freezing ``model``
    as the mode asks (and appending the adapter for ``0``); cached inputs are read or computed per split."""
    if train_layers == options.TRAIN_LAYERS_ALL:
        return BuiltEncoder(FullEncoder(model, texts), None, [], 0.0)
    n = int(train_layers)
    layers = layer_count(model)
    if n >= layers:
        raise GlossError(f"--train-layers {n}: the encoder has {layers} layers (use all, or 0-{layers - 1})")
    started = time.perf_counter()
    if n == 0:
        if any(isinstance(module, nn.Module) and type(module).__name__ == "Dense" for module in list(model)[2:]):
            raise GlossError("--train-layers 0: the encoder already ends in a Dense layer (an adapter run's model); "
                             "its pooled embeddings include it, so a new adapter would apply it twice: use "
                             "--train-layers N or all")
        pooled, hits = cached_split_embeddings(lambda: model, encoder, texts, batch_size,
                                               "train: frozen embeddings", echo)
        lengths = {split: np.asarray(token_lengths(model, t)) for split, t in texts.items()}
        freeze(model, 0)
        model.append(adapter(model.get_embedding_dimension()).to(model.device))
        built = AdapterEncoder(model, pooled, lengths)
        kind = options.CACHE_EMBEDDINGS
    else:
        states, hits = cached_split_states(model, encoder, layers - n, texts, batch_size, echo)
        freeze(model, n)
        built = CachedLayersEncoder(model, n, states)
        kind = options.CACHE_FROZEN_LAYERS
    seconds = time.perf_counter() - started
    echo(f"train: frozen part of {', '.join(texts)} {'read from' if len(hits) == len(texts) else 'computed into'} "
         f"the cache ({kind}) in {seconds:.1f}s")
    return BuiltEncoder(built, kind, hits, round(seconds, 2))
