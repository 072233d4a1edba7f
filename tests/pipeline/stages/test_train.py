"""The fine-tuning stage end to end on the shipped tiny dataset (tests/fixtures/tiny, 44 training documents)
with the packaged MiniLM; no GLOSS_DATA needed."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.cli import TINY, prepare_tiny
from tests.cli import gloss as _gloss


@pytest.fixture(scope="module")
def r8_slice(tiny_root, tmp_path_factory):
    """RUN/prepare of the tiny dataset (the name is historical: this was a 64-document slice of R8)."""
    return prepare_tiny(tiny_root, tmp_path_factory.mktemp("tiny") / "run")


@pytest.fixture(scope="module")
def trained(r8_slice, tmp_path_factory):
    """An uninterrupted 2-epoch CE run on a copy of the prepared slice."""
    import shutil

    run = tmp_path_factory.mktemp("trained") / "run"
    shutil.copytree(r8_slice, run)
    result = _gloss("train", "--run-dir", str(run), "--loss", "ce", *TINY)
    assert result.exit_code == 0, result.output
    return run


def test_training_writes_every_artifact(trained):
    manifest = json.loads((trained / "train" / "manifest.json").read_text())
    outputs = set(manifest["outputs"])
    for name in ("history.jsonl", "embeddings_train.npy", "embeddings_val.npy", "embeddings_test.npy",
                 "logits_val.npy", "logits_test.npy", "model/head.pt", "model/labels.json",
                 "model/model.safetensors", "val_embeddings/epoch-1.npy", "val_embeddings/epoch-2.npy"):
        assert name in outputs, name
    history = [json.loads(line) for line in (trained / "train" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    for key in ("train_ce", "val_accuracy", "val_macro_f1", "val_macro_silhouette", "seconds"):
        assert key in history[0]
    summary = manifest["summary"]
    scores = [h["val_macro_f1"] for h in history]
    assert summary["best_epoch"] == 1 + int(np.argmax(scores))  # the first epoch with the best val macro-F1
    assert summary["best_val"]["val_macro_f1"] == max(scores) and summary["has_head"] is True
    assert [h["best_so_far"] for h in history] == [1, summary["best_epoch"]]
    rows = json.loads((trained / "prepare" / "manifest.json").read_text())["summary"]["rows"]
    assert manifest["outputs"]["embeddings_train.npy"]["shape"] == [rows["train"], 384]
    # the kept weights are the best epoch's: its val embeddings are the final ones
    np.testing.assert_allclose(np.load(trained / "train" / "embeddings_val.npy"),
                               np.load(trained / "train" / "val_embeddings" / f"epoch-{summary['best_epoch']}.npy"),
                               atol=1e-5)
    assert not (trained / ".scratch" / "train").exists()


def test_second_train_is_skipped(trained):
    result = _gloss("train", "--run-dir", str(trained), "--loss", "ce", *TINY)
    assert "up to date" in result.output


def test_resume_after_sigkill_matches_uninterrupted(r8_slice, trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(r8_slice, run)
    cmd = [sys.executable, "-m", "pipeline.cli", "train", "--run-dir", str(run), "--loss", "ce", *TINY]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = run / ".scratch" / "train" / "last.pt"
    deadline = time.time() + 600
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint appeared"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run / "train" / "manifest.json").exists()
    resumed = _gloss("train", "--run-dir", str(run), "--loss", "ce", *TINY, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from" in resumed.output
    history = [json.loads(x) for x in (run / "train" / "history.jsonl").read_text().splitlines()]
    reference = [json.loads(x) for x in (trained / "train" / "history.jsonl").read_text().splitlines()]
    for ours, theirs in zip(history, reference, strict=True):
        for key in ("train_ce", "val_accuracy", "val_macro_f1", "val_macro_silhouette"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    np.testing.assert_allclose(np.load(run / "train" / "logits_test.npy"),
                               np.load(trained / "train" / "logits_test.npy"), atol=1e-5)


def test_resume_with_different_config_is_refused(r8_slice, tmp_path):
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(r8_slice, run)
    scratch = run / ".scratch" / "train"
    scratch.mkdir(parents=True)
    torch.save({"run_config": {"lr": 1.0}}, scratch / "last.pt")
    result = CliRunner().invoke(main, ["train", "--run-dir", str(run), "--loss", "ce", *TINY, "--resume"])
    assert result.exit_code == 1
    assert "--resume:" in result.output and "different config" in result.output and "lr" in result.output


def test_predict_new_texts(trained, tmp_path):
    source = tmp_path / "new.txt"
    source.write_text("oil prices rose as crude output fell\n\nthe company reported quarterly earnings\n")
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(main, ["predict", "--run", str(trained), "--input", str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    labels = json.loads((trained / "prepare" / "labels.json").read_text())
    assert len(rows) == 3 and rows[1]["skipped"] == "empty"
    for row in (rows[0], rows[2]):
        assert row["label"] in labels
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert "1 empty" in result.output


def test_unknown_model_path_is_one_line_error(r8_slice, tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    result = CliRunner().invoke(main, ["train", "--run-dir", str(r8_slice), "--model", str(empty), *TINY])
    assert result.exit_code == 1 and "no weights in the folder" in result.output


def test_batch_sigma_needs_no_embed_stage(r8_slice, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(r8_slice, run)
    assert not (run / "embed").exists()
    args = ["--epochs", "1", "--max-length", "16", "--batch-size", "16", "--seed", "3"]
    result = _gloss("train", "--run-dir", str(run), "--loss", "gloss+ce", "--sigma", "batch-sqrt", *args)
    assert result.exit_code == 0, result.output
    history = [json.loads(x) for x in (run / "train" / "history.jsonl").read_text().splitlines()]
    assert {"train_g_loss", "train_ce", "train_total", "train_stat_unscored"} <= set(history[0])


def test_unknown_sigma_is_one_line_error(r8_slice):
    result = CliRunner().invoke(main, ["train", "--run-dir", str(r8_slice), "--sigma", "median", *TINY])
    assert result.exit_code == 1
    assert "--sigma median: expected one of sqrt, dicm, batch-sqrt, batch-dicm, or a positive number" in result.output


def test_lcl_separate_saves_and_reloads_the_weighting_network(r8_slice, tmp_path):
    """lcl+ce with the defaults it resolves (lambda 0.5, tau 0.3, separate weighting network, in the manifest):
    RUN/train/weighting/ holds the weighting network, which reloads and is not the main encoder."""
    import shutil

    import torch

    from pipeline.encoder import embed_texts, to_device
    from pipeline.stages.train import load_weighting

    run = tmp_path / "run"
    shutil.copytree(r8_slice, run)
    result = _gloss("train", "--run-dir", str(run), "--loss", "lcl+ce", "--epochs", "1", "--max-length", "12",
                    "--batch-size", "16", "--seed", "3")
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "train" / "manifest.json").read_text())
    objective = manifest["config"]["objective"]
    assert (objective["lam"], objective["temperature"], objective["lcl_weighting"]) == (0.5, 0.3, "separate")
    for name in ("weighting/head.pt", "weighting/labels.json", "weighting/model.safetensors", "model/head.pt"):
        assert name in manifest["outputs"], name
    history = json.loads((run / "train" / "history.jsonl").read_text().splitlines()[0])
    assert {"train_ce", "train_ce_weighting", "train_lcl", "train_stat_lcl_skipped_anchors"} <= set(history)
    weighting = load_weighting(run / "train")
    texts = ["oil prices rose sharply", "the wheat harvest was large"]
    with torch.inference_mode():
        logits = weighting.eval()(to_device(weighting.encoder.preprocess(texts), "cpu"))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    from sentence_transformers import SentenceTransformer

    main_model = SentenceTransformer(str(run / "train" / "model"), device="cpu")
    assert not np.allclose(embed_texts(main_model, texts), embed_texts(weighting.encoder, texts), atol=1e-4)


def test_per_loss_defaults_in_help():
    result = _gloss("train", "--help")
    assert "0.8; lcl+ce: 0.5" in result.output and "0.1; lcl+ce: 0.3" in result.output
    assert "--lcl-weighting [separate|head]" in result.output and "twice the" in result.output


def test_lcl_option_errors(r8_slice):
    result = CliRunner().invoke(main, ["train", "--run-dir", str(r8_slice), "--loss", "lcl+ce",
                                       "--temperature", "0"])
    assert result.exit_code == 1 and "--temperature 0.0: must be positive" in result.output
