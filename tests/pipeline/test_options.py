"""``pipeline/options.py`` and ``graphs/`` keep their own vocabularies and defaults: they must agree."""

import inspect
import subprocess
import sys

import pytest

from pipeline import options


def _defaults(cls) -> dict:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_options_imports_nothing_heavy():
    code = "import sys, pipeline.options; print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_g_loss_vocabularies_and_defaults_agree():
    from graphs.losses import GLoss, g_loss

    assert options.GRAPH_MODES == g_loss.GRAPHS
    assert options.LOSS_FORMS == g_loss.LOSS_FORMS
    defaults = _defaults(GLoss)
    assert (defaults["gamma"], defaults["k"], defaults["graph"], defaults["loss_form"]) == (
        options.GAMMA, options.K, options.DEFAULT_GRAPH_MODE, options.DEFAULT_LOSS_FORM)


def test_sigma_names_agree():
    from graphs import sigma

    assert options.CORPUS_SIGMA_HEURISTICS == sigma.SIGMA_HEURISTICS
    assert options.BATCH_SIGMA_HEURISTICS == sigma.BATCH_SIGMA_HEURISTICS
    assert options.DEFAULT_SIGMA in options.SIGMA_HEURISTICS


def test_comparison_loss_defaults_agree():
    from graphs.losses import BatchAllTripletLoss, SupervisedContrastiveLoss

    assert _defaults(SupervisedContrastiveLoss)["temperature"] == options.TEMPERATURE
    assert _defaults(BatchAllTripletLoss)["margin"] == options.MARGIN


def test_knn_search_vocabularies_agree():
    from graphs import knn

    assert set(options.METRICS) <= set(knn.METRICS)
    assert options.BACKENDS == knn.BACKENDS
    assert options.DEFAULT_METRIC in options.METRICS and options.DEFAULT_BACKEND in options.BACKENDS


def test_text_graph_and_gcn_defaults_agree():
    from graphs.models import BertGCN, TextGCN
    from graphs.text import graph

    assert options.PAIR_COUNTS == graph.PAIR_COUNTS
    for model in (TextGCN, BertGCN):
        defaults = _defaults(model)
        assert (defaults["hidden_channels"], defaults["dropout"]) == (options.GCN_HIDDEN, options.GCN_DROPOUT)
    assert _defaults(BertGCN)["m"] == options.BERTGCN_M


@pytest.mark.parametrize("vocabulary, default", [
    ("LOSSES", "DEFAULT_LOSS"), ("METHODS", "DEFAULT_METHOD"), ("POOLINGS", "DEFAULT_POOLING"),
    ("OPTIMIZERS", "DEFAULT_OPTIMIZER"), ("SCHEDULES", "DEFAULT_SCHEDULE"), ("PAIR_COUNTS", "DEFAULT_PAIR_COUNT"),
    ("INSPECT_SOURCES", "DEFAULT_INSPECT_SOURCE"), ("TEXTGCN_SELECTS", "TEXTGCN_SELECT"),
    ("TEXTGCN_MODELS", "TEXTGCN_MODEL"),
])
def test_every_default_is_in_its_vocabulary(vocabulary, default):
    assert getattr(options, default) in getattr(options, vocabulary)


def test_config_dataclasses_take_their_defaults_from_options():
    from pipeline.encoder import EncoderConfig
    from pipeline.stages.evaluate import EvaluateConfig
    from pipeline.stages.train import GCNConfig
    from pipeline.training.loop import LoopConfig
    from pipeline.training.objectives import ObjectiveConfig

    objective, loop, gcn = ObjectiveConfig(), LoopConfig(), GCNConfig()
    assert (objective.loss, objective.lam, objective.gamma, objective.k, objective.sigma) == (
        options.DEFAULT_LOSS, options.LAMBDA, options.GAMMA, options.K, options.DEFAULT_SIGMA)
    assert (loop.epochs, loop.batch_size, loop.lr, loop.patience) == (
        options.EPOCHS, options.BATCH_SIZE, options.LR, options.PATIENCE)
    assert (gcn.epochs, gcn.lr, gcn.hidden, gcn.m) == (
        options.GCN_EPOCHS, options.GCN_LR, options.GCN_HIDDEN, options.BERTGCN_M)
    assert EncoderConfig().max_length == options.MAX_LENGTH and EvaluateConfig().knn_k == options.K


def test_choice_error_is_one_line():
    assert options.choice_error("--loss", "foo", ("ce", "gloss")) == "--loss foo: expected one of ce, gloss"
