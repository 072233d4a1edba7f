"""BertGCN with `--train-layers N`: the top N layers train on the cached frozen lower layers' states."""

import json

import numpy as np
import pytest
import torch

from pipeline.artifacts import load_splits, split_labels, split_texts
from pipeline.baselines.bertgcn import _Corpus, _Joint
from pipeline.baselines.textgcn import build_textgcn_graph
from pipeline.encoder import EncoderConfig, load_encoder
from pipeline.manifest import load_manifest
from pipeline.stages.train import TrainConfig
from pipeline.training.partial import FullEncoder, build_encoder, freeze
from tests.cli import gloss, prepare_tiny

ENCODER = EncoderConfig(max_length=16, device="cpu")


@pytest.fixture(scope="module")
def corpus(tiny_root, tmp_path_factory):
    run = prepare_tiny(tiny_root, tmp_path_factory.mktemp("bertgcn") / "run", "--val-fraction", "0.3")
    frames, label_names = load_splits(load_manifest(run, "prepare"))
    return _Corpus(split_texts(frames), split_labels(frames)), len(label_names)


def _config() -> TrainConfig:
    config = TrainConfig(method="bertgcn")
    config.loop.batch_size, config.loop.seed, config.encoder = 8, 5, ENCODER
    return config


def _joint(corpus, num_classes, train_layers: str, no_dropout: bool = False) -> _Joint:
    """A _Joint over the pre-trained MiniLM whose encoder trains ``train_layers`` (``"1"``: cached states;
    ``"all-but-1"``: the reference, every layer run per batch but only the top one trainable)."""
    torch.manual_seed(0)
    model = load_encoder(ENCODER)
    if no_dropout:  # the frozen layers run without dropout when cached; the reference must too
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            if hasattr(module, "dropout_prob"):
                module.dropout_prob = 0.0
    if train_layers == "all-but-1":
        freeze(model, 1)
        encoder = FullEncoder(model, corpus.texts)
    else:
        encoder = build_encoder(model, train_layers, ENCODER, corpus.texts, 64, echo=lambda _line: None).encoder
    head = torch.nn.Linear(model.get_embedding_dimension(), num_classes)
    graph, _, _ = build_textgcn_graph(corpus.all_texts, "R8")
    return _Joint(model, head, encoder, graph.to_torch_sparse(), corpus, num_classes, _config())


def _top_keys(model) -> set[str]:
    """The state-dict keys of the encoder's last transformer layer's weights."""
    last = model[0].auto_model.encoder.layer[-1]
    ids = {id(p) for p in last.parameters()}
    return {k for k, p in model.named_parameters() if id(p) in ids}


def test_only_the_top_layers_change(corpus):
    joint = _joint(*corpus, "1")
    before = {k: v.clone() for k, v in joint.model.state_dict().items()}
    joint.train_epoch(1)
    after = joint.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == _top_keys(joint.model)  # every weight of the top layer moved, nothing below it


def test_cached_top_layer_matches_running_every_layer(corpus):
    """One joint epoch on cached float16 lower-layer states against the same epoch running every layer on
    every batch with the lower ones frozen: the same loss, top-layer update and bank, up to float16 rounding
    (Adam moves each weight by about lr whatever its gradient's size, so tiny gradients may differ in sign:
    the updates are compared as a whole, by cosine)."""
    cached, reference = (_joint(*corpus, mode, no_dropout=True) for mode in ("1", "all-but-1"))
    torch.testing.assert_close(cached.bertgcn.bank, reference.bertgcn.bank, atol=2e-3, rtol=0)
    start = {k: reference.model.state_dict()[k].clone() for k in _top_keys(reference.model)}
    losses = [joint.train_epoch(1) for joint in (cached, reference)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-3)
    updates = [torch.cat([(joint.model.state_dict()[k] - start[k]).flatten() for k in sorted(start)])
               for joint in (cached, reference)]  # [P] each: what the epoch changed in the top layer
    assert torch.nn.functional.cosine_similarity(*updates, dim=0) > 0.99
    torch.testing.assert_close(cached.bertgcn.bank, reference.bertgcn.bank, atol=2e-3, rtol=0)
    np.testing.assert_allclose(cached.predict("val"), reference.predict("val"), atol=1e-3)


def test_init_from_a_ce_run_with_train_layers(tiny_root, tmp_path):
    ce = prepare_tiny(tiny_root, tmp_path / "ce")
    options = ["--train-layers", "1", "--epochs", "1", "--max-length", "16", "--batch-size", "16"]
    assert gloss("train", "--run-dir", ce, "--loss", "ce", *options).exit_code == 0
    run = prepare_tiny(tiny_root, tmp_path / "bertgcn")
    result = gloss("train", "--run-dir", run, "--method", "bertgcn", "--init-from", ce, *options)
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "train" / "manifest.json").read_text())
    assert manifest["config"]["loop"]["train_layers"] == "1" and manifest["summary"]["train_layers"] == "1"
    assert "the top 1 transformer layer on cached frozen lower layers" in result.output
    evaluated = gloss("evaluate", "--run-dir", run, "--tsne-max", "0")
    assert evaluated.exit_code == 0, evaluated.output


def test_adapter_on_an_adapter_run_is_refused(tiny_root, tmp_path):
    """An adapter run's model ends in its Dense layer: a second adapter on its cached pooled embeddings would
    apply the first one twice."""
    ce = prepare_tiny(tiny_root, tmp_path / "ce")
    options = ["--train-layers", "0", "--epochs", "1", "--max-length", "16", "--batch-size", "16"]
    assert gloss("train", "--run-dir", ce, "--loss", "ce", *options).exit_code == 0
    run = prepare_tiny(tiny_root, tmp_path / "bertgcn")
    result = gloss("train", "--run-dir", run, "--method", "bertgcn", "--init-from", ce, *options,
                   catch_exceptions=True)
    assert result.exit_code == 1 and "--train-layers 0: the encoder already ends in a Dense layer" in result.output
    assert not (run / "train" / "manifest.json").exists()
