"""Data-parallel fit() on 2 gloo processes (tests/distributed.py): the trained weights are the same on both
ranks, the metrics match one process training on the same global batches; a run stopped after an epoch
resumes under 2 processes to the same end. The adapter of --train-layers 0 trains (no dropout), so 1 and 2 processes agree
to float precision."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

from pipeline.encoder import EncoderConfig, load_encoder
from pipeline.training.distributed import Ranks, current_ranks, shard
from pipeline.training.loop import Checkpoints, FitCallbacks, FitData, LoopConfig, fit
from pipeline.training.objectives import Objective, ObjectiveConfig
from pipeline.training.partial import build_encoder
from tests.distributed import run_ranks

TEXTS = ["oil prices rose", "crude output fell", "opec cut supply", "brent gained",
         "profit was up", "earnings grew", "quarterly net rose", "revenue beat forecasts",
         "grain exports", "wheat crop", "corn harvest", "soybean shipments"]
LABELS = np.repeat(np.arange(3), 4)
OBJECTIVES = {"gloss+ce": ObjectiveConfig(loss="gloss+ce", sigma=0.5, lam=0.5),
              "scl+ce": ObjectiveConfig(loss="scl+ce", temperature=0.3),
              "lcl+ce": ObjectiveConfig(loss="lcl+ce", lcl_weighting="head", lam=0.5, temperature=0.3)}
# 2 global batches of 6 per epoch (3 rows per rank); the adapter learns at head_lr
CONFIG = LoopConfig(epochs=2, batch_size=6, patience=5, eval_batch_size=16, bucket=False, train_layers="0",
                    head_lr=0.05)


@functools.cache
def pristine_encoder():
    """The packaged encoder, loaded once per process (each run trains a copy)."""
    return load_encoder(EncoderConfig(max_length=12, device="cpu"))


class Stop(Exception):
    pass


def train(folder, loss: str, ranks: Ranks, stop_after: int | None = None, resume: bool = False) -> dict:
    """fit() of ``loss`` from a fixed start; the trained weights (adapter and head) and the history."""
    torch.manual_seed(0)
    model = copy.deepcopy(pristine_encoder())
    texts = {"train": TEXTS, "val": TEXTS[::2]}
    built = build_encoder(model, "0", EncoderConfig(max_length=12, device="cpu"), texts, 16, echo=lambda _: None)
    head = torch.nn.Linear(model.get_embedding_dimension(), 3)
    objective = Objective(OBJECTIVES[loss], 3, seed=0)

    def on_epoch_end(epoch, record):
        if epoch == stop_after:
            raise Stop

    callbacks = FitCallbacks(on_epoch_end=on_epoch_end, echo=lambda _: None, progress=False)
    try:
        result = fit(model, head, objective, FitData(TEXTS, LABELS, TEXTS[::2], LABELS[::2]), CONFIG,
                     Checkpoints(folder, run_config={"loss": loss}, resume=resume), callbacks=callbacks,
                     encoder=built.encoder, ranks=ranks)
    except Stop:
        return {"stopped": True}
    weights = {f"adapter.{k}": v for k, v in list(model)[2].state_dict().items()}
    weights |= {f"head.{k}": v for k, v in head.state_dict().items()}
    return {"weights": weights, "history": result.history}


def _rank(rank: int, world_size: int, folder: str) -> dict:
    from pathlib import Path

    ranks = current_ranks()
    assert (ranks.rank, ranks.world_size) == (rank, world_size)
    out = {loss: train(Path(folder) / loss, loss, ranks) for loss in OBJECTIVES}
    # stopped after epoch 1 (e.g. killed), then resumed under the same 2 processes
    assert train(Path(folder) / "resumed", "gloss+ce", ranks, stop_after=1)["stopped"]
    return out | {"resumed": train(Path(folder) / "resumed", "gloss+ce", ranks, resume=True)}


@pytest.fixture(scope="module")
def ranks_results(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("ddp")
    return run_ranks(_rank, 2, folder / "ranks", str(folder / "checkpoints"))


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("single")
    return {loss: train(folder / loss, loss, Ranks()) for loss in OBJECTIVES}


def _close(a: dict, b: dict, tolerance: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        difference = float((a[name] - b[name]).abs().max())
        assert difference <= tolerance, f"{name}: differs by {difference:.3g}"


def test_shards_rebuild_the_global_batch_in_rank_order():
    rows = np.arange(7)
    parts = [shard(rows, Ranks(r, 2)) for r in range(2)]
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    assert shard(rows, Ranks()) is rows


@pytest.mark.parametrize("loss", list(OBJECTIVES))
def test_both_ranks_end_with_the_same_weights_as_one_process(ranks_results, single, loss):
    first, second = (r[loss] for r in ranks_results)
    _close(first["weights"], second["weights"], 0.0)  # DDP: one averaged gradient, the same step everywhere
    assert any(bool(v.abs().sum() > 0) for k, v in first["weights"].items() if k.startswith("adapter"))
    # The metrics of 1 and 2 processes agree (epoch 2's train loss and the silhouettes follow the weights).
    # The weights themselves are not compared with a tolerance: Adam divides each gradient by its own running
    # norm, which turns float rounding of near-zero gradients (summed in another order) into steps of
    # order lr.
    part = OBJECTIVES[loss].loss.split("+")[0].replace("gloss", "g_loss")
    for a, b in zip(first["history"], single[loss]["history"], strict=True):
        for key in ("train_total", "train_ce", f"train_{part}", "val_macro_f1", "val_macro_silhouette"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
        assert a["train_total"] > 0


def test_a_stopped_two_process_run_resumes_to_the_uninterrupted_end(ranks_results):
    for result in ranks_results:
        _close(result["resumed"]["weights"], result["gloss+ce"]["weights"], 1e-6)
        assert [r["val_macro_f1"] for r in result["resumed"]["history"]] == pytest.approx(
            [r["val_macro_f1"] for r in result["gloss+ce"]["history"]], abs=1e-6)
