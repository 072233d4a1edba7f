"""--train-layers through the train stage on the shipped tiny dataset: the CPU default, bank mode, history,
resume, predict (the saved folder is a normal sentence-transformers model) and evaluate."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.encoder import EncoderConfig, load_encoder
from pipeline.predict import predict
from pipeline.training.loop import Checkpoints, FitCallbacks, FitData, LoopConfig, fit
from pipeline.training.objectives import Objective, ObjectiveConfig
from pipeline.training.partial import build_encoder
from tests.cli import TINY, prepare_tiny
from tests.cli import gloss as _gloss


@pytest.fixture(scope="module")
def prepared(tiny_root, tmp_path_factory):
    return prepare_tiny(tiny_root, tmp_path_factory.mktemp("tiny-layers") / "run")


def _copy(prepared, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    return run


def _predictions_match_test_logits(run):
    test = pd.read_csv(run / "prepare" / "test.csv", keep_default_na=False)
    path = run.parent / "test.txt"
    path.write_text("\n".join(test["text"]) + "\n")
    predicted = predict(run, path)["rows"]
    labels = json.loads((run / "train" / "model" / "labels.json").read_text())
    logits = np.load(run / "train" / "logits_test.npy")
    assert [row["label"] for row in predicted] == [labels[i] for i in logits.argmax(1)]


def test_cpu_default_is_the_adapter_and_predict_uses_it(prepared, tmp_path):
    run = _copy(prepared, tmp_path)
    result = _gloss("train", "--run-dir", str(run), "--loss", "ce", *TINY)
    assert result.exit_code == 0, result.output
    assert "train: --train-layers 0 (auto on cpu): adapter" in result.output
    manifest = json.loads((run / "train" / "manifest.json").read_text())
    assert manifest["config"]["loop"]["train_layers"] == "0" and manifest["config"]["loop"]["precision"] == "fp32"
    assert manifest["summary"]["train_layers"] == "0" and manifest["summary"]["frozen_cache"]["kind"] == "embeddings"
    assert manifest["summary"]["trainable_parameters"] == 384 * 384 + 384 + 384 * 4 + 4
    assert (run / "train" / "model" / "2_Dense").is_dir()
    _predictions_match_test_logits(run)
    again = _gloss("train", "--run-dir", str(run), "--loss", "ce", "--train-layers", "0", *TINY)
    assert "skipped" in again.output.lower() or "unchanged" in again.output.lower(), again.output


def test_top_layer_on_cached_states_with_the_memory_bank(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("GLOSS_CACHE", str(tmp_path / "cache"))  # its own cache: it asserts the states are computed
    run = _copy(prepared, tmp_path)
    args = ["--loss", "gloss+ce", "--graph", "bank", "--k", "3", "--sigma", "batch-sqrt", "--train-layers", "1", *TINY]
    result = _gloss("train", "--run-dir", str(run), *args)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "train" / "manifest.json").read_text())["summary"]
    assert summary["train_layers"] == "1" and summary["frozen_cache"]["kind"] == "frozen-layers"
    history = [json.loads(line) for line in (run / "train" / "history.jsonl").read_text().splitlines()]
    assert all(0 < h["mean_padded_length"] <= 16 for h in history) and "train_g_loss" in history[0]
    _predictions_match_test_logits(run)
    assert "caching the embeddings and 5 frozen layers of train+val (" in result.output
    assert _gloss("evaluate", "--run-dir", str(run), "--tsne-max", "0").exit_code == 0


TEXTS = ["oil prices rose", "crude output fell", "opec cut supply", "brent gained", "profit was up", "earnings grew",
         "quarterly net rose", "revenue beat forecasts", "grain exports", "wheat crop", "corn harvest", "soybeans"]
LABELS = np.repeat(np.arange(3), 4)


class _Stop(Exception):
    pass


def _fit(folder, resume=False, stop_after=None):
    torch.manual_seed(0)
    model = load_encoder(EncoderConfig(max_length=12, device="cpu"))
    config = EncoderConfig(max_length=12, device="cpu")
    built = build_encoder(model, "1", config, {"train": TEXTS, "val": TEXTS[::2]}, 16, echo=lambda _: None)
    head = torch.nn.Linear(384, 3)
    objective = Objective(ObjectiveConfig(loss="gloss+ce", sigma=0.5), 3, seed=0)

    def stop(epoch, record):
        if epoch == stop_after:
            raise _Stop

    result = fit(model, head, objective, FitData(TEXTS, LABELS, TEXTS[::2], LABELS[::2]),
                 LoopConfig(epochs=2, batch_size=6, patience=5, eval_batch_size=16),
                 Checkpoints(folder, run_config={"train_layers": "1"}, resume=resume),
                 callbacks=FitCallbacks(on_epoch_end=stop, echo=lambda _: None, progress=False), encoder=built.encoder)
    return result, model


def test_resume_of_a_partial_run_matches_an_uninterrupted_one(tmp_path):
    whole, model = _fit(tmp_path / "whole")
    with pytest.raises(_Stop):
        _fit(tmp_path / "cut", stop_after=1)
    resumed, again = _fit(tmp_path / "cut", resume=True)

    def plain(history):
        return [{k: v for k, v in h.items() if "seconds" not in k and k != "docs_per_second"} for h in history]

    assert plain(resumed.history) == plain(whole.history)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("args, message", [
    (["--train-layers", "top"], "--train-layers top: expected all, auto or a number of top layers"),
    (["--precision", "fp16"], "--precision fp16: needs a CUDA device"),
])
def test_protocol_errors_are_one_line(prepared, args, message):
    result = CliRunner().invoke(main, ["train", "--run-dir", str(prepared), "--sigma", "batch-sqrt", *args])
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith("Error: ")
    assert message in result.output


@pytest.mark.parametrize("train_layers", ["1", "0"])
def test_lcl_weighting_network_trains_what_train_layers_says(prepared, tmp_path, train_layers):
    """--lcl-weighting separate: the weighting copy trains the top layer on the shared cached states (1) or an
    adapter on the frozen embeddings (0), not its whole encoder; it is saved with the run and reloads."""
    from pipeline.stages.train import load_weighting

    run = _copy(prepared, tmp_path)
    result = _gloss("train", "--run-dir", str(run), "--loss", "lcl+ce", "--train-layers", train_layers, *TINY)
    assert result.exit_code == 0, result.output
    history = [json.loads(line) for line in (run / "train" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_ce_weighting"] < history[0]["train_ce_weighting"]
    trained = load_weighting(run / "train").encoder.state_dict()
    pristine = load_encoder(EncoderConfig(max_length=16, device="cpu")).state_dict()
    moved = {name for name, value in pristine.items() if not torch.equal(value, trained[name])}
    if train_layers == "1":
        assert moved and all(".layer.5." in name for name in moved), sorted(moved)[:5]
    else:
        assert not moved and any(name.startswith("2.") for name in trained)  # only the appended adapter trains
