import numpy as np
import pytest
import torch

from graphs.edge_weights import knn_edge_weight, log_normalize_edge_weight, symmetrize
from graphs.knn import knn_edge_index, knn_search
from graphs.propagation import (
    DifferentiableLabelPropagation,
    graph_label_propagation,
    harmonic_label_propagation,
    holdout_mask,
    knn_label_propagation,
    soft_labels,
)

LABELS = torch.tensor([0, 1, 0, 1, 2, 2])
VISIBLE = torch.tensor([True, True, False, False, True, False])


def _transition(n=6, seed=0):
    w = torch.rand(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w = (w + w.t()).fill_diagonal_(0)
    return w / w.sum(1, keepdim=True)  # row-normalised, T[i, j] = weight of j -> i


def _edges_of(T):
    target, source = T.nonzero(as_tuple=True)
    return torch.stack([source, target]), T[target, source]


def _seeds(dtype=torch.float64):
    return soft_labels(LABELS, 3, dtype) * VISIBLE.unsqueeze(1)


def test_harmonic_literal_chain():
    # 0 (class 0) -- 1 (hidden) -- 2 (class 1) with weights 3 and 1
    T = torch.tensor([[0.0, 1.0, 0.0], [0.75, 0.0, 0.25], [0.0, 1.0, 0.0]])
    F_u = harmonic_label_propagation(T, torch.tensor([0, 0, 1]), torch.tensor([True, False, True]))
    torch.testing.assert_close(F_u, torch.tensor([[0.75, 0.25]]))


def test_iterative_converges_to_closed_form():
    T = _transition()
    closed = harmonic_label_propagation(T, LABELS, VISIBLE)
    layer = DifferentiableLabelPropagation(num_iters=2000, tol=1e-12)
    out = layer(_seeds(), T, visible=VISIBLE)
    torch.testing.assert_close(out[~VISIBLE], closed, atol=1e-6, rtol=0)
    assert layer.last_num_iters < 2000  # stopped early on tol
    torch.testing.assert_close(out[VISIBLE], _seeds()[VISIBLE])  # visible rows stay clamped


def test_closed_form_accepts_hidden_rows_only():
    T = _transition(seed=1)
    torch.testing.assert_close(harmonic_label_propagation(T[~VISIBLE], LABELS, VISIBLE),
                               harmonic_label_propagation(T, LABELS, VISIBLE))


def test_sparse_dense_and_torch_sparse_paths_agree():
    T = _transition(seed=2)
    edge_index, weight = _edges_of(T)
    layer = DifferentiableLabelPropagation(num_iters=7, tol=None)
    dense = layer(_seeds(), T, visible=VISIBLE)
    sparse = layer(_seeds(), edge_index, weight, visible=VISIBLE)
    coo = layer(_seeds(), T.to_sparse(), visible=VISIBLE)
    csr = layer(_seeds(), T.to_sparse_csr(), visible=VISIBLE)
    assert dense.shape == (6, 3)
    for other in (sparse, coo, csr):
        torch.testing.assert_close(other, dense)


def test_gradcheck_iterative_on_edge_weights():
    T = _transition(5, seed=3)
    edge_index, weight = _edges_of(T)
    visible = torch.tensor([True, False, True, False, False])
    y = soft_labels(torch.tensor([0, 0, 1, 1, 0]), 2, torch.float64) * visible.unsqueeze(1)
    layer = DifferentiableLabelPropagation(num_iters=6, tol=None)
    weight = weight.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda w: layer(y, edge_index, w, visible=visible), (weight,))
    # the dense and torch.sparse paths give the same gradients w.r.t. the transition matrix
    T_dense = T.clone().requires_grad_()
    (g_dense,) = torch.autograd.grad(layer(y, T_dense, visible=visible).pow(2).sum(), T_dense)
    (g_sparse,) = torch.autograd.grad(layer(y, T_dense.to_sparse(), visible=visible).pow(2).sum(), T_dense)
    torch.testing.assert_close(g_sparse, g_dense)
    assert torch.autograd.gradcheck(lambda t: layer(y, t, visible=visible), (T_dense,))


def test_gradcheck_closed_form():
    T = _transition(5, seed=4).requires_grad_()
    visible = torch.tensor([True, False, True, False, False])
    labels = torch.tensor([0, 0, 1, 1, 0])
    assert torch.autograd.gradcheck(lambda t: harmonic_label_propagation(t, labels, visible), (T,))


def test_gradient_reaches_embeddings():
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5)).requires_grad_()
    edge_index, _ = symmetrize(torch.tensor([[1, 2, 3, 4, 5, 0], [0, 1, 2, 3, 4, 5]]), None, 6)
    log_w = -(x[edge_index[0]] - x[edge_index[1]]).pow(2).sum(-1)
    weight = log_normalize_edge_weight(edge_index, log_w, 6, mode="sym_row")
    out = DifferentiableLabelPropagation(num_iters=20)(_seeds(), edge_index, weight, visible=VISIBLE)
    (grad,) = torch.autograd.grad(out[~VISIBLE, 0].sum(), x)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()


def test_soft_variant_matches_its_closed_form():
    T = _transition(seed=6)
    y = _seeds()
    layer = DifferentiableLabelPropagation(num_iters=500, tol=1e-13, alpha=0.8)
    out = layer(y, T, visible=VISIBLE)
    expected = 0.2 * torch.linalg.solve(torch.eye(6, dtype=T.dtype) - 0.8 * T, y)
    torch.testing.assert_close(out, expected, atol=1e-8, rtol=0)


def test_long_labels_and_default_visible():
    T = _transition(seed=7)
    layer = DifferentiableLabelPropagation(num_iters=3, tol=None)
    out_long = layer(torch.tensor([0, 1, 1]), T[:3, :3] / T[:3, :3].sum(1, keepdim=True))
    assert out_long.shape == (3, 2)  # all rows labelled -> all clamped
    torch.testing.assert_close(out_long, soft_labels(torch.tensor([0, 1, 1]), dtype=torch.float64))


def test_repr():
    assert repr(DifferentiableLabelPropagation(num_iters=30, tol=1e-5)) == \
        "DifferentiableLabelPropagation(num_iters=30, tol=1e-05)"
    assert repr(DifferentiableLabelPropagation(alpha=0.9)) == \
        "DifferentiableLabelPropagation(num_iters=50, tol=1e-06, alpha=0.9)"


def test_propagation_errors():
    T = _transition()
    layer = DifferentiableLabelPropagation()
    with pytest.raises(ValueError, match=r"Expected 'visible' to be a boolean mask \(got dtype torch.int64"):
        layer(_seeds(), T, visible=VISIBLE.long())
    with pytest.raises(ValueError, match=r"Expected the dense transition matrix to have shape \[6, 6\]"):
        layer(_seeds(), T[:5, :5], visible=VISIBLE)
    with pytest.raises(ValueError, match=r"Expected 'edge_index' to be two-dimensional \(got 3 dimensions\)"):
        layer(_seeds(), torch.zeros(2, 3, 1, dtype=torch.long), visible=VISIBLE)
    with pytest.raises(ValueError, match="Expected at least one visible node"):
        harmonic_label_propagation(T, LABELS, torch.zeros(6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"Expected 'num_iters' to be a positive integer \(got 0\)"):
        DifferentiableLabelPropagation(num_iters=0)
    with pytest.raises(ValueError, match=r"Expected 'alpha' to lie in \(0, 1\) \(got 1.5\)"):
        DifferentiableLabelPropagation(alpha=1.5)


def test_holdout_mask_is_seeded_and_sized():
    a, b = holdout_mask(50, 0.2, seed=3), holdout_mask(50, 0.2, seed=3)
    assert np.array_equal(a, b) and (~a).sum() == 10
    assert not np.array_equal(a, holdout_mask(50, 0.2, seed=4))
    assert (~holdout_mask(3, 0.01)).sum() == 1 and holdout_mask(3, 0.99).sum() == 1


def test_label_propagation_on_a_chain_and_an_unreached_pair():
    # chain 0 (class 0) - 1 - 2 - 3 (class 1); nodes 4, 5 (class 1) form a pair without seeds
    edges = torch.tensor([[0, 1, 2, 4], [1, 2, 3, 5]])
    weight = torch.tensor([1.0, 1.0, 1.0, 1.0])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    visible = torch.tensor([True, False, False, True, False, False])
    result = graph_label_propagation(edges, weight, labels, visible)
    assert result["predictions"][:4].tolist() == [0, 0, 1, 1]
    assert result["unreached"] == 2 and result["converged"]
    assert result["predictions"][4:].tolist() == [0, 0]  # the most frequent visible class (tie -> 0)


def test_label_propagation_matches_the_harmonic_solution():
    g = torch.Generator().manual_seed(1)
    edges = torch.randint(0, 12, (2, 40), generator=g)
    edges = edges[:, edges[0] != edges[1]]
    weight = torch.rand(edges.size(1), generator=g, dtype=torch.float64)
    labels = torch.arange(12) % 3
    visible = torch.arange(12) < 6
    result = graph_label_propagation(edges, weight, labels, visible, num_iters=5000, tol=1e-12)
    sym, w = symmetrize(edges, weight, 12, reduce="max")
    W = torch.zeros(12, 12, dtype=torch.float64)
    W[sym[1], sym[0]] = w
    reached = W.sum(1) > 0
    T = W / W.sum(1, keepdim=True).clamp_min(1e-300)
    closed = harmonic_label_propagation(T, labels, visible, eps=1e-12).argmax(-1)  # [U]
    hidden = (~visible).nonzero().view(-1)
    keep = reached[hidden]
    assert torch.equal(result["predictions"][hidden][keep], closed[keep])


def test_knn_label_propagation_is_the_recipe_over_the_knn_graph():
    g = torch.Generator().manual_seed(3)
    y = torch.arange(3).repeat_interleave(10)  # [30]
    x = torch.eye(3, 6)[y] + 0.3 * torch.randn(30, 6, generator=g)
    visible = torch.from_numpy(holdout_mask(30, 0.3, seed=1))
    for metric in ("cosine", "l2"):
        result = knn_label_propagation(x, y, visible, 4, metric=metric, backend="torch")
        scores, nbr = knn_search(x, x, 4, metric=metric, backend="torch", exclude_self=True)
        edge_index = knn_edge_index(nbr)  # source_to_target
        assert torch.equal(edge_index[1], torch.arange(30).repeat_interleave(4))
        direct = graph_label_propagation(edge_index, knn_edge_weight(scores, metric).reshape(-1), y, visible)
        assert torch.equal(result["predictions"], direct["predictions"]) and result["k"] == 4
        given = knn_label_propagation(x, y, visible, 4, metric=metric, neighbors=(scores, nbr))
        assert torch.equal(given["predictions"], result["predictions"])
        assert result["undirected_edges"] == direct["undirected_edges"] > 0


def test_knn_label_propagation_caps_k_and_handles_a_single_node():
    x = torch.eye(3)
    result = knn_label_propagation(x, torch.tensor([0, 1, 1]), torch.tensor([True, True, False]), 10)
    assert result["k"] == 2
    alone = knn_label_propagation(x[:1], torch.tensor([0]), torch.tensor([True]), 10)
    assert alone["k"] == 0 and alone["predictions"].tolist() == [0] and alone["undirected_edges"] == 0


def test_graph_label_spreading_matches_the_closed_form():
    """Zhou et al.'s fixed point (1 - a)(I - a S)^-1 Y with S = D^-1/2 W D^-1/2, rows normalised."""
    from graphs.edge_weights import normalize_edge_weight, symmetrize
    from graphs.propagation import graph_label_spreading

    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 5, 5]])
    weight = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.3, 0.7])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    visible = torch.tensor([True, False, True, False, False, True])
    got = graph_label_spreading(edge_index, weight, labels, visible, alpha=0.8, tol=1e-12)
    ei, w = symmetrize(edge_index, weight.double(), 6, reduce="max")
    S = torch.zeros(6, 6, dtype=torch.float64)
    S[ei[1], ei[0]] = normalize_edge_weight(ei, w, 6, mode="sym")
    Y = torch.nn.functional.one_hot(labels, 3).double() * visible.unsqueeze(1)
    F = 0.2 * torch.linalg.solve(torch.eye(6, dtype=torch.float64) - 0.8 * S, Y)
    torch.testing.assert_close(got, F / F.sum(1, keepdim=True))
    assert got.argmax(1)[visible].tolist() == [0, 1, 2]  # seeds are not clamped, yet keep their class here


def test_neighbour_vote_is_the_weighted_mean_of_the_neighbours_rows():
    from graphs.propagation import neighbour_vote

    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    ids = torch.tensor([[0, 1], [2, 0], [1, 2]])
    weights = torch.tensor([[3.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    got = neighbour_vote(rows, ids, weights)
    torch.testing.assert_close(got, torch.tensor([[0.75, 0.25], [0.75, 0.25], [0.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        neighbour_vote(rows, ids, weights[:, :1])


def test_graph_label_propagation_returns_normalised_scores():
    from graphs.propagation import graph_label_propagation

    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    out = graph_label_propagation(edge_index, torch.ones(3), torch.tensor([0, 0, 1, 0]),
                                  torch.tensor([True, False, True, False]), num_classes=2)
    assert out["scores"].shape == (4, 2)
    torch.testing.assert_close(out["scores"].sum(1), torch.ones(4, dtype=torch.float64))
    assert out["scores"].argmax(1).tolist() == out["predictions"].tolist()
