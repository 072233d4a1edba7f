"""--train-layers: the cached-frozen-layers path and the adapter against the full model, on a dozen texts.

Tolerances: with float32 states the cached path equals the full model in eval mode to 1e-5 (the same ops in
another grouping); with the float16 cache the pooled embeddings agree to 5e-3 absolute (cosine > 0.9999) and
the loss to 1e-3 (float16 keeps ~3 significant digits of each token state).
"""

import numpy as np
import pytest
import torch

from pipeline import cache, options
from pipeline.encoder import (
    EncoderConfig,
    cached_embeddings,
    cached_split_embeddings,
    embed_texts,
    load_encoder,
    to_device,
    token_lengths,
)
from pipeline.errors import GlossError
from pipeline.training import partial
from pipeline.training.objectives import Objective, ObjectiveConfig
from pipeline.training.precision import autocast, grad_scaler, resolve_precision

TEXTS = ["oil prices rose sharply on monday", "crude output fell", "opec cut supply again this week",
         "brent gained", "profit was up", "earnings grew strongly in the quarter", "quarterly net rose",
         "revenue beat forecasts", "grain exports", "wheat crop hit by drought in the plains", "corn harvest",
         "soybean shipments"]
LABELS = torch.tensor(np.repeat(np.arange(3), 4))
ENCODER = EncoderConfig(max_length=16, device="cpu")
SPLITS = {"train": TEXTS, "val": TEXTS[::2], "test": TEXTS[1::2]}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_encoder(ENCODER)


def _fresh():
    return load_encoder(ENCODER)


def _float32_states(model, frozen: int) -> partial.TokenStates:
    """The frozen part's states in float32 (no cache): the reference of the float16 cache."""
    lengths = np.asarray(token_lengths(model, TEXTS))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    model.eval()
    with torch.inference_mode():
        hidden = partial.lower_states(model, to_device(model.preprocess(TEXTS), model.device), frozen).numpy()
    rows = [hidden[i, :n] for i, n in enumerate(lengths)]
    return partial.TokenStates(np.concatenate(rows).astype(np.float32), offsets)


@pytest.mark.parametrize("train_layers", [1, 2])
def test_cached_path_equals_the_full_model_in_eval_mode(model, train_layers):
    full = embed_texts(model, TEXTS, batch_size=5)
    head = torch.nn.Linear(full.shape[1], 3)
    objective = Objective(ObjectiveConfig(loss="gloss+ce", sigma=0.5), 3, seed=0)
    frozen = partial.layer_count(model) - train_layers
    exact = partial.CachedLayersEncoder(model, train_layers, {"train": _float32_states(model, frozen)})
    np.testing.assert_allclose(exact.embed("train", 5), full, atol=1e-5)
    states, hit = partial.cached_states(model, ENCODER, frozen, TEXTS, batch_size=5)
    assert states.states.dtype == np.float16 and not hit
    half = partial.CachedLayersEncoder(model, train_layers, {"train": states}).embed("train", 5)
    np.testing.assert_allclose(half, full, atol=5e-3)
    cosine = (half * full).sum(1) / np.linalg.norm(half, axis=1) / np.linalg.norm(full, axis=1)
    assert cosine.min() > 0.9999

    def loss(embeddings):
        x = torch.from_numpy(embeddings)
        objective.reseed(0)
        return float(objective(x, head(x), LABELS)["total"].detach())

    assert abs(loss(half) - loss(full)) < 1e-3
    assert abs(loss(exact.embed("train", 5)) - loss(full)) < 1e-5


def test_adapter_starts_at_the_pretrained_embeddings_and_saves_a_normal_folder(tmp_path):
    model = _fresh()
    before = embed_texts(model, TEXTS, batch_size=5)
    built = partial.build_encoder(model, "0", ENCODER, SPLITS, batch_size=5, echo=lambda _: None)
    assert type(model[2]).__name__ == "Dense" and len(model) == 3
    np.testing.assert_allclose(built.encoder.embed("train", 5), before, atol=1e-6)
    np.testing.assert_allclose(embed_texts(model, TEXTS, 5), before, atol=1e-5)  # the full model agrees
    with torch.no_grad():
        model[2].linear.weight.normal_(0, 0.1)
    model.save(str(tmp_path / "saved"))
    reloaded = load_encoder(EncoderConfig(model=str(tmp_path / "saved"), max_length=16, device="cpu"))
    assert [type(m).__name__ for m in reloaded] == ["Transformer", "Pooling", "Dense"]
    np.testing.assert_allclose(embed_texts(reloaded, TEXTS, 5), built.encoder.embed("train", 5), atol=1e-5)


def _grads(model, encoder, head):
    objective = Objective(ObjectiveConfig(loss="gloss+ce", sigma=0.5), 3, seed=0)
    model.train()
    embeddings = encoder.batch("train", np.arange(len(TEXTS)))
    objective(embeddings, head(embeddings), LABELS)["total"].backward()
    return {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("train_layers", ["0", "1", "2"])
def test_gradients_reach_only_the_trainable_layers(train_layers):
    model = _fresh()
    built = partial.build_encoder(model, train_layers, ENCODER, SPLITS, batch_size=5, echo=lambda _: None)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    head = torch.nn.Linear(model.get_embedding_dimension(), 3)
    reached = _grads(model, built.encoder, head)
    assert reached and reached <= trainable
    layers = partial.layer_count(model)
    if train_layers == "0":
        assert trainable == {"2.linear.weight", "2.linear.bias"}
    else:
        top = {f"encoder.layer.{i}." for i in range(layers - int(train_layers), layers)}
        assert all(any(t in name for t in top) for name in trainable)
        assert {name.split("encoder.layer.")[1].split(".")[0] for name in reached} == {
            str(i) for i in range(layers - int(train_layers), layers)}
    assert head.weight.grad is not None


def test_cache_is_reused_and_keyed_by_layer_split_and_length(model, monkeypatch):
    frozen = partial.layer_count(model) - 1
    first, _ = partial.cached_states(model, ENCODER, frozen, TEXTS[:4], batch_size=4)
    again, hit = partial.cached_states(model, ENCODER, frozen, TEXTS[:4], batch_size=2)
    assert hit and np.array_equal(first.states, again.states)
    _, hit = partial.cached_states(model, ENCODER, frozen - 1, TEXTS[:4], batch_size=4)
    assert not hit
    parts = partial.frozen_cache_parts(ENCODER, frozen, 6, TEXTS[:4], "cpu")
    longer = partial.frozen_cache_parts(EncoderConfig(max_length=32, device="cpu"), frozen, 6, TEXTS[:4], "cpu")
    assert parts["dtype"] == "float16" and parts != longer
    monkeypatch.setattr(options, "FROZEN_IN_MEMORY_MB", 0)
    mapped = partial.load_states(cache.lookup(options.CACHE_FROZEN_LAYERS, parts))
    assert isinstance(mapped.states, np.memmap) and np.array_equal(mapped.states, first.states)


def test_padded_batches_pad_to_the_longest_row():
    states = partial.TokenStates(np.arange(12, dtype=np.float16).reshape(6, 2), np.array([0, 1, 4, 6]))
    hidden, mask = states.padded(np.array([0, 2]), "cpu")
    assert hidden.shape == (2, 2, 2) and mask.tolist() == [[1, 0], [1, 1]]
    assert hidden[0, 1].abs().sum() == 0 and hidden[1, 1].tolist() == [10.0, 11.0]
    assert states.lengths.tolist() == [1, 3, 2]


def test_train_layers_vocabulary_and_auto():
    assert partial.parse_train_layers("ALL") == "all" and partial.parse_train_layers("02") == "2"
    assert partial.resolve_train_layers("auto", "cuda") == "all"
    assert partial.resolve_train_layers("auto", "cpu") == options.TRAIN_LAYERS_CPU
    assert partial.resolve_train_layers("1", "cuda") == "1"
    with pytest.raises(GlossError, match="--train-layers top: expected all, auto or a number"):
        partial.parse_train_layers("top")
    with pytest.raises(GlossError, match="--train-layers 6: the encoder has 6 layers"):
        partial.build_encoder(_fresh(), "6", ENCODER, SPLITS, batch_size=5, echo=lambda _: None)


def test_precision_on_a_cpu():
    assert resolve_precision("auto", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    assert grad_scaler("cpu", "bf16") is None
    with pytest.raises(GlossError, match="--precision fp16: needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(GlossError, match="--precision fp8: expected one of"):
        resolve_precision("fp8", "cpu")
    with autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_cuda_mixed_precision_step_is_finite(precision):
    assert resolve_precision("auto", "cuda") in ("bf16", "fp16")
    resolved = resolve_precision(precision, "cuda")
    model = load_encoder(EncoderConfig(max_length=16, device="cuda"))
    built = partial.build_encoder(model, "2", EncoderConfig(max_length=16, device="cuda"), SPLITS, 5, lambda _: None)
    head = torch.nn.Linear(model.get_embedding_dimension(), 3).cuda()
    objective = Objective(ObjectiveConfig(loss="gloss+ce", sigma=0.5), 3, seed=0).cuda()
    scaler = grad_scaler("cuda", resolved)
    assert (scaler is not None) == (resolved == "fp16")
    with autocast("cuda", resolved):
        embeddings = built.encoder.batch("train", np.arange(len(TEXTS)))
        parts = objective(embeddings, head(embeddings), LABELS.cuda())
    assert parts["g_loss"].dtype == torch.float32 and torch.isfinite(parts["total"])
    (scaler.scale(parts["total"]) if scaler else parts["total"]).backward()
    full = embed_texts(load_encoder(EncoderConfig(max_length=16, device="cuda")), TEXTS, 5)
    np.testing.assert_allclose(built.encoder.embed("train", 5), full, atol=2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("train_layers", ["all", "2"])
def test_cuda_compiled_encoder_matches_eager(train_layers):
    config = EncoderConfig(max_length=16, device="cuda")
    eager = partial.build_encoder(load_encoder(config), train_layers, config, SPLITS, 5, lambda _: None).encoder
    compiled = partial.build_encoder(load_encoder(config), train_layers, config, SPLITS, 5, lambda _: None).encoder
    compiled.compile()
    np.testing.assert_allclose(compiled.embed("train", 5), eager.embed("train", 5), atol=2e-2)


def _split_seed(seed: int) -> dict[str, list[str]]:
    """train/val carved from TEXTS with ``seed`` (as ``gloss prepare --seed``), plus a fixed test split."""
    held = set(np.random.default_rng(seed).choice(len(TEXTS), size=3, replace=False).tolist())
    return {"train": [t for i, t in enumerate(TEXTS) if i not in held], "val": [TEXTS[i] for i in sorted(held)],
            "test": ["grain prices", "oil output"]}


def _counting(monkeypatch, module, name):
    calls, real = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def _refuse(*args, **kwargs):
    raise AssertionError("encoded although the cache holds it")


def test_two_split_seeds_compute_the_frozen_layers_once(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GLOSS_CACHE", str(tmp_path / "shared"))
    writes = _counting(monkeypatch, partial, "_write_states")
    frozen = partial.layer_count(model) - 1
    seeds = {seed: _split_seed(seed) for seed in (0, 1)}
    assert seeds[0]["val"] != seeds[1]["val"]
    states, hits = partial.cached_split_states(model, ENCODER, frozen, seeds[0], 4, echo=lambda _: None)
    assert hits == [] and len(writes) == 2  # train+val, test
    again, hits = partial.cached_split_states(model, ENCODER, frozen, seeds[1], 4, echo=lambda _: None)
    assert hits == ["train", "val", "test"] and len(writes) == 2
    assert len(cache.entries(options.CACHE_FROZEN_LAYERS)) == 2
    monkeypatch.setenv("GLOSS_CACHE", str(tmp_path / "direct"))  # each split on its own, as before
    for split, texts in seeds[1].items():
        direct, _ = partial.cached_states(model, ENCODER, frozen, texts, batch_size=4)
        assert again[split].lengths.tolist() == direct.lengths.tolist()
        rows = np.arange(len(texts))
        hidden, mask = again[split].padded(rows, "cpu")
        want, want_mask = direct.padded(rows, "cpu")
        assert torch.equal(mask, want_mask)
        np.testing.assert_allclose(hidden.numpy(), want.numpy(), rtol=2e-3, atol=2e-3)  # float16: one ulp


def test_the_frozen_layers_pass_stores_the_pretrained_embeddings(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GLOSS_CACHE", str(tmp_path / "cache"))
    frozen = partial.layer_count(model) - 2
    partial.cached_split_states(model, ENCODER, frozen, _split_seed(0), 4, echo=lambda _: None)
    monkeypatch.setattr(partial, "_write_states", _refuse)
    pooled, hits = cached_split_embeddings(_refuse, ENCODER, _split_seed(1), 4, "embed")
    assert hits == ["train", "val", "test"]
    for split, texts in _split_seed(1).items():
        np.testing.assert_allclose(pooled[split], embed_texts(model, texts, batch_size=5), atol=1e-5)


def test_entries_written_per_split_before_are_still_read(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GLOSS_CACHE", str(tmp_path / "cache"))
    frozen = partial.layer_count(model) - 1
    splits = _split_seed(0)
    earlier = {}
    for split, texts in splits.items():  # what versions with one entry per split wrote
        earlier[split], _ = partial.cached_states(model, ENCODER, frozen, texts, batch_size=4)
        cached_embeddings(lambda: model, ENCODER, texts, 4, "embed")
    monkeypatch.setattr(partial, "_write_states", _refuse)
    states, hits = partial.cached_split_states(model, ENCODER, frozen, splits, 4, echo=lambda _: None)
    assert hits == ["train", "val", "test"]
    for split in splits:
        assert np.array_equal(states[split].states, earlier[split].states)
    pooled, hits = cached_split_embeddings(_refuse, ENCODER, splits, 4, "embed")
    assert hits == ["train", "val", "test"]
    np.testing.assert_allclose(pooled["val"], embed_texts(model, splits["val"], batch_size=5), atol=1e-5)


def test_a_view_of_token_states_reads_its_rows_of_the_entry():
    states = partial.TokenStates(np.arange(12, dtype=np.float16).reshape(6, 2), np.array([0, 1, 4, 6]))
    view = states.take(np.array([2, 0]))
    assert view.lengths.tolist() == [2, 1]
    hidden, mask = view.padded(np.array([1, 0]), "cpu")
    assert mask.tolist() == [[1, 0], [1, 1]] and hidden[1].tolist() == [[8.0, 9.0], [10.0, 11.0]]
    assert view.take(np.array([1])).rows.tolist() == [0]
