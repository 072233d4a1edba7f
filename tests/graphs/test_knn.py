import pytest
import torch
from torch_geometric.utils import scatter

import graphs.knn as knn_module
from graphs.knn import knn_edge_index, knn_graph, knn_search, resolve_backend


def _random(n, d=8, seed=0, dtype=torch.float32):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _brute_force(queries, database, k, metric, mask=None):
    if metric == "cosine":
        q, db = torch.nn.functional.normalize(queries, dim=1), torch.nn.functional.normalize(database, dim=1)
        scores = q @ db.t()
    elif metric == "ip":
        scores = queries @ database.t()
    else:
        scores = torch.cdist(queries.double(), database.double()).pow(2).to(queries.dtype)
    largest = metric != "l2"
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf") if largest else float("inf"))
    order = scores.argsort(dim=1, descending=largest)[:, :k]
    return scores.gather(1, order), order


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_knn_search_matches_brute_force(metric, backend):
    queries, database = _random(7, seed=1), _random(30, seed=2)
    scores, index = knn_search(queries, database, 4, metric=metric, backend=backend)
    ref_scores, ref_index = _brute_force(queries, database, 4, metric)
    assert index.dtype == torch.long and index.shape == (7, 4)
    assert torch.equal(index, ref_index)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_faiss_and_torch_backends_find_the_same_neighbours(metric):
    x = _random(200, d=16, seed=3)
    s_t, i_t = knn_search(x, x, 10, metric=metric, backend="torch", exclude_self=True)
    s_f, i_f = knn_search(x, x, 10, metric=metric, backend="faiss", exclude_self=True)
    assert torch.equal(i_t, i_f)
    torch.testing.assert_close(s_t, s_f, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_exclude_self_drops_own_row(backend):
    x = _random(25, seed=4)
    _, index = knn_search(x, x, 5, metric="l2", backend=backend, exclude_self=True)
    assert not (index == torch.arange(25).view(-1, 1)).any()
    _, ref = _brute_force(x, x, 5, "l2", mask=torch.eye(25, dtype=torch.bool))
    assert torch.equal(index, ref)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_exclude_rows_per_query(backend):
    queries, database = _random(6, seed=5), _random(40, seed=6)
    _, first = knn_search(queries, database, 1, backend=backend)
    exclude = torch.stack([first[:, 0], torch.full((6,), -1)], dim=1)  # drop each best match, -1 is ignored
    _, index = knn_search(queries, database, 3, backend=backend, exclude=exclude)
    assert not (index == first).any()
    mask = torch.zeros(6, 40, dtype=torch.bool)
    mask[torch.arange(6), first[:, 0]] = True
    assert torch.equal(index, _brute_force(queries, database, 3, "cosine", mask=mask)[1])


def test_torch_search_merges_database_blocks(monkeypatch):
    queries, database = _random(9, seed=7), _random(100, seed=8)
    ref_scores, ref_index = knn_search(queries, database, 6, metric="l2", backend="torch")
    monkeypatch.setattr(knn_module, "TORCH_BLOCK_ELEMENTS", 40)  # 2 query rows x 20 database rows per block
    best = ref_index[:, 0]
    scores, index = knn_search(queries, database, 6, metric="l2", backend="torch", block_size=2, exclude=best)
    mask = torch.zeros(9, 100, dtype=torch.bool)
    mask[torch.arange(9), best] = True
    assert torch.equal(index, _brute_force(queries, database, 6, "l2", mask=mask)[1])
    assert not torch.equal(index, ref_index)  # the exclusion changed something


def test_knn_search_has_no_gradient():
    x = _random(10, seed=9).requires_grad_()
    scores, index = knn_search(x, x, 3, backend="torch")
    assert not scores.requires_grad and index.dtype == torch.long


def test_auto_backend_picks_torch_for_small_and_faiss_for_large(monkeypatch):
    small = _random(4)
    assert knn_module._pick_backend("auto", small, small) == "torch"
    monkeypatch.setattr(knn_module, "AUTO_TORCH_MAX_PAIRS", 8)
    assert knn_module._pick_backend("auto", small, small) == "faiss"


def test_knn_graph_literal_points_pyg_convention():
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0], [12.0]])
    edge_index = knn_graph(x, k=1, metric="l2")
    # nearest neighbours: 0->1, 1->0, 2->1, 3->4, 4->3; row 0 = source (neighbour), row 1 = target
    assert edge_index.tolist() == [[1, 0, 1, 4, 3], [0, 1, 2, 3, 4]]


def test_knn_graph_aggregates_from_neighbours():
    x = _random(12, seed=10)
    edge_index = knn_graph(x, k=3, metric="cosine")
    assert edge_index.shape == (2, 36)
    assert torch.equal(edge_index[1], torch.arange(12).repeat_interleave(3))
    _, nbr = knn_search(x, x, 3, exclude_self=True)
    summed = scatter(x[edge_index[0]], edge_index[1], dim=0, reduce="sum")  # message passing, flow j -> i
    torch.testing.assert_close(summed, x[nbr].sum(1))


def test_knn_graph_with_loop_contains_self():
    x = _random(8, seed=11)
    edge_index = knn_graph(x, k=2, metric="l2", loop=True)
    assert torch.equal(edge_index[0, ::2], torch.arange(8))  # each node is its own nearest neighbour


def test_knn_errors():
    x = _random(5)
    with pytest.raises(ValueError, match=r"Expected 'queries' to be two-dimensional \(got 3 dimensions\)"):
        knn_search(x.view(5, 2, 4), x, 2)
    with pytest.raises(ValueError, match=r"Expected 'k' to be at most 4 \(got 5\)"):
        knn_search(x, x, 5, exclude_self=True)
    with pytest.raises(ValueError, match="Expected 'metric' to be one of"):
        knn_search(x, x, 2, metric="hamming")
    with pytest.raises(ValueError, match="Expected 'backend' to be one of"):
        knn_search(x, x, 2, backend="annoy")
    with pytest.raises(ValueError, match="same feature dimension"):
        knn_search(x, x[:, :3], 2)
    with pytest.raises(ValueError, match=r"Expected 'x' to be two-dimensional \(got 1 dimensions\)"):
        knn_graph(x[0], 2)


def test_knn_edge_index_of_neighbour_lists_is_source_to_target():
    nbr = torch.tensor([[1, 2], [0, 2], [1, 0]])
    assert knn_edge_index(nbr).tolist() == [[1, 2, 0, 2, 1, 0], [0, 0, 1, 1, 2, 2]]
    x = _random(10, seed=12)
    _, lists = knn_search(x, x, 3, exclude_self=True)
    assert torch.equal(knn_graph(x, 3), knn_edge_index(lists))  # one construction of the edges
    with pytest.raises(ValueError, match=r"Expected 'neighbors' to be two-dimensional \(got 1 dimensions\)"):
        knn_edge_index(nbr[0])


def test_resolve_backend_names_what_runs(monkeypatch):
    small = _random(4)
    assert resolve_backend("auto", small) == "torch" and resolve_backend("faiss", small) == "faiss"
    monkeypatch.setattr(knn_module, "AUTO_TORCH_MAX_PAIRS", 8)
    assert resolve_backend("auto", small) == "faiss"
