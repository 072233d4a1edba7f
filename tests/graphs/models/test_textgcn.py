import pytest
import torch

from graphs.models import TextGCN, TextGCNPyG, symmetric_spmm
from graphs.text import build_text_graph

DOCS = [["a", "b", "c", "a"], ["b", "c", "d"], ["d", "e", "a", "b", "c", "e"], ["e", "f", "a"]]


@pytest.fixture()
def graph():
    return build_text_graph(DOCS, window_size=3)


def _copy_weights(src: TextGCN, dst: TextGCNPyG) -> None:
    with torch.no_grad():
        dst.conv1.lin.weight.copy_(src.weight1.t())
        dst.conv2.lin.weight.copy_(src.weight2.t())


def test_textgcn_shapes_and_parameters(graph):
    model = TextGCN(graph.num_nodes, 3, hidden_channels=5)
    out = model(graph.to_torch_sparse())
    assert out.shape == (graph.num_nodes, 3)
    assert model.weight1.shape == (graph.num_nodes, 5) and model.weight2.shape == (5, 3)
    assert sum(p.numel() for p in model.parameters()) == graph.num_nodes * 5 + 5 * 3  # no biases
    assert "TextGCN(" in repr(model)


def test_textgcn_equals_dense_formula(graph):
    torch.manual_seed(0)
    model = TextGCN(graph.num_nodes, 3, hidden_channels=5).eval()
    a = torch.from_numpy(graph.normalized_adjacency().toarray()).float()
    expect = a @ torch.relu(a @ model.weight1) @ model.weight2
    torch.testing.assert_close(model(graph.to_torch_sparse()), expect, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
@pytest.mark.parametrize("as_sparse", [False, True])
def test_pyg_backend_matches_sparse_backend(graph, as_sparse):
    torch.manual_seed(0)
    ref = TextGCN(graph.num_nodes, 3, hidden_channels=5).eval()
    pyg = TextGCNPyG(graph.num_nodes, 3, hidden_channels=5).eval()
    _copy_weights(ref, pyg)
    expect = ref(graph.to_torch_sparse())
    if as_sparse:
        args = (graph.to_torch_sparse(normalized=False),)
    else:
        args = graph.to_edge_index()
    for _ in range(2):  # second call uses the cached normalisation
        torch.testing.assert_close(pyg(*args), expect, rtol=1e-5, atol=1e-6)


def test_first_layer_reuse_and_dropout(graph):
    adj = graph.to_torch_sparse()
    model = TextGCN(graph.num_nodes, 3, hidden_channels=8).eval()
    torch.testing.assert_close(model(adj, model.first_layer(adj)), model(adj))
    model.train()
    torch.manual_seed(1)
    a = model(adj)
    torch.manual_seed(2)
    assert not torch.allclose(a, model(adj))


def test_symmetric_spmm_gradient_matches_dense(graph):
    adj = graph.to_torch_sparse(dtype=torch.float64)
    x = torch.randn(graph.num_nodes, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(graph.num_nodes, 4, dtype=torch.float64)
    (symmetric_spmm(adj, x) * w).sum().backward()
    dense = adj.to_dense()
    x2 = x.detach().clone().requires_grad_()
    (dense @ x2 * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    assert torch.autograd.gradcheck(lambda t: symmetric_spmm(adj, t), (x.detach().clone().requires_grad_(),))


def test_validation_errors(graph):
    adj = graph.to_torch_sparse()
    with pytest.raises(ValueError, match="Expected 'x' to have shape"):
        symmetric_spmm(adj, torch.randn(3, 2))
    with pytest.raises(ValueError, match="Expected 'dropout'"):
        TextGCN(graph.num_nodes, 3, dropout=1.0)
    with pytest.raises(ValueError, match="Expected 'adj' to have"):
        TextGCN(graph.num_nodes + 1, 3)(adj)


@pytest.mark.parametrize("backend", ["torch", "scipy", "auto"])
def test_spmm_backends_agree(graph, backend):
    from graphs.models import get_spmm_backend, set_spmm_backend

    adj = graph.to_torch_sparse()
    x = torch.randn(graph.num_nodes, 4, requires_grad=True)
    expect = adj.to_dense() @ x.detach()
    before = get_spmm_backend()
    try:
        set_spmm_backend(backend)
        out = symmetric_spmm(adj, x)
        out.sum().backward()
    finally:
        set_spmm_backend(before)
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, adj.to_dense().sum(0).unsqueeze(1).expand(-1, 4), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Expected 'backend'"):
        set_spmm_backend("cuda")


def test_scipy_kernel_column_panels(monkeypatch):
    import graphs.models.sparse as sparse_mod
    from graphs.models import set_spmm_backend

    monkeypatch.setattr(sparse_mod, "_PANEL_BYTES", 1)  # panels of 2048 columns
    torch.manual_seed(0)
    n = 5000
    dense = torch.rand(n, n) * (torch.rand(n, n) < 0.001)
    dense = dense + dense.t()
    adj = dense.to_sparse_csr()
    x = torch.randn(n, 3)
    set_spmm_backend("scipy")
    try:
        assert len(sparse_mod._panels(adj, 2048)) == 3
        torch.testing.assert_close(symmetric_spmm(adj, x), dense @ x, rtol=1e-4, atol=1e-5)
    finally:
        set_spmm_backend("auto")
