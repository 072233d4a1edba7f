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
    assert options.VARIANTS == g_loss.VARIANTS
    defaults = _defaults(GLoss)
    assert (defaults["gamma"], defaults["k"], defaults["graph"], defaults["loss_form"], defaults["variant"]) == (
        options.GAMMA, options.K, options.DEFAULT_GRAPH_MODE, options.DEFAULT_LOSS_FORM, options.DEFAULT_VARIANT)


def test_library_g_loss_defaults_are_the_command_lines():
    import torch

    from graphs.losses import GLoss
    from pipeline.training.st_loss import GLossCEST, GLossST

    defaults = _defaults(GLoss)
    assert defaults["sigma"] == options.LIBRARY_SIGMA == f"batch-{options.DEFAULT_SIGMA}"  # no corpus in a loss
    assert defaults["combined"] == (options.DEFAULT_LOSS == "gloss+ce")  # the CLI: combined = (loss == gloss+ce)
    standalone = GLossST(torch.nn.Identity()).gloss
    assert (standalone.sigma, standalone.combined) == (options.LIBRARY_SIGMA, False)  # as --loss gloss
    assert GLossST(torch.nn.Identity(), combined=True).gloss.combined is True
    assert GLossCEST.combined_default is True  # as --loss gloss+ce


def test_memory_bank_index_vocabulary_and_nprobe_agree():
    from graphs import memory_bank

    assert options.BANK_INDEXES == memory_bank.INDEXES and options.DEFAULT_BANK_INDEX in options.BANK_INDEXES
    defaults = _defaults(memory_bank.MemoryBank)
    assert (defaults["index"], defaults["nprobe"]) == (options.DEFAULT_BANK_INDEX, options.NPROBE)


def test_sigma_names_agree():
    from graphs import sigma

    assert options.CORPUS_SIGMA_HEURISTICS == sigma.SIGMA_HEURISTICS
    assert options.BATCH_SIGMA_HEURISTICS == sigma.BATCH_SIGMA_HEURISTICS
    assert options.DEFAULT_SIGMA in options.SIGMA_HEURISTICS
    assert options.MIN_USEFUL_SIGMA == sigma.MIN_USEFUL_SIGMA


def test_comparison_loss_defaults_agree():
    from graphs.losses import BatchAllTripletLoss, SupervisedContrastiveLoss

    assert _defaults(SupervisedContrastiveLoss)["temperature"] == options.TEMPERATURE
    assert _defaults(BatchAllTripletLoss)["margin"] == options.MARGIN


def test_label_aware_contrastive_defaults_agree():
    from graphs.losses import LabelAwareContrastiveLoss

    assert _defaults(LabelAwareContrastiveLoss)["temperature"] == options.LCL_TEMPERATURE
    assert options.loss_default("lcl+ce", "temperature") == options.LCL_TEMPERATURE
    assert options.loss_default("lcl+ce", "lam") == options.LCL_LAMBDA == 0.5
    assert options.DEFAULT_LCL_WEIGHTING in options.LCL_WEIGHTINGS


def test_per_loss_defaults_name_real_losses_and_options():
    assert set(options.LOSS_DEFAULTS) <= set(options.LOSSES)
    for values in options.LOSS_DEFAULTS.values():
        assert set(values) <= set(options.PER_LOSS_OPTIONS)
    assert options.loss_default("gloss+ce", "lam") == options.LAMBDA
    assert options.loss_default("scl+ce", "temperature") == options.TEMPERATURE
    assert options.loss_default_text("lam") == "0.8; lcl+ce: 0.5"
    assert options.loss_default_text("temperature") == "0.1; lcl+ce: 0.3"


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
    from graphs.models import bertgcn

    assert options.BERTGCN_ACTIVATIONS == tuple(bertgcn.ACTIVATIONS)
    assert _defaults(BertGCN)["activation"] == options.BERTGCN_ACTIVATION


@pytest.mark.parametrize("vocabulary, default", [
    ("LOSSES", "DEFAULT_LOSS"), ("METHODS", "DEFAULT_METHOD"), ("POOLINGS", "DEFAULT_POOLING"),
    ("OPTIMIZERS", "DEFAULT_OPTIMIZER"), ("SCHEDULES", "DEFAULT_SCHEDULE"), ("PAIR_COUNTS", "DEFAULT_PAIR_COUNT"),
    ("INSPECT_SOURCES", "DEFAULT_INSPECT_SOURCE"), ("TEXTGCN_SELECTS", "TEXTGCN_SELECT"),
    ("TEXTGCN_MODELS", "TEXTGCN_MODEL"), ("VARIANTS", "DEFAULT_VARIANT"), ("CLASS_WEIGHTS", "DEFAULT_CLASS_WEIGHTS"),
    ("PROBES", "DEFAULT_PROBE"), ("BERTGCN_ACTIVATIONS", "BERTGCN_ACTIVATION"),
    ("BERTGCN_SCHEDULES", "BERTGCN_SCHEDULE"),
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
    assert (objective.variant, objective.class_weights) == (options.DEFAULT_VARIANT, options.DEFAULT_CLASS_WEIGHTS)
    assert loop.milestones == (30,) and loop.second_forward is False
    assert (gcn.epochs, gcn.lr, gcn.hidden, gcn.m) == (
        options.GCN_EPOCHS, options.GCN_LR, options.GCN_HIDDEN, options.BERTGCN_M)
    # knn_k None: k is chosen on validation (label_propagation falls back to options.K)
    assert EncoderConfig().max_length == options.MAX_LENGTH and EvaluateConfig().knn_k is None
    assert EvaluateConfig().probe == options.DEFAULT_PROBE
    assert EvaluateConfig().predictor == options.DEFAULT_PREDICTOR


def test_reference_probe_defaults_are_the_options():
    from pipeline.evaluation.probe import reference_probe

    defaults = {k: p.default for k, p in inspect.signature(reference_probe).parameters.items()}
    assert (defaults["lr"], defaults["max_epochs"], defaults["patience"]) == (
        options.REFERENCE_PROBE_LR, options.REFERENCE_PROBE_EPOCHS, options.REFERENCE_PROBE_PATIENCE)


def test_choice_error_is_one_line():
    assert options.choice_error("--loss", "foo", ("ce", "gloss")) == "--loss foo: expected one of ce, gloss"
