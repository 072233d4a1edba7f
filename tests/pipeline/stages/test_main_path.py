"""The main path on the shipped ``tiny`` dataset (no GLOSS_DATA): embed and the sigma lookup, train with G-Loss
on dense / kNN / bank graphs with the G-Loss options from the command line, and ``gloss run --preset reference``
end to end. One epoch, max length 16: seconds each."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import options
from pipeline.cli import main
from tests.cli import gloss as _gloss
from tests.cli import prepare_tiny

FAST = ["--epochs", "1", "--max-length", "8", "--batch-size", "16", "--seed", "1"]
SPLIT = ["--val-fraction", "0.25"]  # 3 val documents per class: the standalone monitor (silhouette) needs 2



def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train" / "history.jsonl").read_text().splitlines()]


def _manifest(run: Path, stage: str) -> dict:
    return json.loads((run / stage / "manifest.json").read_text())


@pytest.fixture(scope="module")
def embedded(tiny_root, tmp_path_factory) -> Path:
    """RUN/prepare and RUN/embed of the tiny dataset."""
    run = prepare_tiny(tiny_root, tmp_path_factory.mktemp("tiny") / "run", *SPLIT)
    result = _gloss("embed", "--run-dir", run, "--max-length", "16")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run(embedded, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(embedded, copy)
    return copy


def test_embed_writes_every_split_and_both_sigma_heuristics(embedded):
    manifest = _manifest(embedded, "embed")
    rows = _manifest(embedded, "prepare")["summary"]["rows"]
    for split in ("train", "val", "test"):
        assert manifest["outputs"][f"embeddings_{split}.npy"]["shape"] == [rows[split], 384]
    sigma = json.loads((embedded / "embed" / "sigma.json").read_text())
    x = np.load(embedded / "embed" / "embeddings_train.npy")
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    distances = np.linalg.norm(x[:, None] - x[None], axis=-1)[np.triu_indices(len(x), 1)]
    assert sigma["sqrt"] == pytest.approx(np.sqrt(np.median(distances) / 3), rel=1e-3)
    assert 0 < sigma["dicm"] < sigma["sqrt"]


def test_gloss_ce_on_the_bank_graph_refills_the_bank_every_epoch(run, monkeypatch):
    from pipeline.training.objectives import Objective

    fills = []
    original = Objective.on_epoch_start

    def spy(self, encode_train):
        original(self, encode_train)
        fills.append(self.embedding_loss.memory_bank.num_filled)

    monkeypatch.setattr(Objective, "on_epoch_start", spy)
    args = [*FAST, "--epochs", "2", "--patience", "5"]
    result = _gloss("train", "--run-dir", run, "--loss", "gloss+ce", "--graph", "bank", "--k", "3", *args)
    assert result.exit_code == 0, result.output
    train_rows = _manifest(run, "prepare")["summary"]["rows"]["train"]
    assert fills == [train_rows, train_rows]
    manifest = _manifest(run, "train")
    sigma = json.loads((run / "embed" / "sigma.json").read_text())
    assert manifest["summary"]["sigma"] == pytest.approx(sigma["sqrt"])  # --sigma sqrt: the embed stage's value
    assert manifest["config"]["objective"]["graph"] == "bank"
    history = _history(run)
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"train_g_loss", "train_ce", "train_total"} <= set(history[0]) and history[0]["train_g_loss"] > 0
    assert "logits_test.npy" in manifest["outputs"]


def test_gloss_ce_on_an_ivf_bank_trains_and_records_the_index(run, monkeypatch):
    from pipeline.training.objectives import Objective

    banks = []
    original = Objective.on_epoch_start

    def spy(self, encode_train):
        original(self, encode_train)
        banks.append(self.embedding_loss.memory_bank)

    monkeypatch.setattr(Objective, "on_epoch_start", spy)
    result = _gloss("train", "--run-dir", run, "--loss", "gloss+ce", "--graph", "bank", "--k", "3",
                    "--bank-index", "ivf", "--nprobe", "2", *FAST)
    assert result.exit_code == 0, result.output
    assert (banks[0].index, banks[0].nprobe) == ("ivf", 2) and banks[0]._ivf is not None  # searched with the index
    objective = _manifest(run, "train")["config"]["objective"]
    assert (objective["bank_index"], objective["nprobe"]) == ("ivf", 2)
    assert _history(run)[0]["train_g_loss"] > 0


def test_flat_bank_runs_keep_their_stage_config():
    """The default --bank-index flat leaves the train stage config (and so every earlier run's hash) as it was."""
    from pipeline.stages.train import TrainConfig
    from pipeline.training.objectives import ObjectiveConfig

    assert "bank_index" not in TrainConfig().stage_config()["objective"]
    ivf = TrainConfig(objective=ObjectiveConfig(graph="bank", bank_index="ivf", nprobe=4)).stage_config()
    assert (ivf["objective"]["bank_index"], ivf["objective"]["nprobe"]) == ("ivf", 4)


def test_standalone_gloss_on_knn_graphs_with_loss_form_and_dicm_from_the_cli(run):
    result = _gloss("train", "--run-dir", run, "--loss", "gloss", "--graph", "knn", "--k", "3",
                    "--loss-form", "released", "--sigma", "dicm", *FAST)
    assert result.exit_code == 0, result.output
    manifest = _manifest(run, "train")
    objective = manifest["config"]["objective"]
    assert (objective["loss"], objective["graph"], objective["loss_form"], objective["variant"]) == (
        "gloss", "knn", "released", "gloss")
    sigma = json.loads((run / "embed" / "sigma.json").read_text())
    assert manifest["summary"]["sigma"] == pytest.approx(sigma["dicm"]) and manifest["summary"]["has_head"] is False
    assert "logits_test.npy" not in manifest["outputs"] and "embeddings_val.npy" in manifest["outputs"]
    history = _history(run)
    assert "train_ce" not in history[0] and history[0]["train_g_loss"] > 0
    assert manifest["summary"]["best_epoch"] == 1


@pytest.mark.parametrize("args, message", [
    (["--variant", "released", "--loss-form", "released"], "--loss-form released: applies to --variant gloss only"),
    (["--variant", "released", "--graph", "knn"], "--variant released: the released code builds dense batch graphs"),
    (["--milestones", "ten"], "--milestones ten: expected a comma list of epochs"),
    (["--bank-index", "ivf", "--graph", "knn"], "--bank-index ivf: applies to --graph bank only (got --graph knn)"),
    (["--graph", "bank", "--bank-index", "ivf", "--nprobe", "0"], "--nprobe 0: must be at least 1"),
])
def test_g_loss_option_conflicts_are_one_line_errors(embedded, args, message):
    result = CliRunner().invoke(main, ["train", "--run-dir", str(embedded), *args, *FAST])
    assert result.exit_code == 1 and message in result.output, result.output


def test_run_with_the_reference_preset_end_to_end(tiny_root, tmp_path):
    """`gloss run --preset reference`: released G-Loss + CE, balanced class weights, CLS, Adam, multistep, a
    second forward; flags override the preset; the manifest records it; evaluate runs both probes."""
    run = tmp_path / "run"
    result = _gloss("run", "--dataset", "tiny", "--data-root", tiny_root, "--run-dir", run, "--preset", "reference",
                    *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "embed", "evaluate", "prepare", "train"]
    train = _manifest(run, "train")
    config = train["config"]
    assert config["preset"] == "reference"
    assert (config["objective"]["variant"], config["objective"]["class_weights"]) == ("released", "balanced")
    assert (config["encoder"]["pooling"], config["encoder"]["max_length"]) == ("cls", 8)  # flag over preset
    loop = config["loop"]
    # the CPU's --train-layers auto -> 0 trains no pre-trained weight: the preset's lr 1e-5 is reported, not applied
    assert "--preset reference: its lr 1e-05 is not applied" in result.output
    assert (loop["optimizer"], loop["lr"], loop["schedule"], loop["milestones"], loop["second_forward"]) == (
        "adam", options.LR, "multistep", [30], True)
    assert (loop["epochs"], loop["batch_size"], loop["patience"]) == (1, 16, 10)
    import pandas as pd

    labels = pd.read_csv(run / "prepare" / "train.csv")["label_id"].to_numpy()
    counts = np.bincount(labels)
    np.testing.assert_allclose(train["summary"]["class_weights"], len(labels) / (len(counts) * counts), rtol=1e-5)
    assert {"train_g_loss", "train_ce"} <= set(_history(run)[0])
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert metrics["reference_probe"] is not None and metrics["linear_probe"] is not None


def test_a_corpus_sigma_below_the_floor_falls_back_to_sqrt_and_says_so():
    from pipeline.stages.train import corpus_sigma

    lines = []
    used = corpus_sigma({"sqrt": 0.52, "dicm": 0.004}, "dicm", echo=lines.append)
    assert (used.value, used.fallback_from) == (0.52, 0.004)
    assert lines and "below 0.01" in lines[0] and "sqrt" in lines[0]
    assert corpus_sigma({"sqrt": 0.52, "dicm": 0.2}, "dicm", echo=lines.append).value == 0.2
    kept = corpus_sigma({"sqrt": 0.005, "dicm": 0.004}, "dicm", echo=lines.append)  # nothing better to fall to
    assert (kept.value, kept.fallback_from) == (0.004, None)
