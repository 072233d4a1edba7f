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
