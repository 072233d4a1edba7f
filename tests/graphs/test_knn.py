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


class _FakeGpuFaiss:
    """Stands in for a faiss-gpu module: only what ``faiss_gpu_available`` looks at."""

    __version__ = "fake-gpu"
    StandardGpuResources = object

    @staticmethod
    def get_num_gpus():
        return 1


class _FakeCpuFaiss:
    __version__ = "fake-cpu"


def test_choose_on_cuda_without_faiss_uses_torch_and_explicit_faiss_raises(monkeypatch):
    monkeypatch.setattr(knn_module, "faiss", None)
    assert knn_module._choose("auto", on_cuda=True, pairs=2**40) == "torch"
    assert knn_module._choose("torch", on_cuda=True, pairs=1) == "torch"
    with pytest.raises(RuntimeError, match="not installed.*backend='auto' or 'torch'"):
        knn_module._choose("faiss", on_cuda=True, pairs=1)
    assert knn_module._choose("auto", on_cuda=False, pairs=2**40) == "torch"
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        knn_module._choose("faiss", on_cuda=False, pairs=1)


def test_choose_on_cuda_with_faiss_cpu_never_copies_to_the_cpu(monkeypatch):
    monkeypatch.setattr(knn_module, "faiss", _FakeCpuFaiss)
    assert not knn_module.faiss_gpu_available()
    assert knn_module._choose("auto", on_cuda=True, pairs=2**40) == "torch"
    with pytest.raises(RuntimeError, match="CPU only"):
        knn_module._choose("faiss", on_cuda=True, pairs=1)
    assert knn_module._choose("auto", on_cuda=False, pairs=2**40) == "faiss"
    assert knn_module._choose("faiss", on_cuda=False, pairs=1) == "faiss"


def test_choose_on_cuda_with_faiss_gpu(monkeypatch):
    monkeypatch.setattr(knn_module, "faiss", _FakeGpuFaiss)
    assert knn_module.faiss_gpu_available()
    for backend in ("auto", "faiss"):
        assert knn_module._choose(backend, on_cuda=True, pairs=1) == "faiss-gpu"
    assert knn_module._choose("torch", on_cuda=True, pairs=1) == "torch"
    assert knn_module._choose("faiss", on_cuda=False, pairs=1) == "faiss"  # CPU tensors: FAISS's CPU kernels


def test_without_faiss_search_runs_torch_and_reports_it(monkeypatch):
    monkeypatch.setattr(knn_module, "faiss", None)
    monkeypatch.setattr(knn_module, "AUTO_TORCH_MAX_PAIRS", 8)  # with FAISS, auto would pick it
    x = _random(12, seed=11)
    assert resolve_backend("auto", x) == "torch"
    _, index = knn_search(x, x, 3, exclude_self=True)
    _, ref = _brute_force(x, x, 3, "cosine", mask=torch.eye(12, dtype=torch.bool))
    assert torch.equal(index, ref)
    assert knn_module.backend_info() == {"faiss": None, "faiss_file": None, "faiss_gpu": False}
    with pytest.raises(ImportError, match="requires 'faiss'"):
        knn_search(x, x, 3, backend="faiss")


def test_backend_info_names_the_installed_faiss():
    info = knn_module.backend_info()
    assert info["faiss"] == knn_module.faiss.__version__ and info["faiss_file"].endswith("__init__.py")


_needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@_needs_cuda
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_knn_on_cuda_matches_cpu_and_stays_on_the_gpu(metric):
    queries, database = _random(300, d=32, seed=12), _random(5000, d=32, seed=13)
    s_cpu, i_cpu = knn_search(queries, database, 8, metric=metric, backend="torch")
    q, db = queries.cuda(), database.cuda()
    expected = "faiss-gpu" if knn_module.faiss_gpu_available() else "torch"
    assert knn_module._pick_backend("auto", q, db) == expected
    s_gpu, i_gpu = knn_search(q, db, 8, metric=metric, backend="auto")
    assert s_gpu.is_cuda and i_gpu.is_cuda
    torch.testing.assert_close(s_gpu.cpu(), s_cpu, atol=1e-4, rtol=1e-4)
    assert (i_gpu.cpu() == i_cpu).float().mean() > 0.99  # ties may order differently


@pytest.mark.gpu
@_needs_cuda
def test_knn_graph_on_cuda_matches_cpu_and_explicit_faiss_without_gpu_support_raises():
    x = _random(400, d=16, seed=14)
    edges_cpu = knn_graph(x, 5, backend="torch")
    edges_gpu = knn_graph(x.cuda(), 5, backend="auto")
    assert edges_gpu.is_cuda and (edges_gpu.cpu() == edges_cpu).float().mean() > 0.99
    if not knn_module.faiss_gpu_available():
        with pytest.raises((RuntimeError, ImportError)):
            knn_search(x.cuda(), x.cuda(), 5, backend="faiss")
