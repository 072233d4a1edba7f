"""The global batch of a data-parallel run (graphs.distributed) and the losses that gather it: on 2 gloo
processes holding 7 and 5 rows, each loss equals the single-process loss of the 12 concatenated rows, and each
rank's rows get world_size x the single-process gradient (DDP's gradient averaging divides it back)."""

from __future__ import annotations

import pytest
import torch

from graphs.distributed import gather_rows, rank_and_world_size
from graphs.losses import GLoss, LabelAwareContrastiveLoss, SupervisedContrastiveLoss
from graphs.memory_bank import MemoryBank
from tests.distributed import run_ranks

SHARDS = (slice(0, 7), slice(7, 12))  # unequal shards: the gather pads and strips


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """12 rows of 8 dimensions, 3 classes, and 3 class logits per row (LCL's weighting network)."""
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(12, 8, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    logits = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    return embeddings, labels, logits


def make_loss(name: str, gather: bool):
    if name == "scl":
        return SupervisedContrastiveLoss(0.2, gather_across_devices=gather)
    if name == "lcl":
        return LabelAwareContrastiveLoss(0.3, gather_across_devices=gather)
    if name == "bank":
        bank = MemoryBank(20, 8, dtype=torch.float64)
        generator = torch.Generator().manual_seed(1)
        bank.fill(torch.randn(20, 8, generator=generator, dtype=torch.float64), torch.arange(20) % 3)
        return GLoss(graph="bank", k=3, sigma=0.7, memory_bank=bank, gather_across_devices=gather)
    return GLoss(graph=name, k=4, sigma=0.7, gather_across_devices=gather)


def loss_and_grads(name: str, gather: bool, rows: slice) -> dict:
    """The loss of ``rows`` of the batch (gathered or not), the gradients of those rows' embeddings and
    logits, and the bank after the update."""
    embeddings, labels, logits = batch()
    x = embeddings[rows].clone().requires_grad_(True)
    g = logits[rows].clone().requires_grad_(True)
    loss = make_loss(name, gather)
    if name == "lcl":
        value = loss(x, labels[rows], logits=g)["lcl"]
    elif name == "scl":
        value = loss(x, labels[rows])["scl"]
    else:
        value = loss(x, labels[rows], indices=torch.arange(12)[rows])["g_loss"]
    value.backward()
    bank = loss.memory_bank.embeddings.clone() if name == "bank" else None
    return {"loss": float(value.detach()), "grad": x.grad, "logits_grad": g.grad, "bank": bank}


def _rank_losses(rank: int, world_size: int, names: tuple[str, ...]) -> dict:
    """On one rank: every loss gathered, the dense G-Loss of the shard alone, and a plain gather."""
    assert rank_and_world_size() == (rank, world_size)
    results = {name: loss_and_grads(name, True, SHARDS[rank]) for name in names}
    return results | {"dense-sharded": shard_loss(rank, gather=False), "gather_rows": _rank_gather(rank, world_size)}


# a visible/hidden split of each shard in which every hidden row's class has a visible row on the shard
VISIBLE = torch.tensor([True, True, True, False, False, False, True] + [True, True, True, False, False])


def shard_loss(rank: int | None, gather: bool) -> float:
    """The dense G-Loss of rank ``rank``'s shard (``None``: the whole batch) with the split ``VISIBLE``."""
    embeddings, labels, _ = batch()
    rows = slice(0, 12) if rank is None else SHARDS[rank]
    loss = GLoss(graph="dense", sigma=0.7, damping=0.0, gather_across_devices=gather)
    return float(loss(embeddings[rows], labels[rows], visible=VISIBLE[rows])["g_loss"])


def _rank_gather(rank: int, world_size: int) -> tuple:
    embeddings, labels, _ = batch()
    rows = SHARDS[rank]
    x = embeddings[rows].clone().requires_grad_(True)
    gathered, gathered_labels, nothing = gather_rows(x, labels[rows], None)
    (gathered * torch.arange(12.0, dtype=torch.float64)[:, None]).sum().backward()
    return gathered.detach(), gathered_labels, nothing, x.grad


NAMES = ("dense", "knn", "bank", "scl", "lcl")


@pytest.fixture(scope="module")
def gathered(tmp_path_factory) -> list[dict]:
    return run_ranks(_rank_losses, 2, tmp_path_factory.mktemp("ranks"), NAMES)


def test_gather_rows_concatenates_unequal_shards_with_summed_gradients(gathered):
    embeddings, labels, _ = batch()
    for rank, (rows, row_labels, nothing, grad) in enumerate(r["gather_rows"] for r in gathered):
        assert torch.equal(rows, embeddings) and torch.equal(row_labels, labels) and nothing is None
        # both ranks' losses weigh row i by i: the owner's rows get the sum of the two gradients
        expected = 2 * torch.arange(12.0, dtype=torch.float64)[SHARDS[rank], None].expand(-1, 8)
        assert torch.equal(grad, expected)


def test_gather_rows_outside_a_process_group_returns_its_input():
    x = torch.randn(3, 2)
    assert gather_rows(x, None)[0] is x


@pytest.mark.parametrize("name", NAMES)
def test_gathered_loss_equals_the_single_process_loss_of_the_global_batch(gathered, name):
    single = loss_and_grads(name, False, slice(0, 12))
    assert single["loss"] > 0
    for rank, result in enumerate(gathered):
        assert abs(result[name]["loss"] - single["loss"]) <= 1e-6
        # each rank's rows: world_size x the single-process gradient (DDP's mean divides it back)
        torch.testing.assert_close(result[name]["grad"] / 2, single["grad"][SHARDS[rank]], atol=1e-6, rtol=0)
        if name == "lcl":
            torch.testing.assert_close(result[name]["logits_grad"] / 2, single["logits_grad"][SHARDS[rank]],
                                       atol=1e-6, rtol=0)


def test_gathered_bank_update_leaves_the_same_bank_on_every_rank(gathered):
    single = loss_and_grads("bank", False, slice(0, 12))
    filled = make_loss("bank", False).memory_bank.embeddings
    assert not torch.allclose(single["bank"][:12], filled[:12])  # the batch's 12 rows were rewritten ...
    assert torch.equal(single["bank"][12:], filled[12:])  # ... and only those
    for result in gathered:
        torch.testing.assert_close(result["bank"]["bank"], single["bank"], atol=1e-12, rtol=0)


def test_without_gathering_each_rank_scores_only_its_shard(gathered):
    from tests.graphs.losses.test_g_loss import _manual_dense_loss

    embeddings, labels, _ = batch()
    whole = shard_loss(None, gather=False)
    for rank, result in enumerate(gathered):
        rows = SHARDS[rank]
        # the paper's formula (explicit inverse) on the shard's rows alone ...
        shard_alone = float(_manual_dense_loss(embeddings[rows], labels[rows], VISIBLE[rows], 0.7))
        assert result["dense-sharded"] == pytest.approx(shard_alone, abs=1e-9)
        assert abs(shard_alone - whole) > 1e-3  # ... which is not the loss of the whole batch
