"""Data-parallel fit() on 2 gloo processes (tests/distributed.py, one launch for the module), compared with one
process training on the same global batches: the trained weights and the metrics agree for G-Loss, SupCon and LCL
(the adapter of --train-layers 0), for class-weighted CE on unequal shards, and with --train-layers 1 and all;
a run stopped after an epoch resumes under 2 processes to the same end; a failure on one rank (a NaN shard, a
validation error on rank 0, a checkpoint folder or a run directory rank 1 cannot see) stops both ranks with the same
one line.

Dropout is switched off (the adapter has none; the transformer layers' is set to 0), so 1 and 2 processes differ
only by float rounding: the order in which the ranks' gradients are summed."""

from __future__ import annotations

import copy
import functools
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.encoder import EncoderConfig, load_encoder
from pipeline.training.distributed import SHARED_TOKEN, Ranks, current_ranks, shard
from pipeline.training.loop import Checkpoints, FitCallbacks, FitData, LoopConfig, fit
from pipeline.training.objectives import Objective, ObjectiveConfig, balanced_class_weights
from pipeline.training.partial import build_encoder
from tests.cli import gloss, prepare_tiny
from tests.conftest import FIXTURES
from tests.distributed import run_ranks

MAX_LENGTH = 8
# 2 global batches of 6 per epoch (3 rows per rank); the adapter learns at head_lr
ADAPTER = LoopConfig(epochs=2, batch_size=6, patience=5, eval_batch_size=16, bucket=False, train_layers="0",
                     head_lr=0.05)


@functools.cache
def tiny() -> FitData:
    """The tiny fixture's training file: 29 rows to train on (classes of 8, 5, 8 and 8: balanced class weights
    differ) and 12 to validate on."""
    frame = pd.read_csv(FIXTURES / "tiny" / "train.csv")
    labels = frame["label"].astype("category").cat.codes.to_numpy()
    val = np.concatenate([np.flatnonzero(labels == c)[-3:] for c in range(4)])
    train = np.setdiff1d(np.arange(len(frame)), np.concatenate([val, np.flatnonzero(labels == 1)[:3]]))
    texts = frame["text"].tolist()
    return FitData([texts[i] for i in train], labels[train], [texts[i] for i in val], labels[val])


@functools.cache
def adapter_data() -> FitData:
    texts = ["oil prices rose", "crude output fell", "opec cut supply", "brent gained",
             "profit was up", "earnings grew", "quarterly net rose", "revenue beat forecasts",
             "grain exports", "wheat crop", "corn harvest", "soybean shipments"]
    labels = np.repeat(np.arange(3), 4)
    return FitData(texts, labels, texts[::2], labels[::2])


# name -> (objective, loop, data, balanced class weights); the weights are compared with one process below
RUNS = {
    "gloss+ce": (ObjectiveConfig(loss="gloss+ce", sigma=0.5, lam=0.5), ADAPTER, adapter_data, False),
    "scl+ce": (ObjectiveConfig(loss="scl+ce", temperature=0.3), ADAPTER, adapter_data, False),
    "lcl+ce": (ObjectiveConfig(loss="lcl+ce", lcl_weighting="head", lam=0.5, temperature=0.3), ADAPTER,
               adapter_data, False),
    # batches of 7, 7, 7 and 8 (shards of 4 and 3, then 4 and 4) and class weights: CE's global mean
    "ce-weighted": (ObjectiveConfig(loss="ce", class_weights="balanced"), replace(ADAPTER, batch_size=7), tiny,
                    True),
    "layers-1": (ObjectiveConfig(loss="gloss+ce", sigma=0.5, lam=0.5),
                 replace(ADAPTER, epochs=1, batch_size=8, train_layers="1", lr=1e-3), tiny, False),
    "layers-all": (ObjectiveConfig(loss="gloss+ce", sigma=0.5, lam=0.5),
                   replace(ADAPTER, epochs=1, batch_size=8, train_layers="all", lr=1e-4), tiny, False),
}


@functools.cache
def pristine_encoder():
    """The packaged encoder without dropout, loaded once per process (each run trains a copy)."""
    model = load_encoder(EncoderConfig(max_length=MAX_LENGTH, device="cpu"))
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


class Stop(Exception):
    pass


class Faulty:
    """A batch encoder that fails on one rank: NaN training embeddings (``"batch"``, the 2nd batch) or NaN
    validation embeddings (``"val"``)."""

    def __init__(self, encoder, fault: str) -> None:
        self.encoder, self.fault, self.calls = encoder, fault, 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def batch(self, split, rows):
        self.calls += 1
        embeddings = self.encoder.batch(split, rows)
        return embeddings * float("nan") if self.fault == "batch" and self.calls == 2 else embeddings

    def embed(self, split, *args, **kwargs):
        embeddings = self.encoder.embed(split, *args, **kwargs)
        return embeddings * np.nan if self.fault == "val" and split == "val" else embeddings


def train(folder, name: str, ranks: Ranks, stop_after: int | None = None, resume: bool = False,
          fault: str | None = None) -> dict:
    """fit() of run ``name`` from a fixed start; the trained weights and the history (or the error raised)."""
    objective_config, loop, data, weighted = RUNS[name]
    data = data()
    torch.manual_seed(0)
    model = copy.deepcopy(pristine_encoder())
    texts = {"train": data.train_texts, "val": data.val_texts}
    encoder_config = EncoderConfig(max_length=MAX_LENGTH, device="cpu")
    built = build_encoder(model, loop.train_layers, encoder_config, texts, 16, echo=lambda _: None).encoder
    classes = int(data.train_labels.max()) + 1
    head = torch.nn.Linear(model.get_embedding_dimension(), classes)
    weights = balanced_class_weights(data.train_labels, classes) if weighted else None
    objective = Objective(objective_config, classes, seed=0, class_weights=weights)

    def on_epoch_end(epoch, record):
        if epoch == stop_after:
            raise Stop

    callbacks = FitCallbacks(on_epoch_end=on_epoch_end, echo=lambda _: None, progress=False)
    start = _trained(model, head)
    try:
        result = fit(model, head, objective, data, loop, Checkpoints(folder, run_config={"run": name}, resume=resume),
                     callbacks=callbacks, encoder=Faulty(built, fault) if fault else built, ranks=ranks)
    except Stop:
        return {"stopped": True}
    except Exception as error:  # what each rank raised, for the tests of failures
        return {"error": (type(error).__name__, str(error))}
    return {"start": start, "weights": _trained(model, head), "history": result.history}


def _trained(model, head) -> dict[str, torch.Tensor]:
    """Copies of the trained weights: the encoder's trained part (adapter or layers) and the head."""
    modules = {"model": model, "head": head}
    return {f"{prefix}.{name}": parameter.detach().clone() for prefix, module in modules.items()
            for name, parameter in module.named_parameters() if parameter.requires_grad}


def _rank(rank: int, world_size: int, folder: str, runs: tuple[str, str]) -> dict:
    ranks = current_ranks()
    assert (ranks.rank, ranks.world_size) == (rank, world_size)
    folder = Path(folder)
    out = {name: train(folder / name, name, ranks) for name in RUNS}
    # stopped after epoch 1 (e.g. killed), then resumed under the same 2 processes
    assert train(folder / "resumed", "gloss+ce", ranks, stop_after=1)["stopped"]
    out["resumed"] = train(folder / "resumed", "gloss+ce", ranks, resume=True)
    # failures on one rank: every rank must stop (none left waiting in a collective), with the same line
    out["nan-on-rank-1"] = train(folder / "nan", "gloss+ce", ranks, fault="batch" if rank == 1 else None)
    out["val-nan-on-rank-0"] = train(folder / "val", "gloss+ce", ranks, fault="val" if rank == 0 else None)
    # a checkpoint folder rank 1 does not see (as on another node without a shared filesystem)
    out["not-shared"] = train(folder / f"not-shared-{rank}", "gloss+ce", ranks)
    # gloss train with a run directory rank 1 sees as a copy (another node's disk): refused before any work
    refused = gloss("train", "--run-dir", runs[rank], "--loss", "gloss+ce", "--sigma", "0.5", "--train-layers", "0",
                    "--max-length", str(MAX_LENGTH), "--batch-size", "8", catch_exceptions=True)
    out["stage-not-shared"] = (refused.exit_code, refused.output)
    return out | {"folder": str(folder / f"not-shared-{rank}" / SHARED_TOKEN)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_root) -> tuple[Path, Path]:
    """A prepared run of the tiny dataset (rank 0's) and a copy of it (what rank 1 sees)."""
    folder = tmp_path_factory.mktemp("runs")
    prepare_tiny(tiny_root, folder / "run")
    shutil.copytree(folder / "run", folder / "copy")
    return folder / "run", folder / "copy"


@pytest.fixture(scope="module")
def ranks_results(tmp_path_factory, runs) -> list[dict]:
    folder = tmp_path_factory.mktemp("ddp")
    return run_ranks(_rank, 2, folder / "ranks", str(folder / "checkpoints"), tuple(str(r) for r in runs))


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("single")
    return {name: train(folder / name, name, Ranks()) for name in RUNS}


def _flat(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([weights[name].double().flatten() for name in sorted(weights)])


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


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_train_the_weights_and_metrics_of_one(ranks_results, single, name):
    first, second = (r[name] for r in ranks_results)
    _close(first["weights"], second["weights"], 0.0)  # DDP: one averaged gradient, the same step everywhere
    # 2 processes move the weights as 1 does: the difference is under 0.1% of the distance travelled (measured:
    # at most 3e-5; CE averaged per shard: 0.48). Not elementwise: Adam divides each gradient by its own running
    # norm, which turns the rounding of a gradient that is zero in exact arithmetic (a key bias's) into steps of
    # order lr.
    start, one, two = (_flat(w) for w in (single[name]["start"], single[name]["weights"], first["weights"]))
    travelled = float((one - start).norm())
    assert travelled > 0 and float((two - one).norm()) < 1e-3 * travelled, float((two - one).norm()) / travelled
    assert any(k.startswith("model.") for k in first["weights"])  # the encoder's trained part is compared too
    part = RUNS[name][0].loss.split("+")[0].replace("gloss", "g_loss")
    for a, b in zip(first["history"], single[name]["history"], strict=True):
        for key in ("train_total", "train_ce", f"train_{part}", "val_macro_f1", "val_macro_silhouette"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
        assert a["train_total"] > 0


def test_a_stopped_two_process_run_resumes_to_the_uninterrupted_end(ranks_results):
    for result in ranks_results:
        _close(result["resumed"]["weights"], result["gloss+ce"]["weights"], 1e-6)
        assert [r["val_macro_f1"] for r in result["resumed"]["history"]] == pytest.approx(
            [r["val_macro_f1"] for r in result["gloss+ce"]["history"]], abs=1e-6)


def test_nan_on_one_rank_stops_every_rank_with_its_line(ranks_results, tmp_path_factory):
    errors = [result["nan-on-rank-1"]["error"] for result in ranks_results]
    assert errors[0] == errors[1]
    kind, message = errors[0]
    assert kind == "GlossError" and "\n" not in message
    assert message.startswith("epoch 1 batch 2: NaN or Inf in the embeddings on rank 1; stopped")


def test_a_validation_failure_on_rank_0_stops_every_rank(ranks_results):
    errors = [result["val-nan-on-rank-0"]["error"] for result in ranks_results]
    assert errors[0] == errors[1] == ("GlossError", "validation embeddings contain NaN or Inf: the model diverged "
                                                    "(lower --lr)")


def test_a_checkpoint_folder_rank_1_cannot_see_is_refused_on_every_rank(ranks_results):
    errors = [result["not-shared"]["error"] for result in ranks_results]
    assert errors[0] == errors[1]
    kind, message = errors[0]
    assert kind == "GlossError" and message.startswith(f"rank 1 cannot see {ranks_results[1]['folder']}")
    assert "which rank 0 wrote: data-parallel training needs the run directory on one filesystem" in message


def test_gloss_train_on_a_run_directory_rank_1_cannot_see_is_refused_before_any_work(ranks_results, runs):
    token = runs[1] / SHARED_TOKEN
    for result in ranks_results:
        exit_code, output = result["stage-not-shared"]
        assert exit_code == 1 and f"Error: rank 1 cannot see {token}, which rank 0 wrote" in output, output
        assert output.count("\n") == 1 and "Traceback" not in output
    for run in runs:
        assert sorted(p.name for p in run.iterdir()) == ["prepare"]  # no train/, no scratch, no token


def test_nothing_is_left_of_the_shared_folder_check(ranks_results):
    assert not list(Path(ranks_results[0]["folder"]).parent.parent.rglob(SHARED_TOKEN))


def test_one_process_stops_on_nan_without_a_process_group(tmp_path):
    kind, message = train(tmp_path, "gloss+ce", Ranks(), fault="batch")["error"]
    assert kind == "GlossError" and message.startswith("epoch 1 batch 2: NaN or Inf in the embeddings; stopped")
