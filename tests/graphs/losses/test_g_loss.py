import pytest
import torch

from graphs.losses import GLoss, loss_parts, statistics
from graphs.memory_bank import MemoryBank
from graphs.sigma import sigma_dicm, sigma_sqrt_median

LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
VISIBLE = torch.tensor([True, False, True, True, False, True, True, False])


def _embeddings(n=8, d=5, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _manual_dense_scores(x, labels, visible, sigma, k=None):
    """The propagated scores F_u of the paper's formula, written out with dense matrices and an explicit
    inverse (no gloss function); with ``k``, on the symmetric kNN graph: an edge where either end is among the
    other's ``k`` nearest."""
    x = x / x.norm(dim=1, keepdim=True)
    w = torch.exp(-torch.cdist(x, x).pow(2) / (2 * sigma**2)) * (1 - torch.eye(len(x), dtype=x.dtype))
    if k is not None:
        distances = torch.cdist(x, x) + torch.diag(torch.full((len(x),), float("inf"), dtype=x.dtype))
        near = torch.zeros(len(x), len(x), dtype=torch.bool)
        for i, row in enumerate(distances.topk(k, largest=False).indices):
            near[i, row] = True
        w = w * (near | near.T)
    d = w.sum(1).rsqrt()
    s = d[:, None] * w * d[None, :]
    T = s / s.sum(1, keepdim=True)
    u, v = (~visible).nonzero().view(-1), visible.nonzero().view(-1)
    y_v = torch.nn.functional.one_hot(labels[v], int(labels.max()) + 1).to(x.dtype)
    return torch.linalg.inv(torch.eye(len(u), dtype=x.dtype) - T[u][:, u]) @ T[u][:, v] @ y_v  # [U, C]


def _manual_dense_loss(x, labels, visible, sigma, k=None):
    """The paper's loss: the mean negative log of the normalised propagated score of the true class."""
    F_u = _manual_dense_scores(x, labels, visible, sigma, k)
    p = F_u / F_u.sum(1, keepdim=True)
    return -p.gather(1, labels[~visible].view(-1, 1)).log().mean()


def _bank(x, labels, size=None):
    bank = MemoryBank(size or len(x), x.size(1), dtype=x.dtype)
    return bank.fill(x, labels)


def test_dense_reproduces_the_paper_formula():
    x = _embeddings().requires_grad_()
    loss = GLoss(graph="dense", sigma=0.8, damping=0.0)(x, LABELS, visible=VISIBLE)["g_loss"]
    expected = _manual_dense_loss(x, LABELS, VISIBLE, 0.8)
    torch.testing.assert_close(loss, expected)
    (g1,) = torch.autograd.grad(loss, x)
    (g2,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(g1, g2)


def test_knn_with_full_neighbourhood_converges_to_dense():
    x = _embeddings(seed=1)
    dense = GLoss(graph="dense", sigma=0.7, damping=0.0)(x, LABELS, visible=VISIBLE)["g_loss"]
    knn = GLoss(graph="knn", sigma=0.7, k=7, num_iters=3000, tol=1e-13)(x, LABELS, visible=VISIBLE)["g_loss"]
    torch.testing.assert_close(knn, dense, atol=1e-6, rtol=0)


def test_knn_with_small_k_is_the_formula_on_the_knn_graph():
    x = _embeddings(seed=1).requires_grad_()
    dense = GLoss(graph="dense", sigma=0.7)(x, LABELS, visible=VISIBLE)["g_loss"]
    loss = GLoss(graph="knn", sigma=0.7, k=3, num_iters=3000, tol=1e-13)(x, LABELS, visible=VISIBLE)
    assert loss["stat_g_loss_unreached"] == 0  # every hidden node is scored, as in the closed form
    expected = _manual_dense_loss(x, LABELS, VISIBLE, 0.7, k=3)
    torch.testing.assert_close(loss["g_loss"], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.autograd.grad(loss["g_loss"], x)[0], torch.autograd.grad(expected, x)[0],
                               atol=1e-6, rtol=0)
    assert abs(float((loss["g_loss"] - dense).detach())) > 1e-3  # and the kNN graph is not the dense one


def test_bank_never_uses_a_batch_rows_own_copy():
    x = _embeddings(16, seed=2)
    labels = torch.arange(16) % 4
    bank = _bank(x, labels)  # the bank holds exact copies of the batch
    loss = GLoss(graph="bank", memory_bank=bank, sigma=0.05, k=3, bank_update=False)
    honest = loss(x, labels, indices=torch.arange(16))["g_loss"]
    leaky = loss(x, labels, indices=(torch.arange(16) + 1) % 16)["g_loss"]  # wrong rows excluded
    assert leaky < 1e-3  # every hidden node finds its own labelled copy at distance 0
    assert honest > 0.5


def test_bank_seeds_carry_the_signal_and_only_batch_side_gets_gradients():
    centres = torch.eye(3, 6, dtype=torch.float64) * 3
    bank = _bank(centres.repeat_interleave(4, 0), torch.arange(3).repeat_interleave(4), size=12)
    x = (centres[[0, 1, 2, 0, 1, 2]] + 0.1 * _embeddings(6, 6, seed=3)).requires_grad_()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    visible = torch.tensor([True, True, True, False, False, False])
    gloss = GLoss(graph="bank", memory_bank=bank, sigma=0.3, k=4, bank_update=False)
    rows = torch.tensor([100, 101, 102, 103, 104, 105]) % 12
    good = gloss(x, labels, indices=rows, visible=visible)["g_loss"]
    bad = gloss(x, labels.roll(1), indices=torch.arange(6), visible=visible)["g_loss"]
    assert good < 0.1 < bad
    good.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not bank.embeddings.requires_grad


def test_bank_is_updated_in_training_mode_only():
    x = _embeddings(6, seed=4)
    bank = _bank(torch.zeros(10, 5, dtype=torch.float64) + 1, torch.arange(10) % 3)
    gloss = GLoss(graph="bank", memory_bank=bank, k=3)
    gloss.eval()
    gloss(x, torch.arange(6) % 3, indices=torch.arange(6))
    unit = torch.nn.functional.normalize(torch.ones(5, dtype=torch.float64), dim=0)
    assert torch.equal(bank.embeddings[0], unit)
    gloss.train()
    gloss(x, torch.arange(6) % 3, indices=torch.arange(6))
    torch.testing.assert_close(bank.embeddings[:6], torch.nn.functional.normalize(x, dim=1))


@pytest.mark.parametrize("graph", ["dense", "knn", "bank"])
@pytest.mark.parametrize("sigma", [1e-4, 1e-2, 1.0, 1e2, 1e4])
def test_sigma_sweep_is_finite(graph, sigma):
    x = _embeddings(24, 8, seed=5, dtype=torch.float32).requires_grad_()
    labels = torch.arange(24) % 3
    bank = None
    if graph == "bank":
        bank = _bank(_embeddings(40, 8, seed=6, dtype=torch.float32), torch.arange(40) % 3)
    gloss = GLoss(graph=graph, sigma=sigma, k=4, memory_bank=bank)
    loss = gloss(x, labels, indices=torch.arange(24) + 16)["g_loss"]
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("graph", ["dense", "knn"])
def test_degenerate_batches_give_an_attached_zero(graph):
    x = _embeddings(6).requires_grad_()
    gloss = GLoss(graph=graph)
    cases = [
        (torch.zeros(6, dtype=torch.long), None),  # a single class
        (torch.tensor([0, 0, 0, 1, 1, 1]), torch.ones(6, dtype=torch.bool)),  # nothing hidden
        (torch.tensor([0, 0, 0, 1, 1, 1]), torch.zeros(6, dtype=torch.bool)),  # nothing visible
        # hidden nodes only of class 2, which has no visible node
        (torch.tensor([0, 1, 2, 2, 2, 2]), torch.tensor([True, True, False, False, False, False])),
    ]
    for labels, visible in cases:
        loss = gloss(x, labels, visible=visible)["g_loss"]
        assert loss.item() == 0.0 and loss.grad_fn is not None
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.equal(grad, torch.zeros_like(x))


def test_hidden_nodes_without_a_seed_of_their_class_are_dropped():
    x = _embeddings(seed=7)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    visible = torch.tensor([True, False, True, True, False, True, False, False])  # class 2 has no seed
    dropped = GLoss(sigma=0.9)(x, labels, visible=visible)["g_loss"]
    zero_weight = GLoss(sigma=0.9, class_weights=[1.0, 1.0, 0.0])(x, labels, visible=visible)["g_loss"]
    torch.testing.assert_close(dropped, zero_weight)
    assert torch.isfinite(dropped) and dropped > 0


def test_released_form_is_cross_entropy_of_propagated_scores():
    x = _embeddings(seed=8).requires_grad_()
    loss = GLoss(sigma=0.8, loss_form="released", damping=0.0)(x, LABELS, visible=VISIBLE)["g_loss"]
    scores = _manual_dense_scores(x, LABELS, VISIBLE, 0.8)
    target = LABELS[~VISIBLE]
    # cross-entropy with the scores as logits, written out: log-sum-exp minus the true class's score
    expected = torch.stack([scores[i].exp().sum().log() - scores[i, target[i]] for i in range(len(target))]).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(torch.autograd.grad(loss, x)[0], torch.autograd.grad(expected, x)[0])
    nll = GLoss(sigma=0.8, damping=0.0)(x, LABELS, visible=VISIBLE)["g_loss"]
    assert abs((nll - loss).item()) > 1e-2  # the two forms differ


def test_class_weights_enter_the_gloss_variant():
    x = _embeddings(seed=8)
    weights = torch.tensor([0.5, 2.0, 3.0])
    loss = GLoss(sigma=0.8, damping=0.0, class_weights=weights)(x, LABELS, visible=VISIBLE)["g_loss"]
    F_u = _manual_dense_scores(x, LABELS, VISIBLE, 0.8)
    target = LABELS[~VISIBLE]
    nll = -(F_u / F_u.sum(1, keepdim=True)).gather(1, target.view(-1, 1)).view(-1).log()
    w = weights.double()[target]
    torch.testing.assert_close(loss, (w * nll).sum() / w.sum())
    assert abs(float(loss - GLoss(sigma=0.8, damping=0.0)(x, LABELS, visible=VISIBLE)["g_loss"])) > 1e-3


def test_class_weights_reweight_the_mean():
    x = _embeddings(seed=9)
    visible = torch.tensor([True, False, True, True, False, True, True, False])
    per_class = [GLoss(sigma=0.9, class_weights=w)(x, LABELS, visible=visible)["g_loss"]
                 for w in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])]
    weighted = GLoss(sigma=0.9, class_weights=[2.0, 1.0, 1.0])(x, LABELS, visible=visible)["g_loss"]
    torch.testing.assert_close(weighted, (2 * per_class[0] + per_class[1] + per_class[2]) / 4)


@pytest.mark.parametrize("graph", ["dense", "knn", "bank"])
def test_loss_decreases_when_classes_move_together(graph):
    torch.manual_seed(0)
    labels = torch.arange(48) % 4
    x = torch.randn(48, 16, generator=torch.Generator().manual_seed(10), requires_grad=True)
    bank = _bank(x.detach().clone(), labels) if graph == "bank" else None
    gloss = GLoss(graph=graph, sigma=0.5, k=6, memory_bank=bank, seed=1)
    fixed = gloss.split(labels)

    def evaluate():
        with torch.no_grad():
            gloss.eval()
            out = gloss(x, labels, indices=torch.arange(48), visible=fixed)["g_loss"].item()
            gloss.train()
            return out

    before = evaluate()
    optimiser = torch.optim.Adam([x], lr=0.05)
    for _ in range(15):
        optimiser.zero_grad()
        gloss(x, labels, indices=torch.arange(48))["g_loss"].backward()
        optimiser.step()
    assert evaluate() < 0.8 * before


def test_stratified_seeded_split():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 2 + [3])
    a, b, c = GLoss(seed=3), GLoss(seed=3), GLoss(seed=4)
    masks = [a.split(labels) for _ in range(3)]
    assert all(torch.equal(m, b.split(labels)) for m in masks)  # same seed, same sequence
    assert not torch.equal(masks[0], masks[1])  # the generator advances
    assert not all(torch.equal(m, c.split(labels)) for m in masks)
    for mask in masks:
        assert mask[labels == 0].sum() == 6 and mask[labels == 1].sum() == 3  # round(0.6 n)
        assert mask[labels == 2].sum() == 1 and mask[labels == 3].sum() == 1  # >= 1 visible, >= 1 hidden


def test_sigma_heuristics_are_applied_per_batch():
    x = _embeddings(12, seed=11)
    labels = torch.arange(12) % 3
    for spec, fn in (("batch-sqrt", lambda z: sigma_sqrt_median(z)), ("batch-dicm", lambda z: sigma_dicm(z, labels))):
        gloss = GLoss(sigma=spec)
        assert torch.isfinite(gloss(x, labels)["g_loss"])
        assert gloss.last_sigma == pytest.approx(fn(torch.nn.functional.normalize(x, dim=1)))


def test_config_and_citation():
    gloss = GLoss(graph="knn", sigma="batch-sqrt", k=5, class_weights=[1, 2])
    config = gloss.get_config_dict()
    assert config["graph"] == "knn" and config["sigma"] == "batch-sqrt" and config["k"] == 5
    assert config["class_weights"] == [1.0, 2.0] and config["gamma"] == 0.6
    assert config["variant"] == "gloss" and config["combined"] is True
    assert gloss.citation.startswith("@inproceedings") and "G-Loss" in gloss.citation


def test_g_loss_errors():
    match = r"Expected 'graph' to be one of \('dense', 'knn', 'bank'\) \(got 'full'\)"
    with pytest.raises(ValueError, match=match):
        GLoss(graph="full")
    with pytest.raises(ValueError, match=r"Expected 'gamma' to lie in \(0, 1\) \(got 1.0\)"):
        GLoss(gamma=1.0)
    with pytest.raises(ValueError, match="Expected a 'memory_bank' for graph='bank'"):
        GLoss(graph="bank")
    with pytest.raises(ValueError, match=r"Expected 'sigma' to be a positive float or one of"):
        GLoss(sigma="median")
    with pytest.raises(ValueError, match=r"Expected 'loss_form' to be one of \('nll', 'released'\)"):
        GLoss(loss_form="ce")
    gloss = GLoss()
    with pytest.raises(ValueError, match=r"Expected 'labels' to have shape \[8\] \(got \[8, 1\]\)"):
        gloss(_embeddings(), LABELS.view(-1, 1))
    with pytest.raises(ValueError, match=r"Expected 'embeddings' to be two-dimensional \(got 1 dimensions\)"):
        gloss(_embeddings()[0], LABELS)
    bank_loss = GLoss(graph="bank", memory_bank=_bank(_embeddings(), LABELS))
    with pytest.raises(ValueError, match=r"Expected 'indices' \(dataset row ids of the batch\)"):
        bank_loss(_embeddings(), LABELS)


@pytest.mark.parametrize("graph", ["dense", "knn"])
def test_half_precision_embeddings_and_autocast(graph):
    x32 = _embeddings(12, seed=12, dtype=torch.float32)
    labels = torch.arange(12) % 3
    visible = torch.arange(12) < 8
    expected = GLoss(graph=graph, k=4)(x32.bfloat16().float(), labels, visible=visible)["g_loss"]
    x16 = x32.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = GLoss(graph=graph, k=4)(x16, labels, visible=visible)["g_loss"]
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert x16.grad.dtype == torch.bfloat16 and torch.isfinite(x16.grad.float()).all()


def test_old_sigma_spelling_names_the_batch_one():
    with pytest.raises(ValueError, match=r"\(got 'sqrt'\); the per-batch heuristic is spelled 'batch-sqrt'"):
        GLoss(sigma="sqrt")
    with pytest.raises(ValueError, match=r"spelled 'batch-dicm'"):
        GLoss(sigma="dicm")


def test_unscored_hidden_nodes_are_a_statistic_not_a_part():
    x = _embeddings(seed=7).requires_grad_()
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    visible = torch.tensor([True, False, True, True, False, True, False, False])  # class 2 has no seed
    out = GLoss(sigma=0.9)(x, labels, visible=visible)
    assert list(loss_parts(out)) == ["g_loss"]
    assert list(statistics(out)) == ["stat_unscored", "stat_g_loss_unreached", "stat_g_loss_hidden"]
    assert out["stat_g_loss_hidden"].item() == 4 and out["stat_g_loss_unreached"].item() == 0
    assert out["stat_unscored"].item() == 2 and not out["stat_unscored"].requires_grad
    degenerate = GLoss()(x, torch.zeros(8, dtype=torch.long))  # a single class: every hidden node unscored
    assert degenerate["stat_unscored"].item() == 8 - int(GLoss().split(torch.zeros(8, dtype=torch.long)).sum())


def _two_clusters():
    """Cluster A (8 nodes, both classes, seeds of both) and a far cluster B (3 hidden nodes, no seed)."""
    g = torch.Generator().manual_seed(13)
    a = torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.3 * torch.randn(8, 4, generator=g, dtype=torch.float64)
    b = torch.tensor([-1.0, 0.0, 0.0, 0.0]) + 0.05 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    labels_a = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    visible_a = torch.tensor([True, True, True, True, False, False, False, False])
    return a, b, labels_a, visible_a


def test_knn_excludes_hidden_nodes_that_propagation_cannot_reach():
    a, b, labels_a, visible_a = _two_clusters()
    x = torch.cat([a, b]).requires_grad_()
    labels = torch.cat([labels_a, torch.tensor([0, 1, 0])])
    visible = torch.cat([visible_a, torch.zeros(3, dtype=torch.bool)])
    gloss = GLoss(graph="knn", sigma=0.5, k=2, num_iters=500, tol=1e-12)
    out = gloss(x, labels, visible=visible)
    assert out["stat_g_loss_unreached"].item() == 3 and out["stat_g_loss_hidden"].item() == 7
    # B is a component of its own: it neither adds -log(eps) = 18.42 nor changes A's loss
    alone = gloss(a, labels_a, visible=visible_a)["g_loss"]
    torch.testing.assert_close(out["g_loss"], alone)
    assert out["g_loss"] < 2.0
    dense = GLoss(sigma=0.5)(x, labels, visible=visible)["g_loss"]
    assert dense < 2.0 and abs((out["g_loss"] - dense).item()) < 0.5  # unfixed: 8.5 vs 0.78
    (grad,) = torch.autograd.grad(out["g_loss"], x)
    assert torch.isfinite(grad).all() and grad[8:].abs().max() == 0 and grad[:8].abs().max() > 0


def test_nothing_reached_gives_an_attached_zero():
    _, b, _, _ = _two_clusters()
    x = torch.cat([b, b + 10]).requires_grad_()  # two far triples; the seeds are all in the second one
    labels = torch.tensor([0, 1, 0, 0, 1, 0])
    visible = torch.tensor([False, False, False, True, True, True])
    out = GLoss(graph="knn", sigma=0.5, k=2)(x, labels, visible=visible)
    assert out["g_loss"].item() == 0.0 and out["g_loss"].grad_fn is not None
    assert out["stat_g_loss_unreached"].item() == 3


def test_unlabelled_bank_rows_pass_propagation_on_but_are_never_seeds_or_scored():
    from graphs.memory_bank import UNLABELLED

    # Batch: two labelled anchors (0, 1) and one hidden node (2) far from both; the bank holds one document
    # between node 2 and anchor 0's class, either with its label or unlabelled.
    batch = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, -0.8]])
    labels = torch.tensor([0, 1, 1])
    visible = torch.tensor([True, True, False])
    bank_rows = torch.tensor([[0.9, -0.45], [0.0, 1.0], [1.0, 0.0]])
    for bank_labels, seeds in ((torch.tensor([0, 1, 0]), 3), (torch.tensor([UNLABELLED, 1, 0]), 2)):
        bank = MemoryBank(6, 2).fill(bank_rows, bank_labels, torch.tensor([3, 4, 5]))
        gloss = GLoss(graph="bank", memory_bank=bank, sigma=0.3, k=3, bank_update=False)
        _, _, _, visible_all, _ = gloss._nodes(batch, labels, torch.tensor([0, 1, 2]), visible)
        assert int(visible_all[3:].sum()) == seeds  # an unlabelled row is never a seed
        out = gloss(batch, labels, indices=torch.tensor([0, 1, 2]), visible=visible)
        assert int(out["stat_g_loss_hidden"]) == 1  # only the batch's hidden node is scored
        scores = gloss.propagated_scores(batch, labels, visible, indices=torch.tensor([0, 1, 2]))
        assert scores.shape == (1, 2)
    # The unlabelled document takes part in the graph: without it (never filled) node 2's scores change.
    far = torch.tensor([[-1.0, 0.0]])
    def node_2_scores(rows, row_labels, ids):
        bank = MemoryBank(8, 2).fill(torch.cat([rows, far]), torch.cat([row_labels, torch.tensor([1])]), ids)
        gloss = GLoss(graph="bank", memory_bank=bank, sigma=0.3, k=2, bank_update=False)
        return gloss.propagated_scores(batch, labels, visible, indices=torch.tensor([0, 1, 2])), bank

    with_it, bank = node_2_scores(bank_rows, torch.tensor([UNLABELLED, 1, 0]), torch.tensor([3, 4, 5, 6]))
    without, _ = node_2_scores(bank_rows[1:], torch.tensor([1, 0]), torch.tensor([4, 5, 6]))
    assert not torch.allclose(with_it, without)
    assert "unlabelled=1" in repr(bank)
    with pytest.raises(ValueError, match="or -2 for unlabelled rows"):
        bank.fill(bank_rows[:1], torch.tensor([-3]))
