"""fit() on a dozen texts through the real encoder: per-epoch callback, statistics, stop and resume."""

import copy
import json

import numpy as np
import pytest
import torch

from pipeline.encoder import EncoderConfig, load_encoder
from pipeline.training.loop import Checkpoints, FitCallbacks, FitData, LoopConfig, fit
from pipeline.training.objectives import Objective, ObjectiveConfig, WeightingNetwork

TEXTS = ["oil prices rose", "crude output fell", "opec cut supply", "brent gained",
         "profit was up", "earnings grew", "quarterly net rose", "revenue beat forecasts",
         "grain exports", "wheat crop", "corn harvest", "soybean shipments"]
LABELS = np.repeat(np.arange(3), 4)
DATA = FitData(TEXTS, LABELS, TEXTS[::2], LABELS[::2])
CONFIG = LoopConfig(epochs=2, batch_size=6, patience=5, eval_batch_size=16, bucket=False)


def _fit(tmp_path, objective_config, callbacks, resume=False, weights=None):
    """fit() from a fixed start; ``weights`` (a dict) receives the trained model's state."""
    torch.manual_seed(0)
    model = load_encoder(EncoderConfig(max_length=12, device="cpu"))
    objective = Objective(objective_config, 3, seed=0, train_size=len(TEXTS), dim=model.get_embedding_dimension())
    checkpoints = Checkpoints(tmp_path / "ckpt", run_config={"loss": objective_config.loss}, resume=resume)
    result = fit(model, None, objective, DATA, CONFIG, checkpoints, callbacks=callbacks)
    if weights is not None:
        weights.update(model.state_dict())
    return result, objective


def test_on_epoch_end_sees_every_record_and_statistics_are_epoch_totals(tmp_path):
    seen = []
    callbacks = FitCallbacks(on_epoch_end=lambda epoch, record: seen.append((epoch, record)), echo=lambda _: None,
                             progress=False)
    result, objective = _fit(tmp_path, ObjectiveConfig(loss="gloss", sigma=0.5, graph="bank", k=3), callbacks)
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert [record for _, record in seen] == result.history
    record = result.history[0]
    assert {"train_g_loss", "train_total", "train_stat_unscored", "val_macro_silhouette"} <= set(record)
    assert record["train_stat_unscored"] >= 0 and float(record["train_stat_unscored"]).is_integer()
    assert objective.embedding_loss.memory_bank.num_filled == len(TEXTS)
    written = [json.loads(x) for x in (tmp_path / "ckpt" / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in written] == [1, 2]


class Pruned(Exception):
    pass


def test_raising_from_on_epoch_end_stops_and_the_run_resumes(tmp_path):
    def prune(epoch, record):
        raise Pruned

    quiet = FitCallbacks(on_epoch_end=prune, echo=lambda _: None, progress=False)
    with pytest.raises(Pruned):
        _fit(tmp_path, ObjectiveConfig(loss="cosine"), quiet)
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    for name in ("last.pt", "best.pt"):  # tensors and plain metadata only
        assert torch.load(tmp_path / "ckpt" / name, weights_only=True)["epoch"] == 1
    lines, resumed_weights = [], {}
    result, _ = _fit(tmp_path, ObjectiveConfig(loss="cosine"), FitCallbacks(echo=lines.append, progress=False),
                     resume=True, weights=resumed_weights)
    assert any("resumed from" in line and "after epoch 1" in line for line in lines)
    assert [r["epoch"] for r in result.history] == [1, 2] and result.epochs_run == 2
    # ... to the end of an uninterrupted run: the same metrics and weights (every layer trains, with dropout)
    whole_weights = {}
    whole, _ = _fit(tmp_path / "whole", ObjectiveConfig(loss="cosine"), FitCallbacks(echo=lambda _: None,
                    progress=False), weights=whole_weights)
    for got, expected in zip(result.history, whole.history, strict=True):
        for key in ("train_total", "train_cosine", "val_macro_silhouette"):
            assert got[key] == pytest.approx(expected[key], abs=1e-6), (got["epoch"], key)
    assert whole.best_epoch == result.best_epoch
    for name, value in whole_weights.items():
        torch.testing.assert_close(resumed_weights[name], value, atol=1e-6, rtol=0, msg=name)


def test_multistep_drops_the_learning_rate_after_each_milestone_epoch():
    from pipeline.training.loop import _make_schedule

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = _make_schedule(LoopConfig(schedule="multistep", milestones=(2, 3), epochs=4, warmup_ratio=0.5),
                              optimizer, steps_per_epoch=3)
    rates = []
    for _ in range(12):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    # epochs 1-2 at the base rate (no warm-up), epoch 3 x0.1, epoch 4 x0.01 (as MultiStepLR stepped per epoch)
    assert rates == pytest.approx([1.0] * 6 + [0.1] * 3 + [0.01] * 3)


def test_parse_milestones():
    from pipeline.training.loop import parse_milestones

    assert parse_milestones("30") == (30,) and parse_milestones("60, 30") == (30, 60)
    for bad in ("", "x", "0", "3.5"):
        with pytest.raises(ValueError, match="--milestones"):
            parse_milestones(bad)


def test_second_forward_encodes_each_training_batch_twice(tmp_path):
    """Two training-mode forwards per batch (CE on the first, the embedding loss on the second: see
    tests/pipeline/training/test_objectives.py); validation and embedding stay single passes."""
    calls = []
    torch.manual_seed(0)
    model = load_encoder(EncoderConfig(max_length=12, device="cpu"))
    model.register_forward_hook(lambda module, args, output: calls.append(
        (module.training, len(output["sentence_embedding"]))))
    head = torch.nn.Linear(model.get_embedding_dimension(), 3)
    config = LoopConfig(epochs=1, batch_size=6, patience=5, eval_batch_size=16, bucket=False, second_forward=True)
    quiet = FitCallbacks(echo=lambda _: None, progress=False)
    result = fit(model, head, Objective(ObjectiveConfig(loss="scl+ce"), 3, seed=0), DATA, config,
                 Checkpoints(tmp_path / "ckpt"), callbacks=quiet)
    assert [size for training, size in calls if training] == [6, 6, 6, 6]
    assert {"train_ce", "train_scl"} <= set(result.history[0])


def test_resume_refusal_names_only_the_dotted_keys_that_differ(tmp_path):
    from pipeline.errors import GlossError

    old = {"method": "finetune", "loop": {"lr": 1.0, "epochs": 3}, "objective": {"loss": "ce", "lam": 0.8}}
    new = {"method": "finetune", "loop": {"lr": 2.0, "epochs": 3}, "objective": {"loss": "ce", "lam": 0.8}}
    (tmp_path / "ckpt").mkdir()
    torch.save({"run_config": old}, tmp_path / "ckpt" / "last.pt")
    with pytest.raises(GlossError) as error:
        Checkpoints(tmp_path / "ckpt", run_config=new, resume=True).load_last("cpu")
    message = str(error.value)
    assert message.endswith("different config: loop.lr (1.0 -> 2.0)"), message


def test_embedding_without_a_terminal_prints_progress_lines():
    from pipeline.encoder import embed_texts

    model = load_encoder(EncoderConfig(max_length=12, device="cpu"))
    lines = []
    array = embed_texts(model, TEXTS, batch_size=2, progress="embed: train", echo=lines.append)
    assert array.shape == (len(TEXTS), 384)
    assert lines and all(line.startswith("embed: train: ") and "documents embedded" in line for line in lines)
    assert "4/12 documents embedded" in lines[1]


class _Pickled:
    """Not a tensor nor plain metadata: a checkpoint holding it is never unpickled."""


def test_a_checkpoint_with_arbitrary_objects_is_refused_not_unpickled(tmp_path):
    from pipeline.errors import GlossError

    (tmp_path / "ckpt").mkdir()
    torch.save({"run_config": {"loss": _Pickled()}}, tmp_path / "ckpt" / "last.pt")
    with pytest.raises(GlossError, match="more than tensors and plain metadata"):
        Checkpoints(tmp_path / "ckpt", run_config={"loss": "ce"}, resume=True).load_last("cpu")


def _fit_lcl(folder, callbacks, resume=False):
    """lcl+ce with a separate weighting network (a second MiniLM), 2 epochs of 2 batches."""
    torch.manual_seed(0)
    model = load_encoder(EncoderConfig(max_length=12, device="cpu"))
    weighting = WeightingNetwork(copy.deepcopy(model), 3)  # what from_encoder_config loads, without reloading
    for name, parameter in [*model.named_parameters(), *weighting.encoder.named_parameters()]:
        parameter.requires_grad = "layer.5." in name  # only the last layer trains: small, fast checkpoints
    objective = Objective(ObjectiveConfig(loss="lcl+ce"), 3, weighting=weighting)
    head = torch.nn.Linear(model.get_embedding_dimension(), 3)
    checkpoints = Checkpoints(folder, run_config={"loss": "lcl+ce"}, resume=resume)
    config = LoopConfig(epochs=2, batch_size=6, patience=5, eval_batch_size=16, bucket=False, lr=1e-3)
    return fit(model, head, objective, DATA, config, checkpoints, callbacks=callbacks), weighting


def _scores(history):
    return [{k: v for k, v in r.items() if k.startswith(("train_", "val_")) and k != "train_seconds"}
            for r in history]


def test_lcl_weighting_network_is_trained_checkpointed_and_resumed(tmp_path):
    """The optimizer trains the weighting network (it moves), every checkpoint holds it, the best epoch's
    is restored, and a run resumed from the checkpoint of epoch 1 ends where the uninterrupted one does."""
    import shutil

    def snapshot(epoch, record):  # the state a run killed after epoch 1 leaves behind
        if epoch == 1:
            shutil.copytree(tmp_path / "a", tmp_path / "b")

    result, weighting = _fit_lcl(tmp_path / "a", FitCallbacks(on_epoch_end=snapshot, echo=lambda _: None,
                                                              progress=False))
    assert {"train_ce", "train_ce_weighting", "train_lcl", "train_stat_lcl_skipped_anchors"} <= set(result.history[0])
    first = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["objective"]
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["objective"]
    last = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["objective"]
    state = weighting.state_dict()
    assert set(first) == set(best) == set(last) == set(state)
    moved = [k for k in state if not torch.equal(first[k], last[k])]
    assert any(k.startswith("encoder.") for k in moved) and "head.weight" in moved
    for key, value in best.items():
        torch.testing.assert_close(state[key], value)

    lines = []
    resumed, resumed_weighting = _fit_lcl(tmp_path / "b", FitCallbacks(echo=lines.append, progress=False),
                                          resume=True)
    assert any("resumed from" in line and "after epoch 1" in line for line in lines)
    for got, expected in zip(_scores(resumed.history), _scores(result.history), strict=True):
        assert got == pytest.approx(expected)
    for key, value in resumed_weighting.state_dict().items():
        torch.testing.assert_close(value, state[key])
