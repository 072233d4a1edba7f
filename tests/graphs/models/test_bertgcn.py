import math

import pytest
import torch
import torch.nn.functional as F

from graphs.models import BertGCN, BertGCNHead, doc_node_features, replace_rows
from graphs.text import build_text_graph

DOCS = [["a", "b", "c"], ["b", "c", "d", "a"], ["d", "e"], ["e", "a", "b"], ["c", "e"]]
NUM_CLASSES, DIM = 3, 6


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    graph = build_text_graph(DOCS, window_size=2)
    adj = graph.to_torch_sparse()
    bank = torch.randn(graph.num_docs, DIM)
    return graph, adj, bank


def test_doc_node_features_layout(setup):
    graph, _, bank = setup
    x = doc_node_features(bank, graph.num_words)
    assert x.shape == (graph.num_nodes, DIM)
    torch.testing.assert_close(x[: graph.num_docs], bank)
    assert torch.all(x[graph.num_docs :] == 0)


def test_replace_rows_out_of_place_keeps_gradients(setup):
    _, _, bank = setup
    before = bank.clone()
    fresh = torch.randn(2, DIM, requires_grad=True)
    out = replace_rows(bank, torch.tensor([3, 1]), fresh)
    torch.testing.assert_close(bank, before)  # bank untouched
    torch.testing.assert_close(out[[3, 1]], fresh.detach())
    out.sum().backward()
    torch.testing.assert_close(fresh.grad, torch.ones(2, DIM))
    with pytest.raises(ValueError, match="Expected 'rows' to have shape"):
        replace_rows(bank, torch.tensor([0]), fresh)


def test_bertgcn_forward_backward(setup):
    graph, adj, bank = setup
    model = BertGCN(adj, bank, NUM_CLASSES, hidden_channels=8)
    idx = torch.tensor([4, 0, 2])
    emb = torch.randn(3, DIM, requires_grad=True)
    classifier = torch.nn.Linear(DIM, NUM_CLASSES)
    enc_logits = classifier(emb)
    log_probs = model(emb, enc_logits, idx)
    assert log_probs.shape == (3, NUM_CLASSES)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3))
    F.nll_loss(log_probs, torch.tensor([0, 1, 2])).backward()
    assert emb.grad is not None and torch.all(emb.grad.abs().sum(-1) > 0)  # every batch row gets gradient
    assert model.head.weight1.grad is not None and model.head.weight1.grad.abs().sum() > 0
    assert model.head.weight2.grad is not None and model.head.weight2.grad.abs().sum() > 0
    assert classifier.weight.grad is not None
    assert not model.bank.requires_grad


def test_update_bank(setup):
    _, adj, bank = setup
    model = BertGCN(adj, bank, NUM_CLASSES)
    emb = torch.randn(2, DIM, requires_grad=True)
    model.update_bank(torch.tensor([1, 2]), emb)
    torch.testing.assert_close(model.bank[[1, 2]], emb.detach())
    torch.testing.assert_close(model.bank[[0, 3, 4]], bank[[0, 3, 4]])
    assert "bank" in model.state_dict() and "head.adj" not in model.state_dict()


def test_head_mixture_formula(setup):
    graph, adj, bank = setup
    head = BertGCNHead(adj, graph.num_docs, DIM, NUM_CLASSES, hidden_channels=4, m=0.7).eval()
    idx = torch.tensor([0, 3])
    enc = torch.randn(2, NUM_CLASSES)
    gcn = head.gcn_logits(doc_node_features(bank, graph.num_words))[idx]
    expect = torch.log(0.7 * gcn.softmax(-1) + 0.3 * enc.softmax(-1))
    torch.testing.assert_close(head(bank, enc, idx), expect)
    head.m = 1.0
    torch.testing.assert_close(head(bank, enc, idx), F.log_softmax(gcn, -1))
    head.m = 0.0
    torch.testing.assert_close(head(bank, enc, idx), F.log_softmax(enc, -1))
    assert math.isfinite(float(head(bank, enc * 1e4, idx).detach().sum()))


def test_head_validation(setup):
    graph, adj, bank = setup
    head = BertGCNHead(adj, graph.num_docs, DIM, NUM_CLASSES)
    with pytest.raises(ValueError, match="Expected 'doc_features_bank' to have shape"):
        head(bank[:2], torch.randn(1, NUM_CLASSES), torch.tensor([0]))
    with pytest.raises(ValueError, match="Expected 'encoder_logits' to have shape"):
        head(bank, torch.randn(2, NUM_CLASSES), torch.tensor([0]))
    with pytest.raises(ValueError, match="Expected 'm'"):
        BertGCNHead(adj, graph.num_docs, DIM, NUM_CLASSES, m=1.5)


def _dense_gcn(adj, x, head, activation):
    """The two GCN layers written out densely, with the head's weights and biases (zero when absent)."""
    a = adj.to_dense()
    b1 = head.bias1 if head.bias1 is not None else torch.zeros(head.weight1.shape[1])
    b2 = head.bias2 if head.bias2 is not None else torch.zeros(head.weight2.shape[1])
    return a @ (activation(a @ (x @ head.weight1) + b1) @ head.weight2) + b2


@pytest.mark.parametrize("activation, bias", [("relu", False), ("elu", False), ("elu", True)])
def test_gcn_activation_and_bias_options_match_the_dense_layers(setup, activation, bias):
    graph, adj, bank = setup
    head = BertGCNHead(adj, graph.num_docs, DIM, NUM_CLASSES, hidden_channels=8, dropout=0.0,
                       activation=activation, bias=bias).eval()
    if bias:  # non-zero biases, so that they show
        torch.nn.init.normal_(head.bias1)
        torch.nn.init.normal_(head.bias2)
    x = doc_node_features(bank, graph.num_words)
    expected = _dense_gcn(adj, x, head, {"relu": F.relu, "elu": F.elu}[activation])
    torch.testing.assert_close(head.gcn_logits(x), expected, rtol=1e-5, atol=1e-5)
    names = {name for name, _ in head.named_parameters()}
    assert names == ({"weight1", "weight2", "bias1", "bias2"} if bias else {"weight1", "weight2"})


def test_elu_differs_from_relu_and_unknown_activation_is_refused(setup):
    graph, adj, bank = setup
    x = doc_node_features(bank, graph.num_words)
    torch.manual_seed(1)
    relu = BertGCNHead(adj, graph.num_docs, DIM, NUM_CLASSES, hidden_channels=8, dropout=0.0).eval()
    elu = BertGCNHead(adj, graph.num_docs, DIM, NUM_CLASSES, hidden_channels=8, dropout=0.0, activation="elu").eval()
    elu.load_state_dict(relu.state_dict())
    assert not torch.allclose(relu.gcn_logits(x), elu.gcn_logits(x))
    with pytest.raises(ValueError, match="Expected 'activation' to be one of relu, elu"):
        BertGCNHead(adj, graph.num_docs, DIM, NUM_CLASSES, activation="tanh")
    assert BertGCN(adj, bank, NUM_CLASSES, activation="elu", bias=True).head.bias1 is not None
