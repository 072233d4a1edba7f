import math

import pytest
import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from graphs.edge_weights import (
    _chunked_dot,
    _sampled_dot,
    dense_gaussian_kernel,
    dense_normalize,
    dense_transition,
    edge_cosine,
    edge_dot,
    edge_squared_distance,
    exp_cosine_edge_weight,
    gaussian_edge_weight,
    knn_edge_weight,
    log_normalize_edge_weight,
    normalize_edge_weight,
    scatter_logsumexp,
    set_self_loops,
    symmetrize,
)

EDGES = torch.tensor([[0, 1, 2, 3, 5, 5, 4], [1, 0, 3, 4, 4, 0, 2]])


def _x(n=6, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gaussian_edge_weight_literal():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    w = gaussian_edge_weight(x, torch.tensor([[0], [1]]), sigma=5.0)
    torch.testing.assert_close(w, torch.tensor([math.exp(-0.5)]))
    log_w = gaussian_edge_weight(x, torch.tensor([[0], [1]]), sigma=5.0, log=True)
    torch.testing.assert_close(log_w, torch.tensor([-0.5]))


def test_exp_cosine_edge_weight_literal():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    w = exp_cosine_edge_weight(x, torch.tensor([[0, 0], [1, 2]]), temperature=0.5)
    torch.testing.assert_close(w, torch.tensor([math.exp(-2.0), 1.0]))


def test_edge_weights_match_direct_formula_and_gradcheck():
    x = _x().requires_grad_()
    direct = torch.exp(-(x[EDGES[0]] - x[EDGES[1]]).pow(2).sum(-1) / (2 * 1.3**2))
    torch.testing.assert_close(gaussian_edge_weight(x, EDGES, 1.3), direct)
    assert torch.autograd.gradcheck(lambda x: gaussian_edge_weight(x, EDGES, 1.3), (x,))
    assert torch.autograd.gradcheck(lambda x: exp_cosine_edge_weight(x, EDGES, 0.4), (x,))


def test_bipartite_edge_weights_gradcheck():
    x_src, x_dst = _x(5, seed=1).requires_grad_(), _x(3, seed=2).requires_grad_()
    edges = torch.tensor([[0, 4, 2, 2], [1, 0, 2, 1]])
    direct = (x_src[edges[0]] * x_dst[edges[1]]).sum(-1)
    torch.testing.assert_close(edge_dot((x_src, x_dst), edges), direct)
    assert torch.autograd.gradcheck(lambda a, b: gaussian_edge_weight((a, b), edges, 0.8), (x_src, x_dst))
    assert torch.autograd.gradcheck(lambda a, b: edge_dot((a, b), edges), (x_src, x_dst))


def test_sampled_and_chunked_edge_dots_agree():
    x = _x(50, 7, seed=3)
    src = torch.randint(0, 50, (300,), generator=torch.Generator().manual_seed(4))
    dst = torch.randint(0, 50, (300,), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(_sampled_dot(x, x, src, dst), _chunked_dot(x, x, src, dst))
    expected = (x[src] - x[dst]).pow(2).sum(-1)
    torch.testing.assert_close(edge_squared_distance(x, torch.stack([src, dst])), expected)


def test_symmetrize_max_and_mean():
    edge_index = torch.tensor([[0, 1, 2], [1, 0, 1]])  # 0->1 and 1->0 mutual, 2->1 one-way
    weight = torch.tensor([0.2, 0.6, 0.5], requires_grad=True)
    ei, w = symmetrize(edge_index, weight, 3, reduce="max")
    assert ei.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    torch.testing.assert_close(w, torch.tensor([0.6, 0.6, 0.5, 0.5]))
    _, w_mean = symmetrize(edge_index, weight, 3, reduce="mean")
    torch.testing.assert_close(w_mean, torch.tensor([0.4, 0.4, 0.5, 0.5]))
    w_mean.sum().backward()
    torch.testing.assert_close(weight.grad, torch.tensor([1.0, 1.0, 2.0]))


def test_symmetrize_gradcheck():
    weight = torch.rand(EDGES.size(1), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weight.requires_grad_()
    for reduce in ("max", "mean", "sum"):
        assert torch.autograd.gradcheck(lambda w, r=reduce: symmetrize(EDGES, w, 6, reduce=r)[1], (weight,))


def test_set_self_loops_policies():
    edge_index = torch.tensor([[0, 1, 1], [1, 1, 0]])
    weight = torch.tensor([0.5, 0.75, 0.5])
    ei, w = set_self_loops(edge_index, weight, 2, mode="remove")
    assert ei.tolist() == [[0, 1], [1, 0]] and w.tolist() == [0.5, 0.5]
    ei, w = set_self_loops(edge_index, weight, 2, mode="add", fill_value=2.0)
    triples = sorted(zip(ei[0].tolist(), ei[1].tolist(), w.tolist(), strict=True))
    assert triples == [(0, 0, 2.0), (0, 1, 0.5), (1, 0, 0.5), (1, 1, 0.75)]
    ei, w = set_self_loops(edge_index, weight, 2, mode="keep")
    assert torch.equal(ei, edge_index)
    with pytest.raises(ValueError, match=r"Expected 'mode' to be one of \('remove', 'add', 'keep'\)"):
        set_self_loops(edge_index, weight, 2, mode="drop")


def test_sym_normalisation_matches_gcn_norm():
    ei, w = symmetrize(EDGES, torch.rand(EDGES.size(1), generator=torch.Generator().manual_seed(1)), 6)
    _, ref = gcn_norm(ei, w, 6, add_self_loops=False)
    torch.testing.assert_close(normalize_edge_weight(ei, w, 6, mode="sym"), ref)


def test_row_normalisation_sums_to_one_per_target():
    ei, w = symmetrize(EDGES, torch.rand(EDGES.size(1), generator=torch.Generator().manual_seed(2)), 6)
    out = normalize_edge_weight(ei, w, 6, mode="row")
    sums = torch.zeros(6).index_add_(0, ei[1], out)
    torch.testing.assert_close(sums, torch.ones(6))


def test_zero_degree_gives_zero_weights_and_finite_gradients():
    edge_index = torch.tensor([[0, 1, 2], [1, 0, 3]])
    weight = torch.tensor([1.0, 1.0, 0.0], requires_grad=True)  # node 3 has in-degree 0
    for mode in ("sym", "row"):
        out = normalize_edge_weight(edge_index, weight, 4, mode=mode)
        (grad,) = torch.autograd.grad(out.sum(), weight)
        assert out[2] == 0 and torch.isfinite(grad).all()
    _, ref = gcn_norm(edge_index, weight, 4, add_self_loops=False)
    (ref_grad,) = torch.autograd.grad(ref.sum(), weight)
    assert torch.isnan(ref_grad).any()  # what the guard avoids


@pytest.mark.parametrize("mode", ["row", "sym", "sym_row"])
def test_log_normalisation_matches_linear(mode):
    ei, _ = symmetrize(EDGES, None, 6)
    x = _x(6, seed=4)
    log_w = gaussian_edge_weight(x, ei, 0.9, log=True)
    w = log_w.exp()
    if mode == "sym_row":
        expected = normalize_edge_weight(ei, normalize_edge_weight(ei, w, 6, "sym"), 6, "row")
    else:
        expected = normalize_edge_weight(ei, w, 6, mode)
    torch.testing.assert_close(log_normalize_edge_weight(ei, log_w, 6, mode=mode), expected)


def test_log_normalisation_survives_underflow():
    ei, _ = symmetrize(EDGES, None, 6)
    x = _x(6, seed=5).requires_grad_()
    log_w = gaussian_edge_weight(x, ei, 1e-4, log=True)
    assert (log_w.exp() == 0).all()  # the linear weights underflow completely
    out = log_normalize_edge_weight(ei, log_w, 6, mode="sym_row")
    sums = torch.zeros(6, dtype=out.dtype).index_add_(0, ei[1], out)
    torch.testing.assert_close(sums, torch.ones(6, dtype=out.dtype))
    (grad,) = torch.autograd.grad(out.pow(2).sum(), x)
    assert torch.isfinite(grad).all()


def test_scatter_logsumexp():
    src = torch.tensor([0.0, 1.0, 2.0, 1000.0])
    out = scatter_logsumexp(src, torch.tensor([0, 0, 1, 1]), 3)
    torch.testing.assert_close(out[:2], torch.tensor([math.log(1 + math.e), 1000.0]))
    assert out[2] == float("-inf")


def test_dense_transition_is_row_normalised_sym_normalised_kernel():
    x = _x(5, seed=6)
    w = dense_gaussian_kernel(x, 0.7)
    assert (w.diagonal() == 0).all()
    expected = dense_normalize(dense_normalize(w, "sym"), "row")
    T = dense_transition(x, 0.7)
    torch.testing.assert_close(T, expected)
    torch.testing.assert_close(T.sum(1), torch.ones(5, dtype=T.dtype))
    torch.testing.assert_close(dense_transition(x, 0.7, rows=torch.tensor([3, 1])), expected[[3, 1]])


def test_dense_transition_column_first_normalises_columns_then_rows():
    x = torch.nn.functional.normalize(_x(6, seed=7), dim=1)
    w = dense_gaussian_kernel(x, 0.3)
    s = dense_normalize(w, "sym")
    tran = s / s.sum(0, keepdim=True)  # the released code: columns first ...
    expected = tran / tran.sum(1, keepdim=True)  # ... then rows
    T = dense_transition(x, 0.3, column_first=True)
    torch.testing.assert_close(T, expected)
    torch.testing.assert_close(dense_transition(x, 0.3, rows=torch.tensor([4, 0]), column_first=True), expected[[4, 0]])
    assert (T - dense_transition(x, 0.3)).abs().max() > 1e-3
    assert torch.isfinite(dense_transition(x, 1e-4, column_first=True)).all()


def test_dense_transition_limits_of_sigma():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    nearest = dense_transition(x, 1e-4)
    assert torch.isfinite(nearest).all()
    assert nearest.argmax(1).tolist() == [1, 0, 1, 2] and torch.allclose(nearest.max(1).values, torch.ones(4))
    uniform = dense_transition(x, 1e4)
    torch.testing.assert_close(uniform, (1 - torch.eye(4)) / 3)


def test_dense_helpers_errors():
    with pytest.raises(ValueError, match=r"Expected 'weight' to be a square matrix \(got shape \[2, 3\]\)"):
        dense_normalize(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"Expected 'sigma' to be positive and finite \(got 0.0\)"):
        dense_gaussian_kernel(torch.ones(2, 3), 0.0)
    with pytest.raises(ValueError, match=r"Expected 'edge_index' to be two-dimensional \(got 1 dimensions\)"):
        gaussian_edge_weight(torch.ones(2, 3), torch.tensor([0, 1]), 1.0)
    with pytest.raises(ValueError, match=r"Expected 'reduce' to be one of"):
        symmetrize(EDGES, torch.ones(EDGES.size(1)), 6, reduce="min")


def test_knn_edge_weights_are_non_negative():
    cos = torch.tensor([[0.9, -0.2]])
    assert knn_edge_weight(cos, "cosine")[0].tolist() == pytest.approx([0.9, 0.0])
    w = knn_edge_weight(torch.tensor([[0.0, 1.0, 4.0]]), "l2")
    assert w[0, 0] == 1.0 and (w > 0).all() and (w[0, 1:] < 1).all()
    with pytest.raises(ValueError):
        knn_edge_weight(cos, "ip")


def test_edge_cosine_is_the_unclipped_cosine_similarity():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    cos = edge_cosine(x, torch.tensor([[0, 0, 1], [1, 2, 1]]))
    torch.testing.assert_close(cos, torch.tensor([0.0, -1.0, 1.0]))
    # exp-cosine is built on it; clipped-cosine is it clipped at 0
    torch.testing.assert_close(exp_cosine_edge_weight(x, torch.tensor([[0], [2]]), 1.0, log=True), torch.tensor([-2.0]))
    assert knn_edge_weight(cos, "cosine").tolist() == [0.0, 0.0, 1.0]
