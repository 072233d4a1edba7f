import pytest
import torch

from graphs.memory_bank import MemoryBank


def _data(n=50, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_fill_stores_normalised_detached_rows():
    x, y = _data()
    bank = MemoryBank(50, 8).fill(x.requires_grad_(), y)
    assert not bank.embeddings.requires_grad
    torch.testing.assert_close(bank.embeddings, torch.nn.functional.normalize(x.detach(), dim=1))
    assert torch.equal(bank.labels, y) and bank.num_filled == 50 and len(bank) == 50


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_search_never_returns_the_excluded_own_rows(backend):
    x, y = _data()
    bank = MemoryBank(50, 8, backend=backend).fill(x, y)
    _, found = bank.search(x[:10], 3)
    assert torch.equal(found[:, 0], torch.arange(10))  # a stale copy of itself is the best match
    _, index = bank.search(x[:10], 3, exclude=torch.arange(10))
    assert not (index == torch.arange(10).view(-1, 1)).any()
    assert torch.equal(index, bank.search(x[:10], 4)[1][:, 1:])  # the next three instead


def test_faiss_and_torch_banks_agree():
    x, y = _data(200, 16, seed=1)
    queries = torch.randn(7, 16, generator=torch.Generator().manual_seed(2))
    s_t, i_t = MemoryBank(200, 16, backend="torch").fill(x, y).search(queries, 5, exclude=torch.arange(7))
    s_f, i_f = MemoryBank(200, 16, backend="faiss").fill(x, y).search(queries, 5, exclude=torch.arange(7))
    assert torch.equal(i_t, i_f)
    torch.testing.assert_close(s_t, s_f, atol=1e-5, rtol=1e-5)


def test_update_changes_search_results():
    x, y = _data()
    bank = MemoryBank(50, 8).fill(x, y)
    query = torch.randn(1, 8, generator=torch.Generator().manual_seed(3))
    bank.update(torch.tensor([17]), query * 5)
    scores, index = bank.search(query, 1)
    assert index.item() == 17 and scores.item() == pytest.approx(1.0)
    assert bank.labels[17] == y[17]  # labels kept when not given
    bank.update(torch.tensor([17]), query, labels=torch.tensor([3]))
    assert bank.labels[17] == 3


def test_partially_filled_bank_only_returns_filled_rows():
    x, y = _data(10, 4, seed=4)
    bank = MemoryBank(30, 4, metric="l2")
    bank.fill(x, y, indices=torch.arange(10) * 3)  # rows 0, 3, ..., 27
    _, index = bank.search(x[:2], 5, exclude=torch.tensor([0, 3]))
    assert bool((index % 3 == 0).all())
    assert not (index == torch.tensor([[0], [3]])).any()
    assert bank.num_filled == 10


def test_memory_bank_errors():
    bank = MemoryBank(5, 4)
    with pytest.raises(ValueError, match="Expected the memory bank to be filled before searching it"):
        bank.search(torch.randn(2, 4), 1)
    with pytest.raises(ValueError, match=r"Expected 'embeddings' to have 4 columns \(got 3\)"):
        bank.fill(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Expected 'indices' to lie in \[0, 5\)"):
        bank.update(torch.tensor([7]), torch.randn(1, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="Expected 'labels' when updating rows that were never filled"):
        bank.update(torch.tensor([1]), torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"Expected 'metric' to be one of \('cosine', 'l2'\)"):
        MemoryBank(5, 4, metric="ip")


# --- index="ivf" ---------------------------------------------------------------------------------------------

def _clustered(n=4000, d=32, centres=40, noise=0.3, seed=0):
    """Rows around ``centres`` random unit directions (a Gaussian mixture, L2-normalised) and their labels."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.nn.functional.normalize(torch.randn(centres, d, generator=g), dim=1)
    which = torch.randint(0, centres, (n,), generator=g)
    x = mu[which] + noise / d**0.5 * torch.randn(n, d, generator=g)
    return torch.nn.functional.normalize(x, dim=1), which % 4


def _recall(found, exact):
    return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True)) / exact.numel()


def test_ivf_recall_against_flat_on_clustered_rows():
    x, y = _clustered()
    queries, own = x[:200] + 0.01 * torch.randn(200, 32, generator=torch.Generator().manual_seed(5)), torch.arange(200)
    _, exact = MemoryBank(4000, 32).fill(x, y).search(queries, 10, exclude=own)
    ivf = MemoryBank(4000, 32, index="ivf", nprobe=16).fill(x, y)
    scores, found = ivf.search(queries, 10, exclude=own)
    assert ivf._ivf.nlist == 102 and ivf._ivf.ntotal == 4000  # default_nlist(4000) = min(252, 4000 // 39)
    assert found.shape == (200, 10) and not (found == own.view(-1, 1)).any()
    assert _recall(found, exact) >= 0.9
    q = torch.nn.functional.normalize(queries, dim=1)
    torch.testing.assert_close(scores, (q.unsqueeze(1) * x[found]).sum(-1))  # exact scores of the rows found
    ivf.nprobe = 1
    assert _recall(ivf.search(queries, 10, exclude=own)[1], exact) < _recall(found, exact)


def test_ivf_never_returns_unfilled_rows_and_answers_short_queries_exactly():
    x, y = _clustered(1000, 16, seed=1)
    bank = MemoryBank(3000, 16, metric="l2", index="ivf", nlist=8, nprobe=1)
    bank.fill(x, y, indices=torch.arange(1000) * 3)  # rows 0, 3, ..., 2997
    # 200 > every list (the largest holds 193 rows): every query falls back to the exact search
    scores, index = bank.search(x[:50], 200, exclude=torch.arange(50) * 3)
    assert index.shape == (50, 200) and bool((index % 3 == 0).all()) and bool((index >= 0).all())
    assert not (index == (torch.arange(50) * 3).view(-1, 1)).any()
    exact_scores, exact = MemoryBank(3000, 16, metric="l2").fill(x, y, indices=torch.arange(1000) * 3).search(
        x[:50], 200, exclude=torch.arange(50) * 3)
    assert torch.equal(index, exact) and torch.equal(scores, exact_scores)


def test_ivf_update_moves_rows_and_adds_new_ones():
    x, y = _clustered(2000, 16, seed=2)
    bank = MemoryBank(2001, 16, index="ivf", nprobe=4)
    bank.fill(x, y, indices=torch.arange(2000))
    bank.search(x[:1], 1)  # builds the index
    target = -x[7:8]  # far from row 7's old list
    bank.update(torch.tensor([7, 7]), torch.cat([target, target]))
    scores, index = bank.search(target, 1)
    assert index.item() == 7 and scores.item() == pytest.approx(1.0) and bank._ivf.ntotal == 2000
    bank.update(torch.tensor([2000]), x[3:4], labels=torch.tensor([1]))  # a row never filled before
    assert bank._ivf.ntotal == 2001 and 2000 in bank.search(x[3:4], 2)[1].tolist()[0]


def test_ivf_refill_retrains():
    x, y = _clustered(2000, 16, seed=3)
    bank = MemoryBank(2000, 16, index="ivf", nlist=20).fill(x, y)
    bank.search(x[:1], 1)
    first = bank._ivf
    assert bank.last_build_s is not None and first.is_trained
    bank.fill(-x, y)
    _, index = bank.search(-x[:5], 1)
    assert bank._ivf is not first and torch.equal(index.view(-1), torch.arange(5))
    centroids = first.quantizer.reconstruct_n(0, 20)
    assert not torch.allclose(torch.from_numpy(bank._ivf.quantizer.reconstruct_n(0, 20)), torch.from_numpy(centroids))


def test_gloss_bank_with_ivf_gives_finite_loss_and_gradient():
    from graphs.losses import GLoss

    x, y = _clustered(3000, 16, seed=4)
    bank = MemoryBank(3000, 16, index="ivf").fill(x, y)
    batch = torch.randperm(3000, generator=torch.Generator().manual_seed(0))[:64]
    emb = (x[batch] + 0.05 * torch.randn(64, 16, generator=torch.Generator().manual_seed(1))).requires_grad_()
    loss = GLoss(graph="bank", memory_bank=bank, sigma=0.5, k=5, seed=0)(emb, y[batch], indices=batch)["g_loss"]
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    torch.testing.assert_close(bank.embeddings[batch], torch.nn.functional.normalize(emb.detach(), dim=1))
    stored = torch.from_numpy(bank._ivf.reconstruct_batch(batch.numpy()))  # the index moved the rows too
    torch.testing.assert_close(stored, bank.embeddings[batch])
    import faiss  # each row was filed under its nearest list (taken from the search, not recomputed)

    assert bank._searched_lists(batch, torch.unique(batch)) is not None  # the update reused the search's lists
    nearest = bank._ivf.quantizer.search(bank.embeddings[batch].numpy(), 1)[1][:, 0]
    assert [faiss.lo_listno(bank._ivf.direct_map.get(int(i))) for i in batch] == nearest.tolist()


def test_ivf_options_errors_and_repr():
    assert "index='ivf', nlist=None, nprobe=8" in repr(MemoryBank(5, 4, index="ivf"))
    assert "index" not in repr(MemoryBank(5, 4))
    with pytest.raises(ValueError, match=r"Expected 'index' to be one of \('flat', 'ivf'\) \(got 'hnsw'\)"):
        MemoryBank(5, 4, index="hnsw")
    with pytest.raises(ValueError, match=r"Expected 'nprobe' to be a positive integer \(got 0\)"):
        MemoryBank(5, 4, index="ivf", nprobe=0)
    with pytest.raises(ValueError, match="Expected index='ivf' and CPU storage to build an IVF index"):
        MemoryBank(5, 4).build_index()
